//! Workers sharing one PostgreSQL store (a private cluster with its default durability:
//! fsync and synchronous commits on), real `orch serve` processes:
//! 1. throughput: a fan-out of no-op steps with 1, 2 and 4 workers (run start to run end, from
//!    the store's own timestamps);
//! 2. hand-off latency: a chain of no-op steps, from one step's end to the next one's claim
//!    (p50, p99), with 1 and 2 workers;
//! 3. recovery: `kill -9` the worker running a long step, time until another worker claims it
//!    (lease 3 s);
//! 4. PostgreSQL's own floor on this machine: single-row synchronous commits per second.
//!
//! `cargo bench --bench workers` (add `-- --quick` for smaller DAGs).

#[allow(dead_code)]
#[path = "../../tests/e2e/harness/pg.rs"]
mod pg;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the workers' logs are, for a failure's message.
static LOGS: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// One `orch serve` worker.
struct Worker {
    child: Child,
    addr: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn orch(dir: &Path, url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orch"));
    cmd.current_dir(dir)
        .env("ORCH_DATABASE_URL", url)
        .env(
            "ORCH_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
        )
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn");
    cmd
}

fn start_worker(dir: &Path, url: &str, extra: &[&str]) -> Worker {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = dir.join(format!("worker-{n}.log"));
    let child = orch(dir, url)
        .args([
            "serve",
            "--workflows",
            "wf",
            "--bind",
            "127.0.0.1:0",
            "--parallel",
            "32",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("worker log"))
        .spawn()
        .expect("start orch serve");
    let deadline = Instant::now() + Duration::from_secs(120);
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(addr) = text.split("listening on http://").nth(1) {
            break addr
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "orch serve did not start: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Worker { child, addr }
}

/// The end of every worker's stderr, for a failure.
fn worker_logs(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("worker-") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            out.push_str(&format!("--- {name}\n{tail}\n"));
        }
    }
    out
}

/// A fresh database on the cluster and a token in it.
fn database(pg: &pg::PrivatePg, dir: &Path) -> (String, String) {
    let db = pg::unique("bench");
    pg::psql_at(&pg.url(), &format!("CREATE DATABASE {db}"));
    let url = format!("postgres://orch@127.0.0.1:{}/{db}", pg.port);
    let out = orch(dir, &url)
        .args(["token", "create", "bench"])
        .output()
        .expect("orch token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (url, String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn trigger(worker: &Worker, token: &str, workflow: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "content-type: application/json",
            "-d",
            "{}",
            &format!("http://{}/api/v1/workflows/{workflow}/runs", worker.addr),
        ])
        .output()
        .expect("curl");
    let body: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the trigger answers JSON");
    body["id"].as_str().expect("a run id").to_string()
}

fn wait_done(url: &str, run: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let status = pg::psql_at(url, &format!("SELECT status FROM runs WHERE id = '{run}'"));
        match status.as_str() {
            "succeeded" => return,
            "failed" | "cancelled" => panic!("run {run} {status}"),
            _ => {}
        }
        if Instant::now() >= deadline {
            let queue = pg::psql_at(
                url,
                &format!(
                    "SELECT step, needs_left, ready_at, attempt, lease_owner, lease_until, cancelled FROM step_queue WHERE run_id = '{run}' LIMIT 20"
                ),
            );
            let open = pg::psql_at(
                url,
                &format!(
                    "SELECT step, attempt, status, worker FROM step_runs WHERE run_id = '{run}' AND status <> 'succeeded' LIMIT 20"
                ),
            );
            let workers = pg::psql_at(url, "SELECT id, heartbeat_at, stopped_at FROM workers");
            panic!(
                "run {run} did not end ({status}); queue:\n{queue}\nnot succeeded:\n{open}\nworkers:\n{workers}\n{}",
                worker_logs(LOGS.get().map(|p| p.as_path()).unwrap_or(Path::new(".")))
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `n` independent no-op steps; `logged`: each writes one log line.
fn fan_out(name: &str, n: usize, logged: bool) -> String {
    let mut wf = format!("name = \"{name}\"\n");
    for i in 0..n {
        let with = if logged {
            format!("{{ message = \"step {i}\" }}")
        } else {
            "{}".into()
        };
        wf.push_str(&format!("[steps.s{i}]\nplugin = \"echo\"\nwith = {with}\n"));
    }
    wf
}

fn chain(n: usize) -> String {
    let mut wf = String::from("name = \"chain\"\n");
    for i in 0..n {
        let needs = if i == 0 {
            String::new()
        } else {
            format!("needs = [\"s{}\"]\n", i - 1)
        };
        wf.push_str(&format!(
            "[steps.s{i}]\nplugin = \"echo\"\n{needs}with = {{}}\n"
        ));
    }
    wf
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (fan, links) = if quick { (500, 50) } else { (2000, 200) };
    let pg = pg::PrivatePg::start(true);
    let dir = tempfile::tempdir().expect("temp dir");
    let _ = LOGS.set(dir.path().to_path_buf());
    std::fs::create_dir(dir.path().join("wf")).expect("bench step");
    std::fs::write(dir.path().join("wf/fan.toml"), fan_out("fan", fan, false)).expect("bench step");
    std::fs::write(
        dir.path().join("wf/fanlog.toml"),
        fan_out("fanlog", fan, true),
    )
    .expect("bench step");
    std::fs::write(dir.path().join("wf/chain.toml"), chain(links)).expect("bench step");
    std::fs::write(
        dir.path().join("wf/long.toml"),
        "name = \"long\"\n[steps.long]\nplugin = \"echo\"\nwith = { sleep_ms = 4000 }\n",
    )
    .expect("bench step");

    // The floor: one-row transactions committed synchronously, one client.
    let floor = {
        let n = 2000;
        let script: String = std::iter::once("CREATE TEMP TABLE t (i INT);\n".to_string())
            .chain((0..n).map(|i| format!("INSERT INTO t VALUES ({i});\n")))
            .collect();
        let started = Instant::now();
        let out = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &pg.url()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .expect("bench step")
                    .write_all(script.as_bytes())?;
                c.wait()
            })
            .expect("psql");
        assert!(out.success());
        n as f64 / started.elapsed().as_secs_f64()
    };
    println!("postgres floor: {floor:.0} synchronous single-row commits/s (one psql client)");

    println!("\nthroughput: fan-out of {fan} no-op steps");
    for (workers, workflow) in [(1, "fan"), (2, "fan"), (4, "fan"), (2, "fanlog")] {
        let (url, token) = database(&pg, dir.path());
        let pool: Vec<Worker> = (0..workers)
            .map(|_| start_worker(dir.path(), &url, &[]))
            .collect();
        // Warm the component caches with one run first.
        let warm = trigger(&pool[0], &token, "chain");
        wait_done(&url, &warm, Duration::from_secs(300));
        let run = trigger(&pool[0], &token, workflow);
        wait_done(&url, &run, Duration::from_secs(300));
        let span: i64 = pg::psql_at(
            &url,
            &format!(
                "SELECT MAX(finished_at) - MIN(started_at) FROM step_runs WHERE run_id = '{run}'"
            ),
        )
        .parse()
        .expect("bench step");
        let per: String = pg::psql_at(
            &url,
            &format!(
                "SELECT string_agg(n::text, '/' ORDER BY n DESC) FROM (SELECT COUNT(*) AS n FROM step_runs WHERE run_id = '{run}' GROUP BY worker) c"
            ),
        );
        let logged = if workflow == "fanlog" {
            ", one log line each"
        } else {
            ""
        };
        println!(
            "  {workers} worker(s){logged}: {fan} steps in {span} ms = {:.0} steps/s (steps per worker {per})",
            fan as f64 * 1000.0 / span.max(1) as f64
        );
        drop(pool);
    }

    println!("\nhand-off: chain of {links} no-op steps, one step's end to the next one's start");
    for workers in [1, 2] {
        let (url, token) = database(&pg, dir.path());
        let pool: Vec<Worker> = (0..workers)
            .map(|_| start_worker(dir.path(), &url, &[]))
            .collect();
        let warm = trigger(&pool[0], &token, "chain");
        wait_done(&url, &warm, Duration::from_secs(300));
        let run = trigger(&pool[0], &token, "chain");
        wait_done(&url, &run, Duration::from_secs(300));
        let gaps = pg::psql_at(
            &url,
            &format!(
                "SELECT b.started_at - a.finished_at FROM step_runs a JOIN step_runs b \
                 ON b.run_id = a.run_id AND b.step = 's' || (substr(a.step, 2)::int + 1) \
                 WHERE a.run_id = '{run}' ORDER BY 1"
            ),
        );
        let gaps: Vec<i64> = gaps
            .lines()
            .map(|l| l.parse().expect("bench step"))
            .collect();
        let total: i64 = pg::psql_at(
            &url,
            &format!(
                "SELECT MAX(finished_at) - MIN(started_at) FROM step_runs WHERE run_id = '{run}'"
            ),
        )
        .parse()
        .expect("bench step");
        println!(
            "  {workers} worker(s): p50 {} ms, p99 {} ms, max {} ms; {:.2} ms per step end to end",
            percentile(&gaps, 0.5),
            percentile(&gaps, 0.99),
            gaps.last().expect("bench step"),
            total as f64 / links as f64
        );
        drop(pool);
    }

    println!("\nrecovery: kill -9 the worker running a 4 s step (lease 3 s)");
    let (url, token) = database(&pg, dir.path());
    let mut pool: Vec<Worker> = (0..2)
        .map(|_| start_worker(dir.path(), &url, &["--lease", "3s"]))
        .collect();
    let run = trigger(&pool[0], &token, "long");
    let victim = loop {
        let w = pg::psql_at(
            &url,
            &format!("SELECT worker FROM step_runs WHERE run_id = '{run}' AND status = 'running'"),
        );
        if !w.is_empty() {
            break w;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let pid: u32 = victim
        .rsplit('-')
        .nth(1)
        .expect("bench step")
        .parse()
        .expect("bench step");
    let i = pool
        .iter()
        .position(|w| w.child.id() == pid)
        .expect("bench step");
    let mut dead = pool.remove(i);
    let _ = dead.child.kill();
    let killed_at = chrono::Utc::now().timestamp_millis();
    let _ = dead.child.wait();
    wait_done(&url, &run, Duration::from_secs(60));
    let started: i64 = pg::psql_at(
        &url,
        &format!("SELECT started_at FROM step_runs WHERE run_id = '{run}' AND attempt = 2"),
    )
    .parse()
    .expect("bench step");
    println!(
        "  re-claimed {} ms after the kill (target: lease + 1 s = 4000 ms)",
        started - killed_at
    );
}
