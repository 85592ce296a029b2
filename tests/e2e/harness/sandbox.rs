//! Drive the `orch` binary: a temp dir per test, its own SQLite store, a shared plugin cache.

use super::wait::Running;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Path of a test plugin built from `plugins/examples/NAME`.
pub(crate) fn example(name: &str) -> String {
    format!(
        "{}/orch_plugin_{}.wasm",
        env!("ORCH_EXAMPLE_PLUGINS"),
        name.replace('-', "_")
    )
}

/// The repository root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// One test's sandbox.
pub(crate) struct Orch {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    envs: Vec<(String, String)>,
}

/// What a command did.
pub(crate) struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// stdout parsed as JSON lines; the last one is the result.
    pub(crate) fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\nstderr: {}", self.stderr))
            })
            .collect()
    }

    /// The final report of `orch run --json`.
    pub(crate) fn report(&self) -> Value {
        self.json_lines()
            .pop()
            .unwrap_or_else(|| panic!("no output; stderr: {}", self.stderr))
    }

    /// The backoff delays (ms) of every `step_retrying` event of `orch run --json`, in order.
    pub(crate) fn retry_delays(&self) -> Vec<u64> {
        self.json_lines()
            .iter()
            .filter(|e| e["event"] == "step_retrying")
            .map(|e| e["delay"].as_u64().unwrap())
            .collect()
    }
}

impl From<Output> for Ran {
    fn from(o: Output) -> Self {
        Ran {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Orch {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = format!("sqlite://{}", dir.path().join("orch.db").display());
        Self {
            dir,
            database_url,
            envs: Vec::new(),
        }
    }

    /// Set an environment variable for every command.
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Write a file into the sandbox.
    pub(crate) fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write test file");
        path
    }

    /// Run `orch ARGS` in the sandbox.
    pub(crate) fn orch(&self, args: &[&str]) -> Ran {
        self.command(args).output().expect("run orch").into()
    }

    /// Start `orch ARGS` in the sandbox with piped output (to signal it or race it).
    pub(crate) fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start orch")
    }

    /// [`Orch::spawn`] with more environment variables for this one process.
    pub(crate) fn spawn_with(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start orch")
    }

    /// Start `orch ARGS` with its output read as it comes, to wait for a line before acting.
    pub(crate) fn start(&self, args: &[&str]) -> Running {
        Running::new(self.spawn(args))
    }

    /// `orch --json runs show ID` from the sandbox's store.
    pub(crate) fn run_detail(&self, id: &str) -> Value {
        let ran = self.orch(&["--json", "runs", "show", id]);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", ran.stdout))
    }

    /// The SQLite run store's files (database, WAL, shared memory), as text.
    pub(crate) fn sqlite_store_text(&self) -> String {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(self.dir.path())
            .expect("sandbox")
            .filter_map(Result::ok)
        {
            if entry.file_name().to_string_lossy().starts_with("orch.db") {
                bytes.extend(std::fs::read(entry.path()).expect("read store file"));
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orch"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("ORCH_DATABASE_URL", &self.database_url)
            .env(
                "ORCH_CACHE_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache"),
            )
            .env("NO_COLOR", "1")
            .env_remove("RUST_BACKTRACE");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    /// `orch --json run FILE ARGS` on a workflow written from `toml`.
    pub(crate) fn run(&self, toml: &str, args: &[&str]) -> Ran {
        let file = self.write("workflow.toml", toml);
        let file = file.to_str().expect("utf-8 path");
        let mut all = vec!["--json", "run", file];
        all.extend_from_slice(args);
        self.orch(&all)
    }
}

/// The step named `id` in a run report.
pub(crate) fn step<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {report}"))
}
