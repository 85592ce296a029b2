//! Plugins in Python and JavaScript, built by `orch plugin build` with the real toolchains
//! (componentize-py, componentize-js) and run in the real host: the same grants, audit,
//! retries, schema checks, masking and limits as a Rust plugin. Also: each language's
//! scaffold builds and its test passes as generated.

use crate::harness::{Denial, Orch, assert_denied_and_audited, hello_server, root, step};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug)]
enum Lang {
    Python,
    Js,
}

thread_local! {
    static LANG: std::cell::Cell<Lang> = const { std::cell::Cell::new(Lang::Python) };
}

/// Each test once per language, as `python::NAME` and `js::NAME`.
macro_rules! in_each_language {
    ($($name:ident),* $(,)?) => {
        mod python {
            $(#[test] fn $name() { super::LANG.set(super::Lang::Python); super::$name() })*
        }
        mod js {
            $(#[test] fn $name() { super::LANG.set(super::Lang::Js); super::$name() })*
        }
    };
}

in_each_language!(
    http_is_denied_without_a_grant_audited_and_allowed_with_one,
    postgres_is_read_through_a_granted_connection_never_the_url,
    postgres_rows_are_bulk_loaded_through_copy_json,
    invalid_config_is_not_retried_and_retryable_is,
    describe_schema_is_enforced_by_validate,
    a_secret_output_is_masked,
    memory_cap_and_timeout_apply,
    the_sandbox_has_no_environment_and_no_files,
    plan_declares_and_run_applies,
    the_scaffold_builds_and_its_test_passes,
);

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// The probe plugin's directory in the repository.
    fn probe_dir(self) -> PathBuf {
        match self {
            Lang::Python => root().join("plugins/examples-python/py-probe"),
            Lang::Js => root().join("plugins/examples-js/js-probe"),
        }
    }
}

/// The probe component of the current language, built once per test process with
/// `orch plugin build` (which also precompiles it into the shared cache).
fn probe() -> String {
    static PYTHON: OnceLock<String> = OnceLock::new();
    static JS: OnceLock<String> = OnceLock::new();
    let lang = LANG.get();
    let cell = match lang {
        Lang::Python => &PYTHON,
        Lang::Js => &JS,
    };
    cell.get_or_init(|| build(&lang.probe_dir())).clone()
}

/// `orch plugin build DIR`; the component's path.
fn build(dir: &Path) -> String {
    let orch = Orch::new();
    let built = orch.orch(&["--json", "plugin", "build", dir.to_str().unwrap()]);
    assert_eq!(built.code, 0, "{}\n{}", built.stdout, built.stderr);
    let report: Value = serde_json::from_str(&built.stdout).unwrap();
    report["component"].as_str().unwrap().to_string()
}

/// A one-step workflow of the probe with `with` (TOML inline table body) and extra step keys.
fn probe_step(with: &str, extra: &str) -> String {
    format!(
        "name = \"probe\"\n[steps.probe]\nplugin = \"{}\"\nwith = {{ {with} }}\n{extra}\n",
        probe()
    )
}

fn http_is_denied_without_a_grant_audited_and_allowed_with_one() {
    let port = hello_server();
    let url = format!("http://127.0.0.1:{port}/hi");
    let origin = format!("http://127.0.0.1:{port}");
    let orch = Orch::new();
    let granted = orch.run(
        &probe_step(
            &format!("action = \"http\", url = \"{url}\""),
            &format!("allow = [\"{origin}\"]"),
        ),
        &[],
    );
    assert_eq!(granted.code, 0, "{}", granted.stderr);
    let report = granted.report();
    let probe = step(&report, "probe");
    assert_eq!(probe["outputs"]["status"], 200, "{probe}");
    assert_eq!(probe["outputs"]["body"], "hello", "{probe}");

    let denied = orch.run(
        &probe_step(
            &format!("action = \"http\", url = \"{url}\""),
            "retry = { max = 2, backoff = \"10ms\" }",
        ),
        &[],
    );
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    let report = denied.report();
    assert_eq!(
        step(&report, "probe")["attempts"],
        1,
        "a denial is not retried"
    );
    let error =
        format!("denied: step `probe` may not reach `{origin}`: add \"{origin}\" to its `allow`");
    let denial = Denial {
        step: "probe",
        error: &error,
        action: "http",
        target: &origin,
    };
    assert_denied_and_audited(&orch, &report, &denial);
}

fn postgres_is_read_through_a_granted_connection_never_the_url() {
    let admin = crate::harness::pg::admin_url();
    let password = url::Url::parse(&admin)
        .unwrap()
        .password()
        .unwrap()
        .to_string();
    let orch = Orch::new().env("PROBE_PG_URL", &admin);
    let workflow = format!(
        "name = \"probe\"\n[connections.db]\nkind = \"postgres\"\nurl = \"${{{{ env.PROBE_PG_URL }}}}\"\n[steps.probe]\nplugin = \"{}\"\nallow = [\"db\"]\nwith = {{ action = \"pg\", connection = \"db\", query = \"SELECT 41 + 1 AS answer, current_user AS who\" }}\n[steps.ungranted]\nplugin = \"{}\"\nwith = {{ action = \"pg\", connection = \"db\" }}\n",
        probe(),
        probe()
    );
    let ran = orch.run(&workflow, &[]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let report = ran.report();
    let probe = step(&report, "probe");
    assert_eq!(probe["status"], "succeeded", "{probe}");
    assert_eq!(probe["outputs"]["rows"][0]["answer"], 42, "{probe}");
    assert_eq!(probe["outputs"]["rows"][0]["who"], "orch", "{probe}");
    let ungranted = step(&report, "ungranted");
    assert_eq!(ungranted["status"], "failed", "{ungranted}");
    assert!(
        ungranted["error"].as_str().unwrap().starts_with("denied:"),
        "{ungranted}"
    );
    for text in [&ran.stdout, &ran.stderr] {
        assert!(!text.contains(&password), "the password leaked: {text}");
    }
}

/// The SDK's `copy_json` / `copyJson`: rows from the config go to the host as JSON and come
/// back out of the table exactly (tabs, newlines, backslashes, a literal `\N`, a missing key as
/// NULL, jsonb); a key that is not a column fails the step with its row number.
fn postgres_rows_are_bulk_loaded_through_copy_json() {
    let orch = Orch::new().env("PROBE_PG_URL", &crate::harness::pg::admin_url());
    let rows = r#"[{ id = 2, name = "tab\there", doc = { a = [1, 2] } }, { id = 1, name = "\\N" }, { id = 3, name = "back\\slash\nline", doc = 7 }]"#;
    let workflow = format!(
        "name = \"probe\"\n[connections.db]\nkind = \"postgres\"\nurl = \"${{{{ env.PROBE_PG_URL }}}}\"\n[steps.load]\nplugin = \"{probe}\"\nallow = [\"db\"]\nwith = {{ action = \"load\", connection = \"db\", rows = {rows} }}\n[steps.unknown]\nplugin = \"{probe}\"\nallow = [\"db\"]\nwith = {{ action = \"load\", connection = \"db\", rows = [{{ id = 1 }}, {{ id = 2, nope = true }}] }}\n",
        probe = probe()
    );
    let ran = orch.run(&workflow, &[]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let report = ran.report();
    let load = step(&report, "load");
    assert_eq!(load["status"], "succeeded", "{load}");
    assert_eq!(load["outputs"]["copied"], 3, "{load}");
    let expected = serde_json::json!([
        { "id": 1, "name": "\\N", "doc": null },
        { "id": 2, "name": "tab\there", "doc": { "a": [1, 2] } },
        { "id": 3, "name": "back\\slash\nline", "doc": 7 },
    ]);
    assert_eq!(load["outputs"]["rows"], expected, "{load}");
    let unknown = step(&report, "unknown");
    assert_eq!(unknown["status"], "failed", "{unknown}");
    let error = unknown["error"].as_str().unwrap();
    assert!(
        error.contains("row 2 has column `nope`, which is not one of the columns"),
        "{unknown}"
    );
}

fn invalid_config_is_not_retried_and_retryable_is() {
    let orch = Orch::new();
    let retry = "retry = { max = 2, backoff = \"10ms\" }";
    let invalid = orch.run(&probe_step("action = \"invalid\"", retry), &[]);
    let report = invalid.report();
    let probe = step(&report, "probe");
    assert_eq!(probe["status"], "failed", "{probe}");
    assert_eq!(probe["attempts"], 1, "{probe}");
    assert!(
        probe["error"]
            .as_str()
            .unwrap()
            .contains("invalid on purpose"),
        "{probe}"
    );
    let retryable = orch.run(&probe_step("action = \"retry\"", retry), &[]);
    let report = retryable.report();
    let probe = step(&report, "probe");
    assert_eq!(probe["status"], "failed", "{probe}");
    assert_eq!(probe["attempts"], 3, "{probe}");
    assert_eq!(retryable.retry_delays().len(), 2, "{}", retryable.stdout);
}

fn describe_schema_is_enforced_by_validate() {
    let orch = Orch::new();
    let file = orch.write(
        "bad.toml",
        &probe_step("action = \"hello\", whoo = \"typo\"", ""),
    );
    let ran = orch.orch(&["validate", file.to_str().unwrap()]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("whoo"), "{}", ran.stderr);
    let file = orch.write("bad2.toml", &probe_step("action = \"dance\"", ""));
    let ran = orch.orch(&["validate", file.to_str().unwrap()]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("dance"), "{}", ran.stderr);
    let file = orch.write(
        "good.toml",
        &probe_step("action = \"hello\", who = \"x\"", ""),
    );
    let ran = orch.orch(&["validate", file.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
}

fn a_secret_output_is_masked() {
    const SECRET: &str = "probe-Secret-Output-7731";
    let orch = Orch::new();
    let ran = orch.run(
        &probe_step(&format!("action = \"secret\", value = \"{SECRET}\""), ""),
        &[],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report = ran.report();
    assert_eq!(step(&report, "probe")["outputs"]["token"], "***");
    assert!(!ran.stdout.contains(SECRET) && !ran.stderr.contains(SECRET));
    let id = report["run_id"].as_str().unwrap();
    let shown = orch.orch(&["--json", "runs", "show", id]);
    assert!(!shown.stdout.contains(SECRET), "{}", shown.stdout);
    assert!(!orch.sqlite_store_text().contains(SECRET));
}

fn memory_cap_and_timeout_apply() {
    let orch = Orch::new();
    let hog = orch.run(&probe_step("action = \"hog\"", "memory = \"48MiB\""), &[]);
    let report = hog.report();
    let probe = step(&report, "probe");
    assert_eq!(probe["status"], "failed", "{probe}");
    let error = probe["error"].as_str().unwrap();
    // Python's allocator reports the cap as MemoryError; SpiderMonkey's as out of memory; a
    // grow past the cap traps. Each names what happened, none takes the host down.
    assert!(
        error.contains("memory") || error.contains("Memory"),
        "{probe}"
    );
    let spin = orch.run(&probe_step("action = \"spin\"", "timeout = \"2s\""), &[]);
    let report = spin.report();
    let probe = step(&report, "probe");
    assert_eq!(probe["error"], "timed out after 2s during `run`", "{probe}");
    let took = probe["duration"].as_u64().unwrap();
    assert!((2000..=2600).contains(&took), "stopped after {took} ms");
}

fn the_sandbox_has_no_environment_and_no_files() {
    let orch = Orch::new().env("PROBE_HOST_SECRET", "host-only-value");
    let ran = orch.run(&probe_step("action = \"env\"", ""), &[]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report = ran.report();
    let outputs = &step(&report, "probe")["outputs"];
    assert_eq!(outputs["env"], serde_json::json!({}), "{outputs}");
    assert!(!ran.stdout.contains("host-only-value"));
    // No directory is granted: nothing to list (an error text, or an empty listing).
    let root = &outputs["root"];
    assert!(
        root.is_string() || root.as_array().is_some_and(|a| a.is_empty()),
        "{outputs}"
    );
}

fn plan_declares_and_run_applies() {
    let orch = Orch::new();
    let file = orch.write(
        "create.toml",
        &probe_step("action = \"create\", name = \"widget\"", ""),
    );
    let plan = orch.orch(&["plan", file.to_str().unwrap()]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains("create thing widget"),
        "{}",
        plan.stdout
    );
    let ran = orch.orch(&["--json", "run", file.to_str().unwrap()]);
    let report = ran.report();
    assert_eq!(step(&report, "probe")["outputs"]["created"], true);
}

fn the_scaffold_builds_and_its_test_passes() {
    let lang = LANG.get();
    let orch = Orch::new();
    let name = format!("hello-{}", lang.name());
    let made = orch.orch(&["plugin", "new", &name, "--lang", lang.name()]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let dir = orch.dir.path().join(&name);
    let tested = orch.orch(&["--json", "plugin", "test", dir.to_str().unwrap()]);
    assert_eq!(tested.code, 0, "{}\n{}", tested.stdout, tested.stderr);
    // `plugin test` builds (one JSON line), plans (one document), then runs (JSON lines).
    let report: Value = serde_json::from_str(tested.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["status"], "succeeded", "{report}");
    assert!(dir.join(format!("{name}.wasm")).is_file());
    // One step with a config given on the command line, no workflow file.
    let adhoc = orch.orch(&[
        "--json",
        "plugin",
        "test",
        dir.to_str().unwrap(),
        "--with",
        r#"{"who": "zed-tester"}"#,
    ]);
    assert_eq!(adhoc.code, 0, "{}\n{}", adhoc.stdout, adhoc.stderr);
    let report: Value = serde_json::from_str(adhoc.stdout.lines().last().unwrap()).unwrap();
    let greeting = step(&report, "test")["outputs"]["greeting"].to_string();
    assert!(greeting.contains("zed-tester"), "{report}");
}

/// JavaScript's own `fetch`, from an async step body, goes through the same gate as `http`.
#[test]
fn js_fetch_from_an_async_body_is_gated_like_http() {
    LANG.set(Lang::Js);
    let port = hello_server();
    let url = format!("http://127.0.0.1:{port}/hi");
    let origin = format!("http://127.0.0.1:{port}");
    let orch = Orch::new();
    let with = format!("action = \"fetch\", url = \"{url}\"");
    let granted = orch.run(&probe_step(&with, &format!("allow = [\"{origin}\"]")), &[]);
    assert_eq!(granted.code, 0, "{}", granted.stderr);
    let report = granted.report();
    assert_eq!(step(&report, "probe")["outputs"]["body"], "hello");
    let denied = orch.run(&probe_step(&with, ""), &[]);
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    let report = denied.report();
    assert_eq!(step(&report, "probe")["status"], "failed");
    let audit = crate::harness::audit(&orch, &report);
    assert_eq!(audit[0]["target"], origin.as_str(), "{audit}");
}

/// A Rust plugin outside this repository: `orch plugin new` writes a crate that depends on
/// `orch-sdk = "0.2"` (which `orch plugin build` resolves to the SDK of its own kit); it builds
/// and its test passes, and it builds again with the SDK as a plain path dependency.
#[test]
fn a_rust_scaffold_builds_against_the_sdk_by_version_and_by_path() {
    let orch = Orch::new();
    let made = orch.orch(&["plugin", "new", "hello-rust", "--lang", "rust"]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let dir = orch.dir.path().join("hello-rust");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("orch-sdk = \"0.2\""), "{manifest}");
    // Relative to where orch runs, as a user types it.
    let tested = orch.orch(&["--json", "plugin", "test", "hello-rust"]);
    assert_eq!(tested.code, 0, "{}\n{}", tested.stdout, tested.stderr);
    let report: Value = serde_json::from_str(tested.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        step(&report, "greet")["outputs"]["greeting"],
        "hello, world"
    );
    let sdk = root().join("plugins/sdk");
    let by_path = manifest.replace(
        "orch-sdk = \"0.2\"",
        &format!("orch-sdk = {{ path = {:?} }}", sdk.to_str().unwrap()),
    );
    std::fs::write(dir.join("Cargo.toml"), &by_path).unwrap();
    let built = orch.orch(&["plugin", "build", dir.to_str().unwrap()]);
    assert_eq!(built.code, 0, "{}\n{}", built.stdout, built.stderr);
}

/// `orch init` writes a starter that validates and runs; a second `init` overwrites nothing;
/// `orch schema workflow` is the schema it wrote; completions print for the common shells.
#[test]
fn init_schema_and_completions_work_from_an_empty_directory() {
    let orch = Orch::new();
    let init = orch.orch(&["init"]);
    assert_eq!(init.code, 0, "{}", init.stderr);
    let dir = orch.dir.path();
    for file in ["workflow.toml", ".env.example", "workflow.schema.json"] {
        assert!(dir.join(file).is_file(), "{file} not written");
    }
    let workflow = std::fs::read_to_string(dir.join("workflow.toml")).unwrap();
    assert!(workflow.starts_with("#:schema ./workflow.schema.json"));
    let ran = orch.orch(&["--json", "run", "workflow.toml", "-i", "who=tester"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report = ran.report();
    assert_eq!(step(&report, "hello")["outputs"]["greeted"], "tester");
    let again = orch.orch(&["init"]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let schema = orch.orch(&["schema", "workflow"]);
    let written = std::fs::read_to_string(dir.join("workflow.schema.json")).unwrap();
    assert_eq!(schema.stdout, written);
    for (shell, marker) in [
        ("bash", "_orch()"),
        ("zsh", "#compdef orch"),
        ("fish", "complete -c orch"),
    ] {
        let completions = orch.orch(&["completions", shell]);
        assert_eq!(completions.code, 0, "{}", completions.stderr);
        assert!(
            completions.stdout.contains(marker),
            "{shell}: {}",
            completions.stdout
        );
        assert!(completions.stdout.contains("plugin"), "{shell}");
    }
}
