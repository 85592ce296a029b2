//! The run store, on SQLite (default) or PostgreSQL (`--database-url postgres://...`), same
//! schema and code for both: runs and attempts ([`runs`]), the server's queue ([`queue`]),
//! schedule ticks ([`ticks`]), API tokens ([`tokens`]), and their typed vocabulary ([`status`]).

use serde::{Deserialize, Serialize};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use std::path::Path;

/// The columns of [`RunRow`], as a literal so queries stay static strings.
macro_rules! select_runs {
    () => {
        "SELECT id, workflow, workflow_path, inputs, trigger_kind, trigger_detail, status, error, created_at, started_at, finished_at FROM runs"
    };
}

mod claims;
mod inline;
mod queue;
mod runs;
mod status;
mod ticks;
mod tokens;
mod workers;
pub use claims::{
    Claim, ClaimEnd, Claimer, Ended, Graph, Held, LeaseLost, QueuedStep, WaitingStep,
};
pub use runs::{AttemptRow, GrantsUsed, NewLog, NewRun, RunFilter, StepEnd, StepWrite, new_run_id};
pub use status::{RunStatus, StepStatus, TickOutcome, Trigger};
pub use ticks::{NewTick, TickRow};
pub use tokens::{Caller, Scope, Session, TokenRow};
pub use workers::{ALIVE_WITHIN_MS, WorkerRow};

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

/// Milliseconds since the Unix epoch, by this host's clock (`ORCH_CLOCK_SKEW_MS` shifts it: a
/// fault-injection knob for tests of workers whose clocks disagree).
pub fn now_ms() -> i64 {
    static SKEW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let skew = *SKEW.get_or_init(|| {
        std::env::var("ORCH_CLOCK_SKEW_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    });
    chrono::Utc::now().timestamp_millis() + skew
}

/// The default database: `orch.db` in the user's data directory.
pub fn default_url(data_dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("orch.db").display())
}

/// A connection pool to the run store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// PostgreSQL (several workers may share it); else SQLite (one process).
    pg: bool,
    /// The SQLite file, if the store is one.
    file: Option<std::path::PathBuf>,
    /// SQLite: the connection that writes a run's attempts and logs on the caller's thread,
    /// opened at the first such write (a store that is only read opens none).
    inline: std::sync::Arc<std::sync::OnceLock<Option<inline::InlineWriter>>>,
    /// The database's clock minus this host's (ms): leases and ready times are read and
    /// written by one clock, whatever the workers' hosts think the time is.
    clock_offset: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

/// A run as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRow {
    pub id: String,
    pub workflow: String,
    pub workflow_path: String,
    pub inputs: serde_json::Value,
    pub trigger: Trigger,
    /// Which schedule, token or delivery triggered it.
    pub trigger_detail: Option<String>,
    pub status: RunStatus,
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
    pub status: StepStatus,
    pub outputs: Option<serde_json::Value>,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// The worker that ran the attempt (`orch serve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
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
    /// One page of the log: the last [`DETAIL_LOG_LINES`] lines, or that many after a given
    /// sequence number.
    pub logs: Vec<LogRow>,
    /// Lines recorded before the page, and after it.
    #[serde(default)]
    pub logs_before: i64,
    #[serde(default)]
    pub logs_after: i64,
    pub audit: Vec<AuditRow>,
    /// What each step used of its grants (connections, origins, tcp destinations, docker
    /// writes by kind), next to what it was refused.
    #[serde(default)]
    pub used: Vec<UsedRow>,
    /// Steps ready to run that no worker has claimed, and why (missing labels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<Waiting>,
}

/// A ready step no worker has taken, with what it waits for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Waiting {
    pub step: String,
    pub runs_on: Vec<String>,
    /// Ready since (ms).
    pub since: i64,
    /// Labels no live worker offers together with the rest; empty: a worker can take it.
    pub missing: Vec<String>,
    /// `id {labels}` of each live worker.
    pub workers: Vec<String>,
    /// What it waits for, in words.
    pub reason: String,
}

/// One grant a step used in a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct UsedRow {
    pub step: String,
    #[sqlx(rename = "grant_text")]
    #[serde(rename = "grant")]
    pub grant: String,
}

/// Log lines in one run detail: a run's log can be millions of lines.
pub const DETAIL_LOG_LINES: i64 = 1000;

impl Store {
    /// Connect (creating the SQLite file and its directory if needed) and migrate.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        if sqlite && let Some(dir) = sqlite_path(url).as_deref().and_then(Path::parent) {
            // Only its owner may read the store (inputs, logs, token hashes). If this fails,
            // connecting says why (with the path) just below.
            let created = std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(dir);
            if let Err(e) = created {
                tracing::debug!("cannot create {}: {e}", dir.display());
            }
        }
        let open_err = |e: sqlx::Error| StoreError::Open {
            url: redact_url(url),
            reason: e.to_string(),
        };
        let url = &with_create_mode(url);
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 8 })
            // A SQLite file does not drop a connection: no ping before each query.
            .test_before_acquire(!sqlite)
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
                        // Pages are read from a mapping, not copied in by `pread`: each pooled
                        // connection re-reads what another one changed, and those syscalls were
                        // 7% of a long chain's CPU (BENCHMARKS.md, "The engine at the floor").
                        sqlx::query("PRAGMA mmap_size = 268435456")
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
        let file = sqlite_path(url);
        if let Some(path) = &file {
            owner_only(path);
        }
        Ok(Self {
            pool,
            pg: !sqlite,
            file,
            inline: Default::default(),
            clock_offset: Default::default(),
        })
    }

    /// SQLite: the inline writer, opened on first use. Without it every write goes through the
    /// pool, as on PostgreSQL: slower, not wrong.
    fn inline_writer(&self) -> Option<&inline::InlineWriter> {
        let path = self.file.as_ref()?;
        self.inline
            .get_or_init(|| {
                inline::InlineWriter::open(path)
                    .inspect_err(|e| {
                        tracing::debug!("no inline writer for {}: {e}", path.display())
                    })
                    .ok()
            })
            .as_ref()
    }

    /// A transaction that writes. On SQLite it takes the write lock when it begins (`BEGIN
    /// IMMEDIATE`): a deferred one that reads first and writes second fails at once with
    /// "database is locked" if another connection wrote in between, where waiting (the busy
    /// timeout) is right.
    pub(crate) async fn write_tx(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(if self.pg {
            self.pool.begin().await?
        } else {
            self.pool.begin_with("BEGIN IMMEDIATE").await?
        })
    }

    /// Now, by the store's clock (ms since the epoch): the database's on PostgreSQL (as of the
    /// last [`Store::sync_clock`]), this host's on SQLite.
    pub fn now(&self) -> i64 {
        now_ms() + self.clock_offset.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Measure the database's clock against this host's (PostgreSQL; SQLite is on this host):
    /// the offset, in ms, [`Store::now`] applies from now on.
    pub async fn sync_clock(&self) -> Result<i64, StoreError> {
        if !self.pg {
            return Ok(0);
        }
        let sent = now_ms();
        let db: i64 = sqlx::Row::try_get(
            &sqlx::query("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint AS ms")
                .fetch_one(&self.pool)
                .await?,
            "ms",
        )?;
        let received = now_ms();
        let offset = db - (sent + received) / 2;
        self.clock_offset
            .store(offset, std::sync::atomic::Ordering::Relaxed);
        Ok(offset)
    }

    /// Is this a store several worker processes may share (PostgreSQL)?
    pub fn shared(&self) -> bool {
        self.pg
    }

    /// Does the SQLite file a URL names exist?
    pub fn sqlite_file_exists(url: &str) -> bool {
        sqlite_path(url).is_some_and(|p| p.exists())
    }

    /// The SQLite file behind the store, if it is one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

/// The SQLite files (database, WAL, shared memory) readable by their owner only.
fn owner_only(db: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        let path = Path::new(&path);
        if path.exists()
            && let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!("cannot make {} private: {e}", path.display());
        }
    }
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
