//! Engine overhead benchmark (a bench binary; figures go to BENCHMARKS.md).
//!
//!     cargo bench --bench engine
//!
//! 1. Per-step overhead of a 40-step chain of no-op steps: (run time - step work) / steps, where
//!    step work is the time spent inside the plugin call itself (measured separately as the
//!    median `run` call on a warm instance pre).
//! 2. Throughput of a 1000-step fan-out (independent no-op steps).
//! 3. Plugin load with and without the compiled-component cache; per-step instantiate + call.
//! 4. `orch run` wall time for a one-step workflow with a warm cache (the real binary).
//! 5. Validation of 10 000 and 100 000-step chains (each step reads its predecessor's output),
//!    and the DAG alone: linear, so 10x the steps should cost ~10x the time.
//!
//! The run store is SQLite in a temp dir in every case.

use orch::executor::{Executor, RunSpec, Silent};
use orch::resolve;
use orch::store::Store;
use orch::{Runtime, RuntimeConfig};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::median;

// The allocator and settings of the `orch` binary, so the bench measures what the CLI runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn p(v: &[Duration], q: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

fn chain(n: usize) -> String {
    let mut s = String::from("name = \"chain\"\n");
    for i in 0..n {
        s.push_str(&format!("[steps.s{i}]\nplugin = \"echo\"\n"));
        if i > 0 {
            s.push_str(&format!("needs = [\"s{}\"]\n", i - 1));
        }
    }
    s
}

/// A chain in which every step reads the previous step's output (reference checks walk the DAG).
fn reading_chain(n: usize) -> String {
    let mut s = String::from("name = \"chain\"\n");
    for i in 0..n {
        s.push_str(&format!("[steps.s{i}]\nplugin = \"echo\"\n"));
        if i > 0 {
            s.push_str(&format!(
                "needs = [\"s{p}\"]\nwith = {{ message = \"${{{{ steps.s{p}.outputs.message }}}}\" }}\n",
                p = i - 1
            ));
        }
    }
    s
}

/// Median time of `runs` calls of `f`.
fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut took = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        f();
        took.push(t.elapsed());
    }
    median(took)
}

fn fan_out(n: usize) -> String {
    let mut s = String::from("name = \"fanout\"\n");
    for i in 0..n {
        s.push_str(&format!("[steps.s{i}]\nplugin = \"echo\"\n"));
    }
    s
}

async fn run_once(executor: &Executor, runtime: &Runtime, text: &str) -> Duration {
    let wf = orch::workflow::parse(Path::new("bench.toml"), text).expect("valid workflow");
    let workflow = resolve::resolve(runtime, &Default::default(), wf)
        .await
        .expect("plugins resolve");
    let spec = RunSpec {
        workflow: Arc::new(workflow),
        inputs: Default::default(),
        trigger: orch::store::Trigger::Cli,
        process_env: HashMap::new(),
        control: Default::default(),
        resume: None,
        secret_store: None,
    };
    let start = Instant::now();
    let report = executor.run(spec, Arc::new(Silent)).await.expect("run");
    let took = start.elapsed();
    assert!(report.succeeded());
    took
}

fn main() -> anyhow::Result<()> {
    orch::alloc::configure();
    let tmp = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cache = tmp.path().join("cache");
        let runtime = Arc::new(Runtime::new(RuntimeConfig { cache_dir: Some(cache.clone()) })?);
        let store = Store::open(&format!("sqlite://{}", tmp.path().join("bench.db").display())).await?;
        let executor = Executor { runtime: runtime.clone(), store, max_parallel: 8 };

        // Plugin load: cold (compile + write cache) vs warm (deserialize from cache).
        let echo = orch::bench::builtin_plugin("echo").expect("echo is built in");
        let cold_runtime = Runtime::new(RuntimeConfig { cache_dir: Some(tmp.path().join("cold")) })?;
        let t = Instant::now();
        orch::bench::load_plugin(&cold_runtime, "echo", echo).map_err(anyhow::Error::msg)?;
        let cold = t.elapsed();
        let mut warm = Vec::new();
        for _ in 0..20 {
            let fresh = Runtime::new(RuntimeConfig { cache_dir: Some(tmp.path().join("cold")) })?;
            let t = Instant::now();
            orch::bench::load_plugin(&fresh, "echo", echo).map_err(anyhow::Error::msg)?;
            warm.push(t.elapsed());
        }
        let no_cache_runtime = Runtime::new(RuntimeConfig { cache_dir: None })?;
        let t = Instant::now();
        orch::bench::load_plugin(&no_cache_runtime, "echo", echo).map_err(anyhow::Error::msg)?;
        let uncached = t.elapsed();

        // One step = fresh instance from the InstancePre + the `run` call.
        let plugin = orch::bench::load_plugin(&runtime, "echo", echo).map_err(anyhow::Error::msg)?;
        let mut per_call = Vec::new();
        for i in 0..1000 {
            let t = Instant::now();
            orch::bench::run_once(&runtime, &plugin, &format!("s{i}"), "{}")
                .await
                .map_err(anyhow::Error::msg)?;
            per_call.push(t.elapsed());
        }
        let step_work = median(per_call.clone());

        // 40-step chain.
        let chain_text = chain(40);
        run_once(&executor, &runtime, &chain_text).await; // warm-up
        let mut chains = Vec::new();
        for _ in 0..20 {
            chains.push(run_once(&executor, &runtime, &chain_text).await);
        }
        let per_step: Vec<Duration> = chains.iter().map(|d| d.saturating_sub(step_work * 40) / 40).collect();

        // 1000-step fan-out.
        let fan_text = fan_out(1000);
        run_once(&executor, &runtime, &fan_text).await;
        let mut fans = Vec::new();
        for _ in 0..5 {
            fans.push(run_once(&executor, &runtime, &fan_text).await);
        }
        let fan = median(fans.clone());

        println!("## orch engine benchmark (SQLite store)");
        println!("plugin load, no cache (compile):          {:>9.2?}", uncached);
        println!("plugin load, cold cache (compile + write): {:>9.2?}", cold);
        println!("plugin load, warm cache (deserialize):     {:>9.2?} (median of 20)", median(warm));
        println!(
            "instantiate + run call, per step:          {:>9.2?} median, {:.2?} p99 (1000 calls)",
            step_work,
            p(&per_call, 0.99)
        );
        println!(
            "40-step chain: run {:.2?} median; per-step overhead {:.2?} median, {:.2?} max (20 runs)",
            median(chains.clone()),
            median(per_step.clone()),
            per_step.iter().max().copied().unwrap_or_default()
        );
        println!(
            "1000-step fan-out: {:.2?} median (5 runs) = {:.0} steps/s",
            fan,
            1000.0 / fan.as_secs_f64()
        );
        anyhow::Ok(())
    })?;

    // Validation and the DAG at scale.
    for n in [1_000, 10_000, 100_000] {
        let text = reading_chain(n);
        let validate = time(3, || {
            let wf = orch::workflow::parse(Path::new("chain.toml"), &text).expect("valid chain");
            assert_eq!(wf.steps.len(), n);
        });
        let ids: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let dag = time(3, || {
            let dag = orch::dag::Dag::build(
                ids.iter()
                    .enumerate()
                    .map(|(i, id)| (id.as_str(), i.checked_sub(1).map(|p| ids[p].as_str()))),
            )
            .expect("acyclic");
            assert_eq!(dag.len(), n);
        });
        println!(
            "{n:>7}-step chain: parse + validate {validate:>9.2?}, DAG alone {dag:>9.2?} (median of 3)"
        );
    }

    // The real binary, one-step workflow, warm cache.
    let dir = tmp.path();
    std::fs::write(
        dir.join("one.toml"),
        "name = \"one\"\n[steps.hello]\nplugin = \"echo\"\nwith = { message = \"hi\" }\n",
    )?;
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(["run", "one.toml"])
            .current_dir(dir)
            .env(
                "ORCH_DATABASE_URL",
                format!("sqlite://{}", dir.join("cli.db").display()),
            )
            .env("ORCH_CACHE_DIR", dir.join("cli-cache"))
            .output()
    };
    run()?; // fills the cache and creates the store
    let mut walls = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let out = run()?;
        walls.push(t.elapsed());
        assert!(out.status.success());
    }
    println!(
        "`orch run` one-step workflow, warm cache:  {:>9.2?} median, {:.2?} max (20 runs)",
        median(walls.clone()),
        walls.iter().max().copied().unwrap_or_default()
    );
    Ok(())
}
