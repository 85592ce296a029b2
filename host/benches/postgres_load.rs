//! `load` of 100k rows from a step output into PostgreSQL, against `psql \copy` of the same
//! rows, in one run (figures go to BENCHMARKS.md). Needs the project's PostgreSQL:
//!
//!     bash tests/services.sh start && source "$(bash tests/services.sh env)"
//!     cargo bench --bench postgres_load

use std::process::Command;
use std::time::Instant;

mod common;
use common::{Prepared, median, step_duration};

const ROWS: usize = 100_000;

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() -> anyhow::Result<()> {
    let admin = std::env::var("ORCH_TEST_POSTGRES_URL").expect(
        "ORCH_TEST_POSTGRES_URL: run `bash tests/services.sh start` and source its env file",
    );
    let db = format!(
        "orch_bench_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    psql(&admin, &format!("CREATE DATABASE {db}"));
    let mut url = url::Url::parse(&admin)?;
    url.set_path(&db);
    let url = url.to_string();
    psql(
        &url,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, amount float8 NOT NULL); CREATE TABLE items_copy (LIKE items INCLUDING ALL)",
    );

    let tmp = tempfile::tempdir()?;
    let workflow = format!(
        r#"
        name = "load-bench"
        [connections.bench]
        kind = "postgres"
        url = "${{{{ secrets.BENCH_URL }}}}"
        [steps.gen]
        plugin = "postgres"
        allow = ["bench"]
        memory = "1GiB"
        with = {{ action = "query", connection = "bench", sql = "SELECT g AS id, 'name-' || g AS name, g * 1.5 AS amount FROM generate_series(1, {ROWS}) g", limit = {ROWS} }}
        [steps.load]
        plugin = "postgres"
        needs = ["gen"]
        allow = ["bench"]
        memory = "1GiB"
        with = {{ action = "load", connection = "bench", table = "items", rows = "${{{{ steps.gen.outputs.rows }}}}", batch_size = 10000 }}
        "#
    );
    // The same rows as CSV for COPY.
    let csv = tmp.path().join("items.csv");
    let mut text = String::with_capacity(ROWS * 24);
    for g in 1..=ROWS {
        text.push_str(&format!("{g},name-{g},{}\n", g as f64 * 1.5));
    }
    std::fs::write(&csv, text)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (loads, copies) = rt.block_on(async {
        let prepared = Prepared::new(tmp.path(), &workflow, 8).await?;
        let (mut loads, mut copies) = (Vec::new(), Vec::new());
        for _ in 0..6 {
            psql(&url, "TRUNCATE items; TRUNCATE items_copy");
            let env = [("BENCH_URL".to_string(), url.clone())].into();
            let report = prepared.run(Default::default(), env).await?;
            loads.push(step_duration(&report, "load"));
            let t = Instant::now();
            psql(
                &url,
                &format!("\\copy items_copy FROM '{}' CSV", csv.display()),
            );
            copies.push(t.elapsed());
        }
        // The first round warms the component cache and the server; keep the rest.
        loads.remove(0);
        copies.remove(0);
        anyhow::Ok((loads, copies))
    })?;
    psql(&admin, &format!("DROP DATABASE {db}"));
    let (load, copy) = (median(loads), median(copies));
    println!("## postgres load benchmark ({ROWS} rows, median of 5)");
    println!(
        "orch `load` step (template render + sandbox + COPY via the host): {load:.2?} = {:.0} rows/s",
        ROWS as f64 / load.as_secs_f64()
    );
    println!(
        "psql \\copy of the same rows (CSV):                             {copy:.2?} = {:.0} rows/s",
        ROWS as f64 / copy.as_secs_f64()
    );
    println!(
        "ratio load / copy: {:.2}x",
        load.as_secs_f64() / copy.as_secs_f64()
    );
    Ok(())
}
