//! Attacks from the security review (`../shared/reviews/security.md`), each as the attacker
//! would try it against the real binary: what must not leak, or not be reachable, is checked
//! in every place it could land (reports, `runs show`, the SQLite file).

use crate::harness::{Orch, Server, step};

/// M1: a plugin's secret numbers, objects and arrays are masked like strings.
#[test]
fn secret_outputs_of_every_json_type_are_masked_everywhere() {
    let orch = Orch::new();
    let ran = orch.run(
        r#"
        name = "m1"
        [steps.gen]
        plugin = "echo"
        with = { outputs = { pin = 48213977, creds = { password = "hunter2-Zq" }, keys = ["k-1-Secret", 77123] }, secret = ["pin", "creds", "keys"] }
        [steps.use]
        plugin = "echo"
        needs = ["gen"]
        with = { message = "pin ${{ steps.gen.outputs.pin }} pw ${{ steps.gen.outputs.creds.password }}" }
        "#,
        &[],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report = ran.report();
    for name in ["pin", "creds", "keys"] {
        assert_eq!(step(&report, "gen")["outputs"][name], "***", "{report}");
    }
    let id = report["run_id"].as_str().unwrap();
    let show = orch.orch(&["runs", "show", id]);
    let store = orch.sqlite_store_text();
    for leak in ["48213977", "hunter2-Zq", "k-1-Secret", "77123"] {
        for (what, text) in [
            ("--json output", &ran.stdout),
            ("runs show", &show.stdout),
            ("the SQLite file", &store),
        ] {
            assert!(!text.contains(leak), "{leak} visible in {what}");
        }
    }
}

/// M2: an output named by `store_secret` is a secret even if the plugin did not mark it.
#[test]
fn an_output_kept_by_store_secret_never_reaches_the_run_store() {
    let secrets = tempfile::tempdir().unwrap();
    let orch = Orch::new().env("ORCH_SECRETS_DIR", secrets.path().to_str().unwrap());
    let ran = orch.run(
        r#"
        name = "m2"
        [steps.gen]
        plugin = "echo"
        with = { outputs = { token = "tok-Unmarked-123" } }
        store_secret = { token = "KEPT_TOKEN" }
        "#,
        &[],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(step(&ran.report(), "gen")["outputs"]["token"], "***");
    assert!(!ran.stdout.contains("tok-Unmarked-123"));
    assert!(!orch.sqlite_store_text().contains("tok-Unmarked-123"));
    let kept = orch.orch(&["secret", "get", "KEPT_TOKEN"]);
    assert_eq!(kept.stdout.trim(), "tok-Unmarked-123", "{}", kept.stderr);
}

/// M3: a malformed `.env` line is reported by its number, without the secret it holds.
#[test]
fn a_malformed_env_line_is_reported_without_its_secret() {
    let orch = Orch::new();
    orch.write(".env", "OK=1\nDB_PASSWORD=\"s3cr3t-Unterminated\n");
    let ran = orch.run(
        r#"
        name = "m3"
        [steps.a]
        plugin = "echo"
        with = { message = "${{ secrets.DB_PASSWORD }}" }
        "#,
        &[],
    );
    assert_eq!(ran.code, 2, "{}", ran.stdout);
    assert!(ran.stderr.contains("line 2"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("s3cr3t"), "{}", ran.stderr);
    assert!(!ran.stdout.contains("s3cr3t"), "{}", ran.stdout);
}

/// E1: `steps["x"]` gives a step only the steps it needs, never the real outputs of another
/// step that happened to finish first (with `--parallel 1`, `gen` runs before `spy`).
#[test]
fn indexing_steps_cannot_read_a_step_that_is_not_needed() {
    let orch = Orch::new();
    let ran = orch.run(
        r#"
        name = "e1"
        [steps.gen]
        plugin = "echo"
        with = { outputs = { password = "gen-Secret-E1" }, secret = ["password"] }
        [steps.mine]
        plugin = "echo"
        with = { outputs = { n = 7 } }
        [steps.reads_needed]
        plugin = "echo"
        needs = ["mine"]
        with = { outputs = { got = "${{ steps['mine'].outputs.n }}" } }
        [steps.spy]
        plugin = "echo"
        needs = ["mine"]
        with = { outputs = { got = "${{ steps['gen'].outputs.password }}" } }
        "#,
        &["--parallel", "1"],
    );
    assert_eq!(ran.code, 1, "spy must fail: {}", ran.stdout);
    let report = ran.report();
    assert_eq!(
        step(&report, "reads_needed")["outputs"]["got"],
        7,
        "{report}"
    );
    let spy = step(&report, "spy");
    assert_eq!(spy["status"], "failed", "{spy}");
    assert!(
        spy["error"]
            .as_str()
            .unwrap()
            .contains("cannot render `with`"),
        "{spy}"
    );
    assert!(!ran.stdout.contains("gen-Secret-E1"));
    assert!(!orch.sqlite_store_text().contains("gen-Secret-E1"));
}

/// X1: the run store, the secret store and the compiled-plugin cache are private to their
/// owner when orch creates them.
#[test]
fn the_stores_and_the_cache_are_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let (data, cache, secrets) = (
        base.path().join("data/orch"),
        base.path().join("cache/components"),
        base.path().join("secrets"),
    );
    let orch = Orch::new()
        .env(
            "ORCH_DATABASE_URL",
            &format!("sqlite://{}/orch.db", data.display()),
        )
        .env("ORCH_CACHE_DIR", cache.to_str().unwrap())
        .env("ORCH_SECRETS_DIR", secrets.to_str().unwrap());
    let ran = orch.run(
        "name = \"x1\"\n[steps.a]\nplugin = \"echo\"\nwith = { outputs = { t = \"v-long-enough\" } }\nstore_secret = { t = \"X1_TOKEN\" }\n",
        &[],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for dir in [&data, &cache, &secrets] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    assert_eq!(mode(&data.join("orch.db")), 0o600);
}

/// H1: a request routed to an http connection carries the base URL's host, not the
/// connection's name.
#[test]
fn a_routed_request_carries_the_upstream_host_not_the_connection_name() {
    let server = Server::start("httpbin.py", &[]);
    let orch = Orch::new();
    let ran = orch.run(
        &format!(
            r#"
            name = "h1"
            [connections.api]
            kind = "http"
            url = "http://127.0.0.1:{}/v1"
            [steps.fetch]
            plugin = "http"
            allow = ["api"]
            with = {{ url = "http://api/host" }}
            "#,
            server.port
        ),
        &[],
    );
    assert_eq!(ran.code, 0, "{}", ran.stdout);
    let body = step(&ran.report(), "fetch")["outputs"]["body"].clone();
    assert_eq!(body["host"], format!("127.0.0.1:{}", server.port), "{body}");
    assert_eq!(body["path"], "/v1/host");
}

/// H2: a hostile plugin's raw `..` (plain or percent-encoded) cannot climb out of the
/// connection's base path with its credentials.
#[test]
fn dot_segments_cannot_leave_a_connections_base_path() {
    let server = Server::start("httpbin.py", &[]);
    let orch = Orch::new().env("API_TOKEN", "tok-H2-secret");
    for path in ["/%2e%2e/whoami", "/../whoami"] {
        let ran = orch.run(
            &format!(
                r#"
                name = "h2"
                [connections.api]
                kind = "http"
                url = "http://127.0.0.1:{}/v1/inner"
                headers = {{ Authorization = "Bearer ${{{{ secrets.API_TOKEN }}}}" }}
                [steps.peek]
                plugin = "{}"
                allow = ["api"]
                with = {{ connection = "api", path = "{path}" }}
                "#,
                server.port,
                crate::harness::example("peek-token")
            ),
            &[],
        );
        assert_eq!(ran.code, 1, "{path}: {}", ran.stdout);
        let peek = step(&ran.report(), "peek").clone();
        assert!(
            peek["error"]
                .as_str()
                .unwrap()
                .contains("HttpRequestDenied"),
            "{path}: {peek}"
        );
    }
}

/// C1: cached compiled code runs unchecked, so a cache directory another user can write is
/// not used (compiled afresh, with a warning).
#[test]
fn a_component_cache_writable_by_others_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    let orch = Orch::new()
        .env("ORCH_CACHE_DIR", cache.path().to_str().unwrap())
        .env("ORCH_LOG", "warn");
    let workflow = "name = \"c1\"\n[steps.a]\nplugin = \"echo\"\n";
    let first = orch.run(workflow, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        !first.stderr.contains("component cache not used"),
        "{}",
        first.stderr
    );
    let cached = std::fs::read_dir(cache.path()).unwrap().count();
    assert!(cached > 0, "the first run filled the cache");
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let second = orch.run(workflow, &[]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stderr.contains("component cache not used")
            && second.stderr.contains("writable by others"),
        "{}",
        second.stderr
    );
}

/// T1: an input rendered into a connection's settings cannot redirect the connection (and its
/// credentials) to another host, port, user or query.
#[test]
fn an_input_cannot_redirect_a_connection() {
    let orch = Orch::new().env("PG_PASSWORD", "pw-T1-secret");
    let workflow = r#"
        name = "t1"
        [inputs.db]
        type = "string"
        [connections.pg]
        kind = "postgres"
        url = "postgres://etl:${{ secrets.PG_PASSWORD }}@127.0.0.1:1/${{ inputs.db }}"
        [steps.hello]
        plugin = "echo"
        with = { message = "db ${{ inputs.db }}" }
        "#;
    for attack in [
        "x?host=evil.example",
        "x@evil.example:5432/y",
        "../x",
        "x y",
    ] {
        let ran = orch.run(workflow, &["-i", &format!("db={attack}")]);
        assert_eq!(ran.code, 2, "{attack}: {}", ran.stdout);
        assert!(
            ran.stderr.contains("connection `pg`") && ran.stderr.contains("`db`"),
            "{attack}: {}",
            ran.stderr
        );
    }
    let ran = orch.run(workflow, &["-i", "db=datalab_2"]);
    assert_eq!(ran.code, 0, "a plain name still works: {}", ran.stderr);
}

/// K1: a consume call cannot hold a host thread for days: `timeout_ms` is bounded.
#[test]
fn a_consume_cannot_wait_longer_than_the_bound() {
    let bootstrap = std::env::var("ORCH_TEST_KAFKA").expect(
        "ORCH_TEST_KAFKA is not set: run `bash tests/services.sh start` and source its env file",
    );
    let orch = Orch::new().env("KAFKA_BOOTSTRAP", &bootstrap);
    let ran = orch.run(
        r#"
        name = "k1"
        [connections.kafka]
        kind = "kafka"
        bootstrap = "${{ env.KAFKA_BOOTSTRAP }}"
        [steps.wait]
        plugin = "kafka"
        allow = ["kafka"]
        with = { action = "consume", connection = "kafka", topic = "k1-none", group = "k1", timeout_ms = 4000000000 }
        "#,
        &[],
    );
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    let wait = step(&ran.report(), "wait").clone();
    assert!(
        wait["error"]
            .as_str()
            .unwrap()
            .contains("over the 600000 ms"),
        "{wait}"
    );
}

/// "Failures say why": a plugin that calls `exit` in `run` fails its step with that reason,
/// not with the first line of a wasm backtrace.
#[test]
fn a_plugin_that_exits_fails_its_step_saying_so() {
    let orch = Orch::new();
    let ran = orch.run(
        &format!(
            "name = \"exit\"\n[steps.quit]\nplugin = \"{}\"\nwith = {{ kind = \"exit\" }}\n",
            crate::harness::example("fail")
        ),
        &[],
    );
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    let quit = step(&ran.report(), "quit").clone();
    assert_eq!(
        quit["error"], "plugin exited with code 1 during `run` instead of returning",
        "{quit}"
    );
}

/// A plugin's `describe` is untrusted: a config schema whose `$ref`s loop is refused at once,
/// with the loop named, instead of being compiled (which ran past 8 GB before).
#[test]
fn a_self_referencing_config_schema_is_refused_by_validate() {
    let orch = Orch::new();
    let file = orch.write(
        "workflow.toml",
        &format!(
            "name = \"schema\"\n[steps.a]\nplugin = \"{}\"\n",
            crate::harness::example("recursive-schema")
        ),
    );
    let started = std::time::Instant::now();
    let ran = orch.orch(&["validate", file.to_str().unwrap()]);
    assert_eq!(ran.code, 2, "{}", ran.stdout);
    assert!(
        ran.stderr
            .contains("published a config schema orch will not compile: its `$ref`s loop"),
        "{}",
        ran.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// R2 (sockets) and the `tcp://` grant: without a grant a plugin cannot even create a socket;
/// with one it reaches that destination and no other (refused and audited).
#[test]
fn raw_tcp_reaches_only_granted_destinations() {
    let granted = crate::harness::hello_server();
    let other = crate::harness::hello_server();
    let orch = Orch::new();
    let run = |allow: &str, port: u16| {
        orch.run(
            &format!(
                "name = \"tcp\"\n[steps.dial]\nplugin = \"{}\"\nallow = [{allow}]\nwith = {{ addr = \"127.0.0.1:{port}\" }}\n",
                crate::harness::example("tcp-connect")
            ),
            &[],
        )
    };
    let ok = run(&format!("\"tcp://127.0.0.1:{granted}\""), granted);
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    let reply = step(&ok.report(), "dial")["outputs"]["reply"].clone();
    assert!(reply.as_str().unwrap().ends_with("hello"), "{reply}");

    let none = run("", granted);
    assert_eq!(none.code, 1, "{}", none.stdout);
    let refused = step(&none.report(), "dial").clone();
    assert!(
        refused["error"].as_str().unwrap().contains("connect"),
        "{refused}"
    );

    let elsewhere = run(&format!("\"tcp://127.0.0.1:{granted}\""), other);
    assert_eq!(elsewhere.code, 1, "{}", elsewhere.stdout);
    let denied = step(&elsewhere.report(), "dial").clone();
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .contains(&format!("tcp://127.0.0.1:{other}")),
        "{denied}"
    );
    let detail = orch.run_detail(elsewhere.report()["run_id"].as_str().unwrap());
    assert_eq!(detail["audit"][0]["action"], "tcp", "{detail}");
}

/// R2 (host resources): each handle a plugin keeps can pin host memory its own linear memory
/// does not show (a 30 KB header map for 4 bytes of guest memory). The host keeps a bounded
/// number per instance, and the step that wants more fails saying so.
#[test]
fn a_plugin_cannot_pin_host_memory_with_handles() {
    hoarding_stops_at_the_bound("bytes = 30000");
}

/// R2 for orch's own `wasi:clocks/monotonic-clock` (exact sleeps): each pending sleep is an
/// entry in the same bounded table, so a plugin that keeps subscribing fails saying so, and one
/// that keeps a few is fine.
#[test]
fn a_plugin_cannot_pin_host_memory_with_pending_sleeps() {
    hoarding_stops_at_the_bound("sleeps = true");
}

/// The `hoard` plugin (with `what` to keep) keeps 100 handles, and fails at the host's bound
/// when it asks for a million.
fn hoarding_stops_at_the_bound(what: &str) {
    let orch = Orch::new();
    let run = |count: u32| {
        orch.run(
            &format!(
                "name = \"hoard\"\n[steps.hoard]\nplugin = \"{}\"\nwith = {{ count = {count}, {what} }}\n",
                crate::harness::example("hoard")
            ),
            &[],
        )
    };
    let few = run(100);
    assert_eq!(few.code, 0, "{}", few.stdout);
    assert_eq!(step(&few.report(), "hoard")["outputs"]["kept"], 100);

    let many = run(1_000_000);
    assert_eq!(many.code, 1, "{}", many.stdout);
    let failed = step(&many.report(), "hoard").clone();
    assert_eq!(
        failed["error"], "held more than 2048 host resources (handles) at once",
        "{failed}"
    );
}

/// PL1: a plugin's `plan` has its step's grants but can change nothing: its SQL runs alone in a
/// read-only transaction (also when it smuggles a `COMMIT`), and POSTs, Kafka records and
/// Docker writes are denied, naming `plan`. The same writes go through in `run`.
#[test]
fn a_plan_cannot_change_anything() {
    let role = crate::harness::pg::unique("plan_role");
    let post_to = crate::harness::hello_server();
    let orch = Orch::new();
    let workflow = |with: &str| {
        format!(
            r#"
name = "plan-writes"
[connections.pg]
kind = "postgres"
url = "{pg}"
[connections.bus]
kind = "kafka"
bootstrap = "{kafka}"
[connections.docker]
kind = "docker"
host = "{docker}"
[steps.sneak]
plugin = "{plugin}"
allow = ["pg", "bus", "docker", "http://127.0.0.1:{post_to}"]
with = {{ {with} }}
"#,
            pg = crate::harness::pg::admin_url(),
            kafka = std::env::var("ORCH_TEST_KAFKA").expect("ORCH_TEST_KAFKA (tests/services.sh)"),
            docker = std::env::var("ORCH_TEST_DOCKER_HOST").expect("ORCH_TEST_DOCKER_HOST"),
            plugin = crate::harness::example("plan-writes"),
        )
    };
    let plan = |with: &str| {
        let file = orch.write("workflow.toml", &workflow(with));
        let planned = orch.orch(&["--json", "plan", file.to_str().unwrap()]);
        assert_eq!(planned.code, 1, "{}\n{}", planned.stdout, planned.stderr);
        // The step's error, and what it logged (a denial is logged with its reason).
        planned.stdout
    };
    let role_exists = || {
        crate::harness::pg::psql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"
        ))
    };

    let create = format!("postgres = [\"pg\", \"CREATE ROLE {role}\"]");
    let said = plan(&create);
    assert!(said.contains("read-only transaction"), "{said}");
    let smuggled = format!("postgres = [\"pg\", \"COMMIT; CREATE ROLE {role}\"]");
    let said = plan(&smuggled);
    assert!(said.contains("multiple commands"), "{said}");
    assert_eq!(role_exists(), "0", "no role after the plans");

    for (with, what) in [
        (
            "postgres_copy = [\"pg\", \"plan_copy\"]".to_string(),
            "may not run COPY … FROM STDIN during `plan`".to_string(),
        ),
        (
            format!("post = \"http://127.0.0.1:{post_to}/x\""),
            format!("may not send POST http://127.0.0.1:{post_to}/x during `plan`"),
        ),
        (
            "kafka = [\"bus\", \"plan-writes\"]".to_string(),
            "may not produce to topic `plan-writes` during `plan`".to_string(),
        ),
        (
            format!("docker = [\"docker\", \"{role}\"]"),
            format!("may not create volume `{role}` during `plan`"),
        ),
    ] {
        let said = plan(&with);
        assert!(said.contains(&what), "`{what}` not in: {said}");
    }

    // `run` may: the role exists afterwards.
    let ran = orch.run(&workflow(&create), &[]);
    assert_eq!(ran.code, 0, "{}", ran.stdout);
    assert_eq!(role_exists(), "1");
    crate::harness::pg::psql(&format!("DROP ROLE {role}"));
}

/// A plugin cannot poison masking: a secret of 7 characters (or made of orch's own words) is
/// refused, and a longer one it returns masks nothing in what the host writes about the steps
/// that could not have seen it (their audit rows keep `127.0.0.1`).
#[test]
fn a_plugin_cannot_make_the_host_hide_its_own_audit_rows() {
    let orch = Orch::new();
    let ran = orch.run(
        r#"
        name = "poison"
        [steps.poison]
        plugin = "echo"
        with = { outputs = { a = "127.0.0.1", b = "step may not reach" }, secret = ["a"] }
        [steps.probe]
        plugin = "http"
        with = { url = "http://127.0.0.1:9/" }
        "#,
        &[],
    );
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    let report = ran.report();
    assert_eq!(step(&report, "poison")["status"], "succeeded", "{report}");
    let detail = orch.run_detail(report["run_id"].as_str().unwrap());
    let row = &detail["audit"][0];
    assert_eq!(row["step"], "probe", "{detail}");
    assert_eq!(row["target"], "http://127.0.0.1:9", "{detail}");
    assert!(
        step(&report, "probe")["error"]
            .as_str()
            .unwrap()
            .contains("may not reach `http://127.0.0.1:9`"),
        "{report}"
    );

    for (value, why) in [
        ("may not", "has 7 characters"),
        (
            "step may not reach",
            "made of the words of orch's own messages",
        ),
    ] {
        let refused = orch.run(
            &format!(
                "name = \"poison\"\n[steps.poison]\nplugin = \"echo\"\nwith = {{ outputs = {{ a = \"{value}\" }}, secret = [\"a\"] }}\n"
            ),
            &[],
        );
        assert_eq!(refused.code, 1, "{}", refused.stdout);
        let error = step(&refused.report(), "poison")["error"].clone();
        assert!(
            error
                .as_str()
                .unwrap()
                .starts_with("output `a` is marked secret but")
                && error.as_str().unwrap().contains(why),
            "{error}"
        );
    }
}

/// F1: a granted directory swapped for a link after validation (here while an earlier step
/// runs) is refused at instantiation, not followed to whatever the link names.
#[test]
fn a_granted_directory_swapped_for_a_link_is_refused() {
    let orch = Orch::new();
    let data = orch.dir.path().join("data");
    let elsewhere = orch.dir.path().join("elsewhere");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let file = orch.write(
        "workflow.toml",
        r#"
        name = "f1"
        [steps.wait]
        plugin = "echo"
        with = { sleep_ms = 1500 }
        [steps.read]
        plugin = "echo"
        needs = ["wait"]
        allow = ["./data"]
        with = { message = "reading" }
        "#,
    );
    let mut running = orch.start(&["--json", "run", file.to_str().unwrap()]);
    running.wait_for_json(
        std::time::Duration::from_secs(30),
        "step `wait` started (the workflow was validated)",
        |v| v["event"] == "step_started" && v["step"] == "wait",
    );
    std::fs::remove_dir(&data).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &data).unwrap();
    let ran = running.finish();
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    let error = step(&ran.report(), "read")["error"].clone();
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("granted directory `data` changed since the workflow was validated"),
        "{error}"
    );
}

/// A huge log line: up to what one host call copies it is cut at 16 KiB and the step goes on;
/// past that the step fails saying what happened (not "error while executing at wasm
/// backtrace:").
#[test]
fn a_huge_log_line_is_cut_and_a_monstrous_one_fails_its_step_saying_why() {
    let orch = Orch::new();
    let run = |mib: u32| {
        orch.run(
            &format!(
                "name = \"big\"\n[steps.big]\nplugin = \"{}\"\nmemory = \"1GiB\"\nwith = {{ mib = {mib} }}\n",
                crate::harness::example("big-log")
            ),
            &[],
        )
    };
    let cut = run(2);
    assert_eq!(cut.code, 0, "{}", cut.stdout);
    let detail = orch.run_detail(cut.report()["run_id"].as_str().unwrap());
    let line = detail["logs"][0]["message"].as_str().unwrap();
    assert!(line.len() <= 16 * 1024 + 64, "{} bytes kept", line.len());

    let huge = run(200);
    assert_eq!(huge.code, 1, "{}", huge.stdout);
    assert_eq!(
        step(&huge.report(), "big")["error"],
        "sent more than 128.0 MiB to the host in one call: split it (a log line is cut at 16 KiB anyway)"
    );
}

/// R4: a plugin that never finishes describing itself gets a bounded time, then `orch
/// validate` refuses it saying so (it used to hang for ever).
#[test]
fn a_plugin_that_never_describes_itself_is_refused_in_bounded_time() {
    let orch = Orch::new();
    let file = orch.write(
        "workflow.toml",
        &format!(
            "name = \"slow\"\n[steps.s]\nplugin = \"{}\"\n",
            crate::harness::example("slow-describe")
        ),
    );
    let started = std::time::Instant::now();
    let checked = orch.orch(&["validate", file.to_str().unwrap()]);
    assert_ne!(checked.code, 0, "{}", checked.stdout);
    assert!(
        checked
            .stderr
            .contains("failed to describe itself: timed out after 10s during `describe`"),
        "{}",
        checked.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(40));
}

/// R5: plugins compile in a child process with a bounded address space (and are killed past
/// the compile timeout): a compile that needs more than its budget is refused with the reason,
/// and the same component within budget compiles and is cached.
#[test]
fn a_compile_past_its_memory_budget_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("components");
    let workflow = "name = \"c\"\n[steps.a]\nplugin = \"echo\"\nwith = { message = \"hi\" }\n";
    let starved = Orch::new()
        .env("ORCH_CACHE_DIR", cache_dir.to_str().unwrap())
        .env("ORCH_COMPILE_MEMORY", "1000000");
    let file = starved.write("workflow.toml", workflow);
    let refused = starved.orch(&["validate", file.to_str().unwrap()]);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused
            .stderr
            .contains("compiling `echo` needed more than 976.6 KiB of memory"),
        "{}",
        refused.stderr
    );
    let fed = Orch::new().env("ORCH_CACHE_DIR", cache_dir.to_str().unwrap());
    let ran = fed.run(workflow, &[]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let cached = std::fs::read_dir(&cache_dir).unwrap().count();
    assert_eq!(cached, 1, "the child's compile is cached");
}
