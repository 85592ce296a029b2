//! The run store: runs, step attempts, log lines and audited denials, on SQLite (default) or
//! PostgreSQL (`--database-url postgres://...`). Same schema and code for both.

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::path::Path;

/// The columns of [`RunRow`], as a literal so queries stay static strings.
macro_rules! select_runs {
    () => {
        "SELECT id, workflow, workflow_path, inputs, trigger_kind, trigger_detail, status, error, created_at, started_at, finished_at FROM runs"
    };
}

mod service;
pub use service::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // Driver errors are kept as text, not as `source`: their own chain repeats itself.
    #[error("cannot open the run store at `{url}`: {reason}")]
    Open { url: String, reason: String },
    #[error("cannot migrate the run store: {0}")]
    Migrate(String),
    #[error("run store query failed: {0}")]
    Query(String),
    #[error("no run matches `{0}`")]
    NoSuchRun(String),
    #[error("`{0}` matches several runs: give more characters")]
    Ambiguous(String),
    /// A unique key already taken (a replayed webhook delivery, a tick already recorded).
    #[error("already recorded: {0}")]
    Duplicate(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Duplicate(db.message().to_string())
            }
            _ => StoreError::Query(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e.to_string())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The default database: `orch.db` in the user's data directory.
pub fn default_url(data_dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("orch.db").display())
}

/// A connection pool to the run store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

/// A run as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRow {
    pub id: String,
    pub workflow: String,
    pub workflow_path: String,
    pub inputs: serde_json::Value,
    pub trigger: String,
    /// Which schedule, token or delivery triggered it.
    pub trigger_detail: Option<String>,
    pub status: String,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// One attempt of one step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRow {
    pub step: String,
    pub attempt: i64,
    pub plugin: String,
    pub status: String,
    pub outputs: Option<serde_json::Value>,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

/// One log line.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct LogRow {
    pub seq: i64,
    pub step: String,
    pub attempt: i64,
    pub ts: i64,
    pub level: String,
    pub message: String,
}

/// One refused call.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct AuditRow {
    pub step: String,
    pub ts: i64,
    pub action: String,
    pub target: String,
    pub reason: String,
}

/// A run with everything recorded about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunRow,
    pub steps: Vec<StepRow>,
    pub logs: Vec<LogRow>,
    pub audit: Vec<AuditRow>,
}

/// A new run to record.
pub struct NewRun<'a> {
    pub id: &'a str,
    pub workflow: &'a str,
    pub workflow_path: &'a str,
    pub inputs: &'a serde_json::Value,
    pub trigger: &'a str,
    pub trigger_detail: Option<&'a str>,
    /// `running` (run now by the caller) or `queued` (for the server to start).
    pub status: &'a str,
}

/// The end of one step attempt.
pub struct StepEnd<'a> {
    pub status: &'a str,
    /// The outputs are the real ones (nothing masked or cut), reusable by a resumed run.
    pub resumable: bool,
    pub outputs: Option<&'a serde_json::Value>,
    pub error: Option<&'a str>,
    pub error_kind: Option<&'a str>,
}

/// A log line to append.
pub struct NewLog {
    pub seq: i64,
    pub step: String,
    pub attempt: i64,
    pub ts: i64,
    pub level: &'static str,
    pub message: String,
}

impl Store {
    /// Connect (creating the SQLite file and its directory if needed) and migrate.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        if sqlite && let Some(dir) = sqlite_path(url).as_deref().and_then(Path::parent) {
            let _ = std::fs::create_dir_all(dir);
        }
        let open_err = |e: sqlx::Error| StoreError::Open {
            url: redact_url(url),
            reason: e.to_string(),
        };
        let url = &with_create_mode(url);
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 8 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(open_err)?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// Record a new run.
    pub async fn create_run(&self, run: NewRun<'_>) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_run(&mut conn, &run).await
    }

    /// A queued run starts (or a resumed one starts again).
    pub async fn mark_run_started(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE runs SET status = 'running', error = NULL, started_at = COALESCE(started_at, $1) WHERE id = $2",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Change a run's status without finishing it (`interrupted`).
    pub async fn set_run_status(
        &self,
        id: &str,
        status: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET status = $1, error = $2 WHERE id = $3")
            .bind(status)
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Record the end of a run.
    pub async fn finish_run(
        &self,
        id: &str,
        status: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET status = $1, error = $2, finished_at = $3 WHERE id = $4")
            .bind(status)
            .bind(error)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Record the start of a step attempt (`running`), or a step decided without running
    /// (`skipped`, `upstream_failed`) when `end` is given.
    pub async fn start_step(
        &self,
        run: &str,
        step: &str,
        attempt: u32,
        plugin: &str,
        status: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO step_runs (run_id, step, attempt, plugin, status, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(run)
        .bind(step)
        .bind(attempt as i64)
        .bind(plugin)
        .bind(status)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record how a step attempt ended.
    pub async fn finish_step(
        &self,
        run: &str,
        step: &str,
        attempt: u32,
        end: StepEnd<'_>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE step_runs SET status = $1, outputs = $2, error = $3, error_kind = $4, finished_at = $5, resumable = $6 \
             WHERE run_id = $7 AND step = $8 AND attempt = $9",
        )
        .bind(end.status)
        .bind(end.outputs.map(|o| o.to_string()))
        .bind(end.error)
        .bind(end.error_kind)
        .bind(now_ms())
        .bind(i32::from(end.resumable))
        .bind(run)
        .bind(step)
        .bind(attempt as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Close every attempt of a run still open: `cancelled` (by a user or an executor failure)
    /// or `interrupted` (by a server stop; run again when the run resumes).
    pub async fn close_open_steps(
        &self,
        run: &str,
        status: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE step_runs SET status = $1, error = $2, finished_at = $3 \
             WHERE run_id = $4 AND finished_at IS NULL",
        )
        .bind(status)
        .bind(error)
        .bind(now_ms())
        .bind(run)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Append log lines in one transaction.
    pub async fn append_logs(&self, run: &str, lines: &[NewLog]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for line in lines {
            sqlx::query(
                "INSERT INTO logs (run_id, seq, step, attempt, ts, level, message) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(run)
            .bind(line.seq)
            .bind(&line.step)
            .bind(line.attempt)
            .bind(line.ts)
            .bind(line.level)
            .bind(&line.message)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Record a refused call.
    pub async fn audit(&self, run: &str, row: &AuditRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit (run_id, step, ts, action, target, reason) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(run)
            .bind(&row.step)
            .bind(row.ts)
            .bind(&row.action)
            .bind(&row.target)
            .bind(&row.reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The most recent runs, newest first.
    pub async fn list_runs(&self, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(concat!(
            select_runs!(),
            " ORDER BY created_at DESC, id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    /// A run by id or unique id prefix, with steps, logs and audit.
    pub async fn get_run(&self, id: &str) -> Result<RunDetail, StoreError> {
        let pattern = format!("{}%", id.replace(['%', '_'], ""));
        let rows = sqlx::query(concat!(
            select_runs!(),
            " WHERE id LIKE $1 ORDER BY id LIMIT 2"
        ))
        .bind(&pattern)
        .fetch_all(&self.pool)
        .await?;
        let run = match rows.as_slice() {
            [] => return Err(StoreError::NoSuchRun(id.into())),
            [one] => run_row(one)?,
            _ => return Err(StoreError::Ambiguous(id.into())),
        };
        let steps = sqlx::query(
            "SELECT step, attempt, plugin, status, outputs, error, error_kind, started_at, finished_at \
             FROM step_runs WHERE run_id = $1 ORDER BY started_at, step, attempt",
        )
        .bind(&run.id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(StepRow {
                step: r.try_get("step")?,
                attempt: r.try_get("attempt")?,
                plugin: r.try_get("plugin")?,
                status: r.try_get("status")?,
                outputs: r.try_get::<Option<String>, _>("outputs")?.and_then(|s| serde_json::from_str(&s).ok()),
                error: r.try_get("error")?,
                error_kind: r.try_get("error_kind")?,
                started_at: r.try_get("started_at")?,
                finished_at: r.try_get("finished_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
        let logs = self.logs_after(&run.id, -1, i64::MAX).await?;
        let audit = sqlx::query_as(
            "SELECT step, ts, action, target, reason FROM audit WHERE run_id = $1 ORDER BY ts",
        )
        .bind(&run.id)
        .fetch_all(&self.pool)
        .await?;
        Ok(RunDetail {
            run,
            steps,
            logs,
            audit,
        })
    }
}

/// Insert a run on a connection (alone, or inside the transaction that also records what
/// triggered it).
async fn insert_run(conn: &mut sqlx::AnyConnection, run: &NewRun<'_>) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO runs (id, workflow, workflow_path, inputs, trigger_kind, trigger_detail, status, created_at, started_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(run.id)
    .bind(run.workflow)
    .bind(run.workflow_path)
    .bind(run.inputs.to_string())
    .bind(run.trigger)
    .bind(run.trigger_detail)
    .bind(run.status)
    .bind(now)
    .bind((run.status == "running").then_some(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn run_row(r: &AnyRow) -> Result<RunRow, StoreError> {
    Ok(RunRow {
        id: r.try_get("id")?,
        workflow: r.try_get("workflow")?,
        workflow_path: r.try_get("workflow_path")?,
        inputs: serde_json::from_str(&r.try_get::<String, _>("inputs")?).unwrap_or_default(),
        trigger: r.try_get("trigger_kind")?,
        trigger_detail: r.try_get("trigger_detail")?,
        status: r.try_get("status")?,
        error: r.try_get("error")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

/// SQLite URLs create the file unless told otherwise.
fn with_create_mode(url: &str) -> String {
    if !url.starts_with("sqlite:") || url.contains("mode=") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}mode=rwc")
}

fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}

/// The URL without its password, for error messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
