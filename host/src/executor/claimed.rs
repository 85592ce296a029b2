//! Steps claimed from the shared queue (`orch serve`): a worker attaches to a run once (its
//! scope, secrets, connections, log writer), then runs each claimed attempt and records its
//! end fenced by the lease; that transaction decides the step's dependants, so whichever worker
//! ends a step moves the run forward.

use super::sink::{Record, RunChannel, StepEvents, spawn_writer};
use super::step::{
    AttemptEnd, AttemptOf, Prepared, announce_retry, prepare_step, run_attempt, scope_for,
};
use super::{ExecError, Executor, Finished, Observer, RunShared, RunSpec};
use crate::capability::connections::Connections;
use crate::capability::secret_store::SecretStore;
use crate::capability::{Granter, Masker};
use crate::dag::Dag;
use crate::resolve::ResolvedWorkflow;
use crate::store::{
    Claim, ClaimEnd, Ended, Graph, LeaseLost, NewLog, StepStatus, StoreError, Trigger,
};
use crate::workflow::StepsRead;
use serde_json::{Map, Value as Json, json};
use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// A recorded run a worker attaches to.
pub struct Attach {
    pub run_id: String,
    pub workflow: Arc<ResolvedWorkflow>,
    pub inputs: Map<String, Json>,
    pub trigger: Trigger,
    pub process_env: HashMap<String, String>,
    pub secret_store: Option<SecretStore>,
    pub observer: Arc<dyn Observer>,
}

/// A run as one worker sees it: shared by the attempts of its steps the worker runs.
pub struct RunHandle {
    shared: Arc<RunShared>,
}

impl RunHandle {
    /// The workflow the run was attached with.
    pub fn workflow(&self) -> &Arc<ResolvedWorkflow> {
        &self.shared.workflow
    }
}

/// Why a claimed attempt is stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Its run was cancelled: recorded `cancelled`.
    Cancelled,
    /// This worker stops: recorded `interrupted` and handed back for another worker.
    HandBack,
    /// The lease was lost: nothing is recorded.
    LeaseLost,
}

/// How a worker stops one claimed attempt from outside.
#[derive(Debug, Default)]
pub struct ClaimControl {
    token: CancellationToken,
    why: Mutex<Option<Stop>>,
}

impl ClaimControl {
    /// Stop the attempt (the instance is dropped); the first reason given wins.
    pub fn stop(&self, why: Stop) {
        self.why
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
        self.token.cancel();
    }

    fn reason(&self) -> Option<Stop> {
        *self.why.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What became of a claimed attempt.
#[derive(Debug)]
pub enum ClaimOutcome {
    /// The step reached its final state; `ready`: dependants that became claimable.
    Final { status: StepStatus, ready: usize },
    /// Back on the queue (retry, or handed back).
    Again,
    /// The lease was lost: nothing was recorded.
    Lost(LeaseLost),
}

/// The DAG as the store's [`Graph`].
pub struct DagGraph<'a>(pub &'a Dag);

impl Graph for DagGraph<'_> {
    fn dependants(&self, step: &str) -> Vec<String> {
        let Some(node) = self.0.node(step) else {
            return Vec::new();
        };
        self.0
            .dependents(node)
            .iter()
            .map(|&n| self.0.id(n).to_string())
            .collect()
    }

    fn needs(&self, step: &str) -> Vec<String> {
        let Some(node) = self.0.node(step) else {
            return Vec::new();
        };
        self.0
            .needs(node)
            .iter()
            .map(|&n| self.0.id(n).to_string())
            .collect()
    }
}

impl Executor {
    /// Attach to a recorded run: resolve its secrets and connections once for every attempt
    /// this worker will run of it.
    pub fn attach(&self, attach: Attach) -> Result<RunHandle, ExecError> {
        let masker = Arc::new(Masker::default());
        let mut spec = RunSpec {
            workflow: attach.workflow.clone(),
            inputs: attach.inputs,
            trigger: attach.trigger,
            process_env: attach.process_env,
            secret_store: attach.secret_store,
            control: Default::default(),
            resume: None,
        };
        let lookup = spec.lookup(&masker)?;
        let base = spec.base_scope(&attach.run_id, lookup);
        let connections = Arc::new(Connections::resolve(&attach.workflow, &base, &masker)?);
        let (records, _writer) = spawn_writer(self.store.clone(), attach.run_id.clone());
        let shared = Arc::new(RunShared {
            base,
            connections,
            secret_store: spec.secret_store.take(),
            run_id: attach.run_id,
            workflow: attach.workflow.clone(),
            finished: RwLock::new(HashMap::new()),
            channel: Arc::new(RunChannel {
                masker,
                dag: Some(attach.workflow),
                observer: attach.observer,
                records: Some(records),
                seq: AtomicI64::new(0),
            }),
            runtime: self.runtime.clone(),
            store: self.store.clone(),
            trigger: attach.trigger,
            next_attempt: HashMap::new(),
        });
        Ok(RunHandle { shared })
    }

    /// Run one claimed attempt and record its end under the claim's lease.
    pub async fn run_claim(
        &self,
        run: &RunHandle,
        claim: &Claim,
        control: &ClaimControl,
    ) -> Result<ClaimOutcome, ExecError> {
        let shared = &run.shared;
        let id = claim.step.as_str();
        let started = Instant::now();
        let step = shared.workflow.steps.get(id).ok_or_else(|| {
            ExecError::Internal(format!(
                "step `{id}` is not in workflow `{}` as this worker serves it: serve the same workflows on every worker",
                shared.workflow.name
            ))
        })?;
        let resolved = shared
            .workflow
            .plugin(id)
            .ok_or_else(|| ExecError::Internal(format!("step `{id}` has no resolved plugin")))?;
        let masker = &shared.channel.masker;
        let events = Arc::new(StepEvents::claimed(shared.channel.clone(), id, claim.token));
        if let Err(need) = self.read_needs(shared, step).await? {
            return self
                .rerun_lost_need(shared, claim, &events, &need, started)
                .await;
        }
        let prepared = prepare_step(step, resolved, &scope_for(shared, step), masker);
        let config = match prepared {
            Ok(Prepared::Config(config)) => config,
            Ok(Prepared::Skipped) => {
                let end = without_running(StepStatus::Skipped, None);
                return self.end(shared, claim, &events, end, &[], started).await;
            }
            Err(error) => {
                let end = without_running(StepStatus::Failed, Some(error));
                return self.end(shared, claim, &events, end, &[], started).await;
            }
        };
        let granter = Arc::new(Granter::new(id, step.allow.clone()));
        let of = AttemptOf {
            step,
            plugin: resolved,
            config: &config,
            events: &events,
            granter: &granter,
            attempt: claim.attempt,
        };
        // A long step's log shows live: what it wrote goes to the store every so often.
        let live_log = async {
            loop {
                tokio::time::sleep(LIVE_LOG_EVERY).await;
                events.forward_held();
            }
        };
        let ran = tokio::select! {
            ran = run_attempt(shared, &of) => Some(ran),
            () = control.token.cancelled() => None,
            () = live_log => None,
        };
        let (end, used) = match (ran, control.reason()) {
            (Some(ran), _) => ran,
            (None, Some(Stop::LeaseLost) | None) => {
                let lost = lost(claim);
                tracing::warn!("{lost}");
                return Ok(ClaimOutcome::Lost(lost));
            }
            (None, Some(Stop::Cancelled)) => {
                let end = without_running(
                    StepStatus::Cancelled,
                    Some("cancelled while running".into()),
                );
                return self
                    .end(shared, claim, &events, end, &granter.take_used(), started)
                    .await;
            }
            (None, Some(Stop::HandBack)) => {
                let logs = settle_log(shared, &events).await;
                let error = format!(
                    "interrupted: worker {} stopped before the step ended; it runs again",
                    claim.worker
                );
                let again = ClaimEnd::Again {
                    status: StepStatus::Interrupted,
                    error: &error,
                    error_kind: None,
                    ready_at: self.store.now(),
                };
                let graph = DagGraph(shared.workflow.dag());
                return Ok(
                    match self
                        .end_claim_durably(claim, again, &logs, &granter.take_used(), &graph)
                        .await?
                    {
                        Ended::Recorded { .. } => ClaimOutcome::Again,
                        Ended::Lost(lost) => ClaimOutcome::Lost(lost),
                    },
                );
            }
        };
        if let AttemptEnd::Fault {
            message,
            retry: true,
            ..
        } = &end
        {
            let delay = step.retry.delay_before(claim.attempt + 1);
            announce_retry(shared, &events, id, claim.attempt, message, delay);
            let logs = settle_log(shared, &events).await;
            let record = end.record();
            let again = ClaimEnd::Again {
                status: StepStatus::Retrying,
                error: record.error.unwrap_or_default(),
                error_kind: record.error_kind,
                ready_at: self.store.now()
                    + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2),
            };
            let graph = DagGraph(shared.workflow.dag());
            return Ok(
                match self
                    .end_claim_durably(claim, again, &logs, &used, &graph)
                    .await?
                {
                    Ended::Recorded { .. } => ClaimOutcome::Again,
                    Ended::Lost(lost) => {
                        tracing::warn!("{lost}");
                        ClaimOutcome::Lost(lost)
                    }
                },
            );
        }
        self.end(shared, claim, &events, end, &used, started).await
    }

    /// The claimed step reads outputs of `need` that only a gone worker had (they held
    /// secrets, which are never stored). As after a crash of a lone server, the need runs
    /// again (at-least-once) and this step waits for it; a step that reads it without needing
    /// it directly fails, saying so.
    async fn rerun_lost_need(
        &self,
        shared: &RunShared,
        claim: &Claim,
        events: &StepEvents,
        need: &str,
        started: Instant,
    ) -> Result<ClaimOutcome, ExecError> {
        let (id, need) = (claim.step.as_str(), need.to_string());
        let rerun =
            shared.workflow.steps.get(&need).ok_or_else(|| {
                ExecError::Internal(format!("step `{need}` is not in the workflow"))
            })?;
        let dependants = DagGraph(shared.workflow.dag()).dependants(&need);
        if !dependants.iter().any(|d| d == id) {
            // Only a need's own dependants wait for it to run again.
            let error = format!(
                "step `{id}` reads the outputs of `{need}`, which held secrets and were kept only by the worker that ran it (gone since): make `{id}` need `{need}` directly, or run the workflow again"
            );
            let end = without_running(StepStatus::Failed, Some(error));
            return self.end(shared, claim, events, end, &[], started).await;
        }
        let why = format!(
            "interrupted: the outputs of `{need}` held secrets and were kept only by a worker that is gone; `{need}` runs again first"
        );
        let rerun = crate::store::QueuedStep {
            step: need.clone(),
            plugin: rerun.plugin.to_string(),
            runs_on: rerun.runs_on.clone(),
            needs_left: 0,
            needs_failed: 0,
            attempt: 0, // the store numbers it after the attempts recorded
        };
        Ok(
            match self
                .store
                .rerun_need(claim, &rerun, &dependants, &why)
                .await?
            {
                Ended::Recorded { .. } => {
                    tracing::warn!(run = %claim.run_id, "{why}");
                    ClaimOutcome::Again
                }
                Ended::Lost(lost) => ClaimOutcome::Lost(lost),
            },
        )
    }

    /// Record a claimed step as ended without running it (it cannot run on this worker).
    pub async fn fail_claim(
        &self,
        workflow: &ResolvedWorkflow,
        claim: &Claim,
        status: StepStatus,
        error: &str,
    ) -> Result<(), ExecError> {
        let end = ClaimEnd::Final {
            end: crate::store::StepEnd {
                status,
                resumable: false,
                outputs: None,
                error: Some(error),
                error_kind: None,
            },
            outputs_here: false,
        };
        let graph = DagGraph(workflow.dag());
        if let Ended::Lost(lost) = self.end_claim_durably(claim, end, &[], &[], &graph).await? {
            tracing::warn!("{lost}");
        }
        Ok(())
    }

    /// Record an attempt's end, retrying while the store is unreachable (a restart, a
    /// network cut): the lease outlives short outages, and once it is lost the fence refuses
    /// the late write anyway.
    async fn end_claim_durably(
        &self,
        claim: &Claim,
        end: ClaimEnd<'_>,
        logs: &[NewLog],
        used: &[String],
        graph: &DagGraph<'_>,
    ) -> Result<Ended, ExecError> {
        let deadline = Instant::now() + STORE_OUTAGE;
        let mut wait = std::time::Duration::from_millis(100);
        loop {
            match self
                .store
                .end_claim(claim, end.clone(), logs, used, graph)
                .await
            {
                Ok(ended) => return Ok(ended),
                Err(StoreError::Query(e) | StoreError::Open { reason: e, .. })
                    if Instant::now() < deadline =>
                {
                    tracing::warn!(
                        "cannot record the end of step `{}` of run {} yet (retrying): {e}",
                        claim.step,
                        claim.run_id
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Record a final end under the lease, then publish it.
    async fn end(
        &self,
        shared: &RunShared,
        claim: &Claim,
        events: &StepEvents,
        end: AttemptEnd,
        used: &[String],
        started: Instant,
    ) -> Result<ClaimOutcome, ExecError> {
        let logs = settle_log(shared, events).await;
        let id = claim.step.as_str();
        let record = end.record();
        let status = record.status;
        let outputs_here = matches!(
            &end,
            AttemptEnd::Returned {
                status: StepStatus::Succeeded,
                resumable: false,
                ..
            }
        );
        let graph = DagGraph(shared.workflow.dag());
        let ended = self
            .end_claim_durably(
                claim,
                ClaimEnd::Final {
                    end: record,
                    outputs_here,
                },
                &logs,
                used,
                &graph,
            )
            .await?;
        let ready = match ended {
            Ended::Recorded { ready } => ready,
            Ended::Lost(lost) => {
                tracing::warn!("{lost}");
                return Ok(ClaimOutcome::Lost(lost));
            }
        };
        let finished = match end {
            AttemptEnd::Returned {
                status,
                real,
                masked,
                error,
                ..
            } => Finished {
                id,
                status,
                real_outputs: real,
                masked_outputs: masked,
                attempts: claim.attempt,
                duration: started.elapsed(),
                error,
            },
            AttemptEnd::Fault { message, .. } => Finished {
                attempts: claim.attempt,
                duration: started.elapsed(),
                ..Finished::without_outputs(id, status, Some(message))
            },
        };
        shared.conclude(finished);
        Ok(ClaimOutcome::Final { status, ready })
    }

    /// Put the finished steps `step` reads into the run's scope, from this worker's memory or
    /// the store. `Err(need)`: that need's real outputs held secrets, which are never stored,
    /// and the worker that had them is gone.
    async fn read_needs(
        &self,
        shared: &RunShared,
        step: &crate::workflow::Step,
    ) -> Result<Result<(), String>, ExecError> {
        // `Err(need)`: that need's real outputs are not here.
        let dag = shared.workflow.dag();
        let read: Vec<String> = match step.steps_read() {
            StepsRead::These(ids) => ids.into_iter().map(str::to_string).collect(),
            StepsRead::All => shared
                .workflow
                .steps
                .keys()
                .filter(|other| dag.is_ancestor(other, &step.id))
                .cloned()
                .collect(),
        };
        for other in read {
            let known = shared
                .finished
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&other);
            if known {
                continue;
            }
            let Some(last) = self.store.last_attempt(&shared.run_id, &other).await? else {
                continue;
            };
            let outputs = match last.status {
                StepStatus::Succeeded if !last.resumable => {
                    return Ok(Err(other));
                }
                StepStatus::Succeeded => last.outputs.unwrap_or_else(|| json!({})),
                _ => json!({}),
            };
            shared
                .finished
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    other,
                    Arc::new(json!({"status": last.status.as_str(), "outputs": outputs})),
                );
        }
        Ok(Ok(()))
    }
}

/// How often a running claimed step's log lines are written (the rest land with its end).
const LIVE_LOG_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// How long a worker keeps trying to record an attempt's end while the store is down.
const STORE_OUTAGE: std::time::Duration = std::time::Duration::from_secs(120);

/// A step that ends without its plugin's outputs (skipped, failed before it ran, cancelled).
fn without_running(status: StepStatus, error: Option<String>) -> AttemptEnd {
    AttemptEnd::Returned {
        status,
        real: json!({}),
        masked: json!({}),
        stored: json!({}),
        resumable: false,
        error,
        error_kind: None,
    }
}

fn lost(claim: &Claim) -> LeaseLost {
    LeaseLost {
        run: claim.run_id.clone(),
        step: claim.step.clone(),
        token: claim.token,
    }
}

/// The attempt's log lines still held, to be written with its end; lines already sent to the
/// run's writer are written first (they are fenced by the lease the end gives up).
async fn settle_log(shared: &RunShared, events: &StepEvents) -> Vec<NewLog> {
    if events.forwarded() {
        flush(shared).await;
    }
    events.take_held()
}

/// Wait until the run's log lines queued so far are written.
async fn flush(shared: &RunShared) {
    if let Some(records) = &shared.channel.records {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if records.send(Record::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}
