//! `orch serve` in process on loopback, SQLite store:
//! 1. trigger latency (request sent -> 202 received; the 202 is sent after the run row is
//!    committed) at a fixed 200 requests/s for 10 s, open loop;
//! 2. saturation: 32 clients triggering back to back for 5 s;
//! 3. schedule lateness over 300 ticks: 5 per-second schedules for 60 s (recorded_at - fire_at),
//!    with missed and duplicate ticks counted.
//!
//! 4. the web page: a signed-in browser's GET of the run page of a 1000-step fan-out (the
//!    DAG drawn as SVG, the step table, the log tail), its live-state poll and the workflow
//!    page, rendered server-side (request sent -> whole body received).
//!
//! Every triggered run also executes (an `echo` step), as in production.
//! `cargo bench --bench serve` (add `-- --quick` for a 2 s latency run and 20 s of ticks;
//! `-- web` for the web page alone).

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
        ..Default::default()
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
    let web_only = std::env::args().any(|a| a == "web");
    runtime.block_on(async {
        if !web_only {
            triggers(quick).await?;
            lateness(quick).await?;
        }
        web_pages().await
    })
}

/// A fan-out of `n` no-op steps after one root step.
fn fan_out(n: usize) -> String {
    let mut text = String::from(
        "name = \"fan\"\n[steps.root]\nplugin = \"echo\"\nwith = { message = \"root\" }\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "[steps.part_{i:04}]\nplugin = \"echo\"\nneeds = [\"root\"]\nwith = {{ message = \"part {i}\" }}\n"
        ));
    }
    text
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// GET `url` with `cookie` (taking gzip if `gzip`); the time to the whole body (ms) and its
/// size as sent.
async fn get_page(
    client: &HttpClient,
    url: &str,
    cookie: &str,
    gzip: bool,
) -> anyhow::Result<(f64, usize)> {
    let mut request = http::Request::get(url).header("cookie", cookie);
    if gzip {
        request = request.header("accept-encoding", "gzip");
    }
    let request = request.body(Full::new(Bytes::new()))?;
    let sent = Instant::now();
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let took = sent.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(status == 200, "GET {url} answered {status}");
    Ok((took, body.len()))
}

/// Sign in with `token` as a browser does; the session cookie.
async fn sign_in(client: &HttpClient, base: &str, token: &str) -> anyhow::Result<String> {
    let form = client.get(format!("{base}/login").parse()?).await?;
    let nonce = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("orch_login="))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no sign-in cookie"))?;
    let request = http::Request::post(format!("{base}/login"))
        .header("cookie", format!("orch_login={nonce}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!(
            "login_csrf={nonce}&token={token}"
        ))))?;
    let signed = client.request(request).await?;
    signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.split(';')
                .next()
                .filter(|c| c.starts_with("orch_session="))
        })
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("sign-in refused: {}", signed.status()))
}

async fn web_pages() -> anyhow::Result<()> {
    let steps = 1000;
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), &[("fan.toml".into(), fan_out(steps))]).await?;
    let (token, hash) = orch::bench::new_token();
    server
        .store
        .insert_token("bench", "bench", &hash, orch::store::Scope::Run)
        .await?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::post(format!("{}/api/v1/workflows/fan/runs", server.base))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))?;
    let queued = client.request(request).await?.into_body().collect().await?;
    let queued: serde_json::Value = serde_json::from_slice(&queued.to_bytes())?;
    let id = queued["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no run id: {queued}"))?
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let run = server.store.run(&id).await?;
        if run.as_ref().is_some_and(|r| r.status.is_final()) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the fan-out did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cookie = sign_in(&client, &server.base, &token).await?;
    let pages = [
        ("run page", format!("{}/runs/{id}", server.base)),
        (
            "run state (live poll)",
            format!("{}/runs/{id}/state", server.base),
        ),
        ("workflow page", format!("{}/workflows/fan", server.base)),
        ("runs list", format!("{}/", server.base)),
    ];
    println!(
        "web page, a {steps}-step fan-out run ({} steps), SQLite store:",
        steps + 1
    );
    for (i, (what, url)) in pages.iter().enumerate() {
        // The first GET of the run page lays the DAG out (then cached per workflow shape).
        let (cold, _) = get_page(&client, url, &cookie, false).await?;
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..30 {
            let (took, bytes) = get_page(&client, url, &cookie, false).await?;
            times.push(took);
            size = bytes;
        }
        let mut zipped_times = Vec::new();
        let mut zipped = 0;
        for _ in 0..30 {
            let (took, bytes) = get_page(&client, url, &cookie, true).await?;
            zipped_times.push(took);
            zipped = bytes;
        }
        zipped_times.sort_by(f64::total_cmp);
        times.sort_by(f64::total_cmp);
        let cold = if i == 0 {
            format!(", first (layout not cached) {cold:.1} ms")
        } else {
            String::new()
        };
        println!(
            "  {what}: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms over 30 GETs, {} KB{cold}; gzip: p50 {:.1} ms, {} KB",
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            times.last().copied().unwrap_or_default(),
            size / 1024,
            percentile(&zipped_times, 0.5),
            zipped.div_ceil(1024)
        );
    }
    server.stop.cancel();
    server.handle.await??;
    Ok(())
}
