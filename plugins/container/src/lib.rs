//! Built-in `container`: run a job in a container through a granted `docker` connection, the
//! way a GitLab CI job runs `script` in `image`: the lines run with `sh -e`, the output streams
//! into the step log, the exit code decides, and the container is removed afterwards.
//!
//! The host names and labels the container as a job ([`docker::Engine::create_job`]) and removes
//! it when the step ends in any way (timeout and cancel included), so this body only has to
//! remove it on the paths it controls.

mod output;
mod script;

use orch_sdk::docker::{self, ContainerSpec, Mount, MountKind, NetworkAttachment};
use orch_sdk::{ChangeKind, Cx, Pull, Step, StepError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Where the job writes `KEY=VALUE` outputs (`$ORCH_OUTPUT`).
const OUTPUT_FILE: &str = "/tmp/orch-output";
/// Largest output file read back.
const MAX_OUTPUT_FILE: u32 = 1 << 20;
/// Output lines kept for the error of a failed job.
const TAIL_LINES: usize = 20;

/// `with` of a `container` step.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// A docker connection granted in the step's `allow`; its policy decides which images,
    /// bind paths, networks and privileges are allowed.
    connection: String,
    /// The image to run, e.g. "python:3.13-slim" (must match the connection's `images`).
    image: String,
    /// Shell lines, run in order by `sh -e` like GitLab's `script`: the first failing line
    /// ends the job. Each line is echoed as `$ line` before it runs.
    #[serde(default)]
    script: Vec<String>,
    /// The command to run instead of `script` (exec form, no shell); neither: the image's own.
    command: Option<Vec<String>>,
    /// Override the image's entrypoint (`[""]` clears it, as GitLab's `entrypoint: [""]`).
    entrypoint: Option<Vec<String>>,
    /// Environment variables of the job; values from `secrets.*` are masked in the log.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Working directory in the container (default: `mount_at` when `mount` is set).
    workdir: Option<String>,
    /// A directory granted in `allow` (e.g. "./repo"), mounted read-only at `mount_at`; the
    /// connection's `bind_paths` must allow it.
    mount: Option<String>,
    /// Where `mount` appears in the container.
    #[serde(default = "default_mount_at")]
    mount_at: String,
    /// A path in the container backed by a fresh writable tmpfs (memory; any `user` may write
    /// it), gone with the job.
    scratch: Option<String>,
    /// User (and group) to run as, e.g. "1000:1000" or "nobody".
    user: Option<String>,
    /// A network to join (one the connection created or lists, or "none"/"bridge").
    network: Option<String>,
    /// Stop the job after this many seconds (the step's own `timeout` applies as well).
    #[schemars(range(min = 1))]
    timeout_secs: Option<u64>,
    /// Exit codes that make the step `retryable` (retried per its `retry`) instead of failed.
    #[serde(default)]
    retry_on_exit: Vec<i64>,
    /// When to pull the image: "missing" (default), "always" or "never".
    #[serde(default)]
    pull: Pull,
}

fn default_mount_at() -> String {
    "/work".into()
}

struct Container;

impl Step for Container {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str =
        "Run a job in a container: a script or command, its log streamed, its exit code decides";

    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        let spec = job_spec(&config)?;
        let engine = docker::open(&config.connection)?;
        // The policy's verdict before anything is pulled or created (and in a plan).
        engine.check_container(&spec)?;
        let what = script::summary(&config.script, config.command.as_deref());
        if !cx.applying() {
            let detail = format!(
                "would run `{}`: {what} (not idempotent: a job runs on every run)",
                config.image
            );
            cx.change(ChangeKind::Run, "job", detail);
            return Ok(());
        }
        orch_sdk::log::info(format!("running `{}`: {what}", config.image));
        engine.ensure_image(&config.image, config.pull.into())?;
        let id = engine.create_job(&spec)?;
        let timeout = config.timeout_secs.map(Duration::from_secs);
        let finished = run(&engine, &id, timeout).and_then(|(code, tail)| {
            let outputs = match code {
                0 => read_outputs(&engine, &id)?,
                _ => BTreeMap::new(),
            };
            Ok((code, tail, outputs))
        });
        // Removed here on the paths this body controls; the host removes it on any other.
        if let Err(e) = engine.remove_container(&id, true) {
            orch_sdk::log::warn(format!("could not remove the job container: {e:?}"));
        }
        let (code, tail, outputs) = finished?;
        if code != 0 {
            let message = format!(
                "the job exited with code {code}; its last lines:\n{}",
                tail.join("\n")
            );
            return Err(if config.retry_on_exit.contains(&code) {
                StepError::Retryable(message)
            } else {
                StepError::Failed(message)
            });
        }
        cx.output("exit_code", code);
        for (key, value) in outputs {
            cx.output(&key, value);
        }
        Ok(())
    }
}

/// The `KEY=VALUE` lines the job wrote to `$ORCH_OUTPUT`, if it wrote any.
fn read_outputs(engine: &docker::Engine, id: &str) -> Result<BTreeMap<String, String>, StepError> {
    let Some(bytes) = engine.read_file(id, OUTPUT_FILE, MAX_OUTPUT_FILE)? else {
        return Ok(BTreeMap::new());
    };
    let (outputs, warnings) = output::parse(&String::from_utf8_lossy(&bytes));
    for w in warnings {
        orch_sdk::log::warn(format!("$ORCH_OUTPUT: {w}"));
    }
    Ok(outputs)
}

/// Start the job, stream its output into the log until it exits or `timeout` passes; its exit
/// code and last lines.
fn run(
    engine: &docker::Engine,
    id: &str,
    timeout: Option<Duration>,
) -> Result<(i64, Vec<String>), StepError> {
    engine.start_container(id)?;
    let started = Instant::now();
    let logs = engine.follow_logs(id)?;
    let mut lines = script::Lines::new(TAIL_LINES);
    loop {
        let read = logs.read(64 * 1024, 1000)?;
        lines.push(&read.bytes, |line| orch_sdk::log::info(line));
        if read.ended {
            break;
        }
        if let Some(limit) = timeout
            && started.elapsed() >= limit
        {
            lines.finish(|line| orch_sdk::log::info(line));
            return Err(StepError::Failed(format!(
                "the job ran longer than `timeout_secs` ({}s) and was stopped; its last lines:\n{}",
                limit.as_secs(),
                lines.tail().join("\n")
            )));
        }
    }
    lines.finish(|line| orch_sdk::log::info(line));
    match engine.wait_for(id, 30_000)? {
        Some(code) => Ok((code, lines.tail())),
        None => Err(StepError::Failed(
            "the job's output ended but it did not exit within 30s".into(),
        )),
    }
}

/// The container spec of the job; config errors before any engine call.
fn job_spec(config: &Config) -> Result<ContainerSpec, StepError> {
    let invalid = |m: &str| Err(StepError::InvalidConfig(m.into()));
    if config.connection.trim().is_empty() {
        return invalid("`connection` is empty");
    }
    if config.image.trim().is_empty() {
        return invalid("`image` is empty");
    }
    if !config.script.is_empty() && config.command.is_some() {
        return invalid("set `script` or `command`, not both");
    }
    if config.timeout_secs == Some(0) {
        return invalid("`timeout_secs` must be at least 1");
    }
    let mut env: Vec<String> = Vec::new();
    for (key, value) in &config.env {
        if key.is_empty() || key.contains('=') {
            return Err(StepError::InvalidConfig(format!(
                "env `{key}`: a variable name is not empty and has no `=`"
            )));
        }
        env.push(format!("{key}={value}"));
    }
    env.push(format!("ORCH_OUTPUT={OUTPUT_FILE}"));
    let mut mounts = Vec::new();
    if let Some(dir) = &config.mount {
        if dir.starts_with('/') {
            return invalid(
                "`mount` is a directory granted in `allow`, relative to the workflow (e.g. \"./repo\")",
            );
        }
        mounts.push(Mount {
            kind: MountKind::Bind,
            source: dir.clone(),
            target: config.mount_at.clone(),
            read_only: true,
        });
    }
    if let Some(path) = &config.scratch {
        mounts.push(Mount {
            kind: MountKind::Tmpfs,
            source: String::new(),
            target: path.clone(),
            read_only: false,
        });
    }
    for m in &mounts {
        if !m.target.starts_with('/') {
            return Err(StepError::InvalidConfig(format!(
                "`{}` must be an absolute path in the container",
                m.target
            )));
        }
    }
    let command = match (&config.command, config.script.is_empty()) {
        (Some(command), _) => Some(command.clone()),
        (None, false) => Some(script::shell_command(&config.script)),
        (None, true) => None,
    };
    let workdir = config
        .workdir
        .clone()
        .or_else(|| config.mount.as_ref().map(|_| config.mount_at.clone()));
    let (network_mode, networks) = match config.network.as_deref() {
        None => (None, vec![]),
        Some(mode @ ("none" | "bridge" | "host")) => (Some(mode.to_string()), vec![]),
        Some(name) => (
            None,
            vec![NetworkAttachment {
                network: name.to_string(),
                aliases: vec![],
            }],
        ),
    };
    Ok(ContainerSpec {
        name: String::new(),
        image: config.image.clone(),
        command,
        entrypoint: config.entrypoint.clone(),
        env,
        labels: vec![],
        ports: vec![],
        mounts,
        networks,
        restart: "no".into(),
        healthcheck: None,
        user: config.user.clone(),
        working_dir: workdir,
        hostname: None,
        privileged: false,
        network_mode,
        pid_mode: None,
        cap_add: vec![],
        device_requests: vec![],
    })
}

orch_sdk::export!(Container);
