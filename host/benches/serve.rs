//! `orch serve` in process on loopback, SQLite store:
//! 1. trigger latency (request sent -> 202 received; the 202 is sent after the run row is
//!    committed) at a fixed 200 requests/s for 10 s, open loop;
//! 2. saturation: 32 clients triggering back to back for 5 s;
//! 3. schedule lateness over 300 ticks: 5 per-second schedules for 60 s (recorded_at - fire_at),
//!    with missed and duplicate ticks counted.
//!
//! Every triggered run also executes (an `echo` step), as in production.
//! `cargo bench --bench serve` (add `-- --quick` for a 2 s latency run and 20 s of ticks).

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use orch::store::Store;
use orch::{Runtime, RuntimeConfig, ServeConfig, serve};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TRIGGERED: &str = r#"
name = "triggered"
[inputs.n]
type = "number"
default = 0
[steps.noop]
plugin = "echo"
with = { message = "run ${{ inputs.n }}" }
"#;

fn ticking(i: usize) -> String {
    format!(
        "name = \"tick{i}\"\n[[schedule]]\ncron = \"* * * * * *\"\n[steps.noop]\nplugin = \"echo\"\nwith = {{ message = \"tick\" }}\n"
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Running {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    base: String,
    store: Store,
}

async fn start(dir: &std::path::Path, files: &[(String, String)]) -> anyhow::Result<Running> {
    let wf = dir.join("wf");
    std::fs::create_dir_all(&wf)?;
    for (name, text) in files {
        std::fs::write(wf.join(name), text)?;
    }
    let store = Store::open(&format!("sqlite://{}", dir.join("serve.db").display())).await?;
    let runtime = Arc::new(Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.join("cache")),
    })?);
    let port = free_port();
    let config = ServeConfig {
        workflows: wf,
        bind: format!("127.0.0.1:{port}").parse()?,
        grace: Duration::from_secs(30),
        worker: orch::WorkerConfig::default(),
        reload_every: Duration::from_secs(3600),
        body_limit: 1 << 20,
        sources: Default::default(),
    };
    let stop = CancellationToken::new();
    let handle = tokio::spawn(serve(config, store.clone(), runtime, None, stop.clone()));
    let base = format!("http://127.0.0.1:{port}");
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for _ in 0..600 {
        if let Ok(r) = client.get(format!("{base}/healthz").parse()?).await
            && r.status().is_success()
        {
            return Ok(Running {
                stop,
                handle,
                base,
                store,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the server did not start")
}

/// One trigger; its latency in ms.
async fn trigger(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
    token: &str,
    n: usize,
) -> anyhow::Result<f64> {
    let request = http::Request::post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(format!(
            r#"{{"inputs":{{"n":{n}}}}}"#
        ))))?;
    let sent = Instant::now();
    let response = client.request(request).await?;
    let status = response.status();
    let _ = response.into_body().collect().await?;
    let took = sent.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(status == 202, "trigger answered {status}");
    Ok(took)
}

async fn triggers(quick: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), &[("triggered.toml".into(), TRIGGERED.into())]).await?;
    let (token, hash) = orch::bench::new_token();
    server
        .store
        .insert_token("bench", "bench", &hash, orch::store::Scope::Run)
        .await?;
    let url = format!("{}/api/v1/workflows/triggered/runs", server.base);
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http::<Full<Bytes>>();
    // Warm up: compile caches, connections.
    for n in 0..50 {
        trigger(&client, &url, &token, n).await?;
    }

    // Open loop at 200 requests/s.
    let rate = 200.0;
    let seconds = if quick { 2.0 } else { 10.0 };
    let total = (rate * seconds) as usize;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for n in 0..total {
        let at = start + Duration::from_secs_f64(n as f64 / rate);
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            trigger(&client, &url, &token, n).await
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for t in tasks {
        latencies.push(t.await??);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "trigger latency at {rate} req/s, {total} requests: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );

    // Closed loop: 32 clients back to back.
    let clients = 32;
    let window = Duration::from_secs(if quick { 2 } else { 5 });
    let began = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            while began.elapsed() < window {
                trigger(&client, &url, &token, c * 1_000_000 + done).await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await??;
    }
    let took = began.elapsed().as_secs_f64();
    println!(
        "saturation: {done} triggers in {took:.1} s with {clients} clients = {:.0} triggers/s",
        done as f64 / took
    );
    server.stop.cancel();
    server.handle.await??;
    Ok(())
}

async fn lateness(quick: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let schedules = 5;
    let files: Vec<(String, String)> = (0..schedules)
        .map(|i| (format!("tick{i}.toml"), ticking(i)))
        .collect();
    let server = start(dir.path(), &files).await?;
    let seconds = if quick { 20 } else { 60 };
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    server.stop.cancel();
    server.handle.await??;
    let mut late = Vec::new();
    let (mut missed, mut duplicates) = (0i64, 0i64);
    for i in 0..schedules {
        let mut ticks = server.store.ticks(&format!("tick{i}"), 10_000).await?;
        ticks.sort_by_key(|t| t.fire_at);
        for pair in ticks.windows(2) {
            let gap = pair[1].fire_at - pair[0].fire_at;
            if gap == 0 {
                duplicates += 1;
            } else if gap > 1000 {
                missed += gap / 1000 - 1;
            }
        }
        missed += ticks
            .iter()
            .filter(|t| t.outcome != orch::store::TickOutcome::Fired)
            .count() as i64;
        late.extend(ticks.iter().map(|t| (t.recorded_at - t.fire_at) as f64));
    }
    late.sort_by(f64::total_cmp);
    println!(
        "schedule lateness over {} ticks ({schedules} per-second schedules, {seconds} s): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; missed {missed}, duplicates {duplicates}",
        late.len(),
        percentile(&late, 0.5),
        percentile(&late, 0.99),
        late.last().copied().unwrap_or_default()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        triggers(quick).await?;
        lateness(quick).await
    })
}
