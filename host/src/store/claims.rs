//! The step queue workers share: a run's steps are put on it when the run starts, a step
//! becomes claimable once its needs are decided, a worker claims ready steps in batches
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL) under a lease, and every write for a claimed
//! attempt is fenced by the lease token. The transaction that records a step's end decides its
//! dependants (ready, or upstream-failed), so any worker moves any run forward.

use super::runs::parse;
use super::{NewLog, RunStatus, StepEnd, StepStatus, Store, StoreError};
use sqlx::Row;

/// A step put on the queue when its run starts.
#[derive(Debug, Clone)]
pub struct QueuedStep {
    pub step: String,
    pub plugin: String,
    /// Labels a worker needs, sorted.
    pub runs_on: Vec<String>,
    /// Needs not decided yet, and decided needs that failed.
    pub needs_left: i64,
    pub needs_failed: i64,
    /// The last attempt recorded (0: none): the next claim is the one after.
    pub attempt: i64,
}

/// The DAG of a run as the store needs it to decide dependants.
pub trait Graph: Sync {
    /// The steps that need `step`.
    fn dependants(&self, step: &str) -> Vec<String>;
    /// The steps `step` needs.
    fn needs(&self, step: &str) -> Vec<String>;
}

/// Who claims: a worker, its labels and whether it takes steps without `runs_on`.
#[derive(Debug, Clone)]
pub struct Claimer<'a> {
    pub worker: &'a str,
    pub labels: &'a [String],
    pub untagged: bool,
    /// How long a claim holds, in ms.
    pub lease_ms: i64,
}

/// A step claimed by a worker: its attempt runs under `token` (the attempt's number).
#[derive(Debug, Clone)]
pub struct Claim {
    /// The worker holding it.
    pub worker: String,
    pub run_id: String,
    pub step: String,
    pub attempt: u32,
    pub token: i64,
    /// The worker whose lease had expired, if the step was taken over.
    pub taken_from: Option<String>,
}

/// How a claimed attempt ended.
#[derive(Clone)]
pub enum ClaimEnd<'a> {
    /// The step reached its final state.
    Final {
        end: StepEnd<'a>,
        /// Its outputs held secrets: only this worker has them, so the steps that read them
        /// should run here.
        outputs_here: bool,
    },
    /// The step goes back on the queue as its next attempt, claimable from `ready_at`:
    /// `retrying` after a retryable failure, `interrupted` when handed back by a stopping
    /// worker.
    Again {
        status: StepStatus,
        error: &'a str,
        error_kind: Option<&'a str>,
        ready_at: i64,
    },
}

/// The lease of a claim was lost (expired and taken over, or the run was cancelled and the
/// row removed): nothing of the attempt was committed.
#[derive(Debug, thiserror::Error)]
#[error(
    "lost the lease of step `{step}` of run {run} (attempt {token}): its result is not recorded"
)]
pub struct LeaseLost {
    pub run: String,
    pub step: String,
    pub token: i64,
}

/// What [`Store::end_claim`] did.
#[derive(Debug)]
pub enum Ended {
    /// Recorded; `ready`: dependants that became claimable.
    Recorded {
        ready: usize,
    },
    Lost(LeaseLost),
}

/// A claim still held after a renewal, and whether its run was cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub run_id: String,
    pub step: String,
    pub token: i64,
    pub cancelled: bool,
}

/// A queued step no worker has claimed: what it waits for.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WaitingStep {
    pub step: String,
    pub runs_on: Vec<String>,
    /// Claimable since (ms).
    pub ready_at: i64,
}

impl Store {
    /// Put the steps of a run on the queue and mark it running, once: a run already started
    /// by another worker (or finished) is left alone and `false` returned.
    pub async fn start_run_steps(
        &self,
        run: &str,
        steps: &[QueuedStep],
        graph: &dyn Graph,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        // The conditional update takes the run's row lock: a second starter waits, then sees
        // the run running and steps queued.
        let started = sqlx::query(
            "UPDATE runs SET status = $1, error = NULL, started_at = COALESCE(started_at, $2) \
             WHERE id = $3 AND cancel_requested = 0 \
             AND (status = $4 OR (status IN ($1, $5) AND NOT EXISTS (SELECT 1 FROM step_queue WHERE run_id = $3)))",
        )
        .bind(RunStatus::Running.as_str())
        .bind(now)
        .bind(run)
        .bind(RunStatus::Queued.as_str())
        .bind(RunStatus::Interrupted.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if started == 0 {
            return Ok(false);
        }
        for chunk in steps.chunks(500) {
            let sql = format!(
                "INSERT INTO step_queue (run_id, step, plugin, runs_on, priority, needs_left, needs_failed, ready_at, attempt, cancelled) VALUES {}",
                values(chunk.len(), 2, 7, |p| format!(
                    "($1, {}, {}, {}, 0, {}, {}, {}, {}, 0)",
                    p[0], p[1], p[2], p[3], p[4], p[5], p[6]
                ))
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(run);
            for s in chunk {
                let ready = (s.needs_left == 0 && s.needs_failed == 0).then_some(now);
                q = q
                    .bind(&s.step)
                    .bind(&s.plugin)
                    .bind(runs_on_json(&s.runs_on))
                    .bind(s.needs_left)
                    .bind(s.needs_failed)
                    .bind(ready)
                    .bind(s.attempt);
            }
            q.execute(&mut *tx).await?;
        }
        // A resumed run may hold steps whose needs are decided and failed: they are
        // upstream-failed now (and their own dependants counted off).
        for s in steps
            .iter()
            .filter(|s| s.needs_left == 0 && s.needs_failed > 0)
        {
            self.upstream_failed(&mut tx, run, &s.step, &s.plugin, graph)
                .await?;
            self.decide_dependants(&mut tx, run, &s.step, true, None, graph)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Record a step that will not run because a need failed, and take it off the queue.
    async fn upstream_failed(
        &self,
        tx: &mut sqlx::AnyConnection,
        run: &str,
        step: &str,
        plugin: &str,
        graph: &dyn Graph,
    ) -> Result<(), StoreError> {
        let failed = self.failed_needs(tx, run, &graph.needs(step)).await?;
        let error = format!("not run: needed step `{}` failed", failed.join("`, `"));
        sqlx::query("DELETE FROM step_queue WHERE run_id = $1 AND step = $2")
            .bind(run)
            .bind(step)
            .execute(&mut *tx)
            .await?;
        let now = self.now();
        sqlx::query(
            "INSERT INTO step_runs (run_id, step, attempt, plugin, status, started_at, finished_at, error) \
             VALUES ($1, $2, 0, $3, $4, $5, $5, $6)",
        )
        .bind(run)
        .bind(step)
        .bind(plugin)
        .bind(StepStatus::UpstreamFailed.as_str())
        .bind(now)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Give up on a run whose workflow no worker can load: its queued steps are removed,
    /// running attempts closed, and the run recorded failed with `error`.
    pub async fn abandon_run(&self, run: &str, error: &str) -> Result<(), StoreError> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM step_queue WHERE run_id = $1")
            .bind(run)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE step_runs SET status = $1, error = $2, finished_at = $3 WHERE run_id = $4 AND finished_at IS NULL",
        )
        .bind(StepStatus::Failed.as_str())
        .bind(error)
        .bind(now)
        .bind(run)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE runs SET status = $1, error = $2, finished_at = $3 WHERE id = $4")
            .bind(RunStatus::Failed.as_str())
            .bind(error)
            .bind(now)
            .bind(run)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Is anything claimable now (a cheap read before a claiming transaction)?
    pub async fn any_ready(&self) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM step_queue WHERE ready_at <= $1 AND (lease_until IS NULL OR lease_until < $1) AND cancelled = 0 LIMIT 1",
        )
        .bind(self.now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Claim up to `max` ready steps this worker may run, ordered by priority and ready time:
    /// each gets a new attempt (recorded `running` under this worker), whose number is its
    /// lease token (a step's attempts only go up, so a later claim always fences out an earlier
    /// one). A step whose previous lease expired has that attempt closed `interrupted`.
    pub async fn claim(&self, who: &Claimer<'_>, max: usize) -> Result<Vec<Claim>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let labels_fit = if self.pg {
            "q.runs_on::jsonb <@ $5::jsonb"
        } else {
            "NOT EXISTS (SELECT 1 FROM json_each(q.runs_on) r WHERE r.value NOT IN (SELECT value FROM json_each($5)))"
        };
        let lock = if self.pg {
            "FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let candidates = format!(
            "SELECT q.run_id, q.step, q.lease_owner AS previous FROM step_queue q \
               WHERE q.ready_at <= $1 AND (q.lease_until IS NULL OR q.lease_until < $1) AND q.cancelled = 0 \
               AND ((q.runs_on = '[]' AND $6 = 1) OR (q.runs_on <> '[]' AND {labels_fit})) \
               AND (q.affinity IS NULL OR q.affinity = $2 OR q.affinity NOT IN \
                    (SELECT id FROM workers WHERE heartbeat_at >= $7 AND stopped_at IS NULL)) \
               ORDER BY q.priority DESC, q.ready_at LIMIT $4 {lock}"
        );
        let bind = |sql: String| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(who.worker)
                .bind(now + who.lease_ms)
                .bind(max as i64)
                .bind(runs_on_json(who.labels))
                .bind(i32::from(who.untagged))
                .bind(now - who.lease_ms)
        };
        let rows: Vec<(String, String, i64, String, Option<String>)> = if self.pg {
            // One statement: the locked candidates are taken in place.
            let sql = format!(
                "WITH c AS ({candidates}) \
                 UPDATE step_queue SET lease_owner = $2, lease_until = $3, \
                   attempt = step_queue.attempt + 1, lease_token = step_queue.attempt + 1 \
                 FROM c WHERE step_queue.run_id = c.run_id AND step_queue.step = c.step \
                 RETURNING step_queue.run_id, step_queue.step, step_queue.attempt, step_queue.plugin, c.previous"
            );
            bind(sql)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get("run_id")?,
                        r.try_get("step")?,
                        r.try_get("attempt")?,
                        r.try_get("plugin")?,
                        r.try_get("previous")?,
                    ))
                })
                .collect::<Result<_, StoreError>>()?
        } else {
            // SQLite: one writer, the transaction holds the database; select, then take.
            let picked = bind(candidates.clone()).fetch_all(&mut *tx).await?;
            let mut rows = Vec::with_capacity(picked.len());
            for p in &picked {
                let (run, step): (String, String) = (p.try_get("run_id")?, p.try_get("step")?);
                let taken = sqlx::query(
                    "UPDATE step_queue SET lease_owner = $1, lease_until = $2, attempt = attempt + 1, lease_token = attempt + 1 \
                     WHERE run_id = $3 AND step = $4 RETURNING attempt, plugin",
                )
                .bind(who.worker)
                .bind(now + who.lease_ms)
                .bind(&run)
                .bind(&step)
                .fetch_one(&mut *tx)
                .await?;
                rows.push((
                    run,
                    step,
                    taken.try_get("attempt")?,
                    taken.try_get("plugin")?,
                    p.try_get("previous")?,
                ));
            }
            rows
        };
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let mut claims = Vec::with_capacity(rows.len());
        let mut plugins = Vec::with_capacity(rows.len());
        for (run_id, step, attempt, plugin, previous) in rows {
            let claim = Claim {
                worker: who.worker.to_string(),
                run_id,
                step,
                attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                token: attempt,
                taken_from: previous,
            };
            if let Some(previous) = &claim.taken_from {
                sqlx::query(
                    "UPDATE step_runs SET status = $1, error = $2, finished_at = $3 \
                     WHERE run_id = $4 AND step = $5 AND finished_at IS NULL",
                )
                .bind(StepStatus::Interrupted.as_str())
                .bind(format!(
                    "interrupted: worker {previous} stopped renewing its lease; the step runs again as attempt {}",
                    claim.attempt
                ))
                .bind(now)
                .bind(&claim.run_id)
                .bind(&claim.step)
                .execute(&mut *tx)
                .await?;
            }
            plugins.push(plugin);
            claims.push(claim);
        }
        // The new attempts, in one statement.
        let sql = format!(
            "INSERT INTO step_runs (run_id, step, attempt, plugin, status, started_at, worker) VALUES {}",
            values(claims.len(), 4, 4, |p| format!(
                "({}, {}, {}, {}, $1, $2, $3)",
                p[0], p[1], p[2], p[3]
            ))
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(StepStatus::Running.as_str())
            .bind(now)
            .bind(who.worker);
        for (claim, plugin) in claims.iter().zip(&plugins) {
            insert = insert
                .bind(&claim.run_id)
                .bind(&claim.step)
                .bind(i64::from(claim.attempt))
                .bind(plugin);
        }
        insert.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(claims)
    }

    /// Extend the leases of these claims of this worker, `(run, step, token)` (the attempts it
    /// is still running: a claim whose task died is left to expire); returns the claims it
    /// still holds (with whether their run was cancelled). A claim missing from the answer
    /// was lost.
    pub async fn renew_leases(
        &self,
        worker: &str,
        claims: &[(String, String, i64)],
        lease_ms: i64,
    ) -> Result<Vec<Held>, StoreError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let held = if self.pg {
            "(run_id, step, lease_token) IN (SELECT c->>0, c->>1, (c->>2)::bigint FROM jsonb_array_elements($3::jsonb) c)"
        } else {
            "EXISTS (SELECT 1 FROM json_each($3) c WHERE json_extract(c.value, '$[0]') = run_id \
             AND json_extract(c.value, '$[1]') = step AND json_extract(c.value, '$[2]') = lease_token)"
        };
        let sql = format!(
            "UPDATE step_queue SET lease_until = $1 WHERE lease_owner = $2 AND {held} \
             RETURNING run_id, step, lease_token, cancelled"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.now() + lease_ms)
            .bind(worker)
            .bind(serde_json::to_string(claims).unwrap_or_default())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Held {
                    run_id: r.try_get("run_id")?,
                    step: r.try_get("step")?,
                    token: r.try_get("lease_token")?,
                    cancelled: r.try_get::<i64, _>("cancelled")? != 0,
                })
            })
            .collect()
    }

    /// Record how a claimed attempt ended, fenced by its lease token: with the lease lost,
    /// nothing is written. A final end decides the step's dependants in the same transaction.
    pub async fn end_claim(
        &self,
        claim: &Claim,
        end: ClaimEnd<'_>,
        logs: &[NewLog],
        grants: &[String],
        graph: &dyn Graph,
    ) -> Result<Ended, StoreError> {
        let now = self.now();
        let lost = || {
            Ended::Lost(LeaseLost {
                run: claim.run_id.clone(),
                step: claim.step.clone(),
                token: claim.token,
            })
        };
        let mut tx = self.write_tx().await?;
        let mut ready = 0;
        match end {
            ClaimEnd::Again {
                status,
                error,
                error_kind,
                ready_at,
            } => {
                let fenced = sqlx::query(
                    "UPDATE step_queue SET lease_owner = NULL, lease_token = NULL, lease_until = NULL, ready_at = $1 \
                     WHERE run_id = $2 AND step = $3 AND lease_token = $4",
                )
                .bind(ready_at)
                .bind(&claim.run_id)
                .bind(&claim.step)
                .bind(claim.token)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if fenced == 0 {
                    return Ok(lost());
                }
                finish_attempt(
                    &mut tx,
                    claim,
                    StepEnd {
                        status,
                        resumable: false,
                        outputs: None,
                        error: Some(error),
                        error_kind,
                    },
                    now,
                )
                .await?;
            }
            ClaimEnd::Final { end, outputs_here } => {
                let fenced = sqlx::query(
                    "DELETE FROM step_queue WHERE run_id = $1 AND step = $2 AND lease_token = $3",
                )
                .bind(&claim.run_id)
                .bind(&claim.step)
                .bind(claim.token)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if fenced == 0 {
                    return Ok(lost());
                }
                let failed = end.status.is_failure();
                finish_attempt(&mut tx, claim, end, now).await?;
                let affinity = outputs_here.then_some(claim.worker.as_str());
                ready = self
                    .decide_dependants(&mut tx, &claim.run_id, &claim.step, failed, affinity, graph)
                    .await?;
            }
        }
        for grant in grants {
            sqlx::query("INSERT INTO grants_used (run_id, step, grant_text) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(&claim.run_id)
                .bind(&claim.step)
                .bind(grant)
                .execute(&mut *tx)
                .await?;
        }
        // The lease is held (the fenced write above locked the row): the attempt's last log
        // lines land with its end. Last, as numbering them locks the run's counter.
        super::runs::insert_logs(&mut tx, &claim.run_id, logs, true).await?;
        tx.commit().await?;
        Ok(Ended::Recorded { ready })
    }

    /// The claimed step reads outputs of `need` that no live worker holds: `need` goes back on
    /// the queue as its next attempt, its dependants still queued wait for it again, and the
    /// claim is handed back (its attempt recorded `interrupted`, with `why`). Fenced.
    pub async fn rerun_need(
        &self,
        claim: &Claim,
        need: &QueuedStep,
        dependants: &[String],
        why: &str,
    ) -> Result<Ended, StoreError> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        let fenced = sqlx::query(
            "UPDATE step_queue SET lease_owner = NULL, lease_token = NULL, lease_until = NULL \
             WHERE run_id = $1 AND step = $2 AND lease_token = $3",
        )
        .bind(&claim.run_id)
        .bind(&claim.step)
        .bind(claim.token)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if fenced == 0 {
            return Ok(Ended::Lost(LeaseLost {
                run: claim.run_id.clone(),
                step: claim.step.clone(),
                token: claim.token,
            }));
        }
        // Another dependant may have put the need back already: then this one already
        // waits for it (counted with the others), and only hands its claim back.
        let queued = sqlx::query("SELECT 1 AS one FROM step_queue WHERE run_id = $1 AND step = $2")
            .bind(&claim.run_id)
            .bind(&need.step)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !queued {
            let list = if self.pg {
                "SELECT jsonb_array_elements_text($2::jsonb)"
            } else {
                "SELECT value FROM json_each($2)"
            };
            let sql = format!(
                "UPDATE step_queue SET needs_left = needs_left + 1, ready_at = NULL, affinity = NULL \
                 WHERE run_id = $1 AND step IN ({list})"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&claim.run_id)
                .bind(serde_json::to_string(dependants).unwrap_or_default())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO step_queue (run_id, step, plugin, runs_on, priority, needs_left, needs_failed, ready_at, attempt, cancelled) \
                 SELECT $1, $2, $3, $4, 0, 0, 0, $5, \
                   (SELECT COALESCE(MAX(attempt), 0) FROM step_runs WHERE run_id = $1 AND step = $2), \
                   cancel_requested FROM runs WHERE id = $1",
            )
            .bind(&claim.run_id)
            .bind(&need.step)
            .bind(&need.plugin)
            .bind(runs_on_json(&need.runs_on))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        finish_attempt(
            &mut tx,
            claim,
            StepEnd {
                status: StepStatus::Interrupted,
                resumable: false,
                outputs: None,
                error: Some(why),
                error_kind: None,
            },
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Ended::Recorded { ready: 1 })
    }

    /// A step of `run` ended (`failed` or not): count it off its dependants. Those whose needs
    /// are all decided become ready, or, if a need failed, are recorded upstream-failed here
    /// and counted off their own dependants in turn. Returns how many became ready.
    async fn decide_dependants(
        &self,
        tx: &mut sqlx::AnyConnection,
        run: &str,
        step: &str,
        failed: bool,
        affinity: Option<&str>,
        graph: &dyn Graph,
    ) -> Result<usize, StoreError> {
        let now = self.now();
        let list = if self.pg {
            "SELECT jsonb_array_elements_text($2::jsonb)"
        } else {
            "SELECT value FROM json_each($2)"
        };
        let sql = format!(
            "UPDATE step_queue SET needs_left = needs_left - 1, needs_failed = needs_failed + $3, \
               ready_at = CASE WHEN needs_left = 1 AND needs_failed + $3 = 0 THEN $4 ELSE ready_at END, \
               affinity = COALESCE($5, affinity) \
             WHERE run_id = $1 AND step IN ({list}) \
             RETURNING step, needs_left, needs_failed, plugin"
        );
        let mut ready = 0;
        let mut work = vec![(step.to_string(), failed)];
        while let Some((done, failed)) = work.pop() {
            let dependants = graph.dependants(&done);
            if dependants.is_empty() {
                continue;
            }
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(run)
                .bind(serde_json::to_string(&dependants).unwrap_or_default())
                .bind(i32::from(failed))
                .bind(now)
                .bind(if done == step { affinity } else { None })
                .fetch_all(&mut *tx)
                .await?;
            for row in rows {
                let (left, failed_needs): (i64, i64) =
                    (row.try_get("needs_left")?, row.try_get("needs_failed")?);
                if left > 0 {
                    continue;
                }
                if failed_needs == 0 {
                    ready += 1;
                    continue;
                }
                let dependant: String = row.try_get("step")?;
                let plugin: String = row.try_get("plugin")?;
                self.upstream_failed(tx, run, &dependant, &plugin, graph)
                    .await?;
                work.push((dependant, true));
            }
        }
        Ok(ready)
    }

    /// Which of `needs` ended badly (their last attempt).
    async fn failed_needs(
        &self,
        tx: &mut sqlx::AnyConnection,
        run: &str,
        needs: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut failed = Vec::new();
        for need in needs {
            let row = sqlx::query(
                "SELECT status FROM step_runs WHERE run_id = $1 AND step = $2 ORDER BY attempt DESC LIMIT 1",
            )
            .bind(run)
            .bind(need)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row
                && parse::<StepStatus>(&row, "status")?.is_failure()
            {
                failed.push(need.clone());
            }
        }
        Ok(failed)
    }

    /// With no step of `run` left on the queue, record its end (once, whoever gets here
    /// first): `cancelled` if a cancel was asked for, `failed` if a step failed, else
    /// `succeeded`. Returns the status it recorded.
    pub async fn finish_run_if_done(&self, run: &str) -> Result<Option<RunStatus>, StoreError> {
        let left = sqlx::query("SELECT 1 AS one FROM step_queue WHERE run_id = $1 LIMIT 1")
            .bind(run)
            .fetch_optional(&self.pool)
            .await?;
        if left.is_some() {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT cancel_requested, started_at, \
               (SELECT COUNT(*) FROM step_runs WHERE run_id = $1 AND status IN ($2, $3)) AS failures \
             FROM runs WHERE id = $1",
        )
        .bind(run)
        .bind(StepStatus::Failed.as_str())
        .bind(StepStatus::UpstreamFailed.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let cancelled = row.try_get::<i64, _>("cancel_requested")? != 0;
        let started = row.try_get::<Option<i64>, _>("started_at")?.is_some();
        let (status, error) = if cancelled {
            let why = if started {
                "cancelled before the end"
            } else {
                "cancelled before it started"
            };
            (RunStatus::Cancelled, Some(why))
        } else if row.try_get::<i64, _>("failures")? > 0 {
            (RunStatus::Failed, None)
        } else {
            (RunStatus::Succeeded, None)
        };
        let done = sqlx::query(
            "UPDATE runs SET status = $1, error = $2, finished_at = $3 \
             WHERE id = $4 AND status IN ($5, $6, $7)",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(self.now())
        .bind(run)
        .bind(RunStatus::Running.as_str())
        .bind(RunStatus::Interrupted.as_str())
        .bind(RunStatus::Queued.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((done > 0).then_some(status))
    }

    /// Ask for a run to be cancelled: steps not running are taken off the queue, running ones
    /// are flagged for their workers (who see it at their next renewal). `false`: the run is
    /// not queued or running.
    pub async fn request_cancel(&self, run: &str) -> Result<bool, StoreError> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        // Queue rows before the run's row: the order a step's end takes them in (no deadlock).
        sqlx::query(
            "DELETE FROM step_queue WHERE run_id = $1 AND (lease_owner IS NULL OR lease_until < $2)",
        )
        .bind(run)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE step_queue SET cancelled = 1 WHERE run_id = $1")
            .bind(run)
            .execute(&mut *tx)
            .await?;
        let asked = sqlx::query(
            "UPDATE runs SET cancel_requested = 1 WHERE id = $1 AND status IN ($2, $3, $4) AND cancel_requested = 0",
        )
        .bind(run)
        .bind(RunStatus::Queued.as_str())
        .bind(RunStatus::Running.as_str())
        .bind(RunStatus::Interrupted.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if asked == 0 {
            // Not active (or asked before): nothing changes.
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE step_runs SET status = $1, error = $2, finished_at = $3 \
             WHERE run_id = $4 AND finished_at IS NULL \
             AND step NOT IN (SELECT step FROM step_queue WHERE run_id = $4)",
        )
        .bind(StepStatus::Cancelled.as_str())
        .bind("cancelled: its worker had stopped")
        .bind(now)
        .bind(run)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Steps of cancelled runs whose worker stopped renewing: removed, so the run can end.
    /// Returns the runs touched.
    pub async fn sweep_cancelled(&self) -> Result<Vec<String>, StoreError> {
        let now = self.now();
        let rows = sqlx::query(
            "DELETE FROM step_queue WHERE cancelled = 1 AND (lease_owner IS NULL OR lease_until < $1) RETURNING run_id, step",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut runs = Vec::new();
        for row in &rows {
            let (run, step): (String, String) = (row.try_get("run_id")?, row.try_get("step")?);
            sqlx::query(
                "UPDATE step_runs SET status = $1, error = $2, finished_at = $3 WHERE run_id = $4 AND step = $5 AND finished_at IS NULL",
            )
            .bind(StepStatus::Cancelled.as_str())
            .bind("cancelled: its worker had stopped")
            .bind(now)
            .bind(&run)
            .bind(&step)
            .execute(&self.pool)
            .await?;
            if !runs.contains(&run) {
                runs.push(run);
            }
        }
        Ok(runs)
    }

    /// Release every lease (their attempts recorded `interrupted`): at the start of the only
    /// process that may use a SQLite store, whatever held them is gone.
    pub async fn release_all_leases(&self, why: &str) -> Result<u64, StoreError> {
        let now = self.now();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE step_runs SET status = $1, error = $2, finished_at = $3 \
             WHERE finished_at IS NULL AND EXISTS (SELECT 1 FROM step_queue q \
               WHERE q.run_id = step_runs.run_id AND q.step = step_runs.step AND q.lease_owner IS NOT NULL)",
        )
        .bind(StepStatus::Interrupted.as_str())
        .bind(why)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let released = sqlx::query(
            "UPDATE step_queue SET lease_owner = NULL, lease_token = NULL, lease_until = NULL, ready_at = $1 \
             WHERE lease_owner IS NOT NULL",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(released)
    }

    /// Queued steps of a run no worker holds, oldest first.
    pub async fn waiting_steps(&self, run: &str) -> Result<Vec<WaitingStep>, StoreError> {
        let rows = sqlx::query(
            "SELECT step, runs_on, ready_at FROM step_queue WHERE run_id = $1 AND ready_at IS NOT NULL \
             AND (lease_owner IS NULL OR lease_until < $2) ORDER BY ready_at, step",
        )
        .bind(run)
        .bind(self.now())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WaitingStep {
                    step: r.try_get("step")?,
                    runs_on: serde_json::from_str(&r.try_get::<String, _>("runs_on")?)
                        .unwrap_or_default(),
                    ready_at: r.try_get("ready_at")?,
                })
            })
            .collect()
    }

    /// How many steps are claimable and how many are held, across all runs.
    pub async fn queue_counts(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM step_queue WHERE ready_at IS NOT NULL AND (lease_owner IS NULL OR lease_until < $1)) AS ready, \
               (SELECT COUNT(*) FROM step_queue WHERE lease_owner IS NOT NULL AND lease_until >= $1) AS held",
        )
        .bind(self.now())
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("ready")?, row.try_get("held")?))
    }
}

/// Close the attempt row a claim opened.
async fn finish_attempt(
    tx: &mut sqlx::AnyConnection,
    claim: &Claim,
    end: StepEnd<'_>,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE step_runs SET status = $1, outputs = $2, error = $3, error_kind = $4, finished_at = $5, resumable = $6 \
         WHERE run_id = $7 AND step = $8 AND attempt = $9",
    )
    .bind(end.status.as_str())
    .bind(end.outputs.map(|o| o.to_string()))
    .bind(end.error)
    .bind(end.error_kind)
    .bind(now)
    .bind(i32::from(end.resumable))
    .bind(&claim.run_id)
    .bind(&claim.step)
    .bind(i64::from(claim.attempt))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The tuples of a multi-row `VALUES`: `rows` rows of `width` numbered placeholders each,
/// numbered from `$first` (the ones before are shared by every row); `tuple` writes one row.
fn values(rows: usize, first: usize, width: usize, tuple: impl Fn(&[String]) -> String) -> String {
    (0..rows)
        .map(|r| {
            let own: Vec<String> = (0..width)
                .map(|i| format!("${}", first + r * width + i))
                .collect();
            tuple(&own)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Labels as the queue stores them: a sorted JSON array.
pub(super) fn runs_on_json(labels: &[String]) -> String {
    let mut sorted: Vec<&String> = labels.iter().collect();
    sorted.sort();
    sorted.dedup();
    serde_json::to_string(&sorted).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewRun, Trigger};
    use std::collections::HashMap;

    /// A DAG by hand: step → needs.
    struct Dag(HashMap<&'static str, Vec<&'static str>>);

    impl Graph for Dag {
        fn dependants(&self, step: &str) -> Vec<String> {
            let mut out: Vec<String> = self
                .0
                .iter()
                .filter(|(_, needs)| needs.contains(&step))
                .map(|(s, _)| s.to_string())
                .collect();
            out.sort();
            out
        }
        fn needs(&self, step: &str) -> Vec<String> {
            self.0[step].iter().map(|s| s.to_string()).collect()
        }
    }

    async fn store_with_run(dag: &Dag) -> (tempfile::TempDir, Store, String) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("o.db").display()))
            .await
            .unwrap();
        let id = crate::store::new_run_id();
        store
            .create_run(NewRun {
                id: &id,
                workflow: "w",
                workflow_path: "w.toml",
                inputs: &serde_json::json!({}),
                trigger: Trigger::Http,
                trigger_detail: None,
                status: RunStatus::Queued,
                wait_group: false,
            })
            .await
            .unwrap();
        let steps: Vec<QueuedStep> = dag
            .0
            .iter()
            .map(|(s, needs)| QueuedStep {
                step: s.to_string(),
                plugin: "echo".into(),
                runs_on: vec![],
                needs_left: needs.len() as i64,
                needs_failed: 0,
                attempt: 0,
            })
            .collect();
        assert!(store.start_run_steps(&id, &steps, dag).await.unwrap());
        assert!(
            !store.start_run_steps(&id, &steps, dag).await.unwrap(),
            "a run starts once"
        );
        (dir, store, id)
    }

    fn worker(id: &str) -> Claimer<'_> {
        Claimer {
            worker: id,
            labels: &[],
            untagged: true,
            lease_ms: 60_000,
        }
    }

    fn end(status: StepStatus) -> ClaimEnd<'static> {
        ClaimEnd::Final {
            end: StepEnd {
                status,
                resumable: true,
                outputs: None,
                error: None,
                error_kind: None,
            },
            outputs_here: false,
        }
    }

    #[tokio::test]
    async fn a_failed_step_fails_its_dependants_in_cascade_and_the_rest_runs_on() {
        let dag = Dag(HashMap::from([
            ("a", vec![]),
            ("b", vec!["a"]),
            ("c", vec!["a"]),
            ("d", vec!["b", "c"]),
            ("e", vec![]),
        ]));
        let (_dir, store, run) = store_with_run(&dag).await;
        let claims = store.claim(&worker("w1"), 10).await.unwrap();
        let mut names: Vec<&str> = claims.iter().map(|c| c.step.as_str()).collect();
        names.sort();
        assert_eq!(names, ["a", "e"], "only steps without needs are ready");
        let a = claims.iter().find(|c| c.step == "a").unwrap();
        let ended = store
            .end_claim(a, end(StepStatus::Failed), &[], &[], &dag)
            .await
            .unwrap();
        assert!(matches!(ended, Ended::Recorded { ready: 0 }), "{ended:?}");
        let attempts = store.attempts(&run).await.unwrap();
        let status = |s: &str| attempts.iter().find(|a| a.step == s).map(|a| a.status);
        for s in ["b", "c", "d"] {
            assert_eq!(status(s), Some(StepStatus::UpstreamFailed), "{s}");
        }
        let d = store.get_run(&run).await.unwrap();
        let d_error = d
            .steps
            .iter()
            .find(|s| s.step == "d")
            .unwrap()
            .error
            .clone();
        assert_eq!(
            d_error.as_deref(),
            Some("not run: needed step `b`, `c` failed")
        );
        assert_eq!(
            store.finish_run_if_done(&run).await.unwrap(),
            None,
            "e runs"
        );
        let e = claims.iter().find(|c| c.step == "e").unwrap();
        store
            .end_claim(e, end(StepStatus::Succeeded), &[], &[], &dag)
            .await
            .unwrap();
        assert_eq!(
            store.finish_run_if_done(&run).await.unwrap(),
            Some(RunStatus::Failed)
        );
        assert_eq!(store.finish_run_if_done(&run).await.unwrap(), None, "once");
    }

    #[tokio::test]
    async fn a_taken_over_claim_is_fenced_out_and_its_attempt_closed() {
        let dag = Dag(HashMap::from([("only", vec![])]));
        let (_dir, store, run) = store_with_run(&dag).await;
        let short = Claimer {
            lease_ms: 0,
            ..worker("w1")
        };
        let first = store.claim(&short, 1).await.unwrap().remove(0);
        assert_eq!((first.attempt, first.token), (1, 1));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        // The lease ran out: another worker takes the step as attempt 2.
        let second = store.claim(&worker("w2"), 1).await.unwrap().remove(0);
        assert_eq!(
            (second.attempt, second.taken_from.as_deref()),
            (2, Some("w1"))
        );
        let late = store
            .end_claim(&first, end(StepStatus::Succeeded), &[], &[], &dag)
            .await
            .unwrap();
        assert!(matches!(late, Ended::Lost(_)), "{late:?}");
        let held = store
            .renew_leases("w1", &[(run.clone(), "only".into(), 1)], 60_000)
            .await
            .unwrap();
        assert!(held.is_empty(), "w1 holds nothing");
        store
            .end_claim(&second, end(StepStatus::Succeeded), &[], &[], &dag)
            .await
            .unwrap();
        let attempts: Vec<(i64, StepStatus)> = store
            .attempts(&run)
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.attempt, a.status))
            .collect();
        assert_eq!(
            attempts,
            [(1, StepStatus::Interrupted), (2, StepStatus::Succeeded)]
        );
        assert_eq!(
            store.finish_run_if_done(&run).await.unwrap(),
            Some(RunStatus::Succeeded)
        );
    }
}
