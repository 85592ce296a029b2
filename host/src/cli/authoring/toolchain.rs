//! `orch plugin build`: run the language's toolchain on a plugin directory, then load the
//! result the way a workflow would (fits the world, describes itself, precompiled into the
//! cache) so the first step that uses it does not wait for Cranelift.

use super::{Lang, artifact, kit};

use crate::cli::CliError;
use crate::cli::settings::{FEW_SANDBOXES, Settings};
use crate::workflow::PluginRef;
use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime};

/// The versions the SDKs are written against (what `pip`/`npm` should install).
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Build the plugin in `dir` into `dir/NAME.wasm`, check and precompile it.
pub(in crate::cli) async fn build(settings: &Settings, dir: &Path) -> Result<(), CliError> {
    let dir = &super::absolute(dir)?;
    let lang = Lang::of(dir)?;
    let out = artifact(dir)?;
    let kit = kit(settings)?;
    let started = Instant::now();
    match lang {
        Lang::Rust => rust(dir, &kit, &out)?,
        Lang::Python => python(dir, &kit, &out)?,
        Lang::Js => js(dir, &kit, &out)?,
    }
    let built = started.elapsed();
    let size = std::fs::metadata(&out)?.len();
    let started = Instant::now();
    let runtime = settings.runtime(FEW_SANDBOXES)?;
    let reference = PluginRef::File {
        path: out.clone(),
        sha256: None,
    };
    let plugin = crate::resolve::load(&runtime, &Default::default(), &reference)
        .await
        .map_err(|(message, help)| CliError::invalid(format!("{message}\n  help: {help}")))?;
    let compiled = started.elapsed();
    let reach = crate::capability::reach::classify(&plugin.plugin.imports);
    let can = crate::capability::reach::capabilities(&reach, false);
    if settings.json {
        println!(
            "{}",
            serde_json::json!({
                "component": out,
                "lang": lang.to_string(),
                "name": plugin.info.name,
                "version": plugin.info.version,
                "bytes": size,
                "build_ms": built.as_millis() as u64,
                "compile_ms": compiled.as_millis() as u64,
                "capabilities": can,
            })
        );
    } else {
        println!(
            "built {} ({} {}, {lang}): {} in {:.1}s, precompiled in {:.1}s\n  can reach: {}\n  (`orch plugin inspect {}` lists every import and what grants it)",
            out.display(),
            plugin.info.name,
            plugin.info.version,
            bytesize::ByteSize(size),
            built.as_secs_f64(),
            compiled.as_secs_f64(),
            can.join(", "),
            out.display(),
        );
    }
    Ok(())
}

/// Is any source file in `dir` newer than `artifact` (or is there no artifact)?
pub(super) fn stale(dir: &Path, artifact: &Path) -> bool {
    let Ok(built) = std::fs::metadata(artifact).and_then(|m| m.modified()) else {
        return true;
    };
    newest_source(dir).is_some_and(|t| t > built)
}

fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if matches!(
            name.as_ref(),
            "target" | "node_modules" | "__pycache__" | "dist"
        ) || name.starts_with('.')
            || name.ends_with(".wasm")
        {
            continue;
        }
        let time = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            newest_source(&entry.path())
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// Run `command`; a missing program is named with how to install it, a failure shows its
/// output (the toolchain's own errors are the useful part).
fn run(mut command: Command, what: &str, install: &str) -> Result<(), CliError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            CliError::invalid(format!("`{program}` is not installed\n  help: {install}"))
        }
        _ => CliError::failed(format!("could not start `{program}`: {e}")),
    })?;
    if output.status.success() {
        return Ok(());
    }
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim_end().to_string();
    Err(CliError::invalid(format!(
        "{what} failed ({}):\n{}\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )))
}

fn rust(dir: &Path, kit: &Path, out: &Path) -> Result<(), CliError> {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml"))?)
            .map_err(|e| CliError::invalid(format!("{}/Cargo.toml: {e}", dir.display())))?;
    let package = manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| CliError::invalid("Cargo.toml has no [package] name"))?;
    let target = dir.join("target");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // `orch-sdk = "0.2"` resolves to the SDK of this orch's kit (until the crate is on
    // crates.io): patched here, at build time, so an upgraded orch builds against its own SDK.
    let patch = format!(
        "patch.crates-io.orch-sdk.path={}",
        toml::Value::String(kit.join("rust").to_string_lossy().into_owned())
    );
    cargo
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--config",
        ])
        .arg(patch)
        .arg("--target-dir")
        .arg(&target)
        // A plugin is its own project, whatever the calling environment builds.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET");
    run(
        cargo,
        "cargo build",
        "install Rust from https://rustup.rs, then `rustup target add wasm32-wasip2`",
    )?;
    let built = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    std::fs::copy(&built, out)
        .map_err(|e| CliError::failed(format!("{}: {e}", built.display())))?;
    Ok(())
}

fn python(dir: &Path, kit: &Path, out: &Path) -> Result<(), CliError> {
    let mut componentize = Command::new("componentize-py");
    // The WIT comes from the SDK package's own componentize-py.toml (orch_sdk/wit).
    componentize
        .current_dir(dir)
        .args(["-w", "step", "componentize", "app", "-p"])
        .arg(dir)
        .arg("-p")
        .arg(kit.join("python"))
        .arg("-o")
        .arg(out);
    run(
        componentize,
        "componentize-py",
        &format!("pip install {COMPONENTIZE_PY}"),
    )
}

fn js(dir: &Path, kit: &Path, out: &Path) -> Result<(), CliError> {
    if !dir.join("node_modules").is_dir() {
        let mut npm = Command::new("npm");
        npm.current_dir(dir)
            .args(["install", "--no-audit", "--no-fund"]);
        run(
            npm,
            "npm install",
            "install Node.js 20 or later (it brings npm)",
        )?;
    }
    let entry = ["index.ts", "index.js", "src/index.js"]
        .into_iter()
        .map(|e| dir.join(e))
        .find(|p| p.is_file())
        .ok_or_else(|| CliError::invalid(format!("{} has no index.js", dir.display())))?;
    let mut node = Command::new("node");
    node.current_dir(dir)
        .arg(kit.join("js/build.mjs"))
        .arg("--entry")
        .arg(&entry)
        .arg("--sdk")
        .arg(kit.join("js"))
        .arg("--wit")
        .arg(kit.join("wit"))
        .arg("--out")
        .arg(out);
    run(node, "componentize-js", "install Node.js 20 or later")
}
