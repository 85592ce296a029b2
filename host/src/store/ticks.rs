//! Schedule ticks: each recorded once with its outcome, in the same transaction as the run it
//! queued.

use super::runs::{NewRun, insert_run};
use super::{Store, StoreError, TickOutcome, now_ms};
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
    pub outcome: TickOutcome,
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
    #[sqlx(try_from = "String")]
    pub outcome: TickOutcome,
    pub reason: String,
    pub run_id: Option<String>,
}

impl Store {
    /// Record a tick, and the run it queued (if any) in the same transaction. A tick already
    /// recorded (same schedule and fire time) fails with [`StoreError::Duplicate`].
    pub async fn record_tick(
        &self,
        tick: NewTick<'_>,
        run: Option<NewRun<'_>>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO schedule_ticks (workflow, schedule, cron, fire_at, recorded_at, outcome, reason, run_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(tick.workflow)
        .bind(tick.schedule)
        .bind(tick.cron)
        .bind(tick.fire_at)
        .bind(now_ms())
        .bind(tick.outcome.as_str())
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
}
