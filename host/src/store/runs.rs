//! Runs and their step attempts, log lines and audited denials: the one place a run row is
//! created ([`insert_run`]) and where its status moves.

use super::inline::{Param, Statement, Written};
use super::{
    AuditRow, DETAIL_LOG_LINES, LogRow, RunDetail, RunRow, RunStatus, StepRow, StepStatus, Store,
    StoreError, Trigger, now_ms,
};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A new run to record.
pub struct NewRun<'a> {
    pub id: &'a str,
    pub workflow: &'a str,
    pub workflow_path: &'a str,
    pub inputs: &'a serde_json::Value,
    pub trigger: Trigger,
    pub trigger_detail: Option<&'a str>,
    /// `running` (run now by the caller) or `queued` (for the server to start).
    pub status: RunStatus,
    /// Queued until no other run of its schedule is active.
    pub wait_group: bool,
}

/// The end of one step attempt.
#[derive(Clone)]
pub struct StepEnd<'a> {
    pub status: StepStatus,
    /// The outputs are the real ones (nothing masked or cut), reusable by a resumed run.
    pub resumable: bool,
    pub outputs: Option<&'a serde_json::Value>,
    pub error: Option<&'a str>,
    pub error_kind: Option<&'a str>,
}

/// A change to one step attempt's record, for [`Store::record_steps`].
pub enum StepWrite<'a> {
    /// The attempt starts (`running`).
    Start {
        step: &'a str,
        attempt: u32,
        plugin: &'a str,
    },
    /// The attempt ended, with the grants it used. Attempt 0 of a step decided without its
    /// plugin (skipped, upstream-failed, failed before it started) is written here alone.
    End {
        step: &'a str,
        attempt: u32,
        plugin: &'a str,
        end: StepEnd<'a>,
        used: &'a [String],
    },
}

/// Log lines written by one statement (7 values each).
const LOG_ROWS_PER_STATEMENT: usize = 128;

/// Attempts written by one statement (11 values each: far below both databases' limits on
/// bound values).
const ROWS_PER_STATEMENT: usize = 64;

/// The statements that record `writes`: the attempts (a start inserts the row, an end updates
/// it, or inserts it for attempt 0, started and ended at once), then the grants the ended
/// ones used.
fn attempt_statements<'a>(run: &'a str, writes: &[StepWrite<'a>]) -> Vec<Statement<'a>> {
    let now = now_ms();
    let mut statements: Vec<Statement<'a>> = writes
        .chunks(ROWS_PER_STATEMENT)
        .map(|chunk| Statement {
            sql: values_sql(
                "INSERT INTO step_runs (run_id, step, attempt, plugin, status, started_at, outputs, error, error_kind, finished_at, resumable)",
                11,
                chunk.len(),
                " ON CONFLICT (run_id, step, attempt) DO UPDATE SET status = excluded.status, \
                 outputs = excluded.outputs, error = excluded.error, error_kind = excluded.error_kind, \
                 finished_at = excluded.finished_at, resumable = excluded.resumable",
            ),
            params: chunk
                .iter()
                .flat_map(|w| attempt_params(run, w, now))
                .collect(),
        })
        .collect();
    let used: Vec<(&'a str, &'a str)> = writes
        .iter()
        .flat_map(|w| match w {
            StepWrite::End { step, used, .. } => used.iter().map(|g| (*step, g.as_str())).collect(),
            StepWrite::Start { .. } => Vec::new(),
        })
        .collect();
    statements.extend(used.chunks(ROWS_PER_STATEMENT).map(|chunk| {
        Statement {
            sql: values_sql(
                "INSERT INTO grants_used (run_id, step, grant_text)",
                3,
                chunk.len(),
                " ON CONFLICT DO NOTHING",
            ),
            params: chunk
                .iter()
                .flat_map(|(step, grant)| [text(run), text(step), text(grant)])
                .collect(),
        }
    }));
    statements
}

/// One attempt's row, in `attempt_statements`' column order.
fn attempt_params<'a>(run: &'a str, write: &StepWrite<'a>, now: i64) -> [Param<'a>; 11] {
    match write {
        StepWrite::Start {
            step,
            attempt,
            plugin,
        } => [
            text(run),
            text(step),
            Param::Int(i64::from(*attempt)),
            text(plugin),
            text(StepStatus::Running.as_str()),
            Param::Int(now),
            Param::NullText,
            Param::NullText,
            Param::NullText,
            Param::NullInt,
            Param::Int32(0),
        ],
        StepWrite::End {
            step,
            attempt,
            plugin,
            end,
            ..
        } => [
            text(run),
            text(step),
            Param::Int(i64::from(*attempt)),
            text(plugin),
            text(end.status.as_str()),
            Param::Int(now),
            end.outputs
                .map_or(Param::NullText, |o| Param::Text(o.to_string().into())),
            end.error.map_or(Param::NullText, text),
            end.error_kind.map_or(Param::NullText, text),
            Param::Int(now),
            Param::Int32(i32::from(end.resumable)),
        ],
    }
}

fn text(s: &str) -> Param<'_> {
    Param::Text(s.into())
}

/// Log lines of no claimed attempt, many to a statement.
fn log_statements<'a>(run: &'a str, lines: &[&'a NewLog]) -> Vec<Statement<'a>> {
    lines
        .chunks(LOG_ROWS_PER_STATEMENT)
        .map(|chunk| Statement {
            sql: values_sql(
                "INSERT INTO logs (run_id, seq, step, attempt, ts, level, message)",
                7,
                chunk.len(),
                "",
            ),
            params: chunk
                .iter()
                .flat_map(|line| {
                    [
                        text(run),
                        Param::Int(line.seq),
                        text(&line.step),
                        Param::Int(line.attempt),
                        Param::Int(line.ts),
                        text(line.level),
                        text(&line.message),
                    ]
                })
                .collect(),
        })
        .collect()
}

/// Run one hot-write statement through sqlx.
async fn execute(
    conn: &mut sqlx::AnyConnection,
    statement: &Statement<'_>,
) -> Result<(), StoreError> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(statement.sql.as_str()));
    for param in &statement.params {
        q = match param {
            Param::Text(t) => q.bind(t.as_ref()),
            Param::Int(i) => q.bind(*i),
            Param::Int32(i) => q.bind(*i),
            Param::NullText => q.bind(None::<String>),
            Param::NullInt => q.bind(None::<i64>),
        };
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// `head VALUES ($1, .., $cols), .. tail` for `rows` rows: the placeholders both databases
/// take (sqlx's `QueryBuilder` writes `?` for `Any`, which PostgreSQL refuses).
fn values_sql(head: &str, cols: usize, rows: usize, tail: &str) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * cols * 5 + 8);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..cols {
            let sep = if col == 0 { "" } else { ", " };
            let _ = write!(sql, "{sep}${}", row * cols + col + 1);
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

/// Which runs a listing shows.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunFilter<'a> {
    pub workflow: Option<&'a str>,
    pub status: Option<RunStatus>,
    /// Only runs created before this one (the next page).
    pub before: Option<&'a str>,
}

/// A log line to append.
pub struct NewLog {
    /// Its place in the run's log (a claimed attempt's lines are numbered when written).
    pub seq: i64,
    /// The lease token of the claimed attempt that wrote it: the line is kept only while the
    /// lease is held.
    pub lease: Option<i64>,
    pub step: String,
    pub attempt: i64,
    pub ts: i64,
    pub level: &'static str,
    pub message: String,
}

/// One recorded attempt of a step, as a resumed run needs it.
/// What `grants_used_lately` found.
#[derive(Debug, Clone, Default)]
pub struct GrantsUsed {
    /// `(step, grant)` pairs used.
    pub used: Vec<(String, String)>,
    /// Step → in how many of the runs it ran.
    pub ran: std::collections::BTreeMap<String, u32>,
}

#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub step: String,
    pub attempt: i64,
    pub status: StepStatus,
    pub outputs: Option<serde_json::Value>,
    pub resumable: bool,
}

impl AttemptRow {
    /// The last recorded attempt of each step.
    pub fn last_of_each(attempts: &[AttemptRow]) -> std::collections::HashMap<&str, &AttemptRow> {
        let mut last: std::collections::HashMap<&str, &AttemptRow> =
            std::collections::HashMap::new();
        for a in attempts {
            let entry = last.entry(a.step.as_str()).or_insert(a);
            if a.attempt >= entry.attempt {
                *entry = a;
            }
        }
        last
    }
}

impl Store {
    /// Record a new run.
    pub async fn create_run(&self, run: NewRun<'_>) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_run(&mut conn, &run).await
    }

    /// A queued run starts (or a resumed one starts again).
    pub async fn mark_run_started(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE runs SET status = $1, error = NULL, started_at = COALESCE(started_at, $2) WHERE id = $3",
        )
        .bind(RunStatus::Running.as_str())
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
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET status = $1, error = $2 WHERE id = $3")
            .bind(status.as_str())
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
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET status = $1, error = $2, finished_at = $3 WHERE id = $4")
            .bind(status.as_str())
            .bind(error)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Record changes to step attempts that are ready at the same moment (attempts that
    /// start, attempts that ended and the grants they used) in one transaction: one statement
    /// for up to [`ROWS_PER_STATEMENT`] attempts, so a chain step costs one commit and a
    /// fan-out far fewer than one per step.
    pub async fn record_steps(
        &self,
        run: &str,
        writes: &[StepWrite<'_>],
    ) -> Result<(), StoreError> {
        self.write_hot(&attempt_statements(run, writes)).await
    }

    /// Commit `statements` as one (a single statement on its own, more in a transaction):
    /// inline on SQLite when the store is free ([`super::inline::InlineWriter`]), else through
    /// the pool.
    async fn write_hot(&self, statements: &[Statement<'_>]) -> Result<(), StoreError> {
        if statements.is_empty() {
            return Ok(());
        }
        if let Some(inline) = self.inline_writer()
            && inline.write(statements)? == Written::Done
        {
            return Ok(());
        }
        if let [only] = statements {
            let mut conn = self.pool.acquire().await?;
            return execute(&mut conn, only).await;
        }
        let mut tx = self.write_tx().await?;
        for statement in statements {
            execute(&mut tx, statement).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Close every attempt of a run still open: `cancelled` (by a user or an executor failure)
    /// or `interrupted` (by a server stop; run again when the run resumes).
    pub async fn close_open_steps(
        &self,
        run: &str,
        status: StepStatus,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE step_runs SET status = $1, error = $2, finished_at = $3 \
             WHERE run_id = $4 AND finished_at IS NULL",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(now_ms())
        .bind(run)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Append log lines in one transaction (one statement, when they fit in one).
    pub async fn append_logs(&self, run: &str, lines: &[NewLog]) -> Result<(), StoreError> {
        if lines.iter().all(|l| l.lease.is_none()) {
            let lines: Vec<&NewLog> = lines.iter().collect();
            return self.write_hot(&log_statements(run, &lines)).await;
        }
        let mut tx = self.write_tx().await?;
        insert_logs(&mut tx, run, lines, false).await?;
        tx.commit().await?;
        Ok(())
    }

    /// `(step, grant)` pairs used by the last `runs` runs of `workflow`, and for each step in
    /// how many of those runs it actually ran (a skipped step used nothing and proves
    /// nothing).
    pub async fn grants_used_lately(
        &self,
        workflow: &str,
        runs: u32,
    ) -> Result<GrantsUsed, StoreError> {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM runs WHERE workflow = $1 ORDER BY created_at DESC LIMIT $2",
        )
        .bind(workflow)
        .bind(i64::from(runs))
        .fetch_all(&self.pool)
        .await?;
        let mut used = std::collections::BTreeSet::new();
        let mut ran: std::collections::BTreeMap<String, u32> = Default::default();
        for (id,) in &ids {
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT step, grant_text FROM grants_used WHERE run_id = $1")
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?;
            used.extend(rows);
            let steps: Vec<(String,)> = sqlx::query_as(
                "SELECT DISTINCT step FROM step_runs WHERE run_id = $1 AND status <> $2",
            )
            .bind(id)
            .bind(StepStatus::Skipped.as_str())
            .fetch_all(&self.pool)
            .await?;
            for (step,) in steps {
                *ran.entry(step).or_default() += 1;
            }
        }
        Ok(GrantsUsed {
            used: used.into_iter().collect(),
            ran,
        })
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

    /// A page of runs, newest first: of one workflow and/or one status, older than the run
    /// `before` (ids sort by creation).
    pub async fn runs_page(
        &self,
        filter: &RunFilter<'_>,
        limit: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        let mut sql = String::from(concat!(select_runs!(), " WHERE 1 = 1"));
        let mut binds = Vec::new();
        for (column, value) in [
            ("workflow", filter.workflow),
            ("status", filter.status.map(RunStatus::as_str)),
            ("id", filter.before),
        ] {
            if let Some(value) = value {
                binds.push(value);
                let op = if column == "id" { "<" } else { "=" };
                sql += &format!(" AND {column} {op} ${}", binds.len());
            }
        }
        sql += &format!(" ORDER BY id DESC LIMIT ${}", binds.len() + 1);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in binds {
            query = query.bind(value);
        }
        let rows = query.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(run_row).collect()
    }

    /// Record `run` (queued) as a re-run of the run `of`, in one transaction with the last
    /// attempts of the steps to `keep` from it (with their recorded outputs): those do not
    /// run again. How many steps were copied.
    pub async fn record_rerun(
        &self,
        run: NewRun<'_>,
        of: &str,
        keep: &[String],
    ) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        insert_run(&mut tx, &run).await?;
        let mut copied = 0;
        let now = now_ms();
        for chunk in keep.chunks(500) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 4)).collect();
            let sql = format!(
                "INSERT INTO step_runs (run_id, step, attempt, plugin, status, outputs, resumable, started_at, finished_at, worker) \
                 SELECT $1, s.step, 1, s.plugin, s.status, s.outputs, s.resumable, $2, $2, s.worker FROM step_runs s \
                 WHERE s.run_id = $3 AND s.attempt = (SELECT MAX(attempt) FROM step_runs m WHERE m.run_id = s.run_id AND m.step = s.step) \
                 AND s.step IN ({})",
                list.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(run.id)
                .bind(now)
                .bind(of);
            for step in chunk {
                q = q.bind(step);
            }
            copied += q.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(copied)
    }

    /// The most recent runs of one workflow (or all), newest first.
    pub async fn list_runs_of(
        &self,
        workflow: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        let Some(workflow) = workflow else {
            return self.list_runs(limit).await;
        };
        let rows = sqlx::query(concat!(
            select_runs!(),
            " WHERE workflow = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(workflow)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    /// A run by its exact id.
    pub async fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        let row = sqlx::query(concat!(select_runs!(), " WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_row).transpose()
    }

    /// A run by id or unique id prefix, with steps, logs and audit.
    /// A run with its steps, audit and the last page of its log.
    pub async fn get_run(&self, id: &str) -> Result<RunDetail, StoreError> {
        self.get_run_page(id, None).await
    }

    /// A run with its steps, audit and one page of its log: the last lines, or the ones after
    /// sequence number `after` (`-1`: from the start).
    pub async fn get_run_page(
        &self,
        id: &str,
        after: Option<i64>,
    ) -> Result<RunDetail, StoreError> {
        self.run_detail(id, Some(after)).await
    }

    /// A run with its steps, audit and used grants, without its log (the web page reads the
    /// log apart, by step).
    pub async fn get_run_without_log(&self, id: &str) -> Result<RunDetail, StoreError> {
        self.run_detail(id, None).await
    }

    /// `log`: `None`, no log lines; `Some(None)` the last page, `Some(Some(seq))` the page
    /// after `seq`.
    async fn run_detail(
        &self,
        id: &str,
        log: Option<Option<i64>>,
    ) -> Result<RunDetail, StoreError> {
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
        let steps = self.step_rows(&run.id, None).await?;
        let logs = match log {
            None => Vec::new(),
            Some(Some(after)) => self.logs_after(&run.id, after, DETAIL_LOG_LINES).await?,
            Some(None) => {
                let mut last: Vec<LogRow> = sqlx::query_as(
                    "SELECT seq, step, attempt, ts, level, message FROM logs WHERE run_id = $1 ORDER BY seq DESC LIMIT $2",
                )
                .bind(&run.id)
                .bind(DETAIL_LOG_LINES)
                .fetch_all(&self.pool)
                .await?;
                last.reverse();
                last
            }
        };
        let count = |op: &'static str, seq: i64| {
            let sql = format!("SELECT COUNT(*) AS n FROM logs WHERE run_id = $1 AND seq {op} $2");
            let run = run.id.clone();
            async move {
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(run)
                    .bind(seq)
                    .fetch_one(&self.pool)
                    .await?;
                Ok::<i64, StoreError>(row.try_get("n")?)
            }
        };
        let (logs_before, logs_after) = match (logs.first(), logs.last()) {
            (Some(first), Some(last)) => {
                (count("<", first.seq).await?, count(">", last.seq).await?)
            }
            _ => (0, 0),
        };
        let audit = sqlx::query_as(
            "SELECT step, ts, action, target, reason FROM audit WHERE run_id = $1 ORDER BY ts",
        )
        .bind(&run.id)
        .fetch_all(&self.pool)
        .await?;
        let used = sqlx::query_as(
            "SELECT step, grant_text FROM grants_used WHERE run_id = $1 ORDER BY step, grant_text",
        )
        .bind(&run.id)
        .fetch_all(&self.pool)
        .await?;
        let waiting = self.explain_waiting(&run.id).await?;
        Ok(RunDetail {
            waiting,
            used,
            run,
            steps,
            logs,
            logs_before,
            logs_after,
            audit,
        })
    }

    /// A run's step attempts in the order they started; with `since` (ms), only those that
    /// started or ended since then, or are still open (what a live page needs to redraw).
    pub async fn step_rows(
        &self,
        run: &str,
        since: Option<i64>,
    ) -> Result<Vec<StepRow>, StoreError> {
        sqlx::query(
            "SELECT step, attempt, plugin, status, outputs, error, error_kind, started_at, finished_at, worker \
             FROM step_runs WHERE run_id = $1 \
             AND ($2 IS NULL OR started_at >= $2 OR finished_at >= $2 OR finished_at IS NULL) \
             ORDER BY started_at, step, attempt",
        )
        .bind(run)
        .bind(since)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(StepRow {
                step: r.try_get("step")?,
                attempt: r.try_get("attempt")?,
                plugin: r.try_get("plugin")?,
                status: parse(r, "status")?,
                outputs: r
                    .try_get::<Option<String>, _>("outputs")?
                    .and_then(|s| serde_json::from_str(&s).ok()),
                error: r.try_get("error")?,
                error_kind: r.try_get("error_kind")?,
                started_at: r.try_get("started_at")?,
                finished_at: r.try_get("finished_at")?,
                worker: r.try_get("worker")?,
            })
        })
        .collect()
    }

    /// Every recorded attempt of a run's steps, in order.
    pub async fn attempts(&self, run: &str) -> Result<Vec<AttemptRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT step, attempt, status, outputs, resumable FROM step_runs WHERE run_id = $1 ORDER BY step, attempt",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_row).collect()
    }

    /// The last recorded attempt of one step of a run.
    pub async fn last_attempt(
        &self,
        run: &str,
        step: &str,
    ) -> Result<Option<AttemptRow>, StoreError> {
        let row = sqlx::query(
            "SELECT step, attempt, status, outputs, resumable FROM step_runs WHERE run_id = $1 AND step = $2 ORDER BY attempt DESC LIMIT 1",
        )
        .bind(run)
        .bind(step)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(attempt_row).transpose()
    }

    /// The last `limit` log lines of a run (of one step, if given) before sequence number
    /// `before` (`None`: the end), in order: a log's tail, then older pages on demand.
    pub async fn log_tail(
        &self,
        run: &str,
        step: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        let mut lines: Vec<LogRow> = sqlx::query_as(
            "SELECT seq, step, attempt, ts, level, message FROM logs \
             WHERE run_id = $1 AND ($2 IS NULL OR step = $2) AND seq < $3 ORDER BY seq DESC LIMIT $4",
        )
        .bind(run)
        .bind(step)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        lines.reverse();
        Ok(lines)
    }

    /// Log lines of a run after sequence number `after`, in order (for following a live run).
    pub async fn logs_after(
        &self,
        run: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, step, attempt, ts, level, message FROM logs WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The next free log sequence number of a run.
    pub async fn next_log_seq(&self, run: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT MAX(seq) AS last FROM logs WHERE run_id = $1")
            .bind(run)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("last")?.map_or(0, |s| s + 1))
    }

    /// How many runs are in each status.
    pub async fn count_runs_by_status(&self) -> Result<Vec<(RunStatus, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((parse(r, "status")?, r.try_get("n")?)))
            .collect()
    }
}

/// Insert log lines on a connection (in a transaction). A line of a claimed attempt (with a
/// lease) is numbered here, from the run's counter, so numbers follow the order lines are
/// committed in (a follower reading "after N" misses none, whichever worker wrote them), and
/// kept only while the attempt's lease is held (unless the caller has just checked it).
pub(super) async fn insert_logs(
    conn: &mut sqlx::AnyConnection,
    run: &str,
    lines: &[NewLog],
    lease_checked: bool,
) -> Result<(), StoreError> {
    let claimed = lines.iter().filter(|l| l.lease.is_some()).count() as i64;
    // The counter row stays locked until commit: the next writer numbers after these lines.
    let mut next = if claimed > 0 {
        let end: i64 =
            sqlx::query("UPDATE runs SET log_seq = log_seq + $1 WHERE id = $2 RETURNING log_seq")
                .bind(claimed)
                .bind(run)
                .fetch_one(&mut *conn)
                .await?
                .try_get("log_seq")?;
        end - claimed
    } else {
        0
    };
    // Lines of no claimed attempt: many to a statement.
    let (free, leased): (Vec<&NewLog>, Vec<&NewLog>) =
        lines.iter().partition(|l| l.lease.is_none());
    for statement in log_statements(run, &free) {
        execute(conn, &statement).await?;
    }
    for line in leased {
        next += 1;
        let seq = next - 1;
        // Fenced here unless the caller's transaction already checked the lease.
        let sql = if lease_checked {
            "INSERT INTO logs (run_id, seq, step, attempt, ts, level, message) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        } else {
            "INSERT INTO logs (run_id, seq, step, attempt, ts, level, message) \
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS \
             (SELECT 1 FROM step_queue WHERE run_id = $1 AND step = $3 AND lease_token = $8)"
        };
        let q = sqlx::query(sql)
            .bind(run)
            .bind(seq)
            .bind(&line.step)
            .bind(line.attempt)
            .bind(line.ts)
            .bind(line.level)
            .bind(&line.message);
        match line.lease.filter(|_| !lease_checked) {
            Some(token) => q.bind(token),
            None => q,
        }
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Insert a run on a connection (alone, or inside the transaction that also records what
/// triggered it).
pub(super) async fn insert_run(
    conn: &mut sqlx::AnyConnection,
    run: &NewRun<'_>,
) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO runs (id, workflow, workflow_path, inputs, trigger_kind, trigger_detail, status, created_at, started_at, wait_group) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(run.id)
    .bind(run.workflow)
    .bind(run.workflow_path)
    .bind(run.inputs.to_string())
    .bind(run.trigger.as_str())
    .bind(run.trigger_detail)
    .bind(run.status.as_str())
    .bind(now)
    .bind((run.status == RunStatus::Running).then_some(now))
    .bind(i32::from(run.wait_group))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) fn run_row(r: &AnyRow) -> Result<RunRow, StoreError> {
    Ok(RunRow {
        id: r.try_get("id")?,
        workflow: r.try_get("workflow")?,
        workflow_path: r.try_get("workflow_path")?,
        inputs: parse_json(r, "inputs")?,
        trigger: parse(r, "trigger_kind")?,
        trigger_detail: r.try_get("trigger_detail")?,
        status: parse(r, "status")?,
        error: r.try_get("error")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

fn attempt_row(r: &AnyRow) -> Result<AttemptRow, StoreError> {
    Ok(AttemptRow {
        step: r.try_get("step")?,
        attempt: r.try_get("attempt")?,
        status: parse(r, "status")?,
        outputs: r
            .try_get::<Option<String>, _>("outputs")?
            .and_then(|s| serde_json::from_str(&s).ok()),
        resumable: r.try_get::<i64, _>("resumable")? != 0,
    })
}

/// A new run id: a UUIDv7 (time-ordered, so ids sort by creation) in hex.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A JSON text column; unreadable JSON is an error, not an empty value.
fn parse_json(row: &AnyRow, column: &str) -> Result<serde_json::Value, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Query(format!("{column} of a run is not JSON: {e}")))
}

/// A text column holding one of the store's words (a status, a trigger).
pub(super) fn parse<T: std::str::FromStr>(row: &AnyRow, column: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    text.parse()
        .map_err(|_| StoreError::Query(format!("unknown {column} `{text}` in the run store")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SQLite store at `file` with one running run of workflow `w`.
    async fn store_with_a_run(file: &std::path::Path) -> (Store, String) {
        let store = Store::open(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        let id = crate::store::new_run_id();
        store
            .create_run(NewRun {
                id: &id,
                workflow: "w",
                workflow_path: "w.toml",
                inputs: &serde_json::json!({}),
                trigger: Trigger::Cli,
                trigger_detail: None,
                status: RunStatus::Running,
                wait_group: false,
            })
            .await
            .unwrap();
        (store, id)
    }

    /// R3: a run's detail carries one page of its log, however long the log, and says how
    /// many lines lie before and after it.
    #[tokio::test]
    async fn a_run_detail_holds_one_page_of_a_long_log() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = store_with_a_run(&dir.path().join("o.db")).await;
        let total = 2 * DETAIL_LOG_LINES + 500;
        let lines: Vec<NewLog> = (0..total)
            .map(|seq| NewLog {
                seq,
                lease: None,
                step: "s".into(),
                attempt: 1,
                ts: seq,
                level: "info",
                message: format!("line {seq}"),
            })
            .collect();
        store.append_logs(&id, &lines).await.unwrap();

        let last = store.get_run(&id).await.unwrap();
        assert_eq!(last.logs.len() as i64, DETAIL_LOG_LINES);
        assert_eq!(
            last.logs.last().unwrap().message,
            format!("line {}", total - 1)
        );
        assert_eq!(
            (last.logs_before, last.logs_after),
            (total - DETAIL_LOG_LINES, 0)
        );

        let first = store.get_run_page(&id, Some(-1)).await.unwrap();
        assert_eq!(first.logs[0].message, "line 0");
        assert_eq!(
            (first.logs_before, first.logs_after),
            (0, total - DETAIL_LOG_LINES)
        );
        let next = store
            .get_run_page(&id, Some(first.logs.last().unwrap().seq))
            .await
            .unwrap();
        assert_eq!(next.logs[0].seq, DETAIL_LOG_LINES);
        assert_eq!(next.logs_before, DETAIL_LOG_LINES);
    }

    /// While another process holds SQLite's write lock, the run's attempts and logs wait for it
    /// through the pool (the inline writer never waits) and are all there afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hot_writes_wait_through_the_pool_while_the_store_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("o.db");
        let (store, id) = store_with_a_run(&file).await;
        let (locked, release) = (
            std::sync::mpsc::channel::<()>(),
            std::sync::mpsc::channel::<()>(),
        );
        let holder = std::thread::spawn(move || {
            let other = rusqlite::Connection::open(&file).unwrap();
            other.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked.0.send(()).unwrap();
            release.1.recv().unwrap();
            other.execute_batch("COMMIT").unwrap();
        });
        locked.1.recv().unwrap();
        let used: &'static [String] = Vec::leak(vec!["kafka".to_string()]);
        let end = StepEnd {
            status: StepStatus::Succeeded,
            resumable: true,
            outputs: None,
            error: None,
            error_kind: None,
        };
        let writes = [
            StepWrite::End {
                step: "a",
                attempt: 1,
                plugin: "echo",
                end,
                used,
            },
            StepWrite::Start {
                step: "b",
                attempt: 1,
                plugin: "echo",
            },
        ];
        let line = NewLog {
            seq: 0,
            lease: None,
            step: "a".into(),
            attempt: 1,
            ts: 0,
            level: "info",
            message: "hello".into(),
        };
        let written = tokio::spawn({
            let (store, id) = (store.clone(), id.clone());
            async move {
                store.record_steps(&id, &writes).await?;
                store.append_logs(&id, &[line]).await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!written.is_finished(), "a write got past the lock");
        release.0.send(()).unwrap();
        holder.join().unwrap();
        written.await.unwrap().unwrap();

        let attempts = store.attempts(&id).await.unwrap();
        let states: Vec<(&str, StepStatus)> = attempts
            .iter()
            .map(|a| (a.step.as_str(), a.status))
            .collect();
        assert_eq!(
            states,
            [("a", StepStatus::Succeeded), ("b", StepStatus::Running)]
        );
        assert_eq!(store.get_run(&id).await.unwrap().logs.len(), 1);
        let used = store.grants_used_lately("w", 1).await.unwrap();
        assert_eq!(used.used, [("a".to_string(), "kafka".to_string())]);
    }
}
