//! The `deploy` plugin and the `docker` host interface against the project's two real Docker-API
//! engines, podman and Debian's dockerd (both started by tests/services.sh): every test runs on
//! each (`podman::NAME`, `dockerd::NAME`). Engine state is checked with bollard directly. Each
//! test deploys its own project (unique name) and removes it when done.

use crate::harness::{Orch, Ran, audit, step, unique};
use bollard::Docker;
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, ListNetworksOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveVolumeOptions,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// The engines every test runs on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Engine {
    Podman,
    Dockerd,
}

thread_local! {
    /// The engine of the test running on this thread (libtest gives each test its own).
    static ENGINE: std::cell::Cell<Engine> = const { std::cell::Cell::new(Engine::Podman) };
}

/// Run each named test (a `fn(Engine)` below) as a test on podman and one on dockerd.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod podman {
            $(#[test] fn $name() { super::on(super::Engine::Podman, super::$name) })*
        }
        mod dockerd {
            $(#[test] fn $name() { super::on(super::Engine::Dockerd, super::$name) })*
        }
    };
}
pub(crate) use on_both_engines;

on_both_engines!(
    deploy_from_scratch_then_nothing_then_only_the_changed_service,
    a_profile_service_appears_only_with_its_profile,
    an_unhealthy_service_fails_the_step_with_its_health_output,
    a_failing_init_service_fails_its_dependants_with_exit_code_and_logs,
    invalid_compose_files_fail_before_any_engine_call,
    escalations_without_grants_are_denied_and_audited,
    an_unreachable_engine_is_a_clear_retryable_error,
    orphans_are_kept_unless_asked_and_relative_binds_resolve_in_the_granted_directory,
    another_workflows_volumes_and_networks_are_out_of_reach_unless_listed,
);

pub(crate) fn on(engine: Engine, test: fn()) {
    ENGINE.set(engine);
    test()
}

pub(crate) fn docker_host() -> String {
    let var = match ENGINE.get() {
        Engine::Podman => "ORCH_TEST_DOCKER_HOST",
        Engine::Dockerd => "ORCH_TEST_DOCKERD_HOST",
    };
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `bash tests/services.sh start` and source its env file")
    })
}

pub(crate) fn image() -> String {
    std::env::var("ORCH_TEST_IMAGE").unwrap_or_else(|_| "localhost/busybox:latest".into())
}

pub(crate) fn block<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Retry while podman reports a just-exited container as `stopped` (not a Docker state, so
/// bollard cannot parse it); it settles to `exited` within moments.
pub(crate) async fn settled<T, Fut: Future<Output = Result<T, bollard::errors::Error>>>(
    mut f: impl FnMut() -> Fut,
) -> T {
    for _ in 0..50 {
        match f().await {
            Ok(v) => return v,
            Err(e) if e.to_string().contains("`stopped`") => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the engine never settled")
}

pub(crate) fn engine() -> Docker {
    Docker::connect_with_host(&docker_host()).unwrap()
}

fn project_filter(project: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("com.docker.compose.project={project}")],
    )])
}

/// A container of the project as the engine sees it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) id: String,
    pub(crate) state: String,
    pub(crate) exit_code: i64,
    pub(crate) health: Option<String>,
    pub(crate) labels: HashMap<String, String>,
    pub(crate) env: Vec<String>,
}

/// The project's containers by service.
pub(crate) fn containers(project: &str) -> BTreeMap<String, Seen> {
    block(async {
        let docker = engine();
        let options = ListContainersOptions {
            all: true,
            filters: Some(project_filter(project)),
            ..Default::default()
        };
        let mut out = BTreeMap::new();
        for c in settled(|| docker.list_containers(Some(options.clone()))).await {
            let id = c.id.unwrap();
            let inspected =
                settled(|| docker.inspect_container(&id, None::<InspectContainerOptions>)).await;
            let state = inspected.state.unwrap();
            let config = inspected.config.unwrap();
            let labels = config.labels.unwrap_or_default();
            out.insert(
                labels["com.docker.compose.service"].clone(),
                Seen {
                    id,
                    state: state.status.unwrap().to_string(),
                    exit_code: state.exit_code.unwrap_or(0),
                    health: state.health.and_then(|h| h.status).map(|s| s.to_string()),
                    labels,
                    env: config.env.unwrap_or_default(),
                },
            );
        }
        out
    })
}

fn networks(project: &str) -> Vec<String> {
    block(async {
        let options = ListNetworksOptions {
            filters: Some(project_filter(project)),
        };
        let mut names: Vec<String> = engine()
            .list_networks(Some(options))
            .await
            .unwrap()
            .into_iter()
            .filter_map(|n| n.name)
            .collect();
        names.sort();
        names
    })
}

fn volumes(project: &str) -> Vec<String> {
    block(async {
        let options = ListVolumesOptions {
            filters: Some(project_filter(project)),
        };
        let mut names: Vec<String> = engine()
            .list_volumes(Some(options))
            .await
            .unwrap()
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect();
        names.sort();
        names
    })
}

/// A deployed project, removed from the engine when the test ends (pass or fail).
struct Project {
    name: String,
    orch: Orch,
    /// The workflow's name: with the connection's, whose containers these are.
    workflow: &'static str,
}

impl Drop for Project {
    fn drop(&mut self) {
        remove_project(&self.name);
    }
}

/// Remove a project's containers, networks and volumes from the engine. Best effort and never
/// a panic (a panic while a failed test unwinds would abort the whole test binary).
pub(crate) fn remove_project(project: &str) {
    let project = project.to_string();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let _ = runtime.block_on(async move {
        let docker = Docker::connect_with_host(&docker_host())?;
        for _ in 0..50 {
            let options = ListContainersOptions {
                all: true,
                filters: Some(project_filter(&project)),
                ..Default::default()
            };
            match docker.list_containers(Some(options)).await {
                Ok(list) => {
                    for c in list {
                        let remove = RemoveContainerOptions {
                            force: true,
                            ..Default::default()
                        };
                        let _ = docker
                            .remove_container(&c.id.unwrap_or_default(), Some(remove))
                            .await;
                    }
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        let filters = Some(project_filter(&project));
        for n in docker
            .list_networks(Some(ListNetworksOptions {
                filters: filters.clone(),
            }))
            .await?
        {
            let _ = docker.remove_network(&n.name.unwrap_or_default()).await;
        }
        for v in docker
            .list_volumes(Some(ListVolumesOptions { filters }))
            .await?
            .volumes
            .unwrap_or_default()
        {
            let _ = docker
                .remove_volume(&v.name, None::<RemoveVolumeOptions>)
                .await;
        }
        Ok::<_, bollard::errors::Error>(())
    });
}

impl Project {
    fn new(prefix: &str) -> Self {
        Self {
            name: unique(prefix).replace('_', "-"),
            orch: Orch::new().env("DOCKER_HOST", &docker_host()),
            workflow: "deploy-test",
        }
    }

    /// Write the compose file (and `.env`) into `stack/`, the directory the step is granted.
    fn compose(&self, compose: &str, env: &str) {
        std::fs::create_dir_all(self.orch.dir.path().join("stack")).unwrap();
        self.orch
            .write("stack/compose.yml", &compose.replace("IMAGE", &image()));
        self.orch.write("stack/.env", env);
    }

    /// `orch --json COMMAND` of a workflow deploying the project with `with` extras and
    /// connection settings `connection` (TOML lines).
    fn orch_with(&self, command: &str, extra_with: &str, connection: &str) -> Ran {
        let workflow = format!(
            r#"
            name = "{}"
            [connections.docker]
            kind = "docker"
            host = "${{{{ env.DOCKER_HOST }}}}"
            images = ["localhost/*"]
            {connection}
            [steps.deploy]
            plugin = "deploy"
            allow = ["docker", "./stack"]
            timeout = "2m"
            with = {{ connection = "docker", project = "{}", file = "stack/compose.yml", timeout_secs = 60 {extra_with} }}
            "#,
            self.workflow, self.name
        );
        let file = self.orch.write("workflow.toml", &workflow);
        self.orch.orch(&["--json", command, file.to_str().unwrap()])
    }

    fn deploy(&self) -> Value {
        self.deploy_with("")
    }

    fn deploy_with(&self, extra_with: &str) -> Value {
        let ran = self.orch_with("run", extra_with, "");
        assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
        step(&ran.report(), "deploy")["outputs"].clone()
    }

    /// Run the deploy expecting failure; the step's error.
    fn deploy_fails(&self, extra_with: &str, connection: &str) -> (String, Value) {
        let ran = self.orch_with("run", extra_with, connection);
        assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
        let report = ran.report();
        let error = step(&report, "deploy")["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (error, report)
    }

    fn audit(&self, report: &Value) -> Value {
        audit(&self.orch, report)
    }
}

const STACK: &str = r#"
services:
  db:
    image: IMAGE
    command: ["sh", "-c", "touch /tmp/ready && exec sleep 3600"]
    environment:
      PASSWORD: ${DB_PASSWORD:?set DB_PASSWORD}
    volumes: ["data:/data"]
    networks:
      backend:
        aliases: [database]
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 1s
      timeout: 2s
      retries: 10
    restart: unless-stopped
  db-init:
    image: IMAGE
    command: ["sh", "-c", "echo migrated"]
    depends_on:
      db: { condition: service_healthy }
    networks: [backend]
    restart: "no"
  app:
    image: IMAGE
    command: sleep 3600
    environment:
      MODE: ${MODE:-blue}
    depends_on:
      db-init: { condition: service_completed_successfully }
    networks: [backend]
    restart: unless-stopped
  tools:
    image: IMAGE
    command: sleep 3600
    profiles: [dev]
networks:
  backend: {}
volumes:
  data: {}
"#;

fn names(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

fn deploy_from_scratch_then_nothing_then_only_the_changed_service() {
    let p = Project::new("lab");
    p.compose(STACK, "DB_PASSWORD=s3cret\n");

    let plan = p.orch_with("plan", "", "");
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    assert!(containers(&p.name).is_empty(), "plan creates nothing");
    assert!(networks(&p.name).is_empty(), "plan creates nothing");

    let first = p.deploy();
    assert_eq!(names(&first["created"]), ["app", "db", "db-init"]);
    let seen = containers(&p.name);
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["app", "db", "db-init"]);
    assert_eq!(seen["db"].state, "running");
    assert_eq!(seen["db"].health.as_deref(), Some("healthy"));
    assert_eq!(
        (seen["db-init"].state.as_str(), seen["db-init"].exit_code),
        ("exited", 0)
    );
    assert_eq!(seen["app"].state, "running");
    assert!(seen["db"].env.contains(&"PASSWORD=s3cret".to_string()));
    assert_eq!(seen["app"].labels["com.docker.compose.project"], p.name);
    assert!(
        seen["app"]
            .labels
            .contains_key("com.docker.compose.config-hash")
    );
    assert!(!seen.contains_key("tools"), "profile service stays off");
    assert_eq!(networks(&p.name), [format!("{}_backend", p.name)]);
    assert_eq!(volumes(&p.name), [format!("{}_data", p.name)]);

    let second = p.deploy();
    assert_eq!(names(&second["created"]), Vec::<String>::new());
    assert_eq!(names(&second["recreated"]), Vec::<String>::new());
    assert_eq!(names(&second["unchanged"]), ["app", "db", "db-init"]);
    let again = containers(&p.name);
    for service in ["app", "db", "db-init"] {
        assert_eq!(again[service].id, seen[service].id, "{service} left alone");
    }

    p.compose(STACK, "DB_PASSWORD=s3cret\nMODE=green\n");
    let plan = p.orch_with("plan", "", "");
    assert!(plan.stdout.contains("service app"), "{}", plan.stdout);
    assert!(plan.stdout.contains("recreate"), "{}", plan.stdout);
    let third = p.deploy();
    assert_eq!(names(&third["recreated"]), ["app"]);
    let changed = containers(&p.name);
    assert_ne!(changed["app"].id, seen["app"].id, "app recreated");
    assert!(changed["app"].env.contains(&"MODE=green".to_string()));
    assert_eq!(changed["db"].id, seen["db"].id, "db left alone");
    assert_eq!(changed["db-init"].id, seen["db-init"].id, "init not re-run");
}

fn a_profile_service_appears_only_with_its_profile() {
    let p = Project::new("prof");
    p.compose(STACK, "DB_PASSWORD=x\n");
    p.deploy();
    assert!(!containers(&p.name).contains_key("tools"));
    let out = p.deploy_with(r#", profiles = ["dev"]"#);
    assert_eq!(names(&out["created"]), ["tools"]);
    assert_eq!(containers(&p.name)["tools"].state, "running");
}

fn an_unhealthy_service_fails_the_step_with_its_health_output() {
    let p = Project::new("sick");
    p.compose(
        r#"
services:
  db:
    image: IMAGE
    command: sleep 3600
    healthcheck:
      test: ["CMD-SHELL", "echo db is not ready; exit 1"]
      interval: 1s
      retries: 2
  app:
    image: IMAGE
    command: sleep 3600
    depends_on:
      db: { condition: service_healthy }
"#,
        "",
    );
    let (error, _) = p.deploy_fails("", "");
    assert!(error.contains("db"), "{error}");
    assert!(error.contains("db is not ready"), "{error}");
    assert!(
        !containers(&p.name).contains_key("app"),
        "dependant not started"
    );
}

fn a_failing_init_service_fails_its_dependants_with_exit_code_and_logs() {
    let p = Project::new("init");
    p.compose(
        r#"
services:
  migrate:
    image: IMAGE
    command: ["sh", "-c", "echo relation missing >&2; exit 3"]
    restart: "no"
  app:
    image: IMAGE
    command: sleep 3600
    depends_on:
      migrate: { condition: service_completed_successfully }
"#,
        "",
    );
    let (error, _) = p.deploy_fails("", "");
    assert!(error.contains("migrate"), "{error}");
    assert!(error.contains("code 3"), "{error}");
    assert!(error.contains("relation missing"), "{error}");
    assert!(
        !containers(&p.name).contains_key("app"),
        "dependant not created"
    );
}

fn invalid_compose_files_fail_before_any_engine_call() {
    let p = Project::new("bad");
    let cases = [
        (
            "services:\n  web:\n    imagee: IMAGE\n",
            "",
            vec!["services.web", "imagee"],
        ),
        (
            "services:\n  a:\n    image: IMAGE\n    depends_on: [b]\n  b:\n    image: IMAGE\n    depends_on: [a]\n",
            "",
            vec!["cycle", "a -> b -> a"],
        ),
        (
            "services:\n  a:\n    image: IMAGE\n    environment:\n      K: ${NEEDED:?set NEEDED first}\n",
            "",
            vec!["NEEDED", "set NEEDED first"],
        ),
    ];
    for (compose, env, expected) in cases {
        p.compose(compose, env);
        let (error, _) = p.deploy_fails("", "");
        for e in expected {
            assert!(error.contains(e), "`{e}` not in: {error}");
        }
        assert!(containers(&p.name).is_empty());
        assert!(networks(&p.name).is_empty());
    }
}

fn escalations_without_grants_are_denied_and_audited() {
    let p = Project::new("deny");
    let cases = [
        ("image: docker.io/library/nginx:latest", "images", "nginx"),
        (
            "image: IMAGE\n    privileged: true",
            "privileged = true",
            "privileged",
        ),
        (
            "image: IMAGE\n    volumes: [\"/:/host\"]",
            "bind_paths",
            "`/`",
        ),
        (
            "image: IMAGE\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - driver: nvidia\n              count: all\n              capabilities: [gpu]",
            "gpus = true",
            "GPU",
        ),
    ];
    let more = [
        (
            "image: IMAGE\n    network_mode: host",
            "host_network = true",
            "host network",
        ),
        ("image: IMAGE\n    pid: host", "host_pid = true", "PID"),
        (
            "image: IMAGE\n    cap_add: [NET_ADMIN]",
            "cap_add",
            "NET_ADMIN",
        ),
    ];
    for (service, setting, what) in cases.into_iter().chain(more) {
        // A volume too: a refusal must leave nothing behind.
        p.compose(
            &format!(
                "services:\n  x:\n    {service}\n    command: sleep 3600\n  y:\n    image: IMAGE\n    command: sleep 3600\n    volumes: [\"v:/v\"]\nvolumes:\n  v: {{}}\n"
            ),
            "",
        );
        let (error, report) = p.deploy_fails("", "");
        assert!(error.contains("denied"), "{error}");
        assert!(error.contains(setting), "`{setting}` not in: {error}");
        assert!(error.contains(what), "`{what}` not in: {error}");
        let audit = p.audit(&report);
        assert_eq!(audit[0]["action"], "policy", "{audit}");
        assert!(containers(&p.name).is_empty(), "nothing created");
        assert!(networks(&p.name).is_empty(), "nothing created");
        assert!(volumes(&p.name).is_empty(), "nothing created");
        let plan = p.orch_with("plan", "", "");
        assert_eq!(plan.code, 1, "plan shows the refusal too: {}", plan.stdout);
    }
    // With the grant, the bind mount of a listed path goes through.
    p.compose(
        "services:\n  x:\n    image: IMAGE\n    command: sleep 3600\n    volumes: [\"/tmp:/host-tmp:ro\"]\n",
        "",
    );
    let ran = p.orch_with("run", "", r#"bind_paths = ["/tmp"]"#);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(containers(&p.name)["x"].state, "running");
}

fn an_unreachable_engine_is_a_clear_retryable_error() {
    let p = Project::new("gone");
    p.compose(STACK, "DB_PASSWORD=x\n");
    let orch = Orch::new().env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let gone = Project {
        name: p.name.clone(),
        orch,
        workflow: p.workflow,
    };
    gone.compose(STACK, "DB_PASSWORD=x\n");
    let (error, _) = gone.deploy_fails("", "");
    assert!(error.contains("unreachable"), "{error}");
    assert!(error.contains("connection `docker`"), "{error}");
    assert!(
        error.starts_with("docker engine unavailable"),
        "marked retryable: {error}"
    );
}

/// Run `cmd` in container `id`; its stdout.
fn exec(id: &str, cmd: &[&str]) -> String {
    block(async {
        use futures::StreamExt;
        let docker = engine();
        let config = bollard::models::ExecConfig {
            cmd: Some(cmd.iter().map(|c| c.to_string()).collect()),
            attach_stdout: Some(true),
            ..Default::default()
        };
        let created = docker.create_exec(id, config).await.unwrap();
        let mut out = String::new();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } =
            docker.start_exec(&created.id, None).await.unwrap()
        {
            while let Some(Ok(chunk)) = output.next().await {
                out.push_str(&chunk.to_string());
            }
        }
        out
    })
}

fn orphans_are_kept_unless_asked_and_relative_binds_resolve_in_the_granted_directory() {
    let p = Project::new("orph");
    std::fs::create_dir_all(p.orch.dir.path().join("stack/conf")).unwrap();
    let with_a = "services:\n  a:\n    image: IMAGE\n    command: sleep 3600\n    volumes: [\"./conf:/conf:ro\"]\n";
    p.compose(
        &format!("{with_a}  b:\n    image: IMAGE\n    command: sleep 3600\n"),
        "",
    );
    p.orch.write("stack/conf/app.conf", "answer=42\n");
    let granted = p.orch.dir.path().join("stack").canonicalize().unwrap();
    let bind = format!("bind_paths = [\"{}\"]", granted.display());
    let ran = p.orch_with("run", "", &bind);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let a = containers(&p.name)["a"].id.clone();
    assert_eq!(exec(&a, &["cat", "/conf/app.conf"]).trim(), "answer=42");

    p.compose(with_a, "");
    let ran = p.orch_with("run", "", &bind);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        containers(&p.name).contains_key("b"),
        "orphan kept by default"
    );
    let plan = p.orch_with("plan", ", remove_orphans = true", &bind);
    assert!(plan.stdout.contains("remove"), "{}", plan.stdout);
    let ran = p.orch_with("run", ", remove_orphans = true", &bind);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(
        names(&step(&ran.report(), "deploy")["outputs"]["removed"]),
        ["b"]
    );
    assert!(
        !containers(&p.name).contains_key("b"),
        "orphan removed when asked"
    );
    assert_eq!(containers(&p.name)["a"].id, a, "a left alone");

    // A relative bind may not climb out of the granted directory.
    p.compose(
        "services:\n  a:\n    image: IMAGE\n    command: sleep 3600\n    volumes: [\"./conf/../../:/up\"]\n",
        "",
    );
    let ran = p.orch_with("run", "", &bind);
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    assert!(ran.stdout.contains("denied"), "{}", ran.stdout);
}

/// D1 and D5: a second workflow whose connection is also called `docker` cannot mount the first
/// project's data volume nor join its network under the alias its clients use (not even listed
/// to it; nothing created); naming them in its connection lets it.
fn another_workflows_volumes_and_networks_are_out_of_reach_unless_listed() {
    let victim = Project::new("victim");
    victim.compose(STACK, "DB_PASSWORD=s3cret\n");
    victim.deploy();
    let mut thief = Project::new("thief");
    thief.workflow = "thief";
    let volume = format!("{}_data", victim.name);
    let network = format!("{}_backend", victim.name);
    let cases = [
        (
            format!(
                "volumes: [\"loot:/loot\"]\nvolumes:\n  loot: {{ external: true, name: {volume} }}"
            ),
            format!("volumes = [\"{volume}\"]"),
        ),
        (
            format!(
                "networks:\n      stolen: {{ aliases: [database] }}\nnetworks:\n  stolen: {{ external: true, name: {network} }}"
            ),
            format!("networks = [\"{network}\"]"),
        ),
    ];
    for (uses, setting) in &cases {
        thief.compose(
            &format!("services:\n  spy:\n    image: IMAGE\n    command: sleep 3600\n    {uses}\n"),
            "",
        );
        let (error, _) = thief.deploy_fails("", "");
        assert!(
            error.contains("was not created through this connection"),
            "{error}"
        );
        assert!(
            error.contains(setting.as_str()),
            "`{setting}` not in: {error}"
        );
        assert!(containers(&thief.name).is_empty(), "nothing created");
        // Opting in by name is the decision of whoever writes the connection.
        let ran = thief.orch_with("run", "", setting);
        assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
        assert_eq!(containers(&thief.name)["spy"].state, "running");
        remove_project(&thief.name);
    }
    // The victim's containers are untouched and still its own.
    let seen = containers(&victim.name);
    assert_eq!(seen["db"].state, "running");
    assert_eq!(seen["db"].labels["orch.connection"], "deploy-test/docker");
}
