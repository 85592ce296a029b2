//! What survives: live logs over SSE, a `kill -9` mid-run, a graceful SIGTERM, reloading the
//! workflow directory.

use super::harness::{
    GREET, Serve, follow_log, token, trigger_run, wait_run_status, workflows_dir,
};
use crate::harness::http::{get, post_json, request};
use crate::harness::{Orch, Server, wait_for};
use serde_json::json;
use std::time::Duration;

#[test]
fn logs_of_a_live_run_stream_as_server_sent_events() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[(
            "slow.toml",
            r#"
            name = "slow"
            [steps.one]
            plugin = "echo"
            with = { message = "first line", sleep_ms = 700 }
            [steps.two]
            plugin = "echo"
            needs = ["one"]
            with = { message = "second line", sleep_ms = 700 }
            [steps.three]
            plugin = "echo"
            needs = ["two"]
            with = { message = "third line" }
            "#,
        )],
    );
    let tok = token(&orch, "t");
    let server = Serve::start(&orch, &[]);
    let id = trigger_run(&server, &tok, "slow");

    let events = follow_log(&server, &tok, &id);
    let logs: Vec<(i64, &str)> = events
        .iter()
        .filter(|(_, n, _)| n == "log")
        .map(|(at, _, d)| (*at, d["message"].as_str().unwrap()))
        .collect();
    let messages: Vec<&str> = logs.iter().map(|(_, m)| *m).collect();
    assert_eq!(
        messages,
        ["first line", "second line", "third line"],
        "{events:?}"
    );
    let (_, _, end) = events.last().unwrap();
    assert_eq!(end["status"], "succeeded");
    // Ordering, not a wall-clock gap: the lines logged before the last step had arrived while
    // the run was still going (the store's finish time, same clock).
    let finished_at = orch.run_detail(&id)["finished_at"].as_i64().unwrap();
    for (at, message) in &logs[..2] {
        assert!(
            *at < finished_at,
            "lines arrived live, not at the end: `{message}` at {at}, run finished at {finished_at}: {events:?}"
        );
    }
}

#[test]
fn a_run_killed_mid_way_resumes_without_rerunning_finished_steps() {
    let httpbin = Server::start("httpbin.py", &[]);
    let key = format!("k{}", std::process::id());
    let mut steps = String::new();
    for i in 1..=10 {
        let needs = if i == 1 {
            String::new()
        } else {
            format!("needs = [\"s{}\"]", i - 1)
        };
        steps.push_str(&format!(
            "[steps.s{i}]\nplugin = \"http\"\n{needs}\nallow = [\"http://127.0.0.1:{port}\"]\nwith = {{ url = \"{url}\" }}\n",
            port = httpbin.port,
            url = httpbin.url(&format!("/delay?key={key}-s{i}&ms=300")),
        ));
    }
    let orch = Orch::new();
    workflows_dir(&orch, &[("ten.toml", &format!("name = \"ten\"\n{steps}"))]);
    let tok = token(&orch, "t");
    let mut server = Serve::start(&orch, &[]);
    let id = trigger_run(&server, &tok, "ten");
    let count = |step: u32| -> i64 {
        let r = request(
            "GET",
            &httpbin.url(&format!("/count?key={key}-s{step}")),
            None,
            &[],
            b"",
        );
        r.json()["count"].as_i64().unwrap()
    };
    // Kill while s4's request is in flight (the server holds it 300 ms).
    wait_for(Duration::from_secs(60), "step s4 in flight", || {
        (count(4) >= 1).then_some(())
    });
    server.kill9();
    let before = orch.run_detail(&id);
    assert_eq!(
        before["status"], "running",
        "the kill left the run unfinished"
    );

    let _server = Serve::start(&orch, &[]);
    let after = wait_run_status(&orch, &id, "succeeded", Duration::from_secs(60));
    for i in 1..=10 {
        let expected = if i == 4 { 2 } else { 1 };
        assert_eq!(count(i), expected, "side effects of s{i}: {after}");
    }
    let attempts = |step: &str| -> Vec<(i64, String)> {
        after["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"] == step)
            .map(|s| {
                (
                    s["attempt"].as_i64().unwrap(),
                    s["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        attempts("s4"),
        [(1, "interrupted".to_string()), (2, "succeeded".to_string())]
    );
    for done in ["s1", "s2", "s3", "s5", "s10"] {
        assert_eq!(attempts(done), [(1, "succeeded".to_string())], "{done}");
    }
}

#[test]
fn sigterm_lets_running_steps_finish_and_the_rest_resumes() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[(
            "two.toml",
            r#"
            name = "two"
            [steps.long]
            plugin = "echo"
            with = { message = "working", sleep_ms = 1500 }
            [steps.after]
            plugin = "echo"
            needs = ["long"]
            with = { message = "after" }
            "#,
        )],
    );
    let tok = token(&orch, "t");
    let mut server = Serve::start(&orch, &["--grace", "10s"]);
    let id = trigger_run(&server, &tok, "two");
    wait_for(Duration::from_secs(30), "step long running", || {
        let d = get(&server.url(&format!("/api/v1/runs/{id}")), &tok).json();
        (d["steps"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["step"] == "long" && s["status"] == "running")
        }))
        .then_some(())
    });
    assert_eq!(server.sigterm(Duration::from_secs(15)), 0);
    assert!(server.stderr().contains("stopping"), "{}", server.stderr());
    let stopped = orch.run_detail(&id);
    assert_eq!(stopped["status"], "interrupted", "{stopped}");
    let steps = stopped["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "`after` did not start: {steps:?}");
    assert_eq!(steps[0]["status"], "succeeded", "the running step finished");

    let _server = Serve::start(&orch, &[]);
    let done = wait_run_status(&orch, &id, "succeeded", Duration::from_secs(30));
    let steps = done["steps"].as_array().unwrap();
    assert_eq!(
        steps.iter().filter(|s| s["step"] == "long").count(),
        1,
        "not run again"
    );
    assert!(
        steps
            .iter()
            .any(|s| s["step"] == "after" && s["status"] == "succeeded")
    );
}

#[test]
fn invalid_files_are_reported_and_not_served_and_changes_reload() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[
            ("good.toml", GREET),
            (
                "bad.toml",
                "name = \"bad\"\n[steps.x]\nplugin = \"echo\"\nwtih = {}\n",
            ),
        ],
    );
    let tok = token(&orch, "t");
    let server = Serve::start(&orch, &[]);
    let stderr = server.stderr();
    assert!(
        stderr.contains("not serving") && stderr.contains("bad.toml:4:1"),
        "{stderr}"
    );
    let listed = get(&server.url("/api/v1/workflows"), &tok).json();
    assert_eq!(listed["workflows"].as_array().unwrap().len(), 1);
    assert_eq!(listed["workflows"][0]["name"], "greet");
    assert_eq!(listed["workflows"][0]["inputs"]["name"]["required"], true);
    assert!(
        listed["rejected"][0]["errors"]
            .as_str()
            .unwrap()
            .contains("wtih")
    );

    orch.write(
        "wf/bad.toml",
        "name = \"bad\"\n[steps.x]\nplugin = \"echo\"\nwith = {}\n",
    );
    wait_for(
        Duration::from_secs(20),
        "the fixed file to be served",
        || {
            let listed = get(&server.url("/api/v1/workflows"), &tok).json();
            (listed["workflows"].as_array().unwrap().len() == 2
                && listed["rejected"].as_array().unwrap().is_empty())
            .then_some(())
        },
    );
    std::fs::remove_file(orch.dir.path().join("wf/good.toml")).unwrap();
    wait_for(
        Duration::from_secs(20),
        "the removed file to stop being served",
        || {
            let r = post_json(
                &server.url("/api/v1/workflows/greet/runs"),
                Some(&tok),
                &json!({"inputs": {"name": "x"}}),
            );
            (r.status == 404).then_some(())
        },
    );
}
