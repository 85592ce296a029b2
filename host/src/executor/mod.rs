//! Runs a resolved workflow: opens the run record, walks the DAG ([`walk`]), runs each step
//! ([`step`]) with its outputs masked and recorded ([`outputs`]), and closes the record. The dry
//! run behind `orch plan` ([`dry_run`]) shares the step preparation and records nothing.

mod claimed;
mod dry_run;
pub mod events;
mod outputs;
mod sink;
mod step;
mod walk;

pub use claimed::{Attach, ClaimControl, ClaimOutcome, DagGraph, RunHandle, Stop};
pub use dry_run::{PlanReport, PlannedStep, StepPlan, plan};
pub use events::{Event, Observer, Silent};

use crate::capability::Masker;
use crate::capability::connections::{ConnectionError, Connections};
use crate::capability::secret_store::SecretStore;
use crate::capability::secrets::{self, LookupError};
use crate::resolve::{ResolvedPlugin, ResolvedWorkflow};
use crate::runtime::Runtime;
use crate::store::{NewRun, RunStatus, StepStatus, Store, StoreError, Trigger, new_run_id};
use crate::workflow::Step;
use crate::workflow::expr::Scope;
use serde::Serialize;
use serde_json::{Map, Value as Json, json};
use sink::RunChannel;
use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Why a run could not be carried out (as opposed to a step failing inside it).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Everything a run needs.
pub struct RunSpec {
    /// The workflow with its DAG and plugins.
    pub workflow: Arc<ResolvedWorkflow>,
    /// Resolved and checked input values.
    pub inputs: Map<String, Json>,
    /// What started the run.
    pub trigger: Trigger,
    /// The environment `secrets.X` and `env.X` are read from (before the `.env` file).
    pub process_env: HashMap<String, String>,
    /// Where `secrets.X` is looked up last and `store_secret` writes to.
    pub secret_store: Option<SecretStore>,
    /// How the run is stopped from outside.
    pub control: RunControl,
    /// A run already recorded (queued by the server, or interrupted) to carry on with;
    /// `None`: record a new run.
    pub resume: Option<Resume>,
}

/// How a run is stopped from outside.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    /// A user's cancel: running steps are aborted and recorded `cancelled`; the run is
    /// `cancelled` for good.
    pub cancel: CancellationToken,
    /// The server is stopping: start no more steps, let running ones finish. If steps are left
    /// the run is recorded `interrupted`, and resumed at the next start.
    pub drain: CancellationToken,
    /// The grace period is over: running steps are aborted and recorded `interrupted`, so the
    /// next start runs them again (at-least-once).
    pub halt: CancellationToken,
}

/// Where a recorded run stands, for the executor to carry on from.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    pub run_id: String,
    /// Steps that reached their final state: status and the real outputs later steps read.
    pub done: HashMap<String, (StepStatus, Json)>,
    /// The attempt number a step starts at (after attempts that were interrupted).
    pub next_attempt: HashMap<String, u32>,
    /// The next free log sequence number.
    pub next_seq: i64,
}

/// How the walk over the DAG ended.
enum Walked {
    /// Every step reached its final state.
    Completed,
    /// Cancelled by the user.
    Cancelled,
    /// Stopped by a server shutdown with steps left to run.
    Interrupted,
}

impl RunSpec {
    /// Resolve the secrets and env values the workflow reads; secrets are masked from now on.
    fn lookup(&self, masker: &Masker) -> Result<secrets::Lookup, LookupError> {
        let wf = &self.workflow;
        secrets::resolve(
            &wf.secret_names(),
            &wf.env_names(),
            &wf.dir,
            &self.process_env,
            self.secret_store.as_ref(),
            masker,
        )
    }

    /// The expression scope every step of the run starts from (no step outputs yet).
    fn base_scope(&mut self, run_id: &str, lookup: secrets::Lookup) -> Scope {
        Scope {
            inputs: Arc::new(Json::Object(std::mem::take(&mut self.inputs))),
            steps: Default::default(),
            secrets: Arc::new(Json::Object(lookup.secrets)),
            env: Arc::new(Json::Object(lookup.env)),
            run: Arc::new(json!({
                "id": run_id,
                "trigger": self.trigger.as_str(),
                "workflow": self.workflow.name,
            })),
        }
    }
}

/// The outcome of one step, as reported (masked).
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub id: String,
    pub status: StepStatus,
    pub attempts: u32,
    #[serde(serialize_with = "events::millis::serialize")]
    pub duration: Duration,
    pub error: Option<String>,
    pub outputs: Json,
}

/// The outcome of a run, as reported (masked).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub workflow: String,
    pub status: RunStatus,
    #[serde(serialize_with = "events::millis::serialize")]
    pub duration: Duration,
    pub steps: Vec<StepReport>,
}

impl RunReport {
    /// Did every step succeed or get skipped?
    pub fn succeeded(&self) -> bool {
        self.status == RunStatus::Succeeded
    }
}

/// Runs workflows against a runtime and a store.
#[derive(Clone)]
pub struct Executor {
    pub runtime: Arc<Runtime>,
    pub store: Store,
    /// Most steps running at once.
    pub max_parallel: usize,
}

/// What every step task of one run shares.
struct RunShared {
    run_id: String,
    workflow: Arc<ResolvedWorkflow>,
    base: Scope,
    /// `steps.ID` values (status and real outputs) of finished steps.
    finished: RwLock<HashMap<String, Arc<Json>>>,
    connections: Arc<Connections>,
    secret_store: Option<SecretStore>,
    channel: Arc<RunChannel>,
    runtime: Arc<Runtime>,
    store: Store,
    trigger: Trigger,
    /// The first attempt number of steps whose earlier attempts were interrupted.
    next_attempt: HashMap<String, u32>,
}

impl Executor {
    /// Execute a run to the end; step failures are in the report, not errors.
    pub async fn run(
        &self,
        spec: RunSpec,
        observer: Arc<dyn Observer>,
    ) -> Result<RunReport, ExecError> {
        // On a worker of the runtime, not on a caller's `block_on` thread: the walk's steps
        // then start on the worker that spawns them, with no hop from that thread to a worker
        // and back for each (a 2000-step chain: 6 966 → 1 563 context switches, BENCHMARKS.md).
        // Dropping this future aborts the run's task, as dropping the run itself did.
        let this = self.clone();
        let task = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            this.run_on_this_worker(spec, observer).await
        }));
        match task.await {
            Ok(report) => report,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(ExecError::Internal(format!("the run's task ended: {e}"))),
        }
    }

    async fn run_on_this_worker(
        &self,
        mut spec: RunSpec,
        observer: Arc<dyn Observer>,
    ) -> Result<RunReport, ExecError> {
        let started = Instant::now();
        let masker = Arc::new(Masker::default());
        let workflow = spec.workflow.clone();
        let lookup = spec.lookup(&masker)?;
        let resume = spec.resume.take().unwrap_or_default();
        let run_id = if resume.run_id.is_empty() {
            new_run_id()
        } else {
            resume.run_id.clone()
        };
        let base = spec.base_scope(&run_id, lookup);
        let connections = Arc::new(Connections::resolve(&workflow, &base, &masker)?);
        if resume.run_id.is_empty() {
            self.store
                .create_run(NewRun {
                    id: &run_id,
                    workflow: &workflow.name,
                    workflow_path: &workflow.source.path,
                    inputs: &masker.mask_json(&base.inputs),
                    trigger: spec.trigger,
                    trigger_detail: None,
                    status: RunStatus::Running,
                    wait_group: false,
                })
                .await?;
        } else {
            self.store.mark_run_started(&run_id).await?;
        }
        observer.event(&Event::RunStarted {
            run_id: run_id.clone(),
            workflow: workflow.name.clone(),
        });
        let (records, writer) = sink::spawn_writer(self.store.clone(), run_id.clone());
        let shared = Arc::new(RunShared {
            base,
            connections,
            secret_store: spec.secret_store.clone(),
            run_id: run_id.clone(),
            workflow: workflow.clone(),
            finished: RwLock::new(HashMap::new()),
            channel: Arc::new(RunChannel {
                masker: masker.clone(),
                dag: Some(workflow.clone()),
                observer,
                records: Some(records),
                seq: AtomicI64::new(resume.next_seq),
            }),
            runtime: self.runtime.clone(),
            store: self.store.clone(),
            trigger: spec.trigger,
            next_attempt: resume.next_attempt,
        });
        let mut reports = Vec::new();
        for (id, (status, outputs)) in &resume.done {
            let masked = masker.mask_json(outputs);
            reports.push(shared.conclude(Finished {
                real_outputs: outputs.clone(),
                masked_outputs: masked,
                ..Finished::without_outputs(id, *status, None)
            }));
        }
        let done: HashMap<String, StepStatus> = resume
            .done
            .iter()
            .map(|(id, (s, _))| (id.clone(), *s))
            .collect();

        let walked = self.walk(&shared, &spec.control, done, &mut reports).await;
        drop(shared); // the last owner of the records channel: the writer drains and stops
        let _ = writer.await;
        let status = self.close_run(&run_id, walked, &reports).await?;
        let order: HashMap<&String, usize> = workflow
            .steps
            .keys()
            .enumerate()
            .map(|(i, k)| (k, i))
            .collect();
        let mut steps = reports;
        steps.sort_by_key(|s| order.get(&s.id).copied().unwrap_or(usize::MAX));
        Ok(RunReport {
            run_id,
            workflow: workflow.name.clone(),
            status,
            duration: started.elapsed(),
            steps,
        })
    }

    /// Record how the walk ended: open attempts closed, the run's final (or interrupted)
    /// status. An executor failure is recorded, then returned.
    async fn close_run(
        &self,
        run_id: &str,
        walked: Result<Walked, ExecError>,
        reports: &[StepReport],
    ) -> Result<RunStatus, ExecError> {
        let status = match walked {
            Ok(Walked::Cancelled) => {
                self.store
                    .close_open_steps(run_id, StepStatus::Cancelled, "cancelled while running")
                    .await?;
                self.store
                    .finish_run(
                        run_id,
                        RunStatus::Cancelled,
                        Some("cancelled before the end"),
                    )
                    .await?;
                RunStatus::Cancelled
            }
            Ok(Walked::Interrupted) => {
                self.store
                    .close_open_steps(
                        run_id,
                        StepStatus::Interrupted,
                        "interrupted by a server stop",
                    )
                    .await?;
                self.store
                    .set_run_status(
                        run_id,
                        RunStatus::Interrupted,
                        Some("server stopped: resumes at the next start"),
                    )
                    .await?;
                RunStatus::Interrupted
            }
            Ok(Walked::Completed) => {
                let ok = reports.iter().all(|s| !s.status.is_failure());
                let status = if ok {
                    RunStatus::Succeeded
                } else {
                    RunStatus::Failed
                };
                self.store.finish_run(run_id, status, None).await?;
                status
            }
            Err(e) => {
                self.store
                    .close_open_steps(run_id, StepStatus::Cancelled, "cancelled while running")
                    .await?;
                self.store
                    .finish_run(run_id, RunStatus::Failed, Some(&e.to_string()))
                    .await?;
                return Err(e);
            }
        };
        Ok(status)
    }
}

/// How a step ended: what later expressions read and what is reported.
struct Finished<'a> {
    id: &'a str,
    status: StepStatus,
    /// What `steps.ID.outputs` reads.
    real_outputs: Json,
    /// What is shown and stored.
    masked_outputs: Json,
    attempts: u32,
    duration: Duration,
    error: Option<String>,
}

impl<'a> Finished<'a> {
    /// A step that ended without outputs or attempts (skipped, upstream-failed, failed early).
    fn without_outputs(id: &'a str, status: StepStatus, error: Option<String>) -> Self {
        Finished {
            id,
            status,
            real_outputs: json!({}),
            masked_outputs: json!({}),
            attempts: 0,
            duration: Duration::ZERO,
            error,
        }
    }
}

impl RunShared {
    /// A step of the run and its resolved plugin.
    fn step(&self, node: crate::dag::Node) -> Result<(&Step, &ResolvedPlugin), ExecError> {
        let id = self.workflow.dag.id(node);
        let plugin = self
            .workflow
            .plugin(id)
            .ok_or_else(|| ExecError::Internal(format!("step `{id}` has no resolved plugin")))?;
        Ok((&self.workflow.steps[id], plugin))
    }

    /// A step reached its final state: publish it to later expressions and observers.
    fn conclude(&self, step: Finished<'_>) -> StepReport {
        let report = self.publish(step);
        self.announce(&report);
        report
    }

    /// Make a step's outcome what later steps' expressions read.
    fn publish(&self, step: Finished<'_>) -> StepReport {
        let Finished {
            id,
            status,
            real_outputs,
            masked_outputs,
            attempts,
            duration,
            error,
        } = step;
        self.finished
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id.to_string(),
                Arc::new(json!({"status": status.as_str(), "outputs": real_outputs})),
            );
        StepReport {
            id: id.to_string(),
            status,
            attempts,
            duration,
            error,
            outputs: masked_outputs,
        }
    }

    /// Tell observers a step finished (once its end is recorded).
    fn announce(&self, report: &StepReport) {
        self.channel.observer.event(&Event::StepFinished {
            step: report.id.clone(),
            status: report.status,
            duration: report.duration,
            error: report.error.clone(),
        });
    }
}
