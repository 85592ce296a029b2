//! Plugins from OCI registries (Debian's docker-registry, distribution 2.8): push, inspect
//! before download, pull by tag and digest, a tampered layer refused, credentials, the lock,
//! a locked run with the registry stopped, a moved tag refused, and an upgrade that adds an
//! import shown and refused until accepted.

use crate::harness::{Orch, Ran, example, step, unique};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command};

/// The open registry of tests/services.sh.
fn shared() -> String {
    std::env::var("ORCH_TEST_REGISTRY").expect(
        "ORCH_TEST_REGISTRY is not set: run `bash tests/services.sh start` and source its env file",
    )
}

/// A registry of this test's own (its storage can be tampered with, it can be stopped).
struct PrivateRegistry {
    child: Option<Child>,
    addr: String,
    dir: tempfile::TempDir,
}

impl PrivateRegistry {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: test\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{port}");
        let child = serve(&config, &addr);
        PrivateRegistry {
            child: Some(child),
            addr,
            dir,
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The stored bytes of the blob with `digest`.
    fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for PrivateRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An orch sandbox whose cache is its own (what was pulled is visible) and that reaches the
/// given registries over plain HTTP.
fn orch(insecure: &[&str]) -> Orch {
    let orch = Orch::new().env("ORCH_INSECURE_REGISTRIES", &insecure.join(","));
    let cache = orch.dir.path().join("cache");
    orch.env("ORCH_CACHE_DIR", cache.to_str().unwrap())
}

fn json(ran: &Ran) -> Value {
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    serde_json::from_str(ran.stdout.lines().last().unwrap()).unwrap()
}

fn push(orch: &Orch, plugin: &str, reference: &str) -> Value {
    json(&orch.orch(&["--json", "plugin", "push", &example(plugin), reference]))
}

/// Is the blob with this digest in the sandbox's OCI cache?
fn cached(orch: &Orch, digest: &Value) -> bool {
    let hex = digest.as_str().unwrap().trim_start_matches("sha256:");
    orch.dir
        .path()
        .join("cache/oci/blobs/sha256")
        .join(hex)
        .is_file()
}

#[test]
fn push_inspect_without_download_then_pull_by_tag_and_digest() {
    let registry = shared();
    let orch = orch(&[&registry]);
    let reference = format!("oci://{registry}/{}/echo-config:1.0", unique("t"));
    let pushed = push(&orch, "echo-config", &reference);
    let digest = pushed["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{pushed}");

    let inspected = json(&orch.orch(&["--json", "plugin", "inspect", &reference]));
    assert_eq!(inspected["digest"], digest.as_str());
    assert_eq!(inspected["describe"]["name"], "echo-config");
    assert!(
        inspected["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["import"].as_str().unwrap().starts_with("orch:plugin/log")),
        "{inspected}"
    );
    assert!(
        !cached(&orch, &pushed["component"]),
        "inspect downloads no component"
    );

    let by_tag = json(&orch.orch(&["--json", "plugin", "pull", &reference]));
    assert_eq!(by_tag["digest"], digest.as_str());
    assert_eq!(by_tag["component"], pushed["component"]);
    assert!(cached(&orch, &pushed["component"]));
    let by_digest =
        json(&orch.orch(&["--json", "plugin", "pull", &format!("{reference}@{digest}")]));
    assert_eq!(by_digest["component"], pushed["component"]);

    // A workflow runs it by tag, and pinned by digest.
    let ran = orch.run(
        &format!(
            "name = \"oci\"\n[steps.tag]\nplugin = \"{reference}\"\nwith = {{ a = 1 }}\n[steps.pinned]\nplugin = {{ oci = \"{}\", digest = \"{digest}\" }}\nwith = {{ b = 2 }}\n",
            reference.trim_start_matches("oci://")
        ),
        &[],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report = ran.report();
    assert_eq!(step(&report, "tag")["outputs"]["config"]["a"], 1);
    assert_eq!(step(&report, "pinned")["outputs"]["config"]["b"], 2);
}

#[test]
fn a_tampered_layer_is_refused_and_nothing_is_kept() {
    let registry = PrivateRegistry::start();
    let orch = orch(&[&registry.addr]);
    let reference = format!("oci://{}/orch/echo-config:1", registry.addr);
    let pushed = push(&orch, "echo-config", &reference);
    let blob = registry.blob(pushed["component"].as_str().unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let pulled = orch.orch(&["plugin", "pull", &reference]);
    assert_eq!(pulled.code, 2, "{}", pulled.stderr);
    assert!(
        pulled.stderr.contains("does not match its digest"),
        "{}",
        pulled.stderr
    );
    assert!(
        !cached(&orch, &pushed["component"]),
        "nothing tampered is kept"
    );
}

#[test]
fn a_registry_with_basic_auth_takes_docker_config_or_environment_credentials() {
    let registry = std::env::var("ORCH_TEST_REGISTRY_AUTH").expect("ORCH_TEST_REGISTRY_AUTH");
    let user = std::env::var("ORCH_TEST_REGISTRY_USER").unwrap();
    let password = std::env::var("ORCH_TEST_REGISTRY_PASSWORD").unwrap();
    let reference = format!("oci://{registry}/{}/echo-config:1", unique("auth"));
    let anonymous = orch(&[&registry]);
    let refused = anonymous.orch(&["plugin", "push", &example("echo-config"), &reference]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("docker login") && refused.stderr.contains("ORCH_REGISTRY_USER"),
        "{}",
        refused.stderr
    );
    // Environment credentials go only to the registry ORCH_REGISTRY names.
    let elsewhere = orch(&[&registry])
        .env("ORCH_REGISTRY", "127.0.0.1:1")
        .env("ORCH_REGISTRY_USER", &user)
        .env("ORCH_REGISTRY_PASSWORD", &password);
    let refused = elsewhere.orch(&["plugin", "push", &example("echo-config"), &reference]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    let with_env = orch(&[&registry])
        .env("ORCH_REGISTRY", &registry)
        .env("ORCH_REGISTRY_USER", &user)
        .env("ORCH_REGISTRY_PASSWORD", &password);
    push(&with_env, "echo-config", &reference);
    // `docker login` leaves a config.json: read, never printed.
    let docker = tempfile::tempdir().unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::write(
        docker.path().join("config.json"),
        format!("{{\"auths\":{{\"{registry}\":{{\"auth\":\"{auth}\"}}}}}}"),
    )
    .unwrap();
    let with_config = orch(&[&registry]).env("DOCKER_CONFIG", docker.path().to_str().unwrap());
    let pulled = with_config.orch(&["plugin", "pull", &reference]);
    assert_eq!(pulled.code, 0, "{}", pulled.stderr);
    assert!(!pulled.stdout.contains(&password) && !pulled.stderr.contains(&password));
}

#[test]
fn a_plain_http_registry_must_be_listed_as_insecure() {
    let registry = shared();
    let orch = Orch::new();
    let ran = orch.orch(&[
        "plugin",
        "inspect",
        &format!("oci://{registry}/nothing/here:1"),
    ]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains(&format!("ORCH_INSECURE_REGISTRIES={registry}")),
        "{}",
        ran.stderr
    );
}

/// The lock end to end: lock a workflow that runs a plugin by tag, run `--locked` with the
/// registry stopped, move the tag to a version that imports wasi:http, see `--locked` refuse
/// it and `orch lock --upgrade` show the new import and exit 1, then accept it.
#[test]
fn locked_runs_work_offline_and_an_upgrade_that_adds_an_import_needs_accepting() {
    let mut registry = PrivateRegistry::start();
    let orch = orch(&[&registry.addr]);
    let reference = format!("oci://{}/orch/probe:1", registry.addr);
    let v1 = push(&orch, "echo-config", &reference);
    let dir = orch.dir.path().join("wf");
    std::fs::create_dir(&dir).unwrap();
    let workflow = dir.join("w.toml");
    // `with` fits both versions: echo-config takes anything, http-get a `url`.
    std::fs::write(
        &workflow,
        format!("name = \"probe\"\n[steps.probe]\nplugin = \"{reference}\"\nwith = {{ url = \"http://127.0.0.1:9/x\" }}\n"),
    )
    .unwrap();
    let locked = orch.orch(&["lock", dir.to_str().unwrap()]);
    assert_eq!(locked.code, 0, "{}", locked.stderr);
    let lock = std::fs::read_to_string(dir.join("orch.lock")).unwrap();
    assert!(lock.contains(v1["digest"].as_str().unwrap()), "{lock}");
    assert!(
        lock.contains("[[step]]") && lock.contains("plugin = \"oci://"),
        "{lock}"
    );

    // Offline: the registry is gone, the locked run starts from the cache.
    registry.stop();
    let offline = orch.orch(&["--json", "--locked", "run", workflow.to_str().unwrap()]);
    assert_eq!(offline.code, 0, "{}", offline.stderr);
    let report = offline.report();
    assert_eq!(
        step(&report, "probe")["outputs"]["config"]["url"],
        "http://127.0.0.1:9/x"
    );

    // v2 moves the tag and imports wasi:http.
    let mut registry = restart(registry);
    let v2 = push(&orch, "http-get", &reference);
    assert_ne!(v1["digest"], v2["digest"]);
    let refused = orch.orch(&["--locked", "run", workflow.to_str().unwrap()]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("now points to") && refused.stderr.contains("orch lock --upgrade"),
        "{}",
        refused.stderr
    );
    let upgrade = orch.orch(&["lock", dir.to_str().unwrap(), "--upgrade"]);
    assert_eq!(upgrade.code, 1, "{}", upgrade.stderr);
    assert!(
        upgrade.stdout.contains("+ wasi:http/outgoing-handler"),
        "{}",
        upgrade.stdout
    );
    assert!(upgrade.stderr.contains("--accept"), "{}", upgrade.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("orch.lock")).unwrap(),
        lock,
        "nothing written"
    );
    let accepted = orch.orch(&["lock", dir.to_str().unwrap(), "--upgrade", "--accept"]);
    assert_eq!(accepted.code, 0, "{}", accepted.stderr);
    let lock = std::fs::read_to_string(dir.join("orch.lock")).unwrap();
    assert!(lock.contains(v2["digest"].as_str().unwrap()), "{lock}");
    assert!(lock.contains("wasi:http/outgoing-handler"), "{lock}");
    let now = orch.orch(&["--json", "--locked", "run", workflow.to_str().unwrap()]);
    // v2 runs (and its request is denied: the step grants no origin).
    let report = now.report();
    assert!(
        step(&report, "probe")["error"]
            .as_str()
            .unwrap()
            .starts_with("denied"),
        "{report}"
    );
    registry.stop();
}

/// The same registry again, on the same port and storage.
fn restart(mut registry: PrivateRegistry) -> PrivateRegistry {
    registry.stop();
    let config = registry.dir.path().join("config.yml");
    registry.child = Some(serve(&config, &registry.addr));
    registry
}

/// `docker-registry serve CONFIG`, once it accepts connections on `addr`.
fn serve(config: &std::path::Path, addr: &str) -> Child {
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("docker-registry is installed by tests/services.sh");
    crate::harness::wait_for(std::time::Duration::from_secs(10), "the registry", || {
        std::net::TcpStream::connect(addr).ok().map(drop)
    });
    child
}

/// `orch plugin diff` as a reviewer reads it (digests masked, they change with every build).
#[test]
fn plugin_diff_output_is_stable() {
    let orch = Orch::new();
    for (name, file) in [("old.wasm", "echo-config"), ("new.wasm", "http-get")] {
        std::fs::copy(example(file), orch.dir.path().join(name)).unwrap();
    }
    let ran = orch.orch(&["plugin", "diff", "old.wasm", "new.wasm"]);
    assert_eq!(ran.code, 1, "a new import is an escalation: {}", ran.stderr);
    let masked = regex::Regex::new("sha256:[0-9a-f]{64}")
        .unwrap()
        .replace_all(&ran.stdout, "sha256:…");
    assert_eq!(
        masked,
        "~ new.wasm 0.2.0 -> 0.2.0\n  digest sha256:… -> sha256:…\n  + wasi:http/outgoing-handler  (granted by origins in `allow` (\"https://host\") or an http connection named in it)\n  + wasi:http/types  (always: request and response types)\n  + config field `url`\n  escalation: new imports; accept with `--accept` after review\n"
    );
    assert!(
        ran.stderr.contains("imports wasi:http/outgoing-handler"),
        "{}",
        ran.stderr
    );
    let same = orch.orch(&["--json", "plugin", "diff", "old.wasm", "old.wasm"]);
    assert_eq!(same.code, 0, "{}", same.stderr);
    let diff: Value = serde_json::from_str(&same.stdout).unwrap();
    assert_eq!(diff["added"], serde_json::json!([]));
}

/// Observed use: each run records the grants its steps used; `orch lock --suggest` lists the
/// locked grants no run used, so `allow` can be narrowed.
#[test]
fn lock_suggest_lists_grants_no_run_used() {
    let port = crate::harness::hello_server();
    let orch = Orch::new();
    let dir = orch.dir.path().join("wf");
    std::fs::create_dir(&dir).unwrap();
    let workflow = dir.join("w.toml");
    std::fs::write(
        &workflow,
        format!(
            "name = \"{}\"\n[steps.get]\nplugin = \"{}\"\nallow = [\"http://127.0.0.1:{port}\", \"https://unused.example\"]\nwith = {{ url = \"http://127.0.0.1:{port}/\" }}\n",
            unique("suggest"),
            example("http-get")
        ),
    )
    .unwrap();
    for _ in 0..2 {
        let ran = orch.orch(&["--json", "run", workflow.to_str().unwrap()]);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        // What the step used is recorded beside what it was refused.
        let id = ran.report()["run_id"].as_str().unwrap().to_string();
        let detail = orch.run_detail(&id);
        assert_eq!(
            detail["used"],
            serde_json::json!([{"step": "get", "grant": format!("http://127.0.0.1:{port}")}]),
            "{detail}"
        );
    }
    assert_eq!(orch.orch(&["lock", dir.to_str().unwrap()]).code, 0);
    let suggested = json(&orch.orch(&["--json", "lock", dir.to_str().unwrap(), "--suggest"]));
    let rows = suggested.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{suggested}");
    assert_eq!(rows[0]["grant"], "https://unused.example:443");
    assert_eq!(rows[0]["runs"], 2);
}
