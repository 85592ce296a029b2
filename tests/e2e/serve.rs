//! `orch serve`: schedules, the HTTP API, webhooks, SSE, durability across `kill -9`, the
//! graceful stop. The real binary, a real SQLite store, loopback HTTP.

use crate::harness::Orch;
use crate::http::Server as TestServer;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `orch serve`, killed when dropped.
struct Serve {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// Serve `orch`'s `wf/` directory on a free port.
    fn start(orch: &Orch, extra: &[&str]) -> Self {
        let mut args = vec![
            "serve",
            "--workflows",
            "wf",
            "--bind",
            "127.0.0.1:0",
            "--reload-every",
            "200ms",
        ];
        args.extend_from_slice(extra);
        let mut child = orch.spawn(&args);
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(
                        addr.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| {
                panic!(
                    "orch serve did not start; stderr:\n{}",
                    stderr.lock().unwrap()
                )
            });
        Serve {
            child,
            addr,
            stderr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// SIGKILL: no chance to record anything.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit; its code.
    fn sigterm(&mut self, within: Duration) -> i32 {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "orch serve did not stop within {within:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status, headers (lower-case names) and body.
struct Response {
    status: u16,
    head: String,
    body: String,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// One HTTP/1.0 request (no chunking: the body runs to the end of the connection).
fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, String)],
    body: &[u8],
) -> Response {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = TcpStream::connect(host).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Response {
        status,
        head: head.to_lowercase(),
        body: body.to_string(),
    }
}

fn get(url: &str, token: &str) -> Response {
    request("GET", url, Some(token), &[], b"")
}

fn post_json(url: &str, token: Option<&str>, body: &Value) -> Response {
    let headers = [("Content-Type", "application/json".to_string())];
    request("POST", url, token, &headers, body.to_string().as_bytes())
}

/// Trigger a run of `workflow` with no inputs; its id.
fn trigger_run(server: &Serve, token: &str, workflow: &str) -> String {
    let url = server.url(&format!("/api/v1/workflows/{workflow}/runs"));
    let queued = post_json(&url, Some(token), &json!({}));
    assert_eq!(queued.status, 202, "{}", queued.body);
    queued.json()["id"].as_str().unwrap().to_string()
}

/// Create an API token in the sandbox's store.
fn token(orch: &Orch, name: &str) -> String {
    let ran = orch.orch(&["token", "create", name]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    ran.stdout.trim().to_string()
}

fn workflows_dir(orch: &Orch, files: &[(&str, &str)]) {
    std::fs::create_dir_all(orch.dir.path().join("wf")).unwrap();
    for (name, text) in files {
        orch.write(&format!("wf/{name}"), text);
    }
}

/// Poll `check` every 100 ms until it returns Some, or fail after `within`.
fn wait_for<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every recorded run (newest first), from the store.
fn runs(orch: &Orch) -> Vec<Value> {
    let ran = orch.orch(&["--json", "runs", "list", "--limit", "1000"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    serde_json::from_str::<Value>(&ran.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn run_detail(orch: &Orch, id: &str) -> Value {
    let ran = orch.orch(&["--json", "runs", "show", id]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    serde_json::from_str(&ran.stdout).unwrap()
}

/// Recorded ticks of a workflow, oldest first.
fn ticks(orch: &Orch, workflow: &str) -> Vec<Value> {
    let ran = orch.orch(&["--json", "schedule", "explain", workflow, "--limit", "1000"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let mut ticks: Vec<Value> = serde_json::from_str::<Value>(&ran.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    ticks.reverse();
    ticks
}

fn wait_run_status(orch: &Orch, id: &str, status: &str, within: Duration) -> Value {
    wait_for(within, &format!("run {id} to be {status}"), || {
        let d = run_detail(orch, id);
        (d["status"] == status).then_some(d)
    })
}

fn per_second(name: &str, extra: &str, step_with: &str) -> String {
    format!(
        r#"
        name = "{name}"
        [[schedule]]
        cron = "* * * * * *"
        {extra}
        [steps.work]
        plugin = "echo"
        with = {{ {step_with} }}
        "#
    )
}

#[test]
fn a_per_second_schedule_fires_on_time_once_per_tick() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[("tick.toml", &per_second("tick", "", "message = \"tick\""))],
    );
    let mut server = Serve::start(&orch, &[]);
    wait_for(Duration::from_secs(20), "6 ticks", || {
        (ticks(&orch, "tick").len() >= 6).then_some(())
    });
    assert_eq!(server.sigterm(Duration::from_secs(20)), 0);
    let ticks = ticks(&orch, "tick");
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1]["fire_at"].as_i64().unwrap() - pair[0]["fire_at"].as_i64().unwrap(),
            1000,
            "one tick per second, none lost or doubled: {ticks:?}"
        );
    }
    let mut run_ids: Vec<&str> = ticks
        .iter()
        .map(|t| t["run_id"].as_str().unwrap())
        .collect();
    for t in &ticks {
        assert_eq!(t["outcome"], "fired", "{t}");
        assert_eq!(t["fire_at"].as_i64().unwrap() % 1000, 0);
        let late = t["recorded_at"].as_i64().unwrap() - t["fire_at"].as_i64().unwrap();
        assert!((0..500).contains(&late), "handled {late} ms late");
    }
    run_ids.sort();
    run_ids.dedup();
    assert_eq!(run_ids.len(), ticks.len(), "one run per tick");
    let cron_runs: Vec<Value> = runs(&orch)
        .into_iter()
        .filter(|r| r["trigger"] == "cron")
        .collect();
    assert_eq!(cron_runs.len(), ticks.len());
    assert!(
        cron_runs.iter().all(|r| r["status"] == "succeeded"),
        "{cron_runs:?}"
    );
}

/// Runs of one workflow never overlap in time.
fn assert_no_overlap(runs: &[Value]) {
    let mut spans: Vec<(i64, i64)> = runs
        .iter()
        .filter(|r| r["finished_at"].is_i64())
        .map(|r| {
            (
                r["started_at"].as_i64().unwrap(),
                r["finished_at"].as_i64().unwrap(),
            )
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "runs overlap: {pair:?}");
    }
}

#[test]
fn overlap_skip_and_queue_keep_runs_apart() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[
            (
                "skip.toml",
                &per_second("skip", "overlap = \"skip\"", "sleep_ms = 2200"),
            ),
            (
                "queue.toml",
                &per_second("queue", "overlap = \"queue\"", "sleep_ms = 1500"),
            ),
        ],
    );
    let mut server = Serve::start(&orch, &["--grace", "20s"]);
    wait_for(Duration::from_secs(30), "two finished queued runs", || {
        let done = runs(&orch)
            .iter()
            .filter(|r| r["workflow"] == "queue" && r["status"] == "succeeded")
            .count();
        (done >= 2).then_some(())
    });
    assert_eq!(server.sigterm(Duration::from_secs(30)), 0);
    let all = runs(&orch);
    let of = |name: &str| {
        all.iter()
            .filter(|r| r["workflow"] == name)
            .cloned()
            .collect::<Vec<_>>()
    };

    let skip_ticks = ticks(&orch, "skip");
    let skipped: Vec<&Value> = skip_ticks
        .iter()
        .filter(|t| t["outcome"] == "skipped")
        .collect();
    assert!(!skipped.is_empty(), "{skip_ticks:?}");
    assert!(skipped.iter().all(|t| {
        t["reason"]
            .as_str()
            .unwrap()
            .contains("still active (overlap = skip)")
            && t["run_id"].is_null()
    }));
    let fired = skip_ticks
        .iter()
        .filter(|t| t["outcome"] == "fired")
        .count();
    assert_eq!(
        fired,
        of("skip").len(),
        "a run for each fired tick, none for skipped ones"
    );
    assert_no_overlap(&of("skip"));

    let queue_ticks = ticks(&orch, "queue");
    let queued: Vec<&Value> = queue_ticks
        .iter()
        .filter(|t| t["outcome"] == "queued")
        .collect();
    assert!(!queued.is_empty(), "{queue_ticks:?}");
    assert!(queued.iter().all(
        |t| t["reason"].as_str().unwrap().contains("waits for run") && t["run_id"].is_string()
    ));
    assert_eq!(
        of("queue").len(),
        queue_ticks.len(),
        "every tick of a queue schedule has a run"
    );
    assert_no_overlap(&of("queue"));
    // Queued runs not started at the stop are still queued: the next start runs them.
    assert!(of("queue").iter().any(|r| r["status"] == "queued"));
}

#[test]
fn downtime_gives_exactly_the_catch_up_policys_runs() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[
            (
                "all.toml",
                &per_second("all", "catchup = \"all\"", "message = \"a\""),
            ),
            (
                "last.toml",
                &per_second("last", "catchup = \"last\"", "message = \"l\""),
            ),
            (
                "none.toml",
                &per_second("none", "catchup = \"none\"", "message = \"n\""),
            ),
        ],
    );
    let mut server = Serve::start(&orch, &[]);
    wait_for(Duration::from_secs(20), "a tick of each", || {
        ["all", "last", "none"]
            .iter()
            .all(|w| !ticks(&orch, w).is_empty())
            .then_some(())
    });
    assert_eq!(server.sigterm(Duration::from_secs(20)), 0);
    std::thread::sleep(Duration::from_millis(3500));
    let mut server = Serve::start(&orch, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(server.sigterm(Duration::from_secs(20)), 0);

    for workflow in ["all", "last", "none"] {
        let ticks = ticks(&orch, workflow);
        for pair in ticks.windows(2) {
            let step = pair[1]["fire_at"].as_i64().unwrap() - pair[0]["fire_at"].as_i64().unwrap();
            assert_eq!(
                step, 1000,
                "{workflow}: every tick recorded once: {ticks:?}"
            );
        }
        let down: Vec<&Value> = ticks
            .iter()
            .filter(|t| t["reason"].as_str().unwrap().contains("server was down"))
            .collect();
        assert!(
            down.len() >= 3,
            "{workflow}: at least 3 ticks missed: {ticks:?}"
        );
        let with_run = down.iter().filter(|t| t["run_id"].is_string()).count();
        match workflow {
            "all" => assert_eq!(with_run, down.len(), "{down:?}"),
            "last" => {
                assert_eq!(with_run, 1, "{down:?}");
                assert!(
                    down.last().unwrap()["run_id"].is_string(),
                    "the latest one runs"
                );
            }
            _ => assert_eq!(with_run, 0, "{down:?}"),
        }
        let runs_of = runs(&orch)
            .into_iter()
            .filter(|r| r["workflow"] == workflow)
            .count();
        let ticks_with_runs = ticks.iter().filter(|t| t["run_id"].is_string()).count();
        assert_eq!(runs_of, ticks_with_runs, "{workflow}: runs match ticks");
    }
}

const GREET: &str = r#"
name = "greet"
[inputs.name]
type = "string"
required = true
[inputs.count]
type = "number"
default = 1
[steps.hello]
plugin = "echo"
with = { message = "hello ${{ inputs.name }}", outputs = { said = "hello ${{ inputs.name }} x${{ inputs.count }}" } }
"#;

#[test]
fn the_trigger_api_checks_tokens_and_inputs_before_recording_a_run() {
    let orch = Orch::new();
    workflows_dir(&orch, &[("greet.toml", GREET)]);
    let tok = token(&orch, "ci");
    let server = Serve::start(&orch, &["--max-body", "4096"]);
    let trigger = server.url("/api/v1/workflows/greet/runs");

    let ok = post_json(
        &trigger,
        Some(&tok),
        &json!({"inputs": {"name": "ann", "count": 2}}),
    );
    assert_eq!(ok.status, 202, "{}", ok.body);
    let id = ok.json()["id"].as_str().unwrap().to_string();
    assert!(ok.head.contains(&format!("location: /api/v1/runs/{id}")));
    let done = wait_run_status(&orch, &id, "succeeded", Duration::from_secs(30));
    assert_eq!(done["steps"][0]["outputs"]["said"], "hello ann x2");
    assert_eq!(done["trigger"], "http");
    assert_eq!(done["trigger_detail"], "token ci");

    let missing = post_json(&trigger, Some(&tok), &json!({}));
    assert_eq!(missing.status, 422, "{}", missing.body);
    assert_eq!(missing.json()["inputs"][0]["name"], "name");
    let wrong = post_json(
        &trigger,
        Some(&tok),
        &json!({"inputs": {"name": "a", "count": "many"}, "args": ["nmae=x"]}),
    );
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    let problems = wrong.json()["inputs"].to_string();
    assert!(
        problems.contains("count") && problems.contains("did you mean `name`"),
        "{problems}"
    );

    let none = post_json(&trigger, None, &json!({"inputs": {"name": "x"}}));
    assert_eq!(none.status, 401);
    assert!(none.head.contains("www-authenticate: bearer"));
    assert_eq!(
        post_json(
            &trigger,
            Some("orch_not-a-token"),
            &json!({"inputs": {"name": "x"}})
        )
        .status,
        401
    );
    let revoked = token(&orch, "old");
    assert_eq!(orch.orch(&["token", "revoke", "old"]).code, 0);
    assert_eq!(
        post_json(&trigger, Some(&revoked), &json!({"inputs": {"name": "x"}})).status,
        401
    );

    let big = json!({"inputs": {"name": "x".repeat(5000)}});
    assert_eq!(post_json(&trigger, Some(&tok), &big).status, 413);
    let unknown = post_json(
        &server.url("/api/v1/workflows/gret/runs"),
        Some(&tok),
        &json!({}),
    );
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.body.contains("did you mean `greet`"),
        "{}",
        unknown.body
    );

    assert_eq!(
        runs(&orch).len(),
        1,
        "only the valid trigger recorded a run"
    );

    // The CLI client: trigger and wait, then list through the server.
    let url = server.url("");
    let ran = orch.orch(&[
        "trigger", "greet", "--server", &url, "--token", &tok, "--input", "name=bo", "--wait",
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("succeeded"), "{}", ran.stdout);
    let bad = orch.orch(&["trigger", "greet", "--server", &url, "--token", &tok]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("input `name`"), "{}", bad.stderr);
    let listed = orch.orch(&["--json", "runs", "list", "--server", &url, "--token", &tok]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&listed.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn webhooks_need_a_valid_signature_and_a_new_delivery_id() {
    let orch = Orch::new().env("HOOK_SECRET", "whsec-8d1e");
    workflows_dir(
        &orch,
        &[(
            "hook.toml",
            r#"
            name = "hook"
            [inputs.branch]
            type = "string"
            required = true
            [webhook]
            secret = "HOOK_SECRET"
            inputs = { branch = "ref" }
            [steps.show]
            plugin = "echo"
            with = { outputs = { branch = "${{ inputs.branch }}" } }
            "#,
        )],
    );
    let server = Serve::start(&orch, &["--max-body", "2048"]);
    let url = server.url("/api/v1/webhooks/hook");
    let body = br#"{"ref":"refs/heads/main","after":"abc"}"#;
    let signed = |body: &[u8], delivery: &str| {
        vec![
            (
                "X-Hub-Signature-256",
                orch::serve::auth::sign(b"whsec-8d1e", body),
            ),
            ("X-Gitea-Delivery", delivery.to_string()),
            ("Content-Type", "application/json".to_string()),
        ]
    };
    let ok = request("POST", &url, None, &signed(body, "d-1"), body);
    assert_eq!(ok.status, 202, "{}", ok.body);
    let id = ok.json()["id"].as_str().unwrap().to_string();
    let run = wait_run_status(&orch, &id, "succeeded", Duration::from_secs(30));
    assert_eq!(run["steps"][0]["outputs"]["branch"], "refs/heads/main");
    assert_eq!(run["trigger_detail"], "delivery d-1");

    let replay = request("POST", &url, None, &signed(body, "d-1"), body);
    assert_eq!(replay.status, 409, "{}", replay.body);
    let tampered = br#"{"ref":"refs/heads/evil","after":"abc"}"#;
    let forged = request("POST", &url, None, &signed(body, "d-2"), tampered);
    assert_eq!(forged.status, 401, "{}", forged.body);
    let mut wrong_key = signed(body, "d-3");
    wrong_key[0].1 = orch::serve::auth::sign(b"guess", body);
    assert_eq!(request("POST", &url, None, &wrong_key, body).status, 401);
    let unsigned = [("X-Gitea-Delivery", "d-4".to_string())];
    assert_eq!(request("POST", &url, None, &unsigned, body).status, 401);
    let mut stale = signed(body, "d-5");
    let old = chrono::Utc::now().timestamp() - 3600;
    let mut msg = format!("{old}.").into_bytes();
    msg.extend_from_slice(body);
    stale[0].1 = orch::serve::auth::sign(b"whsec-8d1e", &msg);
    stale.push(("X-Webhook-Timestamp", old.to_string()));
    let stale = request("POST", &url, None, &stale, body);
    assert_eq!(stale.status, 401);
    assert!(stale.body.contains("stale"), "{}", stale.body);
    let huge = format!(r#"{{"ref":"{}"}}"#, "x".repeat(4096));
    let too_big = request(
        "POST",
        &url,
        None,
        &signed(huge.as_bytes(), "d-6"),
        huge.as_bytes(),
    );
    assert_eq!(too_big.status, 413);
    assert_eq!(
        runs(&orch).len(),
        1,
        "only the valid delivery recorded a run"
    );
}

#[test]
fn logs_of_a_live_run_stream_as_server_sent_events() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[(
            "slow.toml",
            r#"
            name = "slow"
            [steps.one]
            plugin = "echo"
            with = { message = "first line", sleep_ms = 700 }
            [steps.two]
            plugin = "echo"
            needs = ["one"]
            with = { message = "second line", sleep_ms = 700 }
            [steps.three]
            plugin = "echo"
            needs = ["two"]
            with = { message = "third line" }
            "#,
        )],
    );
    let tok = token(&orch, "t");
    let server = Serve::start(&orch, &[]);
    let id = trigger_run(&server, &tok, "slow");

    let rest = server.url(&format!("/api/v1/runs/{id}/logs"));
    let rest = rest.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {tok}\r\n\r\n"
    )
    .unwrap();
    let started = Instant::now();
    let mut events: Vec<(Duration, String, Value)> = Vec::new();
    let mut name = String::new();
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            events.push((
                started.elapsed(),
                name.clone(),
                serde_json::from_str(data).unwrap(),
            ));
            if name == "end" {
                break;
            }
        }
    }
    let messages: Vec<&str> = events
        .iter()
        .filter(|(_, n, _)| n == "log")
        .map(|(_, _, d)| d["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["first line", "second line", "third line"],
        "{events:?}"
    );
    let (end_at, _, end) = events.last().unwrap();
    assert_eq!(end["status"], "succeeded");
    let first_at = events[0].0;
    assert!(
        *end_at - first_at >= Duration::from_millis(1000),
        "lines arrived live, not at the end: {events:?}"
    );
}

#[test]
fn a_run_killed_mid_way_resumes_without_rerunning_finished_steps() {
    let httpbin = TestServer::start("httpbin.py", &[]);
    let key = format!("k{}", std::process::id());
    let mut steps = String::new();
    for i in 1..=10 {
        let needs = if i == 1 {
            String::new()
        } else {
            format!("needs = [\"s{}\"]", i - 1)
        };
        steps.push_str(&format!(
            "[steps.s{i}]\nplugin = \"http\"\n{needs}\nallow = [\"http://127.0.0.1:{port}\"]\nwith = {{ url = \"{url}\" }}\n",
            port = httpbin.port,
            url = httpbin.url(&format!("/delay?key={key}-s{i}&ms=300")),
        ));
    }
    let orch = Orch::new();
    workflows_dir(&orch, &[("ten.toml", &format!("name = \"ten\"\n{steps}"))]);
    let tok = token(&orch, "t");
    let mut server = Serve::start(&orch, &[]);
    let id = trigger_run(&server, &tok, "ten");
    let count = |step: u32| -> i64 {
        let r = request(
            "GET",
            &httpbin.url(&format!("/count?key={key}-s{step}")),
            None,
            &[],
            b"",
        );
        r.json()["count"].as_i64().unwrap()
    };
    // Kill while s4's request is in flight (the server holds it 300 ms).
    wait_for(Duration::from_secs(60), "step s4 in flight", || {
        (count(4) >= 1).then_some(())
    });
    server.kill9();
    let before = run_detail(&orch, &id);
    assert_eq!(
        before["status"], "running",
        "the kill left the run unfinished"
    );

    let _server = Serve::start(&orch, &[]);
    let after = wait_run_status(&orch, &id, "succeeded", Duration::from_secs(60));
    for i in 1..=10 {
        let expected = if i == 4 { 2 } else { 1 };
        assert_eq!(count(i), expected, "side effects of s{i}: {after}");
    }
    let attempts = |step: &str| -> Vec<(i64, String)> {
        after["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"] == step)
            .map(|s| {
                (
                    s["attempt"].as_i64().unwrap(),
                    s["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        attempts("s4"),
        [(1, "interrupted".to_string()), (2, "succeeded".to_string())]
    );
    for done in ["s1", "s2", "s3", "s5", "s10"] {
        assert_eq!(attempts(done), [(1, "succeeded".to_string())], "{done}");
    }
}

#[test]
fn sigterm_lets_running_steps_finish_and_the_rest_resumes() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[(
            "two.toml",
            r#"
            name = "two"
            [steps.long]
            plugin = "echo"
            with = { message = "working", sleep_ms = 1500 }
            [steps.after]
            plugin = "echo"
            needs = ["long"]
            with = { message = "after" }
            "#,
        )],
    );
    let tok = token(&orch, "t");
    let mut server = Serve::start(&orch, &["--grace", "10s"]);
    let id = trigger_run(&server, &tok, "two");
    wait_for(Duration::from_secs(30), "step long running", || {
        let d = get(&server.url(&format!("/api/v1/runs/{id}")), &tok).json();
        (d["steps"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["step"] == "long" && s["status"] == "running")
        }))
        .then_some(())
    });
    assert_eq!(server.sigterm(Duration::from_secs(15)), 0);
    assert!(server.stderr().contains("stopping"), "{}", server.stderr());
    let stopped = run_detail(&orch, &id);
    assert_eq!(stopped["status"], "interrupted", "{stopped}");
    let steps = stopped["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "`after` did not start: {steps:?}");
    assert_eq!(steps[0]["status"], "succeeded", "the running step finished");

    let _server = Serve::start(&orch, &[]);
    let done = wait_run_status(&orch, &id, "succeeded", Duration::from_secs(30));
    let steps = done["steps"].as_array().unwrap();
    assert_eq!(
        steps.iter().filter(|s| s["step"] == "long").count(),
        1,
        "not run again"
    );
    assert!(
        steps
            .iter()
            .any(|s| s["step"] == "after" && s["status"] == "succeeded")
    );
}

#[test]
fn invalid_files_are_reported_and_not_served_and_changes_reload() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[
            ("good.toml", GREET),
            (
                "bad.toml",
                "name = \"bad\"\n[steps.x]\nplugin = \"echo\"\nwtih = {}\n",
            ),
        ],
    );
    let tok = token(&orch, "t");
    let server = Serve::start(&orch, &[]);
    let stderr = server.stderr();
    assert!(
        stderr.contains("not serving") && stderr.contains("bad.toml:4:1"),
        "{stderr}"
    );
    let listed = get(&server.url("/api/v1/workflows"), &tok).json();
    assert_eq!(listed["workflows"].as_array().unwrap().len(), 1);
    assert_eq!(listed["workflows"][0]["name"], "greet");
    assert_eq!(listed["workflows"][0]["inputs"]["name"]["required"], true);
    assert!(
        listed["rejected"][0]["errors"]
            .as_str()
            .unwrap()
            .contains("wtih")
    );

    orch.write(
        "wf/bad.toml",
        "name = \"bad\"\n[steps.x]\nplugin = \"echo\"\nwith = {}\n",
    );
    wait_for(
        Duration::from_secs(20),
        "the fixed file to be served",
        || {
            let listed = get(&server.url("/api/v1/workflows"), &tok).json();
            (listed["workflows"].as_array().unwrap().len() == 2
                && listed["rejected"].as_array().unwrap().is_empty())
            .then_some(())
        },
    );
    std::fs::remove_file(orch.dir.path().join("wf/good.toml")).unwrap();
    wait_for(
        Duration::from_secs(20),
        "the removed file to stop being served",
        || {
            let r = post_json(
                &server.url("/api/v1/workflows/greet/runs"),
                Some(&tok),
                &json!({"inputs": {"name": "x"}}),
            );
            (r.status == 404).then_some(())
        },
    );
}

#[test]
fn the_openapi_document_matches_the_routes_and_metrics_are_served() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[("tick.toml", &per_second("tick", "", "message = \"t\""))],
    );
    let tok = token(&orch, "t");
    let server = Serve::start(&orch, &[]);
    let doc = get(&server.url("/api/v1/openapi.json"), &tok).json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 9, "{paths:?}");
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let concrete = path.replace("{name}", "tick").replace("{id}", "nope");
            let r = request(
                &method.to_uppercase(),
                &server.url(&concrete),
                Some(&tok),
                &[],
                b"",
            );
            assert!(
                r.status != 405 && !(r.status == 404 && r.body.is_empty()),
                "{method} {path}: {}",
                r.status
            );
        }
    }
    assert_eq!(
        request("DELETE", &server.url("/api/v1/runs"), Some(&tok), &[], b"").status,
        405,
        "an undocumented method is refused"
    );
    wait_for(Duration::from_secs(20), "a scheduled run", || {
        runs(&orch)
            .iter()
            .any(|r| r["status"] == "succeeded" && r["trigger"] == "cron")
            .then_some(())
    });
    let metrics = request("GET", &server.url("/metrics"), None, &[], b"");
    assert_eq!(metrics.status, 200);
    for name in [
        "orch_runs{status=\"succeeded\"}",
        "orch_queue_depth",
        "orch_schedule_lateness_seconds_bucket",
        "orch_step_duration_seconds_count{workflow=\"tick\",status=\"succeeded\"}",
        "orch_schedule_ticks_total{outcome=\"fired\"}",
    ] {
        assert!(
            metrics.body.contains(name),
            "{name} in\n{}\nruns {:?}\nticks {:?}\n{}",
            metrics.body,
            runs(&orch),
            ticks(&orch, "tick"),
            server.stderr()
        );
    }
    assert_eq!(
        request("GET", &server.url("/healthz"), None, &[], b"").status,
        200
    );
}

#[test]
fn a_running_run_can_be_cancelled_over_the_api() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[(
            "slow.toml",
            "name = \"slow\"\n[steps.wait]\nplugin = \"echo\"\nwith = { sleep_ms = 5000 }\n",
        )],
    );
    let tok = token(&orch, "t");
    let server = Serve::start(&orch, &[]);
    let id = trigger_run(&server, &tok, "slow");
    wait_run_status(&orch, &id, "running", Duration::from_secs(30));
    let began = Instant::now();
    let cancel = post_json(
        &server.url(&format!("/api/v1/runs/{id}/cancel")),
        Some(&tok),
        &json!({}),
    );
    assert_eq!(cancel.status, 202, "{}", cancel.body);
    assert_eq!(cancel.json()["status"], "cancelling");
    let run = wait_run_status(&orch, &id, "cancelled", Duration::from_secs(10));
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "the step was stopped, not awaited"
    );
    assert_eq!(run["steps"][0]["status"], "cancelled");
    let again = post_json(
        &server.url(&format!("/api/v1/runs/{id}/cancel")),
        Some(&tok),
        &json!({}),
    );
    assert_eq!(again.status, 409, "{}", again.body);
}
