//! Starts recorded runs and keeps track of them: bounded concurrency, per-schedule queues
//! (`overlap = "queue"`), cancellation, resuming after a restart, and the graceful stop.

use super::metrics::Metrics;
use super::registry::Registry;
use crate::capability::secret_store::SecretStore;
use crate::executor::{Executor, Resume, RunControl, RunSpec};
use crate::store::{AttemptRow, RunStatus, StepStatus, Store, StoreError};
use crate::workflow::Workflow;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// One `[[schedule]]` entry of a served workflow: the runs it triggered form a group, which
/// `overlap` and catch-up keep from running side by side.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ScheduleId {
    pub workflow: String,
    /// Index of the entry in its file.
    pub index: usize,
}

impl ScheduleId {
    /// The `trigger_detail` recorded with the runs of this schedule.
    pub(crate) fn trigger_detail(&self) -> String {
        format!("schedule {}", self.index)
    }

    /// The schedule a run of `workflow` was triggered by, from its `trigger_detail`.
    pub(crate) fn from_trigger_detail(workflow: &str, detail: &str) -> Option<Self> {
        let index = detail.strip_prefix("schedule ")?.parse().ok()?;
        Some(Self {
            workflow: workflow.to_string(),
            index,
        })
    }
}

/// When a submitted run may start (a slot permitting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Now, as a run of no schedule (API, webhook).
    Now,
    /// Now, as a run of this schedule: later ticks see it active.
    InGroup(ScheduleId),
    /// Once no other run of this schedule is active (`overlap = "queue"`, catch-up, resume).
    AfterGroup(ScheduleId),
}

impl Admission {
    /// The schedule the run belongs to, if any.
    pub(crate) fn group(&self) -> Option<&ScheduleId> {
        match self {
            Admission::Now => None,
            Admission::InGroup(id) | Admission::AfterGroup(id) => Some(id),
        }
    }
}

/// What a cancel request found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cancelled {
    /// The run was running: it is being stopped.
    Running,
    /// The run was waiting: it will not start.
    Waiting,
    /// Not running here (finished, or unknown).
    NotActive,
}

struct Active {
    control: RunControl,
    group: Option<ScheduleId>,
}

/// The runs this runner has started or holds back, by id.
#[derive(Default)]
struct ActiveRuns {
    active: HashMap<String, Active>,
    /// Runs waiting for the run of their group to end, oldest first.
    waiting: HashMap<ScheduleId, VecDeque<String>>,
    /// Started but waiting for a free slot.
    pending: usize,
}

/// Starts and tracks runs.
pub(crate) struct Runner {
    store: Store,
    executor: Executor,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    process_env: HashMap<String, String>,
    secret_store: Option<SecretStore>,
    runs: Mutex<ActiveRuns>,
    tasks: TaskTracker,
    slots: Arc<Semaphore>,
    drain: CancellationToken,
    halt: CancellationToken,
}

impl Runner {
    /// A runner starting at most `max_runs` runs at once; runs read `secrets.X` and `env.X`
    /// from `process_env`, then the secret store.
    pub(crate) fn new(
        executor: Executor,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        process_env: HashMap<String, String>,
        secret_store: Option<SecretStore>,
        max_runs: usize,
    ) -> Self {
        Self {
            store: executor.store.clone(),
            executor,
            registry,
            metrics,
            process_env,
            secret_store,
            runs: Mutex::default(),
            tasks: TaskTracker::new(),
            slots: Arc::new(Semaphore::new(max_runs.max(1))),
            drain: CancellationToken::new(),
            halt: CancellationToken::new(),
        }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, ActiveRuns> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Is the server stopping (no new work)?
    pub(crate) fn stopping(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// Runs of `group` running or waiting here.
    pub(crate) fn active_in(&self, group: &ScheduleId) -> Vec<String> {
        let runs = self.runs();
        let mut ids: Vec<String> = runs
            .active
            .iter()
            .filter(|(_, a)| a.group.as_ref() == Some(group))
            .map(|(id, _)| id.clone())
            .collect();
        ids.extend(runs.waiting.get(group).into_iter().flatten().cloned());
        ids
    }

    /// Runs recorded but not started yet.
    pub(crate) fn queue_depth(&self) -> usize {
        let runs = self.runs();
        runs.pending + runs.waiting.values().map(VecDeque::len).sum::<usize>()
    }

    /// Start a recorded run of `workflow` when `admission` lets it.
    pub(crate) fn submit(self: &Arc<Self>, run_id: String, workflow: String, admission: Admission) {
        if let Admission::AfterGroup(group) = &admission {
            let mut runs = self.runs();
            if runs
                .active
                .values()
                .any(|a| a.group.as_ref() == Some(group))
            {
                runs.waiting
                    .entry(group.clone())
                    .or_default()
                    .push_back(run_id);
                drop(runs);
                self.metrics.set_queue_depth(self.queue_depth());
                return;
            }
        }
        let group = admission.group().cloned();
        self.start(run_id, workflow, group);
    }

    fn start(self: &Arc<Self>, run_id: String, workflow: String, group: Option<ScheduleId>) {
        let control = RunControl {
            cancel: CancellationToken::new(),
            drain: self.drain.child_token(),
            halt: self.halt.child_token(),
        };
        {
            let mut runs = self.runs();
            runs.active.insert(
                run_id.clone(),
                Active {
                    control: control.clone(),
                    group: group.clone(),
                },
            );
            runs.pending += 1;
        }
        let runner = self.clone();
        self.tasks.spawn(async move {
            let slot = tokio::select! {
                permit = runner.slots.clone().acquire_owned() => permit.ok(),
                () = control.drain.cancelled() => None,
                () = control.cancel.cancelled() => None,
            };
            runner.runs().pending -= 1;
            runner.metrics.set_queue_depth(runner.queue_depth());
            match slot {
                Some(_slot) => runner.execute(&run_id, &workflow, control).await,
                None if control.cancel.is_cancelled() => {
                    if let Err(e) = runner
                        .store
                        .finish_run(
                            &run_id,
                            RunStatus::Cancelled,
                            Some("cancelled before it started"),
                        )
                        .await
                    {
                        tracing::error!(run = %run_id, "cannot record the run as cancelled: {e}");
                    }
                }
                None => {} // stopping: stays queued, resumed at the next start
            }
            runner.finished(&run_id, group);
        });
    }

    /// A run ended here: start the next run waiting in its group.
    fn finished(self: &Arc<Self>, run_id: &str, group: Option<ScheduleId>) {
        let next = {
            let mut runs = self.runs();
            runs.active.remove(run_id);
            match &group {
                Some(g) if !self.drain.is_cancelled() => {
                    runs.waiting.get_mut(g).and_then(VecDeque::pop_front)
                }
                _ => None,
            }
        };
        if let (Some(next), Some(g)) = (next, &group) {
            self.start(next, g.workflow.clone(), group.clone());
        }
        self.metrics.set_queue_depth(self.queue_depth());
    }

    /// Cancel a run running or waiting here.
    pub(crate) async fn cancel(&self, run_id: &str) -> Result<Cancelled, StoreError> {
        let waiting = {
            let mut runs = self.runs();
            if let Some(active) = runs.active.get(run_id) {
                active.control.cancel.cancel();
                return Ok(Cancelled::Running);
            }
            let mut found = false;
            for queue in runs.waiting.values_mut() {
                if let Some(i) = queue.iter().position(|id| id == run_id) {
                    queue.remove(i);
                    found = true;
                }
            }
            found
        };
        if waiting {
            self.store
                .finish_run(
                    run_id,
                    RunStatus::Cancelled,
                    Some("cancelled before it started"),
                )
                .await?;
            self.metrics.set_queue_depth(self.queue_depth());
            return Ok(Cancelled::Waiting);
        }
        Ok(Cancelled::NotActive)
    }

    /// Execute one recorded run (new, queued or interrupted) to its end.
    async fn execute(&self, run_id: &str, workflow: &str, control: RunControl) {
        if let Err(e) = self.try_execute(run_id, workflow, control).await {
            tracing::error!(run = run_id, "run failed to execute: {e:#}");
            if let Err(e) = self
                .store
                .finish_run(run_id, RunStatus::Failed, Some(&format!("{e:#}")))
                .await
            {
                tracing::error!(run = run_id, "cannot record the run as failed: {e}");
            }
        }
    }

    async fn try_execute(
        &self,
        run_id: &str,
        workflow: &str,
        control: RunControl,
    ) -> anyhow::Result<()> {
        let served = self.registry.get(workflow).ok_or_else(|| {
            anyhow::anyhow!(
                "workflow `{workflow}` is not served (removed, renamed or invalid): fix its file and trigger again"
            )
        })?;
        let row = self
            .store
            .run(run_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("run {run_id} is not recorded"))?;
        // Attempts left open by a crash were interrupted: they run again (at-least-once).
        self.store
            .close_open_steps(
                run_id,
                StepStatus::Interrupted,
                "interrupted: the server stopped while it ran",
            )
            .await?;
        let mut resume = resume_from(&self.store.attempts(run_id).await?, &served.workflow);
        resume.run_id = run_id.to_string();
        resume.next_seq = self.store.next_log_seq(run_id).await?;
        if !resume.done.is_empty() || !resume.next_attempt.is_empty() {
            tracing::info!(
                run = run_id,
                done = resume.done.len(),
                "resuming run: finished steps are not run again"
            );
        }
        let spec = RunSpec {
            workflow: served.workflow.clone(),
            inputs: row.inputs.as_object().cloned().unwrap_or_default(),
            trigger: row.trigger,
            process_env: self.process_env.clone(),
            secret_store: self.secret_store.clone(),
            control,
            resume: Some(resume),
        };
        let observer = Arc::new(self.metrics.observer(workflow));
        self.executor.run(spec, observer).await?;
        Ok(())
    }

    /// Stop: start nothing new, let running steps finish within `grace`, then abort the rest
    /// (recorded `interrupted`, resumed at the next start).
    pub(crate) async fn shutdown(&self, grace: Duration) {
        self.drain.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "grace period of {} over: interrupting running steps",
                humantime::format_duration(grace)
            );
            self.halt.cancel();
            self.tasks.wait().await;
        }
    }
}

/// Where a recorded run stands: finished steps (with reusable outputs) are done; a step whose
/// last attempt was interrupted, or whose outputs were masked, runs again as the next attempt.
pub(crate) fn resume_from(attempts: &[AttemptRow], workflow: &Workflow) -> Resume {
    let mut last: HashMap<&str, &AttemptRow> = HashMap::new();
    for a in attempts {
        let entry = last.entry(a.step.as_str()).or_insert(a);
        if a.attempt >= entry.attempt {
            *entry = a;
        }
    }
    let mut resume = Resume::default();
    for id in workflow.steps.keys() {
        let Some(a) = last.get(id.as_str()) else {
            continue;
        };
        let done = match a.status {
            StepStatus::Succeeded if !a.resumable => None,
            StepStatus::Succeeded
            | StepStatus::Skipped
            | StepStatus::Failed
            | StepStatus::UpstreamFailed => Some(a.status),
            StepStatus::Running
            | StepStatus::Retrying
            | StepStatus::Cancelled
            | StepStatus::Interrupted => None,
        };
        match done {
            Some(status) => {
                let outputs = a.outputs.clone().unwrap_or_else(|| json!({}));
                resume.done.insert(id.clone(), (status, outputs));
            }
            None => {
                resume
                    .next_attempt
                    .insert(id.clone(), u32::try_from(a.attempt + 1).unwrap_or(u32::MAX));
            }
        }
    }
    resume
}
