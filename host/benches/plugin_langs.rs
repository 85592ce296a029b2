//! What a plugin costs in each language (a bench binary; figures go to BENCHMARKS.md).
//!
//!     cargo bench --bench plugin_langs
//!
//! For the Rust built-in `echo`, the Python probe and the JavaScript probe (built here with
//! `orch plugin build`): component size and how much of it is custom sections (what
//! `wasm-tools strip` would remove), the first-seen compile (Cranelift, no cache), a warm-cache
//! load (deserialise), and the per-step cost of a no-op step: a fresh instance from the
//! pre-linked component plus the `run` call (median and p99).

use orch::{Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::median;

fn p99(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 - 1.0) * 0.99).round() as usize]
}

/// `orch plugin build DIR` with the real toolchain; the component and the build time.
fn build(dir: &Path, cache: &Path) -> anyhow::Result<(PathBuf, Duration)> {
    let out = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["--json", "plugin", "build"])
        .arg(dir)
        .env("ORCH_CACHE_DIR", cache)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "orch plugin build {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let component = PathBuf::from(report["component"].as_str().unwrap_or_default());
    let took = Duration::from_millis(report["build_ms"].as_u64().unwrap_or_default());
    Ok((component, took))
}

/// Bytes of custom sections (names, producers, debug info) at any nesting depth.
fn custom_bytes(wasm: &[u8]) -> u64 {
    let mut total = 0;
    for payload in wasmparser::Parser::new(0).parse_all(wasm).flatten() {
        if let wasmparser::Payload::CustomSection(section) = payload {
            total += section.data().len() as u64 + section.name().len() as u64;
        }
    }
    total
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    let scratch = tempfile::tempdir()?;
    let mut plugins: Vec<(&str, Vec<u8>, Option<Duration>)> = vec![(
        "rust (echo)",
        orch::bench::builtin_plugin("echo")
            .expect("echo is built in")
            .to_vec(),
        None,
    )];
    for (lang, dir) in [
        ("python (py-probe)", "plugins/examples-python/py-probe"),
        ("js (js-probe)", "plugins/examples-js/js-probe"),
    ] {
        let (component, took) = build(&root.join(dir), &scratch.path().join("build-cache"))?;
        plugins.push((lang, std::fs::read(component)?, Some(took)));
    }
    let config = r#"{"action":"noop"}"#;
    let rt = tokio::runtime::Runtime::new()?;
    println!("## Plugin languages: size, first compile, per-step cost of a no-op step");
    println!(
        "{:<18} {:>9} {:>8} {:>8} {:>9} {:>10} {:>10} {:>10}",
        "plugin", "size", "custom", "build", "compile", "warm load", "step p50", "step p99"
    );
    for (name, bytes, built) in &plugins {
        let cache = scratch.path().join(format!("cache-{}", name.len()));
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(cache.clone()),
            ..Default::default()
        })?;
        let t = Instant::now();
        orch::bench::load_plugin(&runtime, name, bytes).map_err(anyhow::Error::msg)?;
        let compile = t.elapsed();
        let mut warm = Vec::new();
        for _ in 0..5 {
            let fresh = Runtime::new(RuntimeConfig {
                cache_dir: Some(cache.clone()),
                ..Default::default()
            })?;
            let t = Instant::now();
            orch::bench::load_plugin(&fresh, name, bytes).map_err(anyhow::Error::msg)?;
            warm.push(t.elapsed());
        }
        let plugin = orch::bench::load_plugin(&runtime, name, bytes).map_err(anyhow::Error::msg)?;
        let calls = if name.starts_with("rust") { 1000 } else { 300 };
        let config = if name.starts_with("rust") {
            "{}"
        } else {
            config
        };
        let mut steps = Vec::new();
        rt.block_on(async {
            for i in 0..calls + 10 {
                let t = Instant::now();
                orch::bench::run_once(&runtime, &plugin, &format!("s{i}"), config)
                    .await
                    .map_err(anyhow::Error::msg)?;
                if i >= 10 {
                    steps.push(t.elapsed());
                }
            }
            anyhow::Ok(())
        })?;
        println!(
            "{:<18} {:>9} {:>7.1}% {:>8} {:>9.2?} {:>10.2?} {:>10.2?} {:>10.2?}",
            name,
            bytesize::ByteSize(bytes.len() as u64).to_string(),
            100.0 * custom_bytes(bytes) as f64 / bytes.len() as f64,
            built.map_or("-".to_string(), |d| format!("{:.1}s", d.as_secs_f64())),
            compile,
            median(warm),
            median(steps.clone()),
            p99(&steps),
        );
    }
    Ok(())
}
