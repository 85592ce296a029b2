//! What `orch serve` keeps besides runs: queued and unfinished runs, schedule ticks, API
//! tokens and webhook deliveries. Everything that triggers a run is written in the same
//! transaction as the run row, so a trigger is either fully recorded or not at all.

use super::{LogRow, NewRun, RunRow, Store, StoreError, insert_run, now_ms, run_row};
use serde::Serialize;
use sqlx::Row;

/// One schedule tick to record.
pub struct NewTick<'a> {
    pub workflow: &'a str,
    /// Index of the `[[schedule]]` entry in its file.
    pub schedule: i64,
    pub cron: &'a str,
    /// When it was due (ms since the epoch).
    pub fire_at: i64,
    /// fired, skipped, queued, cancelled_previous, missed, caught_up.
    pub outcome: &'a str,
    pub reason: &'a str,
}

/// A recorded schedule tick.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TickRow {
    pub workflow: String,
    pub schedule: i64,
    pub cron: String,
    pub fire_at: i64,
    pub recorded_at: i64,
    pub outcome: String,
    pub reason: String,
    pub run_id: Option<String>,
}

/// One recorded attempt of a step, as a resumed run needs it.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub step: String,
    pub attempt: i64,
    pub status: String,
    pub outputs: Option<serde_json::Value>,
    pub resumable: bool,
}

/// An API token as listed (never its value).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Store {
    /// Record a queued run; with a webhook delivery id, the delivery is recorded in the same
    /// transaction and a delivery seen before fails with [`StoreError::Duplicate`] (no run).
    pub async fn enqueue_run(
        &self,
        run: NewRun<'_>,
        delivery: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(delivery) = delivery {
            sqlx::query(
                "INSERT INTO webhook_deliveries (workflow, delivery, received_at, run_id) VALUES ($1, $2, $3, $4)",
            )
            .bind(run.workflow)
            .bind(delivery)
            .bind(now_ms())
            .bind(run.id)
            .execute(&mut *tx)
            .await?;
        }
        insert_run(&mut tx, &run).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Record a tick, and the run it queued (if any) in the same transaction. A tick already
    /// recorded (same schedule and fire time) fails with [`StoreError::Duplicate`].
    pub async fn record_tick(
        &self,
        tick: NewTick<'_>,
        run: Option<NewRun<'_>>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO schedule_ticks (workflow, schedule, cron, fire_at, recorded_at, outcome, reason, run_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(tick.workflow)
        .bind(tick.schedule)
        .bind(tick.cron)
        .bind(tick.fire_at)
        .bind(now_ms())
        .bind(tick.outcome)
        .bind(tick.reason)
        .bind(run.as_ref().map(|r| r.id))
        .execute(&mut *tx)
        .await?;
        if let Some(run) = &run {
            insert_run(&mut tx, run).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The fire time of the last recorded tick of a schedule (for catch-up after downtime).
    pub async fn last_tick(
        &self,
        workflow: &str,
        schedule: i64,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT MAX(fire_at) AS last FROM schedule_ticks WHERE workflow = $1 AND schedule = $2",
        )
        .bind(workflow)
        .bind(schedule)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>("last")?)
    }

    /// The most recent ticks of a workflow's schedules, newest first.
    pub async fn ticks(&self, workflow: &str, limit: i64) -> Result<Vec<TickRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT workflow, schedule, cron, fire_at, recorded_at, outcome, reason, run_id \
             FROM schedule_ticks WHERE workflow = $1 ORDER BY fire_at DESC, schedule LIMIT $2",
        )
        .bind(workflow)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Runs queued, running or interrupted, oldest first: what a starting server resumes.
    pub async fn unfinished_runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(concat!(
            select_runs!(),
            " WHERE status IN ('queued', 'running', 'interrupted') ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    /// How many runs are in each status.
    pub async fn count_runs_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
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

    /// Every recorded attempt of a run's steps, in order.
    pub async fn attempts(&self, run: &str) -> Result<Vec<AttemptRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT step, attempt, status, outputs, resumable FROM step_runs WHERE run_id = $1 ORDER BY step, attempt",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRow {
                    step: r.try_get("step")?,
                    attempt: r.try_get("attempt")?,
                    status: r.try_get("status")?,
                    outputs: r
                        .try_get::<Option<String>, _>("outputs")?
                        .and_then(|s| serde_json::from_str(&s).ok()),
                    resumable: r.try_get::<i64, _>("resumable")? != 0,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
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

    /// Store a new API token by its hash.
    pub async fn insert_token(&self, id: &str, name: &str, hash: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_tokens (id, name, hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(name)
            .bind(hash)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The name of the live (not revoked) token with this hash; records its use.
    pub async fn use_token(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1 WHERE hash = $2 AND revoked_at IS NULL RETURNING name",
        )
        .bind(now_ms())
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("name")).transpose()?)
    }

    /// Every token ever created, newest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, name, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY created_at DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revoke live tokens by id or name; how many were revoked.
    pub async fn revoke_token(&self, id_or_name: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE (id = $2 OR name = $2) AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id_or_name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
