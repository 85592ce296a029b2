//! `orch serve` in a sandbox: start it on a free port, stop it (SIGKILL or SIGTERM), trigger
//! runs over its API, read what the store recorded (runs, ticks).

use crate::harness::http::post_json;
use crate::harness::{Orch, signal, wait_for};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `orch serve`, killed when dropped.
pub(super) struct Serve {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// Serve `orch`'s `wf/` directory on a free port.
    pub(super) fn start(orch: &Orch, extra: &[&str]) -> Self {
        Self::start_with(orch, extra, &[])
    }

    /// Serve with more environment variables for this server only.
    pub(super) fn start_with(orch: &Orch, extra: &[&str], env: &[(&str, &str)]) -> Self {
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
        let mut child = orch.spawn_with(&args, env);
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

    pub(super) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(super) fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The server's process id (in its worker id: `host-PID-xxxx`).
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to record anything.
    pub(super) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit; its code.
    pub(super) fn sigterm(&mut self, within: Duration) -> i32 {
        signal(self.child.id(), "TERM");
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

/// Trigger a run of `workflow` with no inputs; its id.
pub(super) fn trigger_run(server: &Serve, token: &str, workflow: &str) -> String {
    let url = server.url(&format!("/api/v1/workflows/{workflow}/runs"));
    let queued = post_json(&url, Some(token), &json!({}));
    assert_eq!(queued.status, 202, "{}", queued.body);
    queued.json()["id"].as_str().unwrap().to_string()
}

/// Create an API token in the sandbox's store.
pub(super) fn token(orch: &Orch, name: &str) -> String {
    let ran = orch.orch(&["token", "create", name]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    ran.stdout.trim().to_string()
}

/// Write workflow files into the sandbox's `wf/`, the directory `Serve` serves.
pub(super) fn workflows_dir(orch: &Orch, files: &[(&str, &str)]) {
    std::fs::create_dir_all(orch.dir.path().join("wf")).unwrap();
    for (name, text) in files {
        orch.write(&format!("wf/{name}"), text);
    }
}

/// Every recorded run (newest first), from the store.
pub(super) fn runs(orch: &Orch) -> Vec<Value> {
    let ran = orch.orch(&["--json", "runs", "list", "--limit", "1000"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    serde_json::from_str::<Value>(&ran.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Recorded ticks of a workflow, oldest first.
pub(super) fn ticks(orch: &Orch, workflow: &str) -> Vec<Value> {
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

/// Wait until run `id` has `status` in the store; its detail.
pub(super) fn wait_run_status(orch: &Orch, id: &str, status: &str, within: Duration) -> Value {
    wait_for(within, &format!("run {id} to be {status}"), || {
        let d = orch.run_detail(id);
        (d["status"] == status).then_some(d)
    })
}

/// A workflow firing every second, with `extra` schedule settings and an `echo` step.
pub(super) fn per_second(name: &str, extra: &str, step_with: &str) -> String {
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

/// A workflow with a required and a defaulted input.
pub(super) const GREET: &str = r#"
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

/// Follow run `id`'s log as server-sent events until its `end`: each event with the time (ms
/// since the epoch) it arrived, its name and its data.
pub(super) fn follow_log(server: &Serve, token: &str, id: &str) -> Vec<(i64, String, Value)> {
    use std::io::Write;
    let url = server.url(&format!("/api/v1/runs/{id}/logs"));
    let (host, path) = crate::harness::http::host_and_path(&url);
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut events = Vec::new();
    let mut name = String::new();
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            events.push((
                crate::harness::now_ms(),
                name.clone(),
                serde_json::from_str(data).unwrap(),
            ));
            if name == "end" {
                break;
            }
        }
    }
    events
}
