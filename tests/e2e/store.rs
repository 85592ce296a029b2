//! The run store: the same scenario on SQLite and on the project's test PostgreSQL (started by
//! tests/services.sh; the PostgreSQL case fails, never skips, when it is not running).

use crate::harness::pg::new_database;
use crate::harness::{Orch, step};

#[test]
fn runs_are_recorded_and_read_back_on_postgres() {
    records_and_reads_back(Some(new_database("store")));
}

#[test]
fn runs_are_recorded_and_read_back_on_sqlite() {
    records_and_reads_back(None);
}

/// Record a run with a skipped step, a log line holding a secret and a denial; read it back.
fn records_and_reads_back(database_url: Option<String>) {
    let mut orch = Orch::new().env("PG_STORE_SECRET", "pg-Secret-Token-5");
    if let Some(url) = database_url {
        orch.database_url = url;
    }
    let ran = orch.run(
        r#"
        name = "on-postgres"
        [steps.a]
        plugin = "echo"
        with = { message = "token ${{ secrets.PG_STORE_SECRET }}", outputs = { x = 1 } }
        [steps.b]
        plugin = "echo"
        needs = ["a"]
        if = "steps.a.outputs.x == 2"
        [steps.c]
        plugin = "postgres"
        with = { action = "query", connection = "nope", sql = "SELECT 1" }
        "#,
        &[],
    );
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let report = ran.report();
    assert_eq!(step(&report, "b")["status"], "skipped");
    let id = report["run_id"].as_str().unwrap();
    let shown = orch.orch(&["--json", "runs", "show", id]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let detail: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(detail["workflow"], "on-postgres");
    let a = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "a")
        .expect("a recorded");
    assert_eq!(a["outputs"]["x"], 1);
    let a_log = detail["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["step"] == "a")
        .expect("a logged");
    assert_eq!(a_log["message"], "token ***");
    assert_eq!(detail["status"], "failed");
    assert_eq!(detail["audit"][0]["step"], "c");
    assert_eq!(detail["audit"][0]["action"], "connection");
    let statuses: Vec<&str> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"skipped") && statuses.contains(&"failed"),
        "{statuses:?}"
    );
    assert!(!shown.stdout.contains("pg-Secret-Token-5"));
    let listed = orch.orch(&["--json", "runs", "list", "--limit", "500"]);
    assert!(listed.stdout.contains(id), "runs list has the run");
}
