//! The project's PostgreSQL (tests/services.sh) through `psql`, and names no other test uses.
//! Self-contained (std, `uuid`, `url`), so a bench can include it with `#[path]`.

use std::process::Command;

/// The admin URL of the project's PostgreSQL; fails (never skips) when it is not set.
pub(crate) fn admin_url() -> String {
    std::env::var("ORCH_TEST_POSTGRES_URL")
        .expect("ORCH_TEST_POSTGRES_URL is not set: run `bash tests/services.sh start` and source its env file")
}

/// Run SQL at `url`, returning trimmed unaligned output; fails on any SQL error.
pub(crate) fn psql_at(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("psql is installed");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run SQL as the admin.
pub(crate) fn psql(sql: &str) -> String {
    psql_at(&admin_url(), sql)
}

/// A name no other test uses: `PREFIX_` and 12 hex digits.
pub(crate) fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    )
}

/// The admin URL pointed at database `db`.
pub(crate) fn db_url(db: &str) -> String {
    let mut url = url::Url::parse(&admin_url()).expect("ORCH_TEST_POSTGRES_URL is a URL");
    url.set_path(db);
    url.to_string()
}
