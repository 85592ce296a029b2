//! This process as a worker on the shared step queue: it starts recorded runs (puts their
//! steps on the queue), claims ready steps its labels allow, runs them under a lease it renews
//! in one batched update, and hands back what it holds when it stops. Any number of workers
//! can share a PostgreSQL store; a SQLite store has exactly one (this process).

use super::metrics::Metrics;
use super::registry::Registry;
use crate::capability::secret_store::SecretStore;
use crate::executor::{Attach, ClaimControl, ClaimOutcome, Executor, RunHandle, Stop};
use crate::resolve::ResolvedWorkflow;
use crate::store::{
    Claim, Claimer, QueuedStep, RunRow, RunStatus, StepStatus, Store, StoreError, WorkerRow,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
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
}

/// When a recorded run may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Now, as a run of this schedule: later ticks see it active.
    InGroup(ScheduleId),
    /// Once no other run of this schedule is active (`overlap = "queue"`, catch-up).
    AfterGroup(ScheduleId),
}

impl Admission {
    /// Does the run wait for the other runs of its schedule?
    pub(crate) fn waits(&self) -> bool {
        matches!(self, Admission::AfterGroup(_))
    }
}

/// What a cancel request found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cancelled {
    /// The run had started: its running steps are being stopped.
    Running,
    /// The run had not started: it will not.
    Waiting,
    /// Not queued or running.
    NotActive,
}

/// How this process works as a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Labels steps' `runs_on` are matched against.
    pub labels: Vec<String>,
    /// Takes steps without `runs_on`.
    pub untagged: bool,
    /// How long a claim holds without renewal; renewed every fifth of it.
    pub lease: Duration,
    /// Most steps running here at once.
    pub max_steps: usize,
    /// Most runs started and unfinished at once (all workers together).
    pub max_runs: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            labels: Vec::new(),
            untagged: true,
            lease: Duration::from_secs(15),
            max_steps: 16,
            max_runs: 16,
        }
    }
}

/// An attempt running here.
struct InFlight {
    control: Arc<ClaimControl>,
    /// When the claim was committed: a renewal asked before it cannot have seen it.
    since: Instant,
}

/// Starts runs, claims and runs steps, renews leases.
pub(crate) struct Runner {
    store: Store,
    executor: Arc<Executor>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    process_env: HashMap<String, String>,
    secret_store: Option<SecretStore>,
    /// This worker's id in the `workers` table.
    pub(crate) id: String,
    config: WorkerConfig,
    /// Attempts running here, by (run, step, lease token).
    in_flight: Mutex<HashMap<(String, String, i64), InFlight>>,
    /// Runs attached here, by id.
    attached: Mutex<HashMap<String, Arc<RunHandle>>>,
    /// Something may be claimable: look now instead of at the next poll.
    wake: Notify,
    /// A run may be startable (one was recorded, or one of a schedule ended).
    start: Notify,
    queue_depth: AtomicUsize,
    tasks: TaskTracker,
    /// Stop claiming (SIGTERM).
    drain: CancellationToken,
}

impl Runner {
    pub(crate) fn new(
        executor: Executor,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        process_env: HashMap<String, String>,
        secret_store: Option<SecretStore>,
        config: WorkerConfig,
    ) -> Self {
        Self {
            store: executor.store.clone(),
            executor: Arc::new(executor),
            registry,
            metrics,
            process_env,
            secret_store,
            id: worker_id(),
            config,
            in_flight: Mutex::default(),
            attached: Mutex::default(),
            wake: Notify::new(),
            start: Notify::new(),
            queue_depth: AtomicUsize::new(0),
            tasks: TaskTracker::new(),
            drain: CancellationToken::new(),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String, i64), InFlight>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn attached(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<RunHandle>>> {
        self.attached.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Is the server stopping (no new work)?
    pub(crate) fn stopping(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// Steps ready and not claimed, at the last look.
    pub(crate) fn queue_depth(&self) -> usize {
        self.queue_depth.load(Ordering::Relaxed)
    }

    /// Runs of `group` queued or running (on any worker), oldest first.
    pub(crate) async fn active_in(&self, group: &ScheduleId) -> Result<Vec<String>, StoreError> {
        self.store
            .active_runs_of(&group.workflow, &group.trigger_detail())
            .await
    }

    /// A run was recorded `queued`: start it (its admission was recorded with it).
    pub(crate) fn submit(&self) {
        self.start.notify_one();
    }

    /// Register this worker and pick up what a previous process left: on SQLite (one
    /// process) leases held by a dead process are released at once.
    pub(crate) async fn register(&self) -> Result<(), StoreError> {
        self.sync_clock().await?;
        let row = WorkerRow {
            id: self.id.clone(),
            host: hostname(),
            pid: i64::from(std::process::id()),
            labels: self.config.labels.clone(),
            untagged: self.config.untagged,
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: 0,
            heartbeat_at: 0,
            draining: false,
            stopped_at: None,
            running: 0,
        };
        self.store.register_worker(&row).await?;
        if !self.store.shared() {
            let released = self
                .store
                .release_all_leases("interrupted: the server stopped while it ran")
                .await?;
            if released > 0 {
                tracing::info!("{released} steps left running by the previous server run again");
            }
        }
        self.store.resume_interrupted().await?;
        Ok(())
    }

    /// Claim and run steps until [`Runner::shutdown`].
    pub(crate) async fn work(self: Arc<Self>) {
        let mut idle = Duration::from_millis(5);
        let mut last_sweep = Instant::now() - Duration::from_secs(60);
        let mut start_runs = true;
        while !self.drain.is_cancelled() {
            if start_runs || last_sweep.elapsed() >= Duration::from_secs(1) {
                if last_sweep.elapsed() >= Duration::from_secs(1) {
                    self.sweep().await;
                    last_sweep = Instant::now();
                }
                if let Err(e) = self.start_runs().await {
                    tracing::error!("cannot start queued runs: {e}");
                }
                start_runs = false;
            }
            let claimed = match self.claim().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!("cannot claim steps: {e}");
                    0
                }
            };
            if claimed > 0 {
                idle = Duration::from_millis(5);
                continue;
            }
            let woken = tokio::select! {
                () = self.drain.cancelled() => break,
                () = self.start.notified() => {
                    start_runs = true;
                    true
                }
                () = self.wake.notified() => true,
                () = tokio::time::sleep(idle) => false,
            };
            idle = if woken {
                Duration::from_millis(5)
            } else {
                (idle * 2).min(MAX_IDLE_POLL)
            };
        }
    }

    /// Claim what fits in the free slots and start each claimed attempt.
    async fn claim(self: &Arc<Self>) -> Result<usize, StoreError> {
        let running = self.in_flight().len();
        let free = self.config.max_steps.saturating_sub(running);
        // Claim in batches: a claim scans the ready steps, so one per freed slot would cost
        // the store more than the steps themselves.
        let batch = (self.config.max_steps / 4).max(1);
        if free == 0 || (running > 0 && free < batch) || !self.store.any_ready().await? {
            return Ok(0);
        }
        let claimer = Claimer {
            worker: &self.id,
            labels: &self.config.labels,
            untagged: self.config.untagged,
            lease_ms: millis(self.config.lease),
        };
        let claims = self.store.claim(&claimer, free).await?;
        let n = claims.len();
        for claim in claims {
            let control = Arc::new(ClaimControl::default());
            self.in_flight().insert(
                (claim.run_id.clone(), claim.step.clone(), claim.token),
                InFlight {
                    control: control.clone(),
                    since: Instant::now(),
                },
            );
            let runner = self.clone();
            self.tasks.spawn(async move {
                // Forgotten however the task ends (a panic included): its lease then expires
                // and another attempt runs.
                let _done = Landed {
                    runner: runner.clone(),
                    key: (claim.run_id.clone(), claim.step.clone(), claim.token),
                };
                runner.run_claim(&claim, &control).await;
            });
        }
        Ok(n)
    }

    /// Run one claimed attempt; with the step's end, end the run if it was its last.
    async fn run_claim(&self, claim: &Claim, control: &ClaimControl) {
        let handle = match self.attach(&claim.run_id).await {
            Ok(handle) => handle,
            Err(Unattached::Store(e)) => {
                // The store may be back soon: the lease runs out and the step is claimed again.
                tracing::warn!(run = %claim.run_id, step = %claim.step, "cannot read the run: {e}");
                return;
            }
            Err(Unattached::Cannot(error)) => {
                tracing::error!(run = %claim.run_id, step = %claim.step, "{error}");
                self.fail_claim(claim, &error).await;
                return;
            }
        };
        match self.executor.run_claim(&handle, claim, control).await {
            Ok(ClaimOutcome::Final { .. }) => self.after_step(&claim.run_id).await,
            Ok(ClaimOutcome::Again) => {}
            Ok(ClaimOutcome::Lost(lost)) => {
                eprintln!("orch serve: {lost} (another worker took it over)");
            }
            Err(crate::executor::ExecError::Store(e)) => {
                tracing::warn!(run = %claim.run_id, step = %claim.step, "the run store failed under the step (its lease runs out, then it runs again): {e}");
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(run = %claim.run_id, step = %claim.step, "step failed to execute: {error}");
                self.fail_claim_with(claim, handle.workflow(), &error).await;
            }
        }
    }

    /// A step ended: if the run has nothing left, record its end and forget it here.
    async fn after_step(&self, run: &str) {
        match self.store.finish_run_if_done(run).await {
            Ok(Some(status)) => {
                tracing::info!(run, "run {status}");
                self.attached().remove(run);
                // A run of a schedule ended: the next one of its group may start.
                self.start.notify_one();
            }
            Ok(None) => {}
            Err(e) => tracing::error!(run, "cannot record the end of the run: {e}"),
        }
    }

    /// The run as this worker runs it, attached once.
    async fn attach(&self, run_id: &str) -> Result<Arc<RunHandle>, Unattached> {
        if let Some(handle) = self.attached().get(run_id) {
            return Ok(handle.clone());
        }
        let row = self
            .store
            .run(run_id)
            .await
            .map_err(Unattached::Store)?
            .ok_or_else(|| Unattached::Cannot(format!("run {run_id} is not recorded")))?;
        let served = self.registry.get(&row.workflow).ok_or_else(|| {
            Unattached::Cannot(format!(
                "workflow `{}` is not served by this worker (removed, renamed or invalid): fix its file and trigger again",
                row.workflow
            ))
        })?;
        let handle = self
            .executor
            .attach(Attach {
                run_id: row.id.clone(),
                workflow: served.workflow.clone(),
                inputs: row.inputs.as_object().cloned().unwrap_or_default(),
                trigger: row.trigger,
                process_env: self.process_env.clone(),
                secret_store: self.secret_store.clone(),
                observer: Arc::new(self.metrics.observer(&row.workflow)),
            })
            .map_err(|e| Unattached::Cannot(format!("{e:#}")))?;
        // Two attempts of one run attaching at once share whichever got in first.
        Ok(self
            .attached()
            .entry(run_id.to_string())
            .or_insert_with(|| Arc::new(handle))
            .clone())
    }

    /// Record a claimed step failed without running it (its run cannot be attached here).
    async fn fail_claim(&self, claim: &Claim, error: &str) {
        let served = match self.store.run(&claim.run_id).await {
            Ok(Some(row)) => self.registry.get(&row.workflow),
            Ok(None) => None,
            // The lease runs out and the step is claimed again.
            Err(_) => return,
        };
        match served {
            Some(served) => self.fail_claim_with(claim, &served.workflow, error).await,
            None => {
                // Without the DAG its dependants cannot be decided: the run fails as a whole.
                if let Err(e) = self.store.abandon_run(&claim.run_id, error).await {
                    tracing::error!(run = %claim.run_id, "cannot record the run as failed: {e}");
                }
            }
        }
    }

    async fn fail_claim_with(&self, claim: &Claim, workflow: &ResolvedWorkflow, error: &str) {
        if let Err(e) = self
            .executor
            .fail_claim(workflow, claim, StepStatus::Failed, error)
            .await
        {
            tracing::error!(run = %claim.run_id, "cannot record the step as failed: {e}");
        }
        self.after_step(&claim.run_id).await;
    }

    /// Start the runs that may start: their steps go on the queue.
    async fn start_runs(&self) -> Result<(), StoreError> {
        if self.drain.is_cancelled() {
            return Ok(());
        }
        let running = self
            .store
            .count_runs_by_status()
            .await?
            .into_iter()
            .find(|(s, _)| *s == RunStatus::Running)
            .map_or(0, |(_, n)| n);
        let room = (self.config.max_runs as i64).saturating_sub(running);
        let mut runs = self.store.runs_to_start(room.max(0) + 8).await?;
        // Runs already running (recovered) do not count against the room.
        let mut started_new = 0;
        runs.retain(|r| {
            if r.status == RunStatus::Queued {
                started_new += 1;
                started_new <= room
            } else {
                true
            }
        });
        for run in runs {
            if let Err(e) = self.start_run(&run).await {
                tracing::error!(run = %run.id, "cannot start the run: {e}");
            }
        }
        Ok(())
    }

    /// Put a run's unfinished steps on the queue (all of them, for a new run).
    async fn start_run(&self, run: &RunRow) -> Result<(), StoreError> {
        let Some(served) = self.registry.get(&run.workflow) else {
            let error = format!(
                "workflow `{}` is not served (removed, renamed or invalid): fix its file and trigger again",
                run.workflow
            );
            return self
                .store
                .finish_run(&run.id, RunStatus::Failed, Some(&error))
                .await;
        };
        // A queued re-run may already hold the steps it keeps from the run it repeats.
        let attempts = self.store.attempts(&run.id).await?;
        let done = decided_steps(&attempts);
        let steps = queued_steps(&served.workflow, &done, &attempts);
        let graph = crate::executor::DagGraph(served.workflow.dag());
        if self.store.start_run_steps(&run.id, &steps, &graph).await? {
            if !done.is_empty() {
                tracing::info!(
                    run = %run.id,
                    done = done.len(),
                    "resuming run: finished steps are not run again"
                );
            }
            self.after_step(&run.id).await;
        }
        Ok(())
    }

    /// Once a second: end cancelled runs whose workers are gone, refresh the queue depth,
    /// forget runs that ended elsewhere.
    async fn sweep(&self) {
        match self.store.sweep_cancelled().await {
            Ok(runs) => {
                for run in runs {
                    self.after_step(&run).await;
                }
            }
            Err(e) => tracing::error!("cannot sweep cancelled steps: {e}"),
        }
        if let Ok((ready, _)) = self.store.queue_counts().await {
            self.queue_depth
                .store(usize::try_from(ready).unwrap_or(0), Ordering::Relaxed);
            self.metrics.set_queue_depth(self.queue_depth());
        }
        let idle: Vec<String> = {
            let busy: HashSet<String> = self.in_flight().keys().map(|k| k.0.clone()).collect();
            self.attached()
                .keys()
                .filter(|r| !busy.contains(*r))
                .cloned()
                .collect()
        };
        for run in idle {
            if let Ok(Some(row)) = self.store.run(&run).await
                && row.status.is_final()
            {
                self.attached().remove(&run);
            }
        }
    }

    /// Every fifth of a lease: say this worker is alive, extend its leases, and stop the
    /// attempts whose lease was lost or whose run was cancelled.
    pub(crate) async fn heartbeat(self: Arc<Self>) {
        let every = self.config.lease / 5;
        loop {
            let asked = Instant::now();
            if let Err(e) = self.sync_clock().await {
                tracing::warn!("cannot read the run store's clock: {e}");
            }
            if let Err(e) = self
                .store
                .worker_heartbeat(&self.id, self.drain.is_cancelled())
                .await
            {
                tracing::warn!("cannot record this worker's heartbeat: {e}");
            }
            let running: Vec<(String, String, i64)> = self.in_flight().keys().cloned().collect();
            match self
                .store
                .renew_leases(&self.id, &running, millis(self.config.lease))
                .await
            {
                Ok(held) => {
                    let held: HashMap<(String, String), (i64, bool)> = held
                        .into_iter()
                        .map(|h| ((h.run_id, h.step), (h.token, h.cancelled)))
                        .collect();
                    for (key, flight) in self.in_flight().iter() {
                        match held.get(&(key.0.clone(), key.1.clone())) {
                            Some((token, true)) if *token == key.2 => {
                                flight.control.stop(Stop::Cancelled);
                            }
                            Some((token, false)) if *token == key.2 => {}
                            _ if flight.since > asked => {}
                            _ => {
                                eprintln!(
                                    "orch serve: lost the lease of step `{}` of run {}: stopping it; its result will not be recorded",
                                    key.1, key.0
                                );
                                flight.control.stop(Stop::LeaseLost);
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!("cannot renew leases: {e}"),
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Follow the store's clock (leases are timed by it, not by this host's).
    async fn sync_clock(&self) -> Result<(), StoreError> {
        let offset = self.store.sync_clock().await?;
        if offset.abs() > 1000 {
            tracing::warn!(
                "this host's clock is {offset} ms off the run store's: leases follow the store's"
            );
        }
        Ok(())
    }

    /// Cancel a run, on whichever worker its steps run.
    pub(crate) async fn cancel(&self, run_id: &str) -> Result<Cancelled, StoreError> {
        let Some(row) = self.store.run(run_id).await? else {
            return Ok(Cancelled::NotActive);
        };
        if !self.store.request_cancel(run_id).await? {
            return Ok(Cancelled::NotActive);
        }
        // Steps running here stop now; elsewhere at their worker's next renewal.
        for ((run, _, _), flight) in self.in_flight().iter() {
            if run == run_id {
                flight.control.stop(Stop::Cancelled);
            }
        }
        self.after_step(run_id).await;
        Ok(if row.status == RunStatus::Queued {
            Cancelled::Waiting
        } else {
            Cancelled::Running
        })
    }

    /// Stop: claim nothing new, let running steps finish within `grace`, then hand the rest
    /// back (recorded `interrupted`, claimable by any worker at once). The last worker marks
    /// the runs it leaves `interrupted`.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        self.drain.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "grace period of {} over: handing running steps back",
                humantime::format_duration(grace)
            );
            for flight in self.in_flight().values() {
                flight.control.stop(Stop::HandBack);
            }
            self.tasks.wait().await;
        }
        if let Err(e) = self
            .store
            .interrupt_if_last(&self.id, millis(self.config.lease))
            .await
        {
            tracing::error!("cannot record unfinished runs as interrupted: {e}");
        }
        if let Err(e) = self.store.worker_stopped(&self.id).await {
            tracing::error!("cannot record this worker as stopped: {e}");
        }
    }
}

/// Why a claimed step's run could not be attached.
enum Unattached {
    /// The store failed: try again later.
    Store(StoreError),
    /// The run cannot run here (not recorded, workflow not served, a secret missing).
    Cannot(String),
}

/// Takes an attempt off this worker's list when its task ends, and looks for more work.
struct Landed {
    runner: Arc<Runner>,
    key: (String, String, i64),
}

impl Drop for Landed {
    fn drop(&mut self) {
        self.runner.in_flight().remove(&self.key);
        self.runner.wake.notify_one();
    }
}

/// Steps of a recorded run already decided (their last attempt is final).
fn decided_steps(attempts: &[crate::store::AttemptRow]) -> HashMap<String, StepStatus> {
    crate::store::AttemptRow::last_of_each(attempts)
        .into_iter()
        .filter(|(_, a)| {
            matches!(
                a.status,
                StepStatus::Succeeded
                    | StepStatus::Skipped
                    | StepStatus::Failed
                    | StepStatus::UpstreamFailed
            )
        })
        .map(|(step, a)| (step.to_string(), a.status))
        .collect()
}

/// The queue rows of a run: every step not decided, with its needs counted.
fn queued_steps(
    workflow: &ResolvedWorkflow,
    done: &HashMap<String, StepStatus>,
    attempts: &[crate::store::AttemptRow],
) -> Vec<QueuedStep> {
    let mut last: HashMap<&str, i64> = HashMap::new();
    for a in attempts {
        let n = last.entry(a.step.as_str()).or_default();
        *n = (*n).max(a.attempt);
    }
    workflow
        .steps
        .values()
        .filter(|s| !done.contains_key(&s.id))
        .map(|s| QueuedStep {
            step: s.id.clone(),
            plugin: s.plugin.to_string(),
            runs_on: s.runs_on.clone(),
            needs_left: s.needs.iter().filter(|n| !done.contains_key(*n)).count() as i64,
            needs_failed: s
                .needs
                .iter()
                .filter(|n| done.get(*n).is_some_and(|st| st.is_failure()))
                .count() as i64,
            attempt: last.get(s.id.as_str()).copied().unwrap_or(0),
        })
        .collect()
}

/// The longest an idle worker waits before looking at the queue again (other workers' steps
/// become ready without waking it).
const MAX_IDLE_POLL: Duration = Duration::from_millis(100);

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `host-pid-xxxx`: readable in `orch workers list`, unique across restarts.
fn worker_id() -> String {
    let suffix = &uuid::Uuid::now_v7().simple().to_string()[28..];
    format!("{}-{}-{suffix}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}
