//! The cron loop: sleeps until the next fire time of any served schedule, decides each tick by
//! its overlap and catch-up policies, and records it with the run it queues, in one transaction.

use super::fire_times::{Missed, catch_up, next_fire};
use super::metrics::Metrics;
use super::registry::{Registry, Served};
use super::runner::{Admission, Runner, ScheduleId};
use crate::store::{
    NewRun, NewTick, RunStatus, Store, StoreError, TickOutcome, Trigger, new_run_id,
};
use crate::workflow::{Overlap, Schedule, inputs};
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A schedule as written: editing its cron or timezone starts it afresh (a new cursor).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    id: ScheduleId,
    cron: String,
    timezone: String,
}

/// What to do with one tick: how it is recorded, why, and whether (and when) a run starts.
#[derive(Debug)]
struct TickDecision {
    outcome: TickOutcome,
    reason: String,
    /// The run to queue; `None`: no run.
    admit: Option<Admission>,
}

/// The cron loop's dependencies.
pub struct Scheduler {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub runner: Arc<Runner>,
    pub metrics: Arc<Metrics>,
    /// Woken when the registry changed.
    pub reloaded: Arc<Notify>,
}

/// How one tick is handled.
struct Fire<'a> {
    served: &'a Served,
    index: usize,
    schedule: &'a Schedule,
    at: DateTime<Utc>,
    /// A missed tick run after downtime: runs one after another whatever `overlap` says.
    catching_up: bool,
}

impl Scheduler {
    /// Run until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        // The last fire time handled per schedule.
        let mut cursors: HashMap<Key, DateTime<Utc>> = HashMap::new();
        loop {
            let served = self.registry.all();
            let mut live = Vec::new();
            for s in &served {
                for (index, schedule) in s.workflow.schedules.iter().enumerate() {
                    let key = Key {
                        id: ScheduleId {
                            workflow: s.workflow.name.clone(),
                            index,
                        },
                        cron: schedule.cron.clone(),
                        timezone: schedule.timezone.name().to_string(),
                    };
                    if !cursors.contains_key(&key) {
                        let cursor = self.start_schedule(s, index, schedule).await;
                        cursors.insert(key.clone(), cursor);
                    }
                    live.push((key, s.clone(), index));
                }
            }
            cursors.retain(|k, _| live.iter().any(|(l, _, _)| l == k));
            let next = live
                .iter()
                .filter_map(|(key, s, i)| {
                    next_fire(&s.workflow.schedules[*i], cursors[key]).map(|t| (t, key))
                })
                .min_by_key(|(t, _)| *t)
                .map(|(t, _)| t);
            let wait = next.map(|t| (t - Utc::now()).to_std().unwrap_or_default());
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.reloaded.notified() => continue,
                () = sleep(wait) => {}
            }
            if stop.is_cancelled() || self.runner.stopping() {
                return;
            }
            let now = Utc::now();
            for (key, s, index) in &live {
                let schedule = &s.workflow.schedules[*index];
                while let Some(at) = next_fire(schedule, cursors[key]).filter(|t| *t <= now) {
                    let fire = Fire {
                        served: s,
                        index: *index,
                        schedule,
                        at,
                        catching_up: false,
                    };
                    self.fire(&fire, None).await;
                    cursors.insert(key.clone(), at);
                }
            }
        }
    }

    /// A schedule seen for the first time: catch up on ticks missed since its last recorded
    /// tick (none recorded: it starts now). Returns its cursor.
    async fn start_schedule(
        &self,
        served: &Served,
        index: usize,
        schedule: &Schedule,
    ) -> DateTime<Utc> {
        let now = Utc::now();
        let last = match self
            .store
            .last_tick(&served.workflow.name, index as i64)
            .await
        {
            Ok(last) => last.and_then(DateTime::<Utc>::from_timestamp_millis),
            Err(e) => {
                tracing::error!("cannot read the last tick of {}: {e}", served.workflow.name);
                None
            }
        };
        let Some(last) = last.filter(|l| *l < now) else {
            return now;
        };
        let mut cursor = now;
        for (at, decision) in catch_up(schedule, last, now) {
            let fire = Fire {
                served,
                index,
                schedule,
                at,
                catching_up: true,
            };
            match decision {
                Missed::Run => self.fire(&fire, None).await,
                Missed::Skip(reason) => self.fire(&fire, Some(reason)).await,
            }
            cursor = at;
        }
        cursor.max(last)
    }

    /// Handle one tick: decide by the overlap policy, record it, queue the run.
    /// `missed`: the tick is only recorded as missed, with this reason.
    async fn fire(&self, fire: &Fire<'_>, missed: Option<String>) {
        let wf = &fire.served.workflow;
        let group = ScheduleId {
            workflow: wf.name.clone(),
            index: fire.index,
        };
        let run_id = new_run_id();
        let late = (Utc::now() - fire.at).as_seconds_f64();
        let given: IndexMap<String, serde_json::Value> = fire.schedule.inputs.clone();
        let inputs = inputs::resolve(&wf.inputs, &given);
        let active = self.runner.active_in(&group);
        let decision = match (missed, &inputs) {
            (Some(reason), _) => TickDecision {
                outcome: TickOutcome::Missed,
                reason,
                admit: None,
            },
            (None, Err(errors)) => {
                let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                TickDecision {
                    outcome: TickOutcome::Failed,
                    reason: format!("invalid inputs: {}", errors.join("; ")),
                    admit: None,
                }
            }
            (None, Ok(_)) => self.overlap(fire, group.clone(), &active).await,
        };
        let detail = group.trigger_detail();
        let inputs_json = serde_json::Value::Object(inputs.unwrap_or_default());
        let run = decision.admit.is_some().then(|| NewRun {
            id: &run_id,
            workflow: &wf.name,
            workflow_path: &wf.source.path,
            inputs: &inputs_json,
            trigger: Trigger::Cron,
            trigger_detail: Some(&detail),
            status: RunStatus::Queued,
        });
        let tick = NewTick {
            workflow: &wf.name,
            schedule: fire.index as i64,
            cron: &fire.schedule.cron,
            fire_at: fire.at.timestamp_millis(),
            outcome: decision.outcome,
            reason: &decision.reason,
        };
        match self.store.record_tick(tick, run).await {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) => return, // recorded before a restart
            Err(e) => {
                tracing::error!("cannot record a tick of {}: {e}", wf.name);
                return;
            }
        }
        self.metrics.tick(decision.outcome.as_str(), Some(late));
        if let Some(admission) = decision.admit {
            self.runner.submit(run_id, wf.name.clone(), admission);
        }
    }

    /// A tick with valid inputs, while the runs of `group` in `active` are still running or
    /// waiting: the schedule's `overlap` decides (a missed tick run after downtime waits).
    async fn overlap(&self, fire: &Fire<'_>, group: ScheduleId, active: &[String]) -> TickDecision {
        let previous = active.first().map(String::as_str).unwrap_or_default();
        let catch = if fire.catching_up {
            format!(
                "missed while the server was down; catchup = {}",
                fire.schedule.catchup
            )
        } else {
            "on time".into()
        };
        let (outcome, reason, admit) = if active.is_empty() {
            (TickOutcome::Fired, catch, Admission::InGroup(group))
        } else if fire.catching_up {
            (
                TickOutcome::Queued,
                format!("{catch}; waits for run {previous}"),
                Admission::AfterGroup(group),
            )
        } else {
            match fire.schedule.overlap {
                Overlap::Skip => {
                    return TickDecision {
                        outcome: TickOutcome::Skipped,
                        reason: format!("previous run {previous} still active (overlap = skip)"),
                        admit: None,
                    };
                }
                Overlap::Queue => (
                    TickOutcome::Queued,
                    format!("waits for run {previous} (overlap = queue)"),
                    Admission::AfterGroup(group),
                ),
                Overlap::Allow => (
                    TickOutcome::Fired,
                    format!("previous run {previous} still active (overlap = allow)"),
                    Admission::InGroup(group),
                ),
                Overlap::CancelRunning => {
                    for id in active {
                        if let Err(e) = self.runner.cancel(id).await {
                            tracing::error!("cannot cancel run {id}: {e}");
                        }
                    }
                    (
                        TickOutcome::Fired,
                        format!("cancelled previous run {previous} (overlap = cancel_running)"),
                        Admission::InGroup(group),
                    )
                }
            }
        };
        TickDecision {
            outcome,
            reason,
            admit: Some(admit),
        }
    }
}

async fn sleep(wait: Option<std::time::Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
