//! Engine overhead benchmark (a bench binary; figures go to BENCHMARKS.md).
//!
//!     cargo bench --bench engine
//!
//! 1. Plugin load with and without the compiled-component cache; per-step instantiate + call.
//! 2. Per-step overhead of a 40-step chain of no-op steps: (run time - step work) / steps, where
//!    step work is the median `run` call on a warm instance pre.
//! 3. The same chain where each step sleeps 10 ms: what a step that waits costs beyond its wait;
//!    beside it, how late a native thread's 10 ms sleep ends on this machine (its floor).
//! 4. Throughput of a 1000-step fan-out (independent no-op steps, 8 at a time).
//! 5. Growth: 1 000, 10 000 and 100 000-step chains and fan-outs, each parsed, validated,
//!    resolved and run; time per step and the process's peak RSS growth per step.
//! 6. The real binary: `orch run` of a one-step workflow (process start to exit, warm cache),
//!    and the per-step cost of a 40-step chain from the CLI, (wall(40) - wall(1)) / 39.
//!
//! The run store is SQLite in a temp dir in every case; every state change is committed before
//! the next action, as in production.

use orch::executor::{Executor, RunSpec, Silent};
use orch::resolve;
use orch::store::Store;
use orch::{Runtime, RuntimeConfig};
use std::collections::HashMap;
use std::num::NonZeroU64;
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

/// `n` echo steps, each needing the one before; each sleeping `sleep_ms` if not 0.
fn chain(n: usize, sleep_ms: u64) -> String {
    let mut s = String::from("name = \"chain\"\n");
    for i in 0..n {
        s.push_str(&format!("[steps.s{i}]\nplugin = \"echo\"\n"));
        if i > 0 {
            s.push_str(&format!("needs = [\"s{}\"]\n", i - 1));
        }
        if sleep_ms > 0 {
            s.push_str(&format!("with = {{ sleep_ms = {sleep_ms} }}\n"));
        }
    }
    s
}

/// How late each of 40 sleeps of 10 ms ends on this thread, with `slack` as its timer slack
/// (none: the kernel's default), which is restored after.
fn late_sleeps(slack: Option<NonZeroU64>) -> Vec<Duration> {
    let wait = Duration::from_millis(10);
    rustix::thread::set_current_timer_slack(slack).expect("timer slack");
    let late = (0..40)
        .map(|_| {
            let t = Instant::now();
            std::thread::sleep(wait);
            t.elapsed().saturating_sub(wait)
        })
        .collect();
    rustix::thread::set_current_timer_slack(None).expect("timer slack");
    late
}

/// Reset the process's peak resident set to what it holds now (Linux: `5` to `clear_refs`), so
/// each size's peak is its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident set since the last reset (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
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
    run_timed(executor, runtime, text).await.1
}

/// Parse, validate and resolve `text`, then run it: (preparation time, run time).
async fn run_timed(executor: &Executor, runtime: &Runtime, text: &str) -> (Duration, Duration) {
    let t = Instant::now();
    let wf = orch::workflow::parse(Path::new("bench.toml"), text).expect("valid workflow");
    let workflow = resolve::resolve(runtime, &Default::default(), wf)
        .await
        .expect("plugins resolve");
    let prepared = t.elapsed();
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
    (prepared, took)
}

fn main() -> anyhow::Result<()> {
    orch::alloc::configure();
    let tmp = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cache = tmp.path().join("cache");
        let runtime = Arc::new(Runtime::new(RuntimeConfig { cache_dir: Some(cache.clone()), ..Default::default() })?);
        let store = Store::open(&format!("sqlite://{}", tmp.path().join("bench.db").display())).await?;
        let executor = Executor { runtime: runtime.clone(), store, max_parallel: 8 };

        // Plugin load: cold (compile + write cache) vs warm (deserialize from cache).
        let echo = orch::bench::builtin_plugin("echo").expect("echo is built in");
        let cold_runtime = Runtime::new(RuntimeConfig { cache_dir: Some(tmp.path().join("cold")), ..Default::default() })?;
        let t = Instant::now();
        orch::bench::load_plugin(&cold_runtime, "echo", echo).map_err(anyhow::Error::msg)?;
        let cold = t.elapsed();
        let mut warm = Vec::new();
        for _ in 0..20 {
            let fresh = Runtime::new(RuntimeConfig { cache_dir: Some(tmp.path().join("cold")), ..Default::default() })?;
            let t = Instant::now();
            orch::bench::load_plugin(&fresh, "echo", echo).map_err(anyhow::Error::msg)?;
            warm.push(t.elapsed());
        }
        let no_cache_runtime = Runtime::new(RuntimeConfig::default())?;
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
        let chain_text = chain(40, 0);
        run_once(&executor, &runtime, &chain_text).await; // warm-up
        let mut chains = Vec::new();
        for _ in 0..20 {
            chains.push(run_once(&executor, &runtime, &chain_text).await);
        }
        let per_step: Vec<Duration> = chains.iter().map(|d| d.saturating_sub(step_work * 40) / 40).collect();

        // 40-step chain of steps that each wait 10 ms.
        let sleepy = chain(40, 10);
        run_once(&executor, &runtime, &sleepy).await;
        let mut waits = Vec::new();
        // The machine's own floor for the same wait, alternating with the runs: how late a
        // native thread's 10 ms sleep ends, with the kernel's default timer slack (50 µs) and
        // with none (as orch's exact timer, a timerfd, has none).
        let (mut native, mut exact) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            let took = run_once(&executor, &runtime, &sleepy).await;
            waits.push(took.saturating_sub(Duration::from_millis(400)) / 40);
            native.extend(tokio::task::spawn_blocking(|| late_sleeps(None)).await?);
            exact.extend(tokio::task::spawn_blocking(|| late_sleeps(NonZeroU64::new(1))).await?);
        }

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
            "40 steps of 10 ms each: overhead per step beyond its wait {:.2?} median, {:.2?} max (10 runs)",
            median(waits.clone()),
            waits.iter().max().copied().unwrap_or_default()
        );
        println!(
            "a native thread's 10 ms sleep (the machine's floor): late by {:.2?} median, {:.2?} with no timer slack (400 sleeps each)",
            median(native),
            median(exact)
        );
        println!(
            "1000-step fan-out: {:.2?} median (5 runs) = {:.0} steps/s",
            fan,
            1000.0 / fan.as_secs_f64()
        );

        // Growth: time and memory per step from 1k to 100k steps.
        println!("\n## growth (parse + validate + resolve, then run; peak RSS growth per step)");
        for (kind, make) in [
            ("chain", (|n| chain(n, 0)) as fn(usize) -> String),
            ("fan-out", fan_out as fn(usize) -> String),
        ] {
            for n in [1_000, 10_000, 100_000] {
                let text = make(n);
                reset_peak_rss();
                let before = peak_rss();
                let (prepared, ran) = run_timed(&executor, &runtime, &text).await;
                let grown = peak_rss().saturating_sub(before);
                println!(
                    "{kind:>8} {n:>7}: prepare {:>9.2?} ({:>6.2?}/step), run {:>9.2?} ({:>6.2?}/step, {:>6.0} steps/s), peak RSS +{:>5.1} MiB ({:.0} B/step)",
                    prepared,
                    prepared / n as u32,
                    ran,
                    ran / n as u32,
                    n as f64 / ran.as_secs_f64(),
                    grown as f64 / (1 << 20) as f64,
                    grown as f64 / n as f64
                );
            }
        }
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
    std::fs::write(dir.join("chain40.toml"), chain(40, 0))?;
    let run_file = |file: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(["run", file])
            .current_dir(dir)
            .env(
                "ORCH_DATABASE_URL",
                format!("sqlite://{}", dir.join("cli.db").display()),
            )
            .env("ORCH_CACHE_DIR", dir.join("cli-cache"))
            .output()
    };
    run_file("one.toml")?; // fills the cache and creates the store
    let (mut walls, mut chains) = (Vec::new(), Vec::new());
    // Alternating, so drift hits both alike.
    for _ in 0..20 {
        for (file, into) in [("one.toml", &mut walls), ("chain40.toml", &mut chains)] {
            let t = Instant::now();
            let out = run_file(file)?;
            into.push(t.elapsed());
            assert!(out.status.success());
        }
    }
    let (one, forty) = (median(walls.clone()), median(chains));
    println!(
        "`orch run` one-step workflow, warm cache:  {:>9.2?} median, {:.2?} max (20 runs)",
        one,
        walls.iter().max().copied().unwrap_or_default()
    );
    println!(
        "`orch run` 40-step chain: {forty:.2?} median; per step from the CLI (wall(40) - wall(1)) / 39 = {:.2?}",
        forty.saturating_sub(one) / 39
    );
    Ok(())
}
