//! The HTTP API: triggering runs with tokens and inputs, webhooks, the OpenAPI document and
//! metrics, cancelling a run.

use super::harness::{
    GREET, Serve, per_second, runs, ticks, token, trigger_run, wait_run_status, workflows_dir,
};
use crate::harness::http::{get, post_json, request, sign};
use crate::harness::{Orch, now_ms, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

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
    let strict = r#"
            name = "strict"
            [webhook]
            secret = "HOOK_SECRET"
            [steps.show]
            plugin = "echo"
            "#;
    workflows_dir(
        &orch,
        &[
            ("strict.toml", strict),
            (
                "hook.toml",
                r#"
            name = "hook"
            [inputs.branch]
            type = "string"
            required = true
            [webhook]
            secret = "HOOK_SECRET"
            inputs = { branch = "ref" }
            require_timestamp = false    # Gitea-style deliveries
            [steps.show]
            plugin = "echo"
            with = { outputs = { branch = "${{ inputs.branch }}" } }
            "#,
            ),
        ],
    );
    let server = Serve::start(&orch, &["--max-body", "2048"]);
    let url = server.url("/api/v1/webhooks/hook");
    let body = br#"{"ref":"refs/heads/main","after":"abc"}"#;
    let signed = |body: &[u8], delivery: &str| {
        vec![
            ("X-Hub-Signature-256", sign(b"whsec-8d1e", body)),
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
    wrong_key[0].1 = sign(b"guess", body);
    assert_eq!(request("POST", &url, None, &wrong_key, body).status, 401);
    let unsigned = [("X-Gitea-Delivery", "d-4".to_string())];
    assert_eq!(request("POST", &url, None, &unsigned, body).status, 401);
    let mut stale = signed(body, "d-5");
    let old = now_ms() / 1000 - 3600;
    let mut msg = format!("{old}.").into_bytes();
    msg.extend_from_slice(body);
    stale[0].1 = sign(b"whsec-8d1e", &msg);
    stale.push(("X-Webhook-Timestamp", old.to_string()));
    let stale = request("POST", &url, None, &stale, body);
    assert_eq!(stale.status, 401);
    assert!(stale.body.contains("stale"), "{}", stale.body);
    // By default a webhook takes only timestamped deliveries (S3: no replay under a new id).
    let strict_url = server.url("/api/v1/webhooks/strict");
    let untimed = request("POST", &strict_url, None, &signed(body, "d-7"), body);
    assert_eq!(untimed.status, 401, "{}", untimed.body);
    assert!(
        untimed.body.contains("missing x-webhook-timestamp"),
        "{}",
        untimed.body
    );
    let now = now_ms() / 1000;
    let mut timed = signed(body, "d-8");
    let mut msg = format!("{now}.").into_bytes();
    msg.extend_from_slice(body);
    timed[0].1 = sign(b"whsec-8d1e", &msg);
    timed.push(("X-Webhook-Timestamp", now.to_string()));
    let accepted = request("POST", &strict_url, None, &timed, body);
    assert_eq!(accepted.status, 202, "{}", accepted.body);
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
        2,
        "only the valid deliveries recorded a run"
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
    let anonymous = request("GET", &server.url("/metrics"), None, &[], b"");
    assert_eq!(
        anonymous.status, 401,
        "metrics name workflows: a token is needed"
    );
    assert!(!anonymous.body.contains("tick"), "{}", anonymous.body);
    let metrics = request("GET", &server.url("/metrics"), Some(&tok), &[], b"");
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
    let asked_at = now_ms();
    let cancel = post_json(
        &server.url(&format!("/api/v1/runs/{id}/cancel")),
        Some(&tok),
        &json!({}),
    );
    assert_eq!(cancel.status, 202, "{}", cancel.body);
    assert_eq!(cancel.json()["status"], "cancelling");
    let run = wait_run_status(&orch, &id, "cancelled", Duration::from_secs(10));
    // Timed by the store's records, not by this test's polling of them: the step ended
    // before its 5 s sleep did, and soon after the request.
    let wait = &run["steps"][0];
    let (started, ended) = (
        wait["started_at"].as_i64().unwrap(),
        wait["finished_at"].as_i64().unwrap(),
    );
    assert!(
        ended - started < 5000 && ended - asked_at < 4000,
        "the step was stopped, not awaited: it ran {} ms, {} ms of them after the request",
        ended - started,
        ended - asked_at
    );
    assert_eq!(run["steps"][0]["status"], "cancelled");
    let again = post_json(
        &server.url(&format!("/api/v1/runs/{id}/cancel")),
        Some(&tok),
        &json!({}),
    );
    assert_eq!(again.status, 409, "{}", again.body);
}

/// S2: a client that opens connections and never finishes its headers is cut off after the
/// header timeout, and meanwhile the server answers others.
#[test]
fn slow_clients_are_cut_off_and_do_not_stop_the_server() {
    use std::io::{Read, Write};
    let orch = Orch::new();
    workflows_dir(&orch, &[]);
    let server = Serve::start(&orch, &[]);
    let addr = server.url("").trim_start_matches("http://").to_string();
    let mut slow: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    // A webhook delivery (unauthenticated) whose body trickles in is cut off too.
    let mut trickle = std::net::TcpStream::connect(&addr).unwrap();
    trickle
        .write_all(
            b"POST /api/v1/webhooks/hook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
        )
        .unwrap();
    assert_eq!(get(&server.url("/healthz"), "").json()["status"], "ok");
    let started = std::time::Instant::now();
    let mut first = slow.remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let read = first.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        read.is_ok() && waited >= Duration::from_secs(5) && waited < Duration::from_secs(25),
        "closed after {waited:?}: {read:?}"
    );
    trickle
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    let _ = trickle.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// R4: a served workflow whose plugin never describes itself is rejected at load, and the
/// server starts and serves the others.
#[test]
fn a_plugin_that_never_describes_itself_does_not_keep_the_server_from_serving() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[
            (
                "slow.toml",
                &format!(
                    "name = \"slow\"\n[steps.s]\nplugin = \"{}\"\n",
                    crate::harness::example("slow-describe")
                ),
            ),
            ("tick.toml", &per_second("tick", "", "message = \"t\"")),
        ],
    );
    let tok = token(&orch, "t");
    let server = Serve::start(&orch, &[]);
    let listed = get(&server.url("/api/v1/workflows"), &tok).json();
    assert_eq!(listed["workflows"][0]["name"], "tick", "{listed}");
    let rejected = listed["rejected"].to_string();
    assert!(
        rejected.contains("timed out after 10s during `describe`"),
        "{rejected}"
    );
}

/// `orch serve` enforces a lock that exists: a plugin file changed since `orch lock` (here
/// into one that imports wasi:http) is not served, and the reason names the command to run.
#[test]
fn serve_refuses_a_plugin_that_differs_from_the_lock() {
    let orch = Orch::new();
    let plugin = orch.dir.path().join("wf/p.wasm");
    workflows_dir(
        &orch,
        &[
            (
                "probe.toml",
                "name = \"probe\"\n[steps.p]\nplugin = \"p.wasm\"\nwith = { url = \"http://127.0.0.1:9/\" }\n",
            ),
            ("tick.toml", &per_second("tick", "", "message = \"t\"")),
        ],
    );
    std::fs::copy(crate::harness::example("echo-config"), &plugin).unwrap();
    let locked = orch.orch(&["lock", orch.dir.path().join("wf").to_str().unwrap()]);
    assert_eq!(locked.code, 0, "{}", locked.stderr);
    std::fs::copy(crate::harness::example("http-get"), &plugin).unwrap();
    let tok = token(&orch, "t");
    let server = Serve::start(&orch, &[]);
    let listed = get(&server.url("/api/v1/workflows"), &tok).json();
    assert_eq!(listed["workflows"][0]["name"], "tick", "{listed}");
    let rejected = listed["rejected"].to_string();
    assert!(
        rejected.contains("not in orch.lock") && rejected.contains("orch lock --upgrade"),
        "{rejected}"
    );
}

/// Containers of workflow `workflow`'s `docker` connection on the test podman engine.
fn job_containers(workflow: &str) -> Vec<String> {
    crate::docker::block(async {
        let docker = crate::docker::engine();
        let owner = format!("orch.connection={workflow}/docker");
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(std::collections::HashMap::from([(
                "label".to_string(),
                vec![owner],
            )])),
            ..Default::default()
        };
        crate::docker::settled(|| docker.list_containers(Some(options.clone())))
            .await
            .into_iter()
            .flat_map(|c| c.names.unwrap_or_default())
            .collect()
    })
}

#[test]
fn cancelling_a_run_removes_its_running_container_job() {
    let orch = Orch::new();
    let workflow = crate::harness::unique("ctr-cancel").replace('_', "-");
    workflows_dir(
        &orch,
        &[(
            "job.toml",
            &format!(
                "name = \"{workflow}\"\n[connections.docker]\nkind = \"docker\"\nhost = \"${{{{ env.DOCKER_HOST }}}}\"\nimages = [\"localhost/*\"]\n[steps.long]\nplugin = \"container\"\nallow = [\"docker\"]\nwith = {{ connection = \"docker\", image = \"{}\", script = [\"echo started\", \"sleep 300\"] }}\n",
                crate::docker::image()
            ),
        )],
    );
    let tok = token(&orch, "t");
    let server = Serve::start_with(
        &orch,
        &[],
        &[("DOCKER_HOST", &crate::docker::docker_host())],
    );
    let id = trigger_run(&server, &tok, &workflow);
    wait_for(Duration::from_secs(60), "the job container", || {
        (!job_containers(&workflow).is_empty()).then_some(())
    });
    let cancel = post_json(
        &server.url(&format!("/api/v1/runs/{id}/cancel")),
        Some(&tok),
        &json!({}),
    );
    assert_eq!(cancel.status, 202, "{}", cancel.body);
    wait_run_status(&orch, &id, "cancelled", Duration::from_secs(30));
    // Removed by the host when the cancelled step dropped its engine handle.
    wait_for(Duration::from_secs(30), "the job container to go", || {
        job_containers(&workflow).is_empty().then_some(())
    });
}
