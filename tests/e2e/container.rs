//! The `container` plugin (job containers) on the two real engines, podman and Debian's
//! dockerd: a script streams its log and publishes outputs, a failure carries its exit code and
//! last lines, timeouts and a killed `orch` leave no container behind, and the connection's
//! policy refuses what it does not allow before anything runs. Each test's workflow has a name
//! of its own, so its containers are told apart by their owner label.

use crate::docker::{Engine, block, docker_host, engine, image, on, on_both_engines, settled};
use crate::harness::{Orch, Ran, example, step, unique};
use bollard::query_parameters::ListContainersOptions;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

on_both_engines!(
    a_script_streams_its_log_publishes_outputs_and_leaves_nothing_behind,
    a_failing_script_fails_with_its_exit_code_and_last_lines,
    a_timeout_stops_the_job_and_removes_it,
    the_connection_policy_refuses_before_anything_runs,
    a_job_left_by_a_killed_orch_is_removed_at_the_next_start,
    hostile_job_calls_are_bounded_checked_and_cleaned_up,
);

/// One test's workflow around a `container` step.
struct Job {
    orch: Orch,
    workflow: String,
}

impl Job {
    fn new(prefix: &str) -> Self {
        let orch = Orch::new()
            .env("DOCKER_HOST", &docker_host())
            .env("JOB_TOKEN", "tok-7f3a9c2e51");
        std::fs::create_dir_all(orch.dir.path().join("repo")).unwrap();
        orch.write("repo/data.csv", "id,name\n1,ada\n");
        Job {
            orch,
            workflow: unique(prefix).replace('_', "-"),
        }
    }

    /// The workflow with `steps` (TOML) after a `docker` connection allowing `localhost/*` and
    /// binds of `repo/`, plus `connection` lines.
    fn toml(&self, connection: &str, steps: &str) -> String {
        let repo = self.orch.dir.path().join("repo").canonicalize().unwrap();
        format!(
            r#"
            name = "{}"
            [connections.docker]
            kind = "docker"
            host = "${{{{ env.DOCKER_HOST }}}}"
            images = ["localhost/*"]
            bind_paths = ["{}"]
            {connection}
            {steps}
            "#,
            self.workflow,
            repo.display()
        )
        .replace("IMAGE", &image())
    }

    fn run(&self, connection: &str, steps: &str) -> Ran {
        self.orch.run(&self.toml(connection, steps), &[])
    }

    /// Containers of this workflow's connection on the engine, by name, with their labels.
    fn containers(&self) -> HashMap<String, HashMap<String, String>> {
        block(async {
            let docker = engine();
            let owner = format!("orch.connection={}/docker", self.workflow);
            let options = ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([("label".to_string(), vec![owner])])),
                ..Default::default()
            };
            settled(|| docker.list_containers(Some(options.clone())))
                .await
                .into_iter()
                .map(|c| {
                    let name = c.names.unwrap_or_default().join(",");
                    (name, c.labels.unwrap_or_default())
                })
                .collect()
        })
    }

    /// Every log message of run `id`, in order.
    fn log(&self, report: &Value) -> Vec<String> {
        let detail = self.orch.run_detail(report["run_id"].as_str().unwrap());
        detail["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["message"].as_str().unwrap().to_string())
            .collect()
    }
}

fn a_script_streams_its_log_publishes_outputs_and_leaves_nothing_behind() {
    let job = Job::new("ctr-ok");
    let ran = job.run(
        "",
        r#"
        [steps.job]
        plugin = "container"
        allow = ["docker", "./repo"]
        timeout = "2m"
        [steps.job.with]
        connection = "docker"
        image = "IMAGE"
        mount = "repo"
        scratch = "/scratch"
        user = "65534:65534"
        env = { TOKEN = "${{ secrets.JOB_TOKEN }}", STAGE = "raw" }
        script = [
          "wc -l < data.csv",
          "id -u",
          "if touch /work/new 2>/dev/null; then echo writable; else echo read-only; fi",
          "echo \"$STAGE\" > /scratch/stage && cat /scratch/stage",
          "echo \"token is $TOKEN\"",
          "echo rows=$(( $(wc -l < data.csv) - 1 )) >> $ORCH_OUTPUT",
          "echo 'note=a b=c' >> $ORCH_OUTPUT",
        ]

        [steps.after]
        plugin = "echo"
        needs = ["job"]
        with = { message = "rows: ${{ steps.job.outputs.rows }}" }
        "#,
    );
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = ran.report();
    let outputs = &step(&report, "job")["outputs"];
    assert_eq!(outputs["exit_code"], 0, "{outputs}");
    assert_eq!(outputs["rows"], "1", "{outputs}");
    assert_eq!(outputs["note"], "a b=c", "{outputs}");
    let log = job.log(&report);
    for line in [
        "$ wc -l < data.csv",
        "2",
        "65534",
        "read-only",
        "raw",
        "token is ***",
        "rows: 1",
    ] {
        assert!(log.iter().any(|l| l == line), "no `{line}` in {log:#?}");
    }
    assert!(
        !log.iter().any(|l| l.contains("tok-7f3a9c2e51")),
        "the secret is masked: {log:#?}"
    );
    assert!(
        !job.orch.sqlite_store_text().contains("tok-7f3a9c2e51"),
        "the secret is stored nowhere"
    );
    assert_eq!(job.containers(), HashMap::new(), "the job is removed");

    let plan = job.orch.orch(&[
        "plan",
        job.orch.dir.path().join("workflow.toml").to_str().unwrap(),
    ]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains(&format!(
            "would run `{}`: `wc -l < data.csv` and 6 more lines (not idempotent",
            image()
        )),
        "{}",
        plan.stdout
    );
    assert_eq!(job.containers(), HashMap::new(), "a plan creates nothing");
}

fn a_failing_script_fails_with_its_exit_code_and_last_lines() {
    let job = Job::new("ctr-fail");
    let ran = job.run(
        "",
        r#"
        [steps.fails]
        plugin = "container"
        allow = ["docker"]
        with = { connection = "docker", image = "IMAGE", script = ["echo loading", "echo 'no such table' >&2; exit 3", "echo never"] }

        [steps.flaky]
        plugin = "container"
        allow = ["docker"]
        retry = { max = 2, backoff = "10ms" }
        with = { connection = "docker", image = "IMAGE", retry_on_exit = [75], command = ["sh", "-c", "echo busy; exit 75"] }

        [steps.downstream]
        plugin = "echo"
        needs = ["fails"]
        with = { message = "never" }
        "#,
    );
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let report = ran.report();
    let fails = step(&report, "fails");
    assert_eq!(fails["status"], "failed", "{fails}");
    let error = fails["error"].as_str().unwrap();
    assert!(error.starts_with("the job exited with code 3"), "{error}");
    assert!(error.contains("no such table"), "{error}");
    assert!(error.contains("$ echo loading"), "{error}");
    assert!(!error.contains("never"), "{error}");
    assert_eq!(fails["attempts"], 1, "a plain failure is not retried");
    let flaky = step(&report, "flaky");
    assert_eq!(flaky["attempts"], 3, "exit 75 is retryable: {flaky}");
    assert!(
        flaky["error"]
            .as_str()
            .unwrap()
            .contains("exited with code 75"),
        "{flaky}"
    );
    assert_eq!(step(&report, "downstream")["status"], "upstream_failed");
    assert_eq!(job.containers(), HashMap::new(), "failed jobs are removed");
}

fn a_timeout_stops_the_job_and_removes_it() {
    let job = Job::new("ctr-slow");
    let started = Instant::now();
    let ran = job.run(
        "",
        r#"
        [steps.own]
        plugin = "container"
        allow = ["docker"]
        with = { connection = "docker", image = "IMAGE", timeout_secs = 2, script = ["echo started", "sleep 300"] }

        [steps.step_timeout]
        plugin = "container"
        allow = ["docker"]
        timeout = "3s"
        with = { connection = "docker", image = "IMAGE", script = ["sleep 300"] }
        "#,
    );
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "not waited out"
    );
    let report = ran.report();
    let own = step(&report, "own")["error"].as_str().unwrap().to_string();
    assert!(
        own.starts_with("the job ran longer than `timeout_secs` (2s) and was stopped"),
        "{own}"
    );
    assert!(own.contains("started"), "{own}");
    let by_step = step(&report, "step_timeout")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(by_step.contains("timed out after 3s"), "{by_step}");
    // The step's own timeout drops the plugin mid-call: the host removes the job, and
    // `orch run` waits for that before it exits.
    assert_eq!(job.containers(), HashMap::new(), "both jobs are gone");
}

fn the_connection_policy_refuses_before_anything_runs() {
    let job = Job::new("ctr-deny");
    let ran = job.run(
        "",
        r#"
        [steps.image]
        plugin = "container"
        allow = ["docker"]
        with = { connection = "docker", image = "docker.io/library/alpine:3", script = ["id"] }

        [steps.host_net]
        plugin = "container"
        allow = ["docker"]
        with = { connection = "docker", image = "IMAGE", network = "host", script = ["id"] }

        [steps.ungranted_dir]
        plugin = "container"
        allow = ["docker"]
        with = { connection = "docker", image = "IMAGE", mount = "repo", script = ["id"] }
        "#,
    );
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let report = ran.report();
    let error = |id: &str| step(&report, id)["error"].as_str().unwrap().to_string();
    assert!(
        error("image").contains("denied") && error("image").contains("docker.io/library/alpine:3"),
        "{}",
        error("image")
    );
    assert!(
        error("host_net").contains("host_network = true"),
        "{}",
        error("host_net")
    );
    assert!(
        error("ungranted_dir").contains("denied"),
        "{}",
        error("ungranted_dir")
    );
    let audit = crate::harness::audit(&job.orch, &report);
    assert!(
        audit.to_string().contains("docker.io/library/alpine:3"),
        "the refusal is audited: {audit}"
    );
    assert_eq!(job.containers(), HashMap::new(), "nothing was created");
}

fn a_job_left_by_a_killed_orch_is_removed_at_the_next_start() {
    let job = Job::new("ctr-kill");
    let steps = r#"
        [steps.long]
        plugin = "container"
        allow = ["docker"]
        with = { connection = "docker", image = "IMAGE", script = ["echo started", "sleep 300"] }
    "#;
    let file = job.orch.write("workflow.toml", &job.toml("", steps));
    let mut running = job.orch.start(&["--json", "run", file.to_str().unwrap()]);
    running.wait_for_json(Duration::from_secs(60), "the job's first line", |e| {
        e["event"] == "step_log" && e["message"] == "started"
    });
    let pid = running.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    drop(running);
    let left = job.containers();
    assert_eq!(left.len(), 1, "the killed process leaves its job: {left:?}");
    let holder = left.values().next().unwrap()["orch.job"].clone();
    assert!(
        holder.contains(&format!("/{pid}/")),
        "the job names its process: {holder}"
    );

    // The next run on this engine (another workflow would do too) removes it first.
    let next = job.run(
        "",
        r#"
        [steps.quick]
        plugin = "container"
        allow = ["docker"]
        with = { connection = "docker", image = "IMAGE", command = ["true"] }
        "#,
    );
    assert_eq!(next.code, 0, "{}\n{}", next.stdout, next.stderr);
    assert_eq!(job.containers(), HashMap::new(), "the leftover is gone");
    let log = job.log(&next.report());
    assert!(
        log.iter()
            .any(|l| l.contains("removed job container") && l.contains(&pid)),
        "{log:#?}"
    );
}

/// A container made by hand (no orch label), for a plugin to reach for; removed when dropped.
struct Foreign(String);

impl Foreign {
    fn start() -> Self {
        let name = unique("foreign").replace('_', "-");
        block(async {
            use bollard::models::ContainerCreateBody;
            use bollard::query_parameters::CreateContainerOptions;
            let docker = engine();
            let options = CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            let body = ContainerCreateBody {
                image: Some(image()),
                cmd: Some(vec!["sleep".into(), "300".into()]),
                ..Default::default()
            };
            docker.create_container(Some(options), body).await.unwrap();
            docker.start_container(&name, None).await.unwrap();
        });
        Foreign(name)
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        block(async {
            let options = bollard::query_parameters::RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            let _ = engine().remove_container(&self.0, Some(options)).await;
        });
    }
}

/// A hostile plugin (plugins/examples/docker-jobs) on the job calls: host labels and names
/// cannot be forged, a job is never privileged, reads are capped (1 MiB per log read, 4 MiB
/// per file), other containers are out of reach, a plan cannot create one, and a plugin that
/// traps with a job running leaves nothing behind.
fn hostile_job_calls_are_bounded_checked_and_cleaned_up() {
    let job = Job::new("ctr-hostile");
    let foreign = Foreign::start();
    let steps = |trap: bool| {
        format!(
            r#"
            [steps.probe]
            plugin = "{}"
            allow = ["docker"]
            timeout = "2m"
            with = {{ connection = "docker", image = "IMAGE", foreign = "{}", trap = {trap} }}
            "#,
            example("docker-jobs"),
            foreign.0
        )
    };
    let ran = job.run("", &steps(false));
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = ran.report();
    let out = &step(&report, "probe")["outputs"];
    let text = |k: &str| out[k].as_str().unwrap_or_default().to_string();
    assert!(
        text("forged_label").contains("`orch.job` is set by the host"),
        "{out}"
    );
    assert!(text("named").contains("leave `name` empty"), "{out}");
    assert!(text("privileged").starts_with("Error::Denied"), "{out}");
    let first = out["first_read_bytes"].as_u64().unwrap();
    assert!(
        first > 0 && first <= 1 << 20,
        "one read is at most 1 MiB: {first}"
    );
    assert_eq!(
        out["total_bytes"],
        3 << 20,
        "every byte arrives, a read at a time"
    );
    assert_eq!(text("exit"), "ok: Some(0)");
    assert_eq!(out["streams_opened"], 7, "8 streams per handle: {out}");
    assert!(
        text("stream_refused").contains("8 log streams are open"),
        "{out}"
    );
    assert!(
        text("big_file").contains("larger than 4194304 bytes"),
        "{out}"
    );
    assert_eq!(text("small_file"), "ok: Some(\"small\\n\")");
    assert!(text("directory").contains("not a regular file"), "{out}");
    assert_eq!(text("missing"), "ok: None");
    for k in ["foreign_logs", "foreign_wait", "foreign_file"] {
        assert!(text(k).starts_with("Error::Denied"), "{k}: {out}");
    }
    assert_eq!(
        job.containers(),
        HashMap::new(),
        "jobs removed with the handle"
    );

    let file = job.orch.dir.path().join("workflow.toml");
    let plan = job.orch.orch(&["plan", file.to_str().unwrap()]);
    assert!(
        plan.stdout
            .contains("may not create job container of image")
            && plan.stdout.contains("during `plan`"),
        "{}",
        plan.stdout
    );
    assert_eq!(job.containers(), HashMap::new(), "a plan creates no job");

    let trapped = job.run("", &steps(true));
    assert_eq!(trapped.code, 1, "{}\n{}", trapped.stdout, trapped.stderr);
    assert_eq!(
        job.containers(),
        HashMap::new(),
        "a trapped plugin's job is removed"
    );
}
