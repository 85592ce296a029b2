//! Schedules: per-second ticks on time, overlap policies, catch-up after downtime.

use super::harness::{Serve, per_second, runs, ticks, workflows_dir};
use crate::harness::{Orch, now_ms, wait_for};
use serde_json::Value;
use std::time::Duration;

#[test]
fn a_per_second_schedule_fires_on_time_once_per_tick() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[("tick.toml", &per_second("tick", "", "message = \"tick\""))],
    );
    let mut server = Serve::start(&orch, &[]);
    // Stopped right after a run ends, ~1 s before the next tick: a tick whose run is still going
    // at the stop is interrupted (and resumed at the next start), which this test is not about.
    wait_for(
        Duration::from_secs(20),
        "6 ticks, their runs finished",
        || {
            let finished = runs(&orch)
                .iter()
                .filter(|r| r["trigger"] == "cron" && r["status"] == "succeeded")
                .count();
            (finished >= 6 && finished == ticks(&orch, "tick").len()).then_some(())
        },
    );
    assert_eq!(server.sigterm(Duration::from_secs(20)), 0);
    let ticks = ticks(&orch, "tick");
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1]["fire_at"].as_i64().unwrap() - pair[0]["fire_at"].as_i64().unwrap(),
            1000,
            "one tick per second, none lost or doubled: {ticks:?}"
        );
    }
    let mut run_ids: Vec<&str> = ticks
        .iter()
        .map(|t| t["run_id"].as_str().unwrap())
        .collect();
    for t in &ticks {
        assert_eq!(t["outcome"], "fired", "{t}");
        assert_eq!(t["fire_at"].as_i64().unwrap() % 1000, 0);
        // Handled before the next tick is due (a loaded 2-core box can take over half a second).
        let late = t["recorded_at"].as_i64().unwrap() - t["fire_at"].as_i64().unwrap();
        assert!((0..1000).contains(&late), "handled {late} ms late");
    }
    run_ids.sort();
    run_ids.dedup();
    assert_eq!(run_ids.len(), ticks.len(), "one run per tick");
    let cron_runs: Vec<Value> = runs(&orch)
        .into_iter()
        .filter(|r| r["trigger"] == "cron")
        .collect();
    assert_eq!(cron_runs.len(), ticks.len());
    assert!(
        cron_runs.iter().all(|r| r["status"] == "succeeded"),
        "{cron_runs:?}"
    );
}

/// Runs of one workflow never overlap in time.
fn assert_no_overlap(runs: &[Value]) {
    let mut spans: Vec<(i64, i64)> = runs
        .iter()
        .filter(|r| r["finished_at"].is_i64())
        .map(|r| {
            (
                r["started_at"].as_i64().unwrap(),
                r["finished_at"].as_i64().unwrap(),
            )
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "runs overlap: {pair:?}");
    }
}

#[test]
fn overlap_skip_and_queue_keep_runs_apart() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[
            (
                "skip.toml",
                &per_second("skip", "overlap = \"skip\"", "sleep_ms = 2200"),
            ),
            (
                "queue.toml",
                &per_second("queue", "overlap = \"queue\"", "sleep_ms = 1500"),
            ),
        ],
    );
    let mut server = Serve::start(&orch, &["--grace", "20s"]);
    wait_for(Duration::from_secs(30), "two finished queued runs", || {
        let done = runs(&orch)
            .iter()
            .filter(|r| r["workflow"] == "queue" && r["status"] == "succeeded")
            .count();
        (done >= 2).then_some(())
    });
    assert_eq!(server.sigterm(Duration::from_secs(30)), 0);
    let all = runs(&orch);
    let of = |name: &str| {
        all.iter()
            .filter(|r| r["workflow"] == name)
            .cloned()
            .collect::<Vec<_>>()
    };

    let skip_ticks = ticks(&orch, "skip");
    let skipped: Vec<&Value> = skip_ticks
        .iter()
        .filter(|t| t["outcome"] == "skipped")
        .collect();
    assert!(!skipped.is_empty(), "{skip_ticks:?}");
    assert!(skipped.iter().all(|t| {
        t["reason"]
            .as_str()
            .unwrap()
            .contains("still active (overlap = skip)")
            && t["run_id"].is_null()
    }));
    let fired = skip_ticks
        .iter()
        .filter(|t| t["outcome"] == "fired")
        .count();
    assert_eq!(
        fired,
        of("skip").len(),
        "a run for each fired tick, none for skipped ones"
    );
    assert_no_overlap(&of("skip"));

    let queue_ticks = ticks(&orch, "queue");
    let queued: Vec<&Value> = queue_ticks
        .iter()
        .filter(|t| t["outcome"] == "queued")
        .collect();
    assert!(!queued.is_empty(), "{queue_ticks:?}");
    assert!(queued.iter().all(
        |t| t["reason"].as_str().unwrap().contains("waits for run") && t["run_id"].is_string()
    ));
    assert_eq!(
        of("queue").len(),
        queue_ticks.len(),
        "every tick of a queue schedule has a run"
    );
    assert_no_overlap(&of("queue"));
    // Queued runs not started at the stop are still queued: the next start runs them.
    assert!(of("queue").iter().any(|r| r["status"] == "queued"));
}

#[test]
fn downtime_gives_exactly_the_catch_up_policys_runs() {
    let orch = Orch::new();
    workflows_dir(
        &orch,
        &[
            (
                "all.toml",
                &per_second("all", "catchup = \"all\"", "message = \"a\""),
            ),
            (
                "last.toml",
                &per_second("last", "catchup = \"last\"", "message = \"l\""),
            ),
            (
                "none.toml",
                &per_second("none", "catchup = \"none\"", "message = \"n\""),
            ),
        ],
    );
    let mut server = Serve::start(&orch, &[]);
    wait_for(Duration::from_secs(20), "a tick of each", || {
        ["all", "last", "none"]
            .iter()
            .all(|w| !ticks(&orch, w).is_empty())
            .then_some(())
    });
    assert_eq!(server.sigterm(Duration::from_secs(20)), 0);
    // Down for 3.5 s counted from the newest recorded tick: three whole ticks go by unserved
    // however long the stop itself took.
    let last_fire = ["all", "last", "none"]
        .iter()
        .filter_map(|w| ticks(&orch, w).last()?["fire_at"].as_i64())
        .max()
        .unwrap();
    let up_at = last_fire + 3500;
    std::thread::sleep(Duration::from_millis(
        u64::try_from(up_at - now_ms()).unwrap_or(0),
    ));
    let mut server = Serve::start(&orch, &[]);
    // Up until each workflow has caught up and fired again on time (the counts are checked below).
    wait_for(
        Duration::from_secs(20),
        "the catch-up and a tick after it",
        || {
            ["all", "last", "none"]
                .iter()
                .all(|w| {
                    let ticks = ticks(&orch, w);
                    let missed =
                        |t: &Value| t["reason"].as_str().unwrap().contains("server was down");
                    // Missed ticks recorded, and the newest tick an on-time one after them.
                    ticks.iter().any(missed) && ticks.last().is_some_and(|t| !missed(t))
                })
                .then_some(())
        },
    );
    assert_eq!(server.sigterm(Duration::from_secs(20)), 0);

    for workflow in ["all", "last", "none"] {
        let ticks = ticks(&orch, workflow);
        for pair in ticks.windows(2) {
            let step = pair[1]["fire_at"].as_i64().unwrap() - pair[0]["fire_at"].as_i64().unwrap();
            assert_eq!(
                step, 1000,
                "{workflow}: every tick recorded once: {ticks:?}"
            );
        }
        let down: Vec<&Value> = ticks
            .iter()
            .filter(|t| t["reason"].as_str().unwrap().contains("server was down"))
            .collect();
        assert!(
            down.len() >= 3,
            "{workflow}: at least 3 ticks missed: {ticks:?}"
        );
        let with_run = down.iter().filter(|t| t["run_id"].is_string()).count();
        match workflow {
            "all" => assert_eq!(with_run, down.len(), "{down:?}"),
            "last" => {
                assert_eq!(with_run, 1, "{down:?}");
                assert!(
                    down.last().unwrap()["run_id"].is_string(),
                    "the latest one runs"
                );
            }
            _ => assert_eq!(with_run, 0, "{down:?}"),
        }
        let runs_of = runs(&orch)
            .into_iter()
            .filter(|r| r["workflow"] == workflow)
            .count();
        let ticks_with_runs = ticks.iter().filter(|t| t["run_id"].is_string()).count();
        assert_eq!(runs_of, ticks_with_runs, "{workflow}: runs match ticks");
    }
}
