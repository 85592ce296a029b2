//! Runs a validated workflow: walks the DAG, starts ready steps concurrently (bounded), renders
//! each step's config, calls its plugin with retries, masks and records everything.

pub mod events;
mod plan_mode;
mod sink;

pub use events::{Event, Observer, Silent};
pub use plan_mode::{PlanReport, PlannedStep, StepPlan, plan};

use crate::capability::connections::{ConnectionError, Connections};
use crate::capability::secret_store::SecretStore;
use crate::capability::secrets::{self, LookupError};
use crate::capability::{Granter, LogLevel, Masker, StepSink};
use crate::dag::{Dag, Node, Walk};
use crate::resolve::ResolvedWorkflow;
use crate::runtime::{Fault, Invocation, Output, Runtime, StepContext};
use crate::store::{
    NewRun, RunStatus, StepEnd, StepStatus, Store, StoreError, Trigger, new_run_id,
};
use crate::workflow::Step;
use crate::workflow::expr::{Reference, Scope};
use serde::Serialize;
use serde_json::{Map, Value as Json, json};
use sink::{RunChannel, StepEvents};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
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
}

/// The outcome of one step, as reported (masked).
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub id: String,
    pub status: StepStatus,
    pub attempts: u32,
    #[serde(serialize_with = "as_millis")]
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
    #[serde(serialize_with = "as_millis")]
    pub duration: Duration,
    pub steps: Vec<StepReport>,
}

impl RunReport {
    /// Did every step succeed or get skipped?
    pub fn succeeded(&self) -> bool {
        self.status == RunStatus::Succeeded
    }
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Runs workflows against a runtime and a store.
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
    finished: RwLock<Map<String, Json>>,
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
        let started = Instant::now();
        let masker = Arc::new(Masker::default());
        let workflow = spec.workflow.clone();
        let lookup = spec.lookup(&masker)?;
        let resume = spec.resume.unwrap_or_default();
        let run_id = if resume.run_id.is_empty() {
            new_run_id()
        } else {
            resume.run_id.clone()
        };
        let base = Scope {
            inputs: Arc::new(Json::Object(spec.inputs)),
            steps: Arc::new(Json::Null),
            secrets: Arc::new(Json::Object(lookup.secrets)),
            env: Arc::new(Json::Object(lookup.env)),
            run: Arc::new(
                json!({"id": run_id, "trigger": spec.trigger.as_str(), "workflow": workflow.name}),
            ),
        };
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
            finished: RwLock::new(Map::new()),
            channel: Arc::new(RunChannel {
                masker: masker.clone(),
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
            let report = shared.conclude(
                id,
                *status,
                outputs.clone(),
                masked,
                0,
                Duration::ZERO,
                None,
            );
            reports.push(report);
        }
        let done: HashMap<String, StepStatus> = resume
            .done
            .iter()
            .map(|(id, (s, _))| (id.clone(), *s))
            .collect();

        let walked = self.walk(&shared, &spec.control, done, &mut reports).await;
        drop(shared); // the last owner of the records channel: the writer drains and stops
        let _ = writer.await;
        let (reports, status) = match walked {
            Ok(Walked::Cancelled) => {
                self.store
                    .close_open_steps(&run_id, StepStatus::Cancelled, "cancelled while running")
                    .await?;
                self.store
                    .finish_run(
                        &run_id,
                        RunStatus::Cancelled,
                        Some("cancelled before the end"),
                    )
                    .await?;
                (reports, RunStatus::Cancelled)
            }
            Ok(Walked::Interrupted) => {
                self.store
                    .close_open_steps(
                        &run_id,
                        StepStatus::Interrupted,
                        "interrupted by a server stop",
                    )
                    .await?;
                self.store
                    .set_run_status(
                        &run_id,
                        RunStatus::Interrupted,
                        Some("server stopped: resumes at the next start"),
                    )
                    .await?;
                (reports, RunStatus::Interrupted)
            }
            Ok(Walked::Completed) => {
                let ok = reports.iter().all(|s| !s.status.is_failure());
                let status = if ok {
                    RunStatus::Succeeded
                } else {
                    RunStatus::Failed
                };
                self.store.finish_run(&run_id, status, None).await?;
                (reports, status)
            }
            Err(e) => {
                self.store
                    .close_open_steps(&run_id, StepStatus::Cancelled, "cancelled while running")
                    .await?;
                self.store
                    .finish_run(&run_id, RunStatus::Failed, Some(&e.to_string()))
                    .await?;
                return Err(e);
            }
        };
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

    /// Walk the DAG from the steps already `done`: start ready steps up to the bound, decide
    /// dependants as steps finish. Reports of finished steps are pushed to `reports`.
    async fn walk(
        &self,
        shared: &Arc<RunShared>,
        control: &RunControl,
        mut status: HashMap<String, StepStatus>,
        reports: &mut Vec<StepReport>,
    ) -> Result<Walked, ExecError> {
        let dag = &shared.workflow.dag;
        let mut walk = Walk::start(dag, |n| status.contains_key(dag.id(n)));
        let mut ready: VecDeque<String> = VecDeque::new();
        let mut running: JoinSet<Result<StepReport, ExecError>> = JoinSet::new();
        let bound = self.max_parallel.max(1);
        loop {
            // Steps whose needs are all decided: run them, or record them upstream-failed.
            while let Some(node) = walk.next_decidable() {
                let failed = failed_needs(dag, node, &status);
                let id = dag.id(node);
                if failed.is_empty() {
                    ready.push_back(id.to_string());
                    continue;
                }
                let report = record_upstream_failed(shared, id, &failed).await?;
                status.insert(id.to_string(), report.status);
                reports.push(report);
                walk.finished(node);
            }
            let draining = control.drain.is_cancelled();
            while !draining
                && running.len() < bound
                && let Some(id) = ready.pop_front()
            {
                let shared = shared.clone();
                running.spawn(async move { run_step(&shared, &id).await });
            }
            if running.is_empty() {
                return Ok(if ready.is_empty() {
                    Walked::Completed
                } else {
                    Walked::Interrupted
                });
            }
            let joined = tokio::select! {
                biased;
                () = control.cancel.cancelled() => {
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                    return Ok(Walked::Cancelled);
                }
                () = control.halt.cancelled() => {
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                    return Ok(Walked::Interrupted);
                }
                // Wake up to stop starting steps; running ones are awaited below.
                () = control.drain.cancelled(), if !draining => continue,
                joined = running.join_next() => joined,
            };
            let Some(joined) = joined else {
                continue;
            };
            let report =
                joined.map_err(|e| ExecError::Internal(format!("step task failed: {e}")))??;
            if let Some(node) = dag.node(&report.id) {
                walk.finished(node);
            }
            status.insert(report.id.clone(), report.status);
            reports.push(report);
        }
    }
}

/// The needs of a step that failed: if any, the step is upstream-failed without running (a
/// need skipped by its own `if` does not count).
fn failed_needs<'d>(
    dag: &'d Dag,
    node: Node,
    status: &HashMap<String, StepStatus>,
) -> Vec<&'d str> {
    dag.needs(node)
        .iter()
        .map(|&n| dag.id(n))
        .filter(|n| status.get(*n).is_some_and(|s| s.is_failure()))
        .collect()
}

/// Record a step that will not run because a need failed.
async fn record_upstream_failed(
    shared: &RunShared,
    id: &str,
    failed: &[&str],
) -> Result<StepReport, ExecError> {
    let error = format!("not run: needed step `{}` failed", failed.join("`, `"));
    let step = &shared.workflow.steps[id];
    finish_without_running(shared, step, StepStatus::UpstreamFailed, Some(error)).await
}

async fn finish_without_running(
    shared: &RunShared,
    step: &Step,
    status: StepStatus,
    error: Option<String>,
) -> Result<StepReport, ExecError> {
    let plugin = step.plugin.to_string();
    let (run, id) = (&shared.run_id, &step.id);
    shared.store.start_step(run, id, 0, &plugin, status).await?;
    let end = StepEnd {
        status,
        resumable: false,
        outputs: None,
        error: error.as_deref(),
        error_kind: None,
    };
    shared.store.finish_step(run, id, 0, end).await?;
    Ok(shared.conclude(id, status, json!({}), json!({}), 0, Duration::ZERO, error))
}

impl RunShared {
    /// A step reached its final state: publish it to later expressions and observers.
    #[allow(
        clippy::too_many_arguments,
        reason = "the fields of the report, named at each call"
    )]
    fn conclude(
        &self,
        id: &str,
        status: StepStatus,
        real_outputs: Json,
        masked_outputs: Json,
        attempts: u32,
        duration: Duration,
        error: Option<String>,
    ) -> StepReport {
        self.finished
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id.to_string(),
                json!({"status": status.as_str(), "outputs": real_outputs}),
            );
        self.channel.observer.event(&Event::StepFinished {
            step: id.to_string(),
            status,
            duration,
            error: error.clone(),
        });
        StepReport {
            id: id.to_string(),
            status,
            attempts,
            duration,
            error,
            outputs: masked_outputs,
        }
    }
}

/// The expression scope for a step: the run's values plus the finished steps it reads.
fn scope_for(shared: &RunShared, step: &Step) -> Scope {
    let mut scope = shared.base.clone();
    let mut read: Vec<&str> = step
        .exprs()
        .into_iter()
        .flat_map(|e| e.references.iter())
        .filter_map(|r| match r {
            Reference::Step(Some(id)) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let reads_all = step
        .exprs()
        .iter()
        .any(|e| e.references.contains(&Reference::Step(None)));
    if reads_all {
        let finished = shared.finished.read().unwrap_or_else(|e| e.into_inner());
        scope.steps = Arc::new(Json::Object(finished.clone()));
    } else if !read.is_empty() {
        read.sort();
        read.dedup();
        let finished = shared.finished.read().unwrap_or_else(|e| e.into_inner());
        let steps = read
            .into_iter()
            .filter_map(|id| finished.get(id).map(|v| (id.to_string(), v.clone())))
            .collect();
        scope.steps = Arc::new(Json::Object(steps));
    }
    scope
}

/// Run one step to its end: `if`, render, check, attempts with retries.
async fn run_step(shared: &RunShared, id: &str) -> Result<StepReport, ExecError> {
    let step = &shared.workflow.steps[id];
    let started = Instant::now();
    let masker = &shared.channel.masker;
    let scope = scope_for(shared, step);
    if let Some(condition) = &step.condition {
        match condition.eval_bool(&scope) {
            Ok(true) => {}
            Ok(false) => {
                return finish_without_running(shared, step, StepStatus::Skipped, None).await;
            }
            Err(e) => {
                let error = masker.mask(&format!("`if` failed: {e}"));
                return finish_without_running(shared, step, StepStatus::Failed, Some(error)).await;
            }
        }
    }
    let resolved = shared
        .workflow
        .plugin(id)
        .ok_or_else(|| ExecError::Internal(format!("step `{id}` has no resolved plugin")))?;
    let config = match step.with.render(&scope) {
        Ok(config) => config,
        Err(e) => {
            let error = masker.mask(&format!("cannot render `with`: {e}"));
            return finish_without_running(shared, step, StepStatus::Failed, Some(error)).await;
        }
    };
    if let Err(problems) = resolved.check_config(&config) {
        let error = masker.mask(&format!(
            "`with` does not match plugin `{}` after rendering: {problems}",
            resolved.info.name
        ));
        return finish_without_running(shared, step, StepStatus::Failed, Some(error)).await;
    }
    // Straight into a buffer (`Value`'s `Display` goes through a formatter, piece by piece).
    let config = serde_json::to_string(&config).expect("a JSON value always serialises");
    let events = Arc::new(StepEvents::new(shared.channel.clone(), id));
    let granter = Arc::new(Granter::new(id, step.allow.clone()));
    let plugin_name = step.plugin.to_string();
    let run = shared.run_id.as_str();
    let mut attempt = shared.next_attempt.get(id).copied().unwrap_or(1);
    loop {
        events.attempt.store(attempt, Ordering::Relaxed);
        shared
            .store
            .start_step(run, id, attempt, &plugin_name, StepStatus::Running)
            .await?;
        shared.channel.observer.event(&Event::StepStarted {
            step: id.to_string(),
            attempt,
        });
        let invocation = Invocation {
            ctx: StepContext {
                run_id: shared.run_id.clone(),
                workflow: shared.workflow.name.clone(),
                step_id: id.to_string(),
                attempt,
                trigger: shared.trigger.to_string(),
            },
            config: &config,
            limits: step.limits,
            timeout: step.timeout,
            granter: granter.clone(),
            sink: events.clone(),
            connections: shared.connections.clone(),
        };
        let result = shared.runtime.run(&resolved.plugin, invocation).await;
        let denials = events.take_denials();
        let fault = match result {
            Ok(outputs) => {
                let secret_names: Vec<String> = outputs
                    .iter()
                    .filter(|o| o.secret)
                    .map(|o| o.name.clone())
                    .collect();
                let (real, masked) = collect_outputs(masker, outputs);
                if let Err(error) =
                    keep_secrets(shared, step, &real, &secret_names, events.as_ref())
                {
                    let error = masker.mask(&error);
                    let end = StepEnd {
                        status: StepStatus::Failed,
                        resumable: false,
                        outputs: Some(&for_store(&masked)),
                        error: Some(&error),
                        error_kind: Some("store-secret"),
                    };
                    shared.store.finish_step(run, id, attempt, end).await?;
                    let took = started.elapsed();
                    return Ok(shared.conclude(
                        id,
                        StepStatus::Failed,
                        json!({}),
                        masked,
                        attempt,
                        took,
                        Some(error),
                    ));
                }
                let stored = for_store(&masked);
                let end = StepEnd {
                    status: StepStatus::Succeeded,
                    // Nothing masked or cut: a resumed run can reuse these outputs as they are.
                    resumable: stored == real,
                    outputs: Some(&stored),
                    error: None,
                    error_kind: None,
                };
                shared.store.finish_step(run, id, attempt, end).await?;
                let took = started.elapsed();
                return Ok(shared.conclude(
                    id,
                    StepStatus::Succeeded,
                    real,
                    masked,
                    attempt,
                    took,
                    None,
                ));
            }
            Err(fault) => fault,
        };
        // A denial explains the failure better than what the guest made of it.
        let (kind, message) = match denials.first() {
            Some(denial) if !matches!(fault, Fault::Timeout(_) | Fault::OutOfMemory(_)) => {
                ("denied", format!("denied: {denial}"))
            }
            _ => (fault.kind(), fault.to_string()),
        };
        let message = masker.mask(&message);
        let retry = fault.is_retryable() && denials.is_empty() && attempt <= step.retry.max;
        let status = if retry {
            StepStatus::Retrying
        } else {
            StepStatus::Failed
        };
        let end = StepEnd {
            status,
            resumable: false,
            outputs: None,
            error: Some(&message),
            error_kind: Some(kind),
        };
        shared.store.finish_step(run, id, attempt, end).await?;
        if !retry {
            let took = started.elapsed();
            return Ok(shared.conclude(
                id,
                StepStatus::Failed,
                json!({}),
                json!({}),
                attempt,
                took,
                Some(message),
            ));
        }
        let delay = step.retry.delay_before(attempt + 1);
        events.log(
            LogLevel::Warn,
            &format!(
                "attempt {attempt} failed: {message}; retrying in {}",
                humantime::format_duration(delay)
            ),
        );
        shared.channel.observer.event(&Event::StepRetrying {
            step: id.into(),
            attempt,
            delay,
            error: message,
        });
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// Outputs larger than this are recorded in the run store as a summary (they still flow to
/// the steps that read them): a 100k-record batch would otherwise be copied into every run row.
const MAX_STORED_OUTPUTS: usize = 1 << 20;

/// The outputs as recorded: as is, or a summary naming each output's size when too large.
fn for_store(outputs: &Json) -> Json {
    let size = serde_json::to_vec(outputs).map_or(0, |v| v.len());
    if size <= MAX_STORED_OUTPUTS {
        return outputs.clone();
    }
    let sizes: Map<String, Json> = outputs
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                json!(serde_json::to_vec(v).map_or(0, |b| b.len())),
            )
        })
        .collect();
    json!({"_truncated": format!("{size} bytes of outputs not recorded (limit {MAX_STORED_OUTPUTS})"), "_sizes": sizes})
}

/// Write the outputs named by the step's `store_secret` into the host secret store.
fn keep_secrets(
    shared: &RunShared,
    step: &Step,
    outputs: &Json,
    secret_names: &[String],
    events: &StepEvents,
) -> Result<(), String> {
    for keep in &step.store_secrets {
        let output = match (&keep.output, secret_names) {
            (Some(o), _) => o.clone(),
            (None, [only]) => only.clone(),
            (None, names) => {
                return Err(format!(
                    "store_secret = \"{}\" needs exactly one secret output, the plugin returned {}: name it, e.g. {{ {} = \"{}\" }}",
                    keep.name,
                    names.len(),
                    names.first().map_or("password", String::as_str),
                    keep.name
                ));
            }
        };
        let value = match outputs.get(&output) {
            Some(Json::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => {
                return Err(format!(
                    "store_secret: the step returned no output `{output}`"
                ));
            }
        };
        let store = shared
            .secret_store
            .as_ref()
            .ok_or("store_secret: no secret store is configured")?;
        store
            .set(&keep.name, &value)
            .map_err(|e| format!("store_secret: {e}"))?;
        events.log(
            LogLevel::Info,
            &format!("stored output `{output}` as secret `{}`", keep.name),
        );
    }
    Ok(())
}

/// Outputs as (real values for expressions, masked values for everything shown or stored).
/// Secret outputs are registered with the masker first, so they are masked from now on.
fn collect_outputs(masker: &Masker, outputs: Vec<Output>) -> (Json, Json) {
    for o in outputs.iter().filter(|o| o.secret) {
        match serde_json::from_str::<Json>(&o.value) {
            Ok(Json::String(s)) => masker.register(&s),
            _ => masker.register(&o.value),
        }
    }
    let mut real = Map::new();
    for o in outputs {
        let value = serde_json::from_str(&o.value).unwrap_or(Json::String(o.value));
        real.insert(o.name, value);
    }
    let real = Json::Object(real);
    let masked = masker.mask_json(&real);
    (real, masked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_need_makes_step_upstream_failed_and_skipped_need_does_not() {
        let dag = Dag::build([
            ("a", vec![]),
            ("b", vec!["a"]),
            ("c", vec!["a"]),
            ("d", vec!["b", "c"]),
        ])
        .unwrap();
        let d = dag.node("d").unwrap();
        let mut status = HashMap::from([
            ("b".to_string(), StepStatus::Skipped),
            ("c".to_string(), StepStatus::Succeeded),
        ]);
        assert!(failed_needs(&dag, d, &status).is_empty());
        status.insert("c".into(), StepStatus::UpstreamFailed);
        assert_eq!(failed_needs(&dag, d, &status), ["c"]);
    }

    #[test]
    fn large_outputs_are_recorded_as_a_summary_and_small_ones_as_is() {
        let small = json!({"n": 1});
        assert_eq!(for_store(&small), small);
        let big = json!({"rows": "x".repeat(MAX_STORED_OUTPUTS + 1), "n": 1});
        let stored = for_store(&big);
        assert!(
            stored["_truncated"]
                .as_str()
                .unwrap()
                .contains("not recorded")
        );
        assert_eq!(stored["_sizes"]["n"], 1);
        assert_eq!(stored["_sizes"]["rows"], MAX_STORED_OUTPUTS + 3);
    }
}
