//! The run store on PostgreSQL: the same commands against the project's test PostgreSQL
//! (started by tests/services.sh; this test fails, never skips, when it is not running).

use crate::harness::{Orch, step};

fn postgres_url() -> String {
    std::env::var("ORCH_TEST_POSTGRES_URL")
        .expect("ORCH_TEST_POSTGRES_URL is not set: run `bash tests/services.sh start` and source its env file")
}

#[test]
fn runs_are_recorded_and_read_back_on_postgres() {
    let mut orch = Orch::new().env("PG_STORE_SECRET", "pg-Secret-Token-5");
    orch.database_url = postgres_url();
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
        "#,
        &[],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report = ran.report();
    assert_eq!(step(&report, "b")["status"], "skipped");
    let id = report["run_id"].as_str().unwrap();
    let shown = orch.orch(&["--json", "runs", "show", id]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let detail: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(detail["workflow"], "on-postgres");
    assert_eq!(detail["steps"][0]["outputs"]["x"], 1);
    assert_eq!(detail["logs"][0]["message"], "token ***");
    assert!(!shown.stdout.contains("pg-Secret-Token-5"));
}
