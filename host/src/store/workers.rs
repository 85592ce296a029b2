//! Workers sharing the store: their registration and heartbeat, named leases (one scheduler),
//! and the runs waiting for a worker to start them.

use super::runs::run_row;
use super::{RunRow, RunStatus, Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// A worker as registered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub labels: Vec<String>,
    /// Takes steps without `runs_on`.
    pub untagged: bool,
    pub version: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub draining: bool,
    pub stopped_at: Option<i64>,
    /// Steps it holds a lease on now.
    pub running: i64,
}

impl WorkerRow {
    /// Alive: not stopped, and heard from within `within_ms`.
    pub fn alive(&self, now: i64, within_ms: i64) -> bool {
        self.stopped_at.is_none() && self.heartbeat_at >= now - within_ms
    }

    /// `stopped`, `lost` (silent too long), `draining` or `alive`.
    pub fn state(&self, now: i64) -> &'static str {
        if self.stopped_at.is_some() {
            "stopped"
        } else if !self.alive(now, ALIVE_WITHIN_MS) {
            "lost"
        } else if self.draining {
            "draining"
        } else {
            "alive"
        }
    }

    /// Can it run a step that needs `runs_on`?
    pub fn can_run(&self, runs_on: &[String]) -> bool {
        if runs_on.is_empty() {
            return self.untagged;
        }
        runs_on.iter().all(|l| self.labels.contains(l))
    }
}

/// A worker heard from within this long counts as alive (a few missed heartbeats).
pub const ALIVE_WITHIN_MS: i64 = 20_000;

impl Store {
    /// The ready steps of `run` no live worker can take, each with the labels missing and
    /// the live workers' labels.
    pub async fn explain_waiting(&self, run: &str) -> Result<Vec<super::Waiting>, StoreError> {
        let waiting = self.waiting_steps(run).await?;
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let live: Vec<WorkerRow> = self
            .workers(now - ALIVE_WITHIN_MS)
            .await?
            .into_iter()
            .filter(|w| w.alive(now, ALIVE_WITHIN_MS) && !w.draining)
            .collect();
        let described: Vec<String> = live
            .iter()
            .map(|w| {
                let untagged = if w.untagged { "" } else { ", tagged only" };
                format!("{} {{{}}}{untagged}", w.id, w.labels.join(", "))
            })
            .collect();
        let mut out = Vec::new();
        for step in waiting {
            if live.iter().any(|w| w.can_run(&step.runs_on)) {
                continue;
            }
            let missing: Vec<String> = step
                .runs_on
                .iter()
                .filter(|l| !live.iter().any(|w| w.labels.contains(l)))
                .cloned()
                .collect();
            let alive = if described.is_empty() {
                "no worker is alive".to_string()
            } else {
                format!("live workers: {}", described.join("; "))
            };
            let reason = if step.runs_on.is_empty() {
                format!("waiting for a worker that takes untagged steps ({alive})")
            } else if missing.is_empty() {
                format!(
                    "waiting for one worker with all of `{}` ({alive})",
                    step.runs_on.join("`, `")
                )
            } else {
                format!(
                    "waiting for a worker with `{}`: no live worker has `{}` ({alive})",
                    step.runs_on.join("`, `"),
                    missing.join("`, `")
                )
            };
            out.push(super::Waiting {
                step: step.step,
                runs_on: step.runs_on,
                since: step.ready_at,
                missing,
                workers: described.clone(),
                reason,
            });
        }
        Ok(out)
    }

    /// Register (or re-register) a worker.
    pub async fn register_worker(&self, w: &WorkerRow) -> Result<(), StoreError> {
        let now = self.now();
        sqlx::query(
            "INSERT INTO workers (id, host, pid, labels, untagged, version, started_at, heartbeat_at, draining) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 0)",
        )
        .bind(&w.id)
        .bind(&w.host)
        .bind(w.pid)
        .bind(super::claims::runs_on_json(&w.labels))
        .bind(i32::from(w.untagged))
        .bind(&w.version)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A worker is alive (and whether it is draining).
    pub async fn worker_heartbeat(&self, id: &str, draining: bool) -> Result<(), StoreError> {
        sqlx::query("UPDATE workers SET heartbeat_at = $1, draining = $2 WHERE id = $3")
            .bind(self.now())
            .bind(i32::from(draining))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A worker stopped cleanly: it holds nothing any more.
    pub async fn worker_stopped(&self, id: &str) -> Result<(), StoreError> {
        let now = self.now();
        sqlx::query("UPDATE workers SET stopped_at = $1, heartbeat_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM leases WHERE owner = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Workers heard from since `since` (ms), newest first, with the steps each holds.
    pub async fn workers(&self, since: i64) -> Result<Vec<WorkerRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT w.id, w.host, w.pid, w.labels, w.untagged, w.version, w.started_at, w.heartbeat_at, w.draining, w.stopped_at, \
               (SELECT COUNT(*) FROM step_queue q WHERE q.lease_owner = w.id AND q.lease_until >= $2) AS running \
             FROM workers w WHERE w.heartbeat_at >= $1 ORDER BY w.started_at DESC, w.id",
        )
        .bind(since)
        .bind(self.now())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WorkerRow {
                    id: r.try_get("id")?,
                    host: r.try_get("host")?,
                    pid: r.try_get("pid")?,
                    labels: serde_json::from_str(&r.try_get::<String, _>("labels")?)
                        .unwrap_or_default(),
                    untagged: r.try_get::<i64, _>("untagged")? != 0,
                    version: r.try_get("version")?,
                    started_at: r.try_get("started_at")?,
                    heartbeat_at: r.try_get("heartbeat_at")?,
                    draining: r.try_get::<i64, _>("draining")? != 0,
                    stopped_at: r.try_get("stopped_at")?,
                    running: r.try_get("running")?,
                })
            })
            .collect()
    }

    /// Take or keep the named lease for `ttl_ms`: true while `owner` holds it. Whoever holds
    /// an expired lease loses it to the first to ask.
    pub async fn hold_lease(
        &self,
        name: &str,
        owner: &str,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        sqlx::query(
            "INSERT INTO leases (name, owner, until_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(owner)
        .bind(now + ttl_ms)
        .execute(&self.pool)
        .await?;
        let held = sqlx::query(
            "UPDATE leases SET owner = $1, until_at = $2 WHERE name = $3 AND (owner = $1 OR until_at < $4)",
        )
        .bind(owner)
        .bind(now + ttl_ms)
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(held > 0)
    }

    /// Runs of `workflow` triggered with `detail` (one schedule) still queued or running,
    /// oldest first.
    pub async fn active_runs_of(
        &self,
        workflow: &str,
        detail: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM runs WHERE workflow = $1 AND trigger_detail = $2 AND status IN ($3, $4, $5) ORDER BY created_at, id",
        )
        .bind(workflow)
        .bind(detail)
        .bind(RunStatus::Queued.as_str())
        .bind(RunStatus::Running.as_str())
        .bind(RunStatus::Interrupted.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Runs a worker may start now, oldest first: queued runs (those that wait for their
    /// schedule's previous run only once none is running), and served runs running or
    /// interrupted with nothing on the queue (recorded before the queue existed, or whose last
    /// step's end was recorded but not the run's). `orch run`'s own runs are never taken.
    pub async fn runs_to_start(&self, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        let rows = sqlx::query(concat!(
            select_runs!(),
            " r WHERE r.cancel_requested = 0 AND ((r.status = $1 AND (r.wait_group = 0 OR NOT EXISTS (\
                 SELECT 1 FROM runs o WHERE o.workflow = r.workflow AND o.trigger_detail = r.trigger_detail \
                 AND o.id <> r.id AND (o.status IN ($2, $3) OR (o.status = $1 AND o.created_at < r.created_at))))) \
               OR (r.status IN ($2, $3) AND r.trigger_kind <> 'cli' \
                   AND NOT EXISTS (SELECT 1 FROM step_queue q WHERE q.run_id = r.id))) \
             ORDER BY r.created_at, r.id LIMIT $4"
        ))
        .bind(RunStatus::Queued.as_str())
        .bind(RunStatus::Running.as_str())
        .bind(RunStatus::Interrupted.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    /// Runs left `interrupted` by a stopped worker, with steps still queued: running again.
    pub async fn resume_interrupted(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE runs SET status = $1, error = NULL WHERE status = $2 AND EXISTS (SELECT 1 FROM step_queue q WHERE q.run_id = runs.id)",
        )
        .bind(RunStatus::Running.as_str())
        .bind(RunStatus::Interrupted.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// The last worker to stop marks the runs it leaves unfinished `interrupted` (no one is
    /// left to move them; the next worker to start resumes them).
    pub async fn interrupt_if_last(
        &self,
        me: &str,
        alive_within_ms: i64,
    ) -> Result<u64, StoreError> {
        let others = sqlx::query(
            "SELECT COUNT(*) AS n FROM workers WHERE id <> $1 AND stopped_at IS NULL AND heartbeat_at >= $2",
        )
        .bind(me)
        .bind(self.now() - alive_within_ms)
        .fetch_one(&self.pool)
        .await?
        .try_get::<i64, _>("n")?;
        if others > 0 {
            return Ok(0);
        }
        Ok(
            sqlx::query("UPDATE runs SET status = $1, error = $2 WHERE status = $3")
                .bind(RunStatus::Interrupted.as_str())
                .bind("server stopped: resumes at the next start")
                .bind(RunStatus::Running.as_str())
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}
