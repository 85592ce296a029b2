//! Compiling a component in a child process (`orch __compile OUT`), so that what a hostile
//! component costs Cranelift is bounded in time (the child is killed) and memory (its address
//! space is limited), and never touches the server's own threads or heap.

use super::engine_config;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::Duration;
use wasmtime::Engine;

/// Address space a compile may use beyond what the child maps at start (its own binary and
/// threads): a componentize-py plugin needs well under 1 GiB.
const COMPILE_MEMORY: u64 = 4 << 30;

/// The exit code of a Rust process that panicked.
const PANICKED: i32 = 101;

/// Why a compile in the child failed.
pub(super) enum ChildFailure {
    /// Still compiling at the limit: killed.
    TooSlow,
    /// Ran out of its address space (an allocation failed, the child aborted).
    TooHungry(u64),
    /// Not a component wasmtime compiles, or the child could not run: its words.
    Failed(String),
}

/// The budget: `ORCH_COMPILE_MEMORY` (bytes, for tests) or [`COMPILE_MEMORY`].
fn budget() -> u64 {
    std::env::var("ORCH_COMPILE_MEMORY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(COMPILE_MEMORY)
}

/// Compile `bytes` with `exe __compile`, within `limit`; the precompiled artifact.
pub(super) async fn in_child(
    exe: &Path,
    bytes: &[u8],
    limit: Duration,
) -> Result<Vec<u8>, ChildFailure> {
    let out = tempfile::NamedTempFile::new().map_err(|e| ChildFailure::Failed(e.to_string()))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("__compile")
        .arg(out.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ChildFailure::Failed(format!("cannot start {}: {e}", exe.display())))?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            stdin.write_all(bytes).await?;
        }
        child.wait_with_output().await
    };
    let output = match tokio::time::timeout(limit, run).await {
        Err(_) => return Err(ChildFailure::TooSlow),
        Ok(Err(e)) => return Err(ChildFailure::Failed(e.to_string())),
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        use std::os::unix::process::ExitStatusExt;
        let said = String::from_utf8_lossy(&output.stderr).trim().to_string();
        // A compile error exits 1 with wasmtime's words; past its address space the child
        // aborts on an allocation (a signal) or panics on a thread it cannot start (101).
        let out_of_memory =
            output.status.signal().is_some() || output.status.code() == Some(PANICKED);
        return Err(if out_of_memory {
            ChildFailure::TooHungry(budget())
        } else {
            ChildFailure::Failed(said)
        });
    }
    std::fs::read(out.path()).map_err(|e| ChildFailure::Failed(e.to_string()))
}

/// The child: limit its own address space, read a component from stdin, write the
/// precompiled artifact to the path in its arguments.
pub fn child_main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(2) else {
        eprintln!("usage: orch __compile OUT < component.wasm");
        return ExitCode::from(2);
    };
    if let Err(e) = limit_address_space(budget()) {
        eprintln!("cannot limit the compile's memory: {e}");
        return ExitCode::FAILURE;
    }
    let compiled = (|| -> wasmtime::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        let engine = Engine::new(&engine_config())?;
        engine.precompile_component(&bytes)
    })();
    match compiled {
        Ok(artifact) => {
            match std::fs::File::create(&out).and_then(|mut f| f.write_all(&artifact)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot write the compiled component: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `RLIMIT_AS` = what is mapped now + `budget`.
fn limit_address_space(budget: u64) -> std::io::Result<()> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let page = rustix::param::page_size() as u64;
    let limit = pages * page + budget;
    rustix::process::setrlimit(
        rustix::process::Resource::As,
        rustix::process::Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        },
    )
    .map_err(std::io::Error::from)
}
