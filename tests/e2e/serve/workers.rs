//! Several `orch serve` workers on one PostgreSQL store: steps routed by `runs_on`, a fan-out
//! shared, a worker killed or stopped mid-step (its step taken over within one lease, its late
//! result refused by the fence), PostgreSQL restarted under load, one scheduler. Real
//! processes, the project's PostgreSQL (and a private cluster where a test restarts it).

use super::harness::{
    Serve, follow_log, per_second, ticks, token, trigger_run, wait_run_status, workflows_dir,
};
use crate::harness::pg::{PrivatePg, new_database};
use crate::harness::{Orch, now_ms, signal, wait_for};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// A sandbox whose store is a new database on the project's PostgreSQL.
fn pg_orch() -> Orch {
    let mut orch = Orch::new();
    orch.database_url = new_database("workers");
    orch
}

/// The process id in a worker id (`host-PID-xxxx`).
fn pid_of(worker: &Value) -> u32 {
    let id = worker
        .as_str()
        .unwrap_or_else(|| panic!("no worker: {worker}"));
    id.rsplit('-').nth(1).unwrap().parse().unwrap()
}

/// `(attempt, status, worker pid)` of every attempt of `step`, in order.
fn attempts(detail: &Value, step: &str) -> Vec<(i64, String, u32)> {
    let mut all: Vec<(i64, String, u32)> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == step)
        .map(|s| {
            (
                s["attempt"].as_i64().unwrap(),
                s["status"].as_str().unwrap().to_string(),
                pid_of(&s["worker"]),
            )
        })
        .collect();
    all.sort();
    all
}

/// The worker running `step` of run `id` (its attempt `attempt` is `running`).
fn running_on(orch: &Orch, id: &str, step: &str, attempt: i64) -> (u32, i64) {
    wait_for(
        Duration::from_secs(60),
        &format!("{step} #{attempt} running"),
        || {
            let d = orch.run_detail(id);
            d["steps"].as_array()?.iter().find_map(|s| {
                (s["step"] == step && s["attempt"] == attempt && s["status"] == "running")
                    .then(|| (pid_of(&s["worker"]), s["started_at"].as_i64().unwrap()))
            })
        },
    )
}

const ROUTED: &str = r#"
name = "routed"
[steps.anywhere]
plugin = "echo"
with = { message = "any worker" }
[steps.on_gpu]
plugin = "echo"
runs_on = ["gpu"]
needs = ["anywhere"]
with = { message = "gpu worker" }
[steps.on_docker]
plugin = "echo"
runs_on = ["docker"]
needs = ["anywhere"]
with = { message = "docker worker" }
[steps.after]
plugin = "echo"
needs = ["on_gpu", "on_docker"]
with = { message = "done" }
"#;

const NOPE: &str = r#"
name = "nope"
[steps.needs_nope]
plugin = "echo"
runs_on = ["nope"]
with = { message = "never" }
"#;

#[test]
fn three_workers_route_steps_by_label_and_a_step_no_worker_can_run_says_why() {
    let orch = pg_orch();
    workflows_dir(&orch, &[("routed.toml", ROUTED), ("nope.toml", NOPE)]);
    let tok = token(&orch, "t");
    let plain = Serve::start(&orch, &[]);
    let gpu = Serve::start(&orch, &["--worker-labels", "gpu"]);
    let docker = Serve::start(&orch, &["--worker-labels", "docker"]);
    let all = [plain.pid(), gpu.pid(), docker.pid()];

    let ids: Vec<String> = (0..4)
        .map(|_| trigger_run(&plain, &tok, "routed"))
        .collect();
    for id in &ids {
        let d = wait_run_status(&orch, id, "succeeded", Duration::from_secs(60));
        assert_eq!(attempts(&d, "on_gpu")[0].2, gpu.pid(), "{d}");
        assert_eq!(attempts(&d, "on_docker")[0].2, docker.pid(), "{d}");
        for step in ["anywhere", "after"] {
            let ran = attempts(&d, step);
            assert_eq!(ran.len(), 1, "{step} ran once: {d}");
            assert!(all.contains(&ran[0].2), "{step} ran on one of the workers");
        }
    }

    let id = trigger_run(&gpu, &tok, "nope");
    let waiting = wait_for(Duration::from_secs(30), "the step reported waiting", || {
        let d = orch.run_detail(&id);
        d["waiting"].as_array().filter(|w| !w.is_empty()).cloned()
    });
    assert_eq!(waiting[0]["step"], "needs_nope");
    assert_eq!(waiting[0]["missing"], serde_json::json!(["nope"]));
    let reason = waiting[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("waiting for a worker with `nope`: no live worker has `nope`"),
        "{reason}"
    );
    for labels in ["{gpu}", "{docker}", "{}"] {
        assert!(
            reason.contains(labels),
            "the live workers' labels are listed: {reason}"
        );
    }
    assert_eq!(orch.run_detail(&id)["status"], "running");
    let shown = orch.orch(&["runs", "show", &id]);
    assert!(
        shown
            .stdout
            .contains("waiting needs_nope: waiting for a worker with `nope`"),
        "{}",
        shown.stdout
    );
    // The same answer over the API of any worker.
    let api = crate::harness::http::request(
        "GET",
        &docker.url(&format!("/api/v1/runs/{id}")),
        Some(&tok),
        &[],
        b"",
    );
    assert_eq!(
        api.json()["waiting"][0]["missing"][0],
        "nope",
        "{}",
        api.body
    );

    let listed = orch.orch(&["--json", "workers", "list"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let workers: Vec<Value> = serde_json::from_str(&listed.stdout).unwrap();
    let labels: BTreeSet<String> = workers
        .iter()
        .filter(|w| w["stopped_at"].is_null())
        .map(|w| w["labels"].to_string())
        .collect();
    assert_eq!(
        labels,
        BTreeSet::from(["[\"docker\"]".into(), "[\"gpu\"]".into(), "[]".into()])
    );
    let text = orch.orch(&["workers", "list"]).stdout;
    assert_eq!(text.matches("alive").count(), 3, "{text}");

    // `orch validate` knows which labels the workers have had.
    let checked = orch.orch(&["validate", "wf/nope.toml", "wf/routed.toml"]);
    assert_eq!(
        checked.code, 0,
        "a warning, not an error: {}",
        checked.stderr
    );
    assert!(
        checked
            .stderr
            .contains("step `needs_nope` runs on `nope`, but no worker had `nope` in the last day"),
        "{}",
        checked.stderr
    );
    assert!(checked.stderr.contains("orch serve --worker-labels nope"));
    assert!(
        !checked.stderr.contains("on_gpu"),
        "gpu is served: {}",
        checked.stderr
    );
}

#[test]
fn a_second_server_on_one_sqlite_file_is_refused_with_the_way_out() {
    let orch = Orch::new();
    workflows_dir(&orch, &[("nope.toml", NOPE)]);
    let _first = Serve::start(&orch, &[]);
    let second = orch.orch(&["serve", "--workflows", "wf", "--bind", "127.0.0.1:0"]);
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("another `orch serve` already uses the SQLite store"),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains("--database-url postgres://"),
        "{}",
        second.stderr
    );
}

#[test]
fn a_thousand_step_fan_out_runs_every_step_once_and_every_worker_takes_some() {
    let orch = pg_orch();
    let mut wf = String::from("name = \"fan\"\n");
    for i in 0..1000 {
        wf.push_str(&format!(
            "[steps.s{i}]\nplugin = \"echo\"\nwith = {{ message = \"{i}\" }}\n"
        ));
    }
    workflows_dir(&orch, &[("fan.toml", &wf)]);
    let tok = token(&orch, "t");
    let workers = [
        Serve::start(&orch, &[]),
        Serve::start(&orch, &[]),
        Serve::start(&orch, &[]),
    ];
    let id = trigger_run(&workers[0], &tok, "fan");
    let d = wait_run_status(&orch, &id, "succeeded", Duration::from_secs(180));
    let steps = d["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1000, "one attempt per step");
    let mut per_worker: HashMap<u32, usize> = HashMap::new();
    let mut seen = BTreeSet::new();
    for s in steps {
        assert_eq!(
            (s["attempt"].as_i64(), s["status"].as_str()),
            (Some(1), Some("succeeded"))
        );
        assert!(
            seen.insert(s["step"].as_str().unwrap().to_string()),
            "ran twice: {s}"
        );
        *per_worker.entry(pid_of(&s["worker"])).or_default() += 1;
    }
    for w in &workers {
        assert!(
            per_worker.get(&w.pid()).is_some_and(|n| *n > 0),
            "every worker took work: {per_worker:?}"
        );
    }
}

/// A long step, then one more.
const LONG: &str = r#"
name = "long"
[steps.long]
plugin = "echo"
with = { message = "working", sleep_ms = 3000 }
[steps.after]
plugin = "echo"
needs = ["long"]
with = { message = "after" }
"#;

#[test]
fn a_worker_killed_mid_step_has_it_taken_over_within_one_lease() {
    let orch = pg_orch();
    workflows_dir(&orch, &[("long.toml", LONG)]);
    let tok = token(&orch, "t");
    let lease = ["--lease", "3s"];
    let mut workers = [Serve::start(&orch, &lease), Serve::start(&orch, &lease)];
    let id = trigger_run(&workers[0], &tok, "long");
    let (victim, _) = running_on(&orch, &id, "long", 1);
    let i = workers.iter().position(|w| w.pid() == victim).unwrap();
    workers[i].kill9();
    let killed_at = now_ms();
    let survivor = workers[1 - i].pid();

    let d = wait_run_status(&orch, &id, "succeeded", Duration::from_secs(60));
    let long = attempts(&d, "long");
    assert_eq!(
        long,
        [
            (1, "interrupted".to_string(), victim),
            (2, "succeeded".to_string(), survivor)
        ],
        "{d}"
    );
    let second = d["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "long" && s["attempt"] == 2)
        .unwrap();
    let taken_over = second["started_at"].as_i64().unwrap() - killed_at;
    assert!(
        taken_over <= 3000 + 1000,
        "re-claimed {taken_over} ms after the kill: within one lease (3 s) + 1 s"
    );
    assert!(
        d["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] != "running"),
        "no attempt left running: {d}"
    );
}

#[test]
fn a_stopped_worker_past_its_lease_has_its_late_result_refused() {
    let orch = pg_orch();
    workflows_dir(&orch, &[("long.toml", LONG)]);
    let tok = token(&orch, "t");
    let lease = ["--lease", "2s"];
    let workers = [Serve::start(&orch, &lease), Serve::start(&orch, &lease)];
    let id = trigger_run(&workers[0], &tok, "long");
    let (stale, _) = running_on(&orch, &id, "long", 1);
    signal(stale, "STOP");
    let other = workers.iter().find(|w| w.pid() != stale).unwrap();
    // The other worker takes the step over once the lease runs out...
    let (taker, _) = running_on(&orch, &id, "long", 2);
    assert_eq!(taker, other.pid());
    // ...and the stale worker wakes up while attempt 2 still runs, its own step long done.
    std::thread::sleep(Duration::from_millis(1500));
    signal(stale, "CONT");
    let stale_worker = workers.iter().find(|w| w.pid() == stale).unwrap();
    wait_for(
        Duration::from_secs(20),
        "the stale worker to say it lost the lease",
        || {
            stale_worker
                .stderr()
                .contains("lost the lease")
                .then_some(())
        },
    );
    let d = wait_run_status(&orch, &id, "succeeded", Duration::from_secs(60));
    assert_eq!(
        attempts(&d, "long"),
        [
            (1, "interrupted".to_string(), stale),
            (2, "succeeded".to_string(), taker)
        ],
        "the store holds the other worker's attempt as the result: {d}"
    );
    assert_eq!(attempts(&d, "after").len(), 1, "`after` ran once: {d}");
}

#[test]
fn postgres_restarted_under_load_loses_no_run() {
    let pg = PrivatePg::start(false);
    let mut orch = Orch::new();
    orch.database_url = pg.url();
    let mut chain = String::from("name = \"chain\"\n");
    for i in 0..5 {
        let needs = if i == 0 {
            String::new()
        } else {
            format!("needs = [\"s{}\"]\n", i - 1)
        };
        chain.push_str(&format!(
            "[steps.s{i}]\nplugin = \"echo\"\n{needs}with = {{ message = \"{i}\", sleep_ms = 200 }}\n"
        ));
    }
    workflows_dir(&orch, &[("chain.toml", &chain)]);
    let tok = token(&orch, "t");
    let workers = [Serve::start(&orch, &[]), Serve::start(&orch, &[])];
    let ids: Vec<String> = (0..12)
        .map(|i| trigger_run(&workers[i % 2], &tok, "chain"))
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    pg.restart();
    for id in &ids {
        let d = wait_run_status(&orch, id, "succeeded", Duration::from_secs(120));
        for i in 0..5 {
            let ran = attempts(&d, &format!("s{i}"));
            let statuses: Vec<&str> = ran.iter().map(|a| a.1.as_str()).collect();
            // At most the attempt in flight during the restart runs again.
            assert!(
                statuses == ["succeeded"] || statuses == ["interrupted", "succeeded"],
                "s{i} of {id}: {statuses:?}"
            );
        }
    }
}

#[test]
fn two_workers_fire_each_of_sixty_per_second_ticks_once() {
    let orch = pg_orch();
    workflows_dir(
        &orch,
        &[("tick.toml", &per_second("tick", "", "message = \"tick\""))],
    );
    let _a = Serve::start(&orch, &[]);
    let _b = Serve::start(&orch, &[]);
    let fired = wait_for(Duration::from_secs(120), "60 ticks", || {
        let t = ticks(&orch, "tick");
        (t.len() >= 61).then_some(t)
    });
    let fire_times: Vec<i64> = fired
        .iter()
        .map(|t| t["fire_at"].as_i64().unwrap())
        .collect();
    let unique: BTreeSet<i64> = fire_times.iter().copied().collect();
    assert_eq!(unique.len(), fire_times.len(), "no tick recorded twice");
    for pair in fire_times.windows(2) {
        assert_eq!(pair[1] - pair[0], 1000, "no tick skipped: {fire_times:?}");
    }
    let mut runs_per_tick: BTreeMap<String, usize> = BTreeMap::new();
    for t in &fired {
        assert_eq!(t["outcome"], "fired", "{t}");
        *runs_per_tick
            .entry(t["run_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(runs_per_tick.values().all(|n| *n == 1), "one run per tick");
    let runs = super::harness::runs(&orch);
    let tick_runs: BTreeSet<&str> = runs
        .iter()
        .filter(|r| r["workflow"] == "tick")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for t in &fired {
        assert!(tick_runs.contains(t["run_id"].as_str().unwrap()));
    }
}

#[test]
fn a_need_whose_secret_outputs_died_with_the_server_runs_again_first() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[(
            "secret.toml",
            r#"
            name = "secret"
            [steps.mint]
            plugin = "echo"
            with = { outputs = { token = "tok-${{ run.id }}" }, secret = ["token"] }
            [steps.slow]
            plugin = "echo"
            with = { message = "slow", sleep_ms = 1500 }
            [steps.use]
            plugin = "echo"
            needs = ["mint", "slow"]
            with = { message = "using ${{ steps.mint.outputs.token }}" }
            "#,
        )],
    );
    let tok = token(&orch, "t");
    let mut server = Serve::start(&orch, &[]);
    let id = trigger_run(&server, &tok, "secret");
    running_on(&orch, &id, "slow", 1);
    let minted = wait_for(Duration::from_secs(30), "mint done", || {
        let d = orch.run_detail(&id);
        (attempts(&d, "mint").first().map(|a| a.1.as_str()) == Some("succeeded")).then_some(d)
    });
    assert!(
        minted["steps"].to_string().contains("***"),
        "secret outputs are not stored: {minted}"
    );
    server.kill9();

    let _server = Serve::start(&orch, &[]);
    let d = wait_run_status(&orch, &id, "succeeded", Duration::from_secs(60));
    let mint: Vec<String> = attempts(&d, "mint").into_iter().map(|a| a.1).collect();
    assert_eq!(
        mint,
        ["succeeded", "succeeded"],
        "mint ran again for its secret: {d}"
    );
    let using: Vec<String> = attempts(&d, "use").into_iter().map(|a| a.1).collect();
    assert_eq!(using, ["interrupted", "succeeded"], "{d}");
    let log: Vec<&str> = d["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["step"] == "use")
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        log,
        ["using ***"],
        "the real token reached `use`, masked in its log: {d}"
    );
}

#[test]
fn a_log_followed_live_misses_no_line_of_steps_ending_out_of_order_on_two_workers() {
    let orch = pg_orch();
    let mut wf = String::from("name = \"lines\"\n");
    for i in 0..12 {
        wf.push_str(&format!(
            "[steps.s{i}]\nplugin = \"echo\"\nwith = {{ message = \"line {i}\", sleep_ms = {} }}\n",
            (11 - i) % 4 * 300
        ));
    }
    workflows_dir(&orch, &[("lines.toml", &wf)]);
    let tok = token(&orch, "t");
    let workers = [Serve::start(&orch, &[]), Serve::start(&orch, &[])];
    let id = trigger_run(&workers[0], &tok, "lines");
    let events = follow_log(&workers[1], &tok, &id);
    let streamed: BTreeSet<String> = events
        .iter()
        .filter(|(_, n, _)| n == "log")
        .map(|(_, _, d)| d["message"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = (0..12).map(|i| format!("line {i}")).collect();
    assert_eq!(streamed, expected, "{events:?}");
    assert_eq!(events.last().unwrap().2["status"], "succeeded");
}

#[test]
fn a_cancel_through_one_worker_stops_the_step_running_on_another() {
    let orch = pg_orch();
    workflows_dir(
        &orch,
        &[(
            "slow.toml",
            "name = \"slow\"\n[steps.wait]\nplugin = \"echo\"\nwith = { sleep_ms = 8000 }\n",
        )],
    );
    let tok = token(&orch, "t");
    let lease = ["--lease", "3s"];
    let workers = [Serve::start(&orch, &lease), Serve::start(&orch, &lease)];
    let id = trigger_run(&workers[0], &tok, "slow");
    let (runner, _) = running_on(&orch, &id, "wait", 1);
    let other = workers.iter().find(|w| w.pid() != runner).unwrap();
    let asked_at = now_ms();
    let cancel = crate::harness::http::post_json(
        &other.url(&format!("/api/v1/runs/{id}/cancel")),
        Some(&tok),
        &serde_json::json!({}),
    );
    assert_eq!(cancel.status, 202, "{}", cancel.body);
    let d = wait_run_status(&orch, &id, "cancelled", Duration::from_secs(15));
    let wait = &d["steps"][0];
    assert_eq!(wait["status"], "cancelled", "{d}");
    let ended = wait["finished_at"].as_i64().unwrap();
    assert!(
        ended - asked_at <= 3000 / 5 * 2 + 1000,
        "the running worker saw the cancel at its next renewal: {} ms",
        ended - asked_at
    );
}

#[test]
fn a_run_of_orch_run_on_a_served_store_is_left_to_the_cli() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[(
            "cli.toml",
            "name = \"cli\"\n[steps.a]\nplugin = \"echo\"\nwith = { message = \"a\", sleep_ms = 2500 }\n[steps.b]\nplugin = \"echo\"\nneeds = [\"a\"]\nwith = { message = \"b\" }\n",
        )],
    );
    let tok = token(&orch, "t");
    let server = Serve::start(&orch, &[]);
    let ran = orch.orch(&["--json", "run", "wf/cli.toml"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let id = ran.report()["run_id"].as_str().unwrap().to_string();
    let d = orch.run_detail(&id);
    assert_eq!(d["status"], "succeeded");
    let steps = d["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "each step once, by the CLI: {d}");
    assert!(
        steps.iter().all(|s| s["worker"].is_null()),
        "no worker took the CLI's run over: {d}"
    );
    // And the server's queue is clear: its own runs still go through.
    let served = trigger_run(&server, &tok, "cli");
    wait_run_status(&orch, &served, "succeeded", Duration::from_secs(30));
    assert!(!server.stderr().contains("ERROR"), "{}", server.stderr());
}

#[test]
fn a_worker_whose_clock_runs_ahead_does_not_take_over_live_leases() {
    let orch = pg_orch();
    workflows_dir(&orch, &[("long.toml", LONG)]);
    let tok = token(&orch, "t");
    let lease = ["--lease", "3s"];
    let honest = Serve::start(&orch, &lease);
    let id = trigger_run(&honest, &tok, "long");
    running_on(&orch, &id, "long", 1);
    // A host whose clock is 30 s ahead: every lease looks long expired by its own clock.
    let ahead = Serve::start_with(&orch, &lease, &[("ORCH_CLOCK_SKEW_MS", "30000")]);
    let d = wait_run_status(&orch, &id, "succeeded", Duration::from_secs(60));
    assert_eq!(
        attempts(&d, "long"),
        [(1, "succeeded".to_string(), honest.pid())],
        "the live lease held: {d}"
    );
    assert!(
        ahead.stderr().contains("ms off the run store's"),
        "{}",
        ahead.stderr()
    );
    // It still works, by the store's clock.
    let next = trigger_run(&ahead, &tok, "long");
    wait_run_status(&orch, &next, "succeeded", Duration::from_secs(60));
}
