//! 1000 small HTTP requests through the `http` plugin (one workflow step each, 8 at a time)
//! against the same requests sent from the host with the same client (wasmtime-wasi-http's
//! hyper `default_send_request`, 8 at a time), to a minimal in-process server (GETs without
//! bodies); figures go to BENCHMARKS.md.
//!
//!     cargo bench --bench http_requests

use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::{Prepared, median};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REQUESTS: usize = 1000;
const PARALLEL: usize = 8;
const ROUNDS: usize = 3;

/// `batch`: one step with `urls` (1000 requests, 8 in flight inside the plugin); otherwise
/// 1000 steps of one request each.
async fn through_plugin(dir: &Path, port: u16, batch: bool) -> anyhow::Result<Duration> {
    let mut workflow = String::from("name = \"http-bench\"\n");
    let url = format!("http://127.0.0.1:{port}/json");
    if batch {
        let urls = vec![format!("\"{url}\""); REQUESTS].join(", ");
        workflow.push_str(&format!(
            "[steps.all]\nplugin = \"http\"\nallow = [\"http://127.0.0.1:{port}\"]\nwith = {{ urls = [{urls}], concurrency = {PARALLEL} }}\n"
        ));
    } else {
        for i in 0..REQUESTS {
            workflow.push_str(&format!(
                "[steps.r{i}]\nplugin = \"http\"\nallow = [\"http://127.0.0.1:{port}\"]\nwith = {{ url = \"{url}\" }}\n"
            ));
        }
    }
    let prepared = Prepared::new(dir, &workflow, PARALLEL).await?;
    let start = Instant::now();
    prepared.run(Default::default(), Default::default()).await?;
    Ok(start.elapsed())
}

async fn natively(port: u16) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..REQUESTS)
        .map(|_| async move {
            let request = http::Request::get(format!("http://127.0.0.1:{port}/json")).body(
                Empty::new()
                    .map_err(|e: std::convert::Infallible| match e {})
                    .boxed_unsync(),
            )?;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, None).await?;
            tokio::spawn(io);
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::ensure!(!body.is_empty());
            Ok(())
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(start.elapsed())
}

/// A minimal keep-alive HTTP/1.1 server answering every request with a small JSON body, so
/// the figures measure the client side rather than a slow test server.
async fn serve() -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let body = br#"{"items":[{"name":"a"},{"name":"b"}]}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if socket.write_all(head.as_bytes()).await.is_err()
                            || socket.write_all(body).await.is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(port)
}

fn main() -> anyhow::Result<()> {
    orch::alloc::configure();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let port = rt.block_on(serve())?;
    println!("## {REQUESTS} small HTTP GETs, {PARALLEL} at a time, local server, {ROUNDS} rounds");
    let (mut steps, mut batch, mut native) = (vec![], vec![], vec![]);
    for n in 0..ROUNDS {
        let tmp = tempfile::tempdir()?;
        let (s, b, nat) = rt.block_on(async {
            anyhow::Ok((
                through_plugin(tmp.path(), port, false).await?,
                through_plugin(tmp.path(), port, true).await?,
                natively(port).await?,
            ))
        })?;
        println!(
            "round {}: 1000 steps {s:.2?}; one step with urls {b:.2?}; host client {nat:.2?}",
            n + 1
        );
        steps.push(s);
        batch.push(b);
        native.push(nat);
    }
    let nat = median(native);
    let rate = |d: Duration| REQUESTS as f64 / d.as_secs_f64();
    println!("host client (median): {nat:.2?} ({:.0} req/s)", rate(nat));
    for (name, p) in [
        ("1000 steps", median(steps)),
        ("one step, urls", median(batch)),
    ] {
        println!(
            "{name} (median): {p:.2?} ({:.0} req/s); ratio {:.2} (target >= 0.5); overhead per request {:.2?} (at {PARALLEL} in flight)",
            rate(p),
            rate(p) / rate(nat),
            (p.saturating_sub(nat)) / REQUESTS as u32
        );
    }
    Ok(())
}
