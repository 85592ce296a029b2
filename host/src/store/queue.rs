//! The queue `orch serve` works from: runs recorded `queued` by a trigger (with the webhook
//! delivery that caused them, in one transaction), and the unfinished runs a start resumes.

use super::runs::{NewRun, insert_run, run_row};
use super::{RunRow, RunStatus, Store, StoreError, now_ms};

impl Store {
    /// Record a queued run; with a webhook delivery id, the delivery is recorded in the same
    /// transaction and a delivery seen before fails with [`StoreError::Duplicate`] (no run).
    pub async fn enqueue_run(
        &self,
        run: NewRun<'_>,
        delivery: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
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

    /// Runs queued, running or interrupted, oldest first: what a starting server resumes.
    pub async fn unfinished_runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(concat!(
            select_runs!(),
            " WHERE status IN ($1, $2, $3) ORDER BY created_at, id"
        ))
        .bind(RunStatus::Queued.as_str())
        .bind(RunStatus::Running.as_str())
        .bind(RunStatus::Interrupted.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }
}
