//! The cron loop: sleeps until the next fire time of any served schedule, decides each tick by
//! its overlap and catch-up policies, and records it with the run it queues, in one transaction.

use super::fire_times::{Missed, catch_up, next_fire};
use super::metrics::Metrics;
use super::registry::{Registry, Served};
use super::runner::{Admission, Runner, ScheduleId};
use crate::store::{
    NewRun, NewTick, RunStatus, Store, StoreError, TickOutcome, Trigger, new_run_id,
};
use crate::workflow::inputs::{self, InputError};
use crate::workflow::{Overlap, Schedule};
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
#[derive(Debug, PartialEq)]
struct TickDecision {
    outcome: TickOutcome,
    reason: String,
    /// The run to queue; `None`: no run.
    admit: Option<Admission>,
}

/// The cron loop's dependencies.
pub(crate) struct Scheduler {
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
    pub(crate) async fn run(self, stop: CancellationToken) {
        // The last fire time handled per schedule.
        let mut cursors: HashMap<Key, DateTime<Utc>> = HashMap::new();
        loop {
            // One worker evaluates schedules: whoever holds the lease. A tick fires at most
            // once anyway (its row is unique), the lease keeps the others from trying.
            let leader = self
                .store
                .hold_lease(LEADER_LEASE, &self.runner.id, LEADER_TTL_MS)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!("cannot take the scheduler lease: {e}");
                    false
                });
            if !leader {
                // Another worker schedules; catch up from the recorded ticks if it goes.
                cursors.clear();
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(LEADER_RECHECK) => continue,
                }
            }
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
            // Wake in time to renew the lease.
            let wait = next
                .map(|t| (t - Utc::now()).to_std().unwrap_or_default())
                .map_or(LEADER_RECHECK, |w| w.min(LEADER_RECHECK));
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.reloaded.notified() => continue,
                () = tokio::time::sleep(wait) => {}
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
        let active = match self.runner.active_in(&group).await {
            Ok(active) => active,
            Err(e) => {
                tracing::error!("cannot read the active runs of {}: {e}", wf.name);
                return;
            }
        };
        let tick = Tick {
            schedule: fire.schedule,
            group: group.clone(),
            catching_up: fire.catching_up,
            active: &active,
        };
        let decision = decide(&tick, missed, inputs.as_ref().err().map(Vec::as_slice));
        if decision.admit.is_some()
            && !fire.catching_up
            && fire.schedule.overlap == Overlap::CancelRunning
        {
            // The runs still active make way for this one.
            for id in &active {
                if let Err(e) = self.runner.cancel(id).await {
                    tracing::error!("cannot cancel run {id}: {e}");
                }
            }
        }
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
            wait_group: decision.admit.as_ref().is_some_and(Admission::waits),
        });
        let row = NewTick {
            workflow: &wf.name,
            schedule: fire.index as i64,
            cron: &fire.schedule.cron,
            fire_at: fire.at.timestamp_millis(),
            outcome: decision.outcome,
            reason: &decision.reason,
        };
        match self.store.record_tick(row, run).await {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) => return, // recorded before a restart
            Err(e) => {
                tracing::error!("cannot record a tick of {}: {e}", wf.name);
                return;
            }
        }
        self.metrics.tick(decision.outcome.as_str(), Some(late));
        if decision.admit.is_some() {
            self.runner.submit();
        }
    }
}

/// What one tick is decided on.
struct Tick<'a> {
    schedule: &'a Schedule,
    group: ScheduleId,
    /// A missed tick run after downtime: runs one after another whatever `overlap` says.
    catching_up: bool,
    /// Runs of the schedule still running or waiting here, oldest first.
    active: &'a [String],
}

/// Decide one tick: recorded as missed (with the reason `missed`), failed (`invalid` inputs),
/// or by the schedule's `overlap` while runs of it are still active.
fn decide(tick: &Tick<'_>, missed: Option<String>, invalid: Option<&[InputError]>) -> TickDecision {
    let no_run = |outcome, reason| TickDecision {
        outcome,
        reason,
        admit: None,
    };
    let run = |outcome, reason, admission| TickDecision {
        outcome,
        reason,
        admit: Some(admission),
    };
    if let Some(reason) = missed {
        return no_run(TickOutcome::Missed, reason);
    }
    if let Some(errors) = invalid {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return no_run(
            TickOutcome::Failed,
            format!("invalid inputs: {}", errors.join("; ")),
        );
    }
    let group = tick.group.clone();
    let catch = if tick.catching_up {
        format!(
            "missed while the server was down; catchup = {}",
            tick.schedule.catchup
        )
    } else {
        "on time".into()
    };
    let Some(previous) = tick.active.first() else {
        return run(TickOutcome::Fired, catch, Admission::InGroup(group));
    };
    if tick.catching_up {
        return run(
            TickOutcome::Queued,
            format!("{catch}; waits for run {previous}"),
            Admission::AfterGroup(group),
        );
    }
    match tick.schedule.overlap {
        Overlap::Skip => no_run(
            TickOutcome::Skipped,
            format!("previous run {previous} still active (overlap = skip)"),
        ),
        Overlap::Queue => run(
            TickOutcome::Queued,
            format!("waits for run {previous} (overlap = queue)"),
            Admission::AfterGroup(group),
        ),
        Overlap::Allow => run(
            TickOutcome::Fired,
            format!("previous run {previous} still active (overlap = allow)"),
            Admission::InGroup(group),
        ),
        Overlap::CancelRunning => run(
            TickOutcome::Fired,
            format!("cancelled previous run {previous} (overlap = cancel_running)"),
            Admission::InGroup(group),
        ),
    }
}

/// The named lease whose holder evaluates schedules.
const LEADER_LEASE: &str = "scheduler";
/// How long the scheduler lease holds unrenewed: a new scheduler takes over within this.
const LEADER_TTL_MS: i64 = 10_000;
/// How often the scheduler renews its lease (and others check whether it is free).
const LEADER_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::Catchup;
    use std::str::FromStr;

    fn schedule(overlap: Overlap) -> Schedule {
        Schedule {
            cron: "* * * * * *".into(),
            parsed: croner::Cron::from_str("* * * * * *").unwrap(),
            timezone: chrono_tz::UTC,
            overlap,
            catchup: Catchup::All,
            inputs: Default::default(),
        }
    }

    fn group() -> ScheduleId {
        ScheduleId {
            workflow: "tick".into(),
            index: 0,
        }
    }

    fn decided(overlap: Overlap, catching_up: bool, active: &[&str]) -> TickDecision {
        let active: Vec<String> = active.iter().map(ToString::to_string).collect();
        let schedule = schedule(overlap);
        let tick = Tick {
            schedule: &schedule,
            group: group(),
            catching_up,
            active: &active,
        };
        decide(&tick, None, None)
    }

    #[test]
    fn a_tick_with_nothing_active_fires_whatever_the_overlap() {
        for overlap in [
            Overlap::Skip,
            Overlap::Queue,
            Overlap::Allow,
            Overlap::CancelRunning,
        ] {
            let d = decided(overlap, false, &[]);
            assert_eq!(d.outcome, TickOutcome::Fired);
            assert_eq!(d.reason, "on time");
            assert_eq!(d.admit, Some(Admission::InGroup(group())));
        }
    }

    #[test]
    fn a_tick_while_a_run_is_active_follows_the_overlap_policy() {
        let table = [
            (
                Overlap::Skip,
                TickOutcome::Skipped,
                None,
                "(overlap = skip)",
            ),
            (
                Overlap::Queue,
                TickOutcome::Queued,
                Some(Admission::AfterGroup(group())),
                "waits for run r1 (overlap = queue)",
            ),
            (
                Overlap::Allow,
                TickOutcome::Fired,
                Some(Admission::InGroup(group())),
                "(overlap = allow)",
            ),
            (
                Overlap::CancelRunning,
                TickOutcome::Fired,
                Some(Admission::InGroup(group())),
                "cancelled previous run r1",
            ),
        ];
        for (overlap, outcome, admit, says) in table {
            let d = decided(overlap, false, &["r1", "r2"]);
            assert_eq!((d.outcome, &d.admit), (outcome, &admit), "{overlap:?}");
            assert!(d.reason.contains(says), "{overlap:?}: {}", d.reason);
        }
    }

    #[test]
    fn a_missed_tick_run_after_downtime_waits_for_the_active_run_even_with_overlap_skip() {
        let d = decided(Overlap::Skip, true, &["r1"]);
        assert_eq!(d.outcome, TickOutcome::Queued);
        assert_eq!(d.admit, Some(Admission::AfterGroup(group())));
        assert_eq!(
            d.reason,
            "missed while the server was down; catchup = all; waits for run r1"
        );
    }

    #[test]
    fn a_missed_or_invalid_tick_starts_no_run() {
        let schedule = schedule(Overlap::Allow);
        let tick = Tick {
            schedule: &schedule,
            group: group(),
            catching_up: false,
            active: &[],
        };
        let missed = decide(&tick, Some("too old".into()), None);
        assert_eq!(
            missed,
            TickDecision {
                outcome: TickOutcome::Missed,
                reason: "too old".into(),
                admit: None
            }
        );
        let problem = InputError {
            name: "n".into(),
            message: "required".into(),
        };
        let failed = decide(&tick, None, Some(std::slice::from_ref(&problem)));
        assert_eq!(failed.outcome, TickOutcome::Failed);
        assert_eq!(failed.reason, "invalid inputs: input `n`: required");
        assert_eq!(failed.admit, None);
    }
}
