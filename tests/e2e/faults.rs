//! Guest faults and grants: each fails only its own step, with a clear reason.

use crate::harness::{Denial, Orch, assert_denied_and_audited, example, hello_server, step};

#[test]
fn infinite_loop_is_stopped_within_a_quarter_over_its_timeout() {
    let orch = Orch::new();
    let ran = orch.run(
        &format!(
            r#"
            name = "spin"
            [steps.spin]
            plugin = "{}"
            timeout = "2s"
            [steps.other]
            plugin = "echo"
            with = {{ outputs = {{ ok = true }} }}
            "#,
            example("spin")
        ),
        &[],
    );
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let report = ran.report();
    let spin = step(&report, "spin");
    assert_eq!(spin["status"], "failed");
    assert_eq!(spin["error"], "timed out after 2s during `run`");
    let took = spin["duration"].as_u64().expect("duration ms");
    // Up to a quarter over: the epoch deadline and the teardown share 2 busy cores with others.
    assert!((2000..=2500).contains(&took), "stopped after {took} ms");
    assert_eq!(
        step(&report, "other")["status"],
        "succeeded",
        "other steps keep going"
    );
}

#[test]
fn allocation_past_the_cap_fails_the_step_with_the_limit() {
    let orch = Orch::new();
    let ran = orch.run(
        &format!(
            r#"
            name = "hog"
            [steps.hog]
            plugin = "{}"
            memory = "64MiB"
            "#,
            example("hog")
        ),
        &[],
    );
    assert_eq!(ran.code, 1);
    let hog = ran.report();
    let hog = step(&hog, "hog");
    assert_eq!(hog["status"], "failed");
    assert_eq!(hog["error"], "exceeded its memory limit of 64.0 MiB");
}

#[test]
fn guest_panic_is_a_trap_of_that_step_only_and_dependants_are_upstream_failed() {
    let orch = Orch::new();
    let ran = orch.run(
        &format!(
            r#"
            name = "trap"
            [steps.boom]
            plugin = "{fail}"
            with = {{ kind = "trap", message = "kaboom" }}
            [steps.after]
            plugin = "echo"
            needs = ["boom"]
            [steps.after_after]
            plugin = "echo"
            needs = ["after"]
            [steps.independent]
            plugin = "echo"
            "#,
            fail = example("fail")
        ),
        &[],
    );
    assert_eq!(ran.code, 1);
    let report = ran.report();
    assert_eq!(report["status"], "failed");
    let boom = step(&report, "boom");
    assert_eq!(boom["status"], "failed");
    assert!(
        boom["error"]
            .as_str()
            .unwrap()
            .starts_with("plugin trapped: wasm trap"),
        "{boom}"
    );
    assert_eq!(step(&report, "after")["status"], "upstream_failed");
    assert_eq!(step(&report, "after_after")["status"], "upstream_failed");
    assert_eq!(step(&report, "independent")["status"], "succeeded");
    // The guest's panic message reached the step log (stderr is captured).
    let show = orch.orch(&["runs", "show", report["run_id"].as_str().unwrap()]);
    assert!(show.stdout.contains("kaboom"), "{}", show.stdout);
}

#[test]
fn retryable_errors_are_retried_with_backoff_until_success() {
    let orch = Orch::new();
    let ran = orch.run(
        &format!(
            r#"
            name = "flaky"
            [steps.flaky]
            plugin = "{}"
            with = {{ kind = "retryable", succeed_on_attempt = 3 }}
            retry = {{ max = 3, backoff = "50ms" }}
            "#,
            example("fail")
        ),
        &[],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.retry_delays(), [50, 100], "exponential backoff");
    let report = ran.report();
    assert_eq!(step(&report, "flaky")["attempts"], 3);
    assert_eq!(step(&report, "flaky")["outputs"]["attempt"], 3);
}

#[test]
fn retries_stop_at_max_and_non_retryable_errors_are_not_retried() {
    let orch = Orch::new();
    let ran = orch.run(
        &format!(
            r#"
            name = "give-up"
            [steps.flaky]
            plugin = "{fail}"
            with = {{ kind = "retryable", message = "busy" }}
            retry = {{ max = 2, backoff = "10ms" }}
            [steps.broken]
            plugin = "{fail}"
            with = {{ kind = "failed", message = "permanent" }}
            retry = {{ max = 5, backoff = "10ms" }}
            "#,
            fail = example("fail")
        ),
        &[],
    );
    assert_eq!(ran.code, 1);
    let report = ran.report();
    assert_eq!(step(&report, "flaky")["attempts"], 3);
    assert_eq!(step(&report, "flaky")["error"], "busy");
    assert_eq!(step(&report, "broken")["attempts"], 1);
}

#[test]
fn http_to_an_ungranted_host_is_denied_with_the_grant_and_audited() {
    let port = hello_server();
    let orch = Orch::new();
    let ran = orch.run(
        &format!(
            r#"
            name = "http"
            [steps.granted]
            plugin = "{get}"
            allow = ["http://127.0.0.1:{port}"]
            with = {{ url = "http://127.0.0.1:{port}/ok" }}
            [steps.ungranted]
            plugin = "{get}"
            allow = ["http://localhost:{port}"]
            with = {{ url = "http://127.0.0.1:{port}/secret" }}
            "#,
            get = example("http-get")
        ),
        &[],
    );
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let report = ran.report();
    let granted = step(&report, "granted");
    assert_eq!(granted["status"], "succeeded", "{granted}");
    assert_eq!(granted["outputs"]["status"], 200);
    assert_eq!(granted["outputs"]["body"], "hello");
    let origin = format!("http://127.0.0.1:{port}");
    let error = format!(
        "denied: step `ungranted` may not reach `{origin}`: add \"{origin}\" to its `allow`"
    );
    let denial = Denial {
        step: "ungranted",
        error: &error,
        action: "http",
        target: &origin,
    };
    assert_denied_and_audited(&orch, &report, &denial);
}

#[test]
fn a_secret_printed_by_a_plugin_is_masked_in_terminal_runs_show_and_the_sqlite_file() {
    const SECRET: &str = "s3cr3t-Value-42";
    let orch = Orch::new().env("LEAK_TOKEN", SECRET);
    // Also one from the .env file beside the workflow.
    orch.write(".env", "DOTENV_TOKEN=dotenv-Secret-99\n");
    let workflow = format!(
        r#"
        name = "leak"
        [steps.leak]
        plugin = "{leak}"
        with = {{ secret = "${{{{ secrets.LEAK_TOKEN }}}}" }}
        [steps.leak_and_fail]
        plugin = "{leak}"
        with = {{ secret = "${{{{ secrets.DOTENV_TOKEN }}}}", fail = true }}
        [steps.generated]
        plugin = "echo"
        with = {{ outputs = {{ password = "gen-Pass-77" }}, secret = ["password"] }}
        [steps.reuse]
        plugin = "{leak}"
        needs = ["generated"]
        with = {{ secret = "pw=${{{{ steps.generated.outputs.password }}}}" }}
        "#,
        leak = example("leak-secret")
    );
    let json = orch.run(&workflow, &[]);
    let human = orch.orch(&[
        "run",
        orch.dir.path().join("workflow.toml").to_str().unwrap(),
    ]);
    assert_eq!(json.code, 1);
    let report = json.report();
    assert_eq!(step(&report, "leak")["outputs"]["leaked"], "***");
    assert_eq!(step(&report, "leak_and_fail")["error"], "failed with ***");
    assert_eq!(step(&report, "reuse")["outputs"]["leaked"], "pw=***");
    let show = orch.orch(&["runs", "show", report["run_id"].as_str().unwrap()]);
    assert!(show.stdout.contains("the secret is ***"), "{}", show.stdout);
    let store = orch.sqlite_store_text();
    assert!(store.len() > 4096, "the store was written");
    for secret in [SECRET, "dotenv-Secret-99", "gen-Pass-77"] {
        for (what, text) in [
            ("--json output", &json.stdout),
            ("stderr", &json.stderr),
            ("terminal output", &human.stdout),
            ("terminal stderr", &human.stderr),
            ("runs show", &show.stdout),
        ] {
            assert!(
                !text.contains(secret),
                "{secret} visible in {what}:\n{text}"
            );
        }
        assert!(!store.contains(secret), "{secret} is in the SQLite file");
    }
}

#[test]
fn fuel_limit_stops_a_busy_guest() {
    let orch = Orch::new();
    let ran = orch.run(
        &format!(
            r#"
            name = "fuel"
            [steps.spin]
            plugin = "{}"
            fuel = 1000000
            "#,
            example("spin")
        ),
        &[],
    );
    assert_eq!(ran.code, 1);
    assert_eq!(
        step(&ran.report(), "spin")["error"],
        "ran out of fuel (1000000 units)"
    );
}
