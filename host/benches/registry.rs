//! Plugins from an OCI registry (a bench binary; figures go to BENCHMARKS.md).
//!
//!     bash tests/services.sh start && source "$(bash tests/services.sh env)"
//!     cargo bench --bench registry
//!
//! 1. Pull + verify + precompile of the built-in `postgres` plugin pushed to the local registry
//!    (tests/services.sh, distribution 2.8 on loopback), from an empty cache: what `orch plugin
//!    pull` costs the first time.
//! 2. `orch run` start-up of a one-step workflow whose plugin is an `oci://` tag: with the lock
//!    present (pinned, from the cache) versus `--locked` (which also asks the registry whether
//!    the tag moved), the real binary, median of 20.

use orch::oci::{BlobCache, Registry, WasmConfig};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::median;

fn orch(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(args)
        .current_dir(dir)
        .env("ORCH_CACHE_DIR", dir.join("cache"))
        .env(
            "ORCH_INSECURE_REGISTRIES",
            std::env::var("ORCH_TEST_REGISTRY").unwrap_or_default(),
        )
        .env(
            "ORCH_DATABASE_URL",
            format!("sqlite://{}", dir.join("orch.db").display()),
        )
        .output()?;
    let took = t.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "orch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
}

fn main() -> anyhow::Result<()> {
    let registry_addr = std::env::var("ORCH_TEST_REGISTRY")
        .map_err(|_| anyhow::anyhow!("ORCH_TEST_REGISTRY is not set: start tests/services.sh"))?;
    let scratch = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    let postgres = orch::bench::builtin_plugin("postgres").expect("postgres is built in");
    let reference = format!("{registry_addr}/bench/postgres:{}", std::process::id());
    let parsed = orch::oci::parse(&reference)?;
    let pusher = Registry::new(BlobCache::new(None)).insecure([registry_addr.clone()]);
    let layer = {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(postgres)))
    };
    rt.block_on(pusher.push(
        &parsed,
        postgres.to_vec(),
        &WasmConfig::component(vec![], vec![], layer, "orch:plugin/step@0.2.0".into()),
        BTreeMap::new(),
    ))?;

    let mut pulls = Vec::new();
    let mut compiles = Vec::new();
    for i in 0..5 {
        let registry = Registry::new(BlobCache::new(Some(
            scratch.path().join(format!("oci-{i}")),
        )))
        .insecure([registry_addr.clone()]);
        let t = Instant::now();
        let (_, bytes) = rt.block_on(registry.pull(&parsed))?;
        pulls.push(t.elapsed());
        let runtime = orch::Runtime::new(orch::RuntimeConfig {
            cache_dir: Some(scratch.path().join(format!("components-{i}"))),
            ..Default::default()
        })?;
        let t = Instant::now();
        orch::bench::load_plugin(&runtime, "postgres", &bytes).map_err(anyhow::Error::msg)?;
        compiles.push(t.elapsed());
    }
    println!("## Plugins from a registry (distribution 2.8 on loopback)");
    println!(
        "pull + verify of `postgres` ({}), empty cache:  {:>9.2?} median of 5",
        bytesize::ByteSize(postgres.len() as u64),
        median(pulls.clone())
    );
    println!(
        "precompile (Cranelift, empty component cache):     {:>9.2?} median of 5",
        median(compiles.clone())
    );

    // Start-up: `orch run` of a one-step workflow on an oci:// tag (the built-in `echo`).
    let echo = orch::bench::builtin_plugin("echo").expect("echo is built in");
    let echo_ref = format!("{registry_addr}/bench/echo:{}", std::process::id());
    rt.block_on(pusher.push(
        &orch::oci::parse(&echo_ref)?,
        echo.to_vec(),
        &WasmConfig::component(
            vec![],
            vec![],
            String::new(),
            "orch:plugin/step@0.2.0".into(),
        ),
        BTreeMap::new(),
    ))?;
    let dir = scratch.path().join("wf");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("w.toml"),
        format!(
            "name = \"w\"\n[steps.e]\nplugin = \"oci://{echo_ref}\"\nwith = {{ message = \"hi\" }}\n"
        ),
    )?;
    orch(&dir, &["run", "w.toml"])?; // pull, compile: the caches are warm from here
    let mut unlocked = Vec::new();
    for _ in 0..20 {
        unlocked.push(orch(&dir, &["run", "w.toml"])?);
    }
    orch(&dir, &["lock", "."])?;
    let mut pinned = Vec::new();
    let mut locked = Vec::new();
    for _ in 0..20 {
        pinned.push(orch(&dir, &["run", "w.toml"])?);
        locked.push(orch(&dir, &["--locked", "run", "w.toml"])?);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (unlocked, pinned, locked) = (median(unlocked), median(pinned), median(locked));
    println!(
        "`orch run`, oci:// tag, no lock (asks the registry):   {unlocked:>9.2?} median of 20"
    );
    println!("`orch run`, lock present (pinned, from the cache):    {pinned:>9.2?} median of 20");
    println!(
        "`orch run --locked` (pinned + asks if the tag moved): {locked:>9.2?} median of 20 ({:+.2} ms vs no lock)",
        ms(locked) - ms(unlocked)
    );
    Ok(())
}
