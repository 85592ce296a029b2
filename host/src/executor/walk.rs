//! The walk over a run's DAG: decide steps as their needs end (run, skip, upstream-failed),
//! record every change that is ready at the same moment in one commit, start steps up to the
//! bound once their start is recorded, and stop on cancel, drain or halt.

use super::step::{AttemptEnd, Prepared, Ran, prepare_step, run_prepared, scope_for};
use super::{ExecError, Executor, Finished, RunControl, RunShared, StepReport, Walked};
use crate::dag::{Dag, Node, Walk};
use crate::store::{StepEnd, StepStatus, StepWrite};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;

impl Executor {
    /// Walk the DAG from the steps already `done`. Each turn records, in one commit, the
    /// attempts that ended, the steps decided without running and the attempts about to
    /// start; then it tells observers and starts those steps. Durable as before: a step's end
    /// is committed before any step that needs it starts. Reports are pushed to `reports`.
    pub(super) async fn walk(
        &self,
        shared: &Arc<RunShared>,
        control: &RunControl,
        mut status: HashMap<String, StepStatus>,
        reports: &mut Vec<StepReport>,
    ) -> Result<Walked, ExecError> {
        let dag = &shared.workflow.dag;
        let mut walk = Walk::start(dag, |n| status.contains_key(dag.id(n)));
        let mut ready: VecDeque<Node> = VecDeque::new();
        let mut running: JoinSet<Result<Ran, ExecError>> = JoinSet::new();
        let mut ended: Vec<Ran> = Vec::new();
        let bound = self.max_parallel.max(1);
        loop {
            let mut turn = Turn::default();
            for mut ran in ended.drain(..) {
                let report = publish_ran(shared, &mut ran);
                status.insert(report.id.clone(), report.status);
                walk.finished(ran.node);
                turn.reports.push(report);
                turn.ended.push(ran);
            }
            let draining = control.drain.is_cancelled();
            loop {
                // Steps whose needs are all decided: ready, or upstream-failed.
                while let Some(node) = walk.next_decidable() {
                    let failed = failed_needs(dag, node, &status);
                    if failed.is_empty() {
                        ready.push_back(node);
                        continue;
                    }
                    let error = format!("not run: needed step `{}` failed", failed.join("`, `"));
                    let decided = (StepStatus::UpstreamFailed, Some(error));
                    turn.decide(shared, &mut walk, &mut status, node, decided);
                }
                if draining || running.len() + turn.launch.len() >= bound {
                    break;
                }
                let Some(node) = ready.pop_front() else {
                    break;
                };
                // A step's duration counts from here: rendering a large `with` is its cost.
                let started = Instant::now();
                match prepare(shared, node)? {
                    Ok(Prepared::Config(config)) => {
                        let attempt = shared.next_attempt.get(dag.id(node)).copied();
                        turn.launch
                            .push((node, attempt.unwrap_or(1), config, started));
                    }
                    Ok(Prepared::Skipped) => {
                        let decided = (StepStatus::Skipped, None);
                        turn.decide(shared, &mut walk, &mut status, node, decided);
                    }
                    Err(error) => {
                        let decided = (StepStatus::Failed, Some(error));
                        turn.decide(shared, &mut walk, &mut status, node, decided);
                    }
                }
            }
            turn.record(shared).await?;
            for report in turn.reports {
                shared.announce(&report);
                reports.push(report);
            }
            for (node, attempt, config, started) in turn.launch {
                let shared = shared.clone();
                running.spawn(async move {
                    run_prepared(&shared, node, config, attempt, started).await
                });
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
            // This one, and every other that has ended meanwhile: recorded together.
            for joined in joined
                .into_iter()
                .chain(std::iter::from_fn(|| running.try_join_next()))
            {
                ended.push(
                    joined.map_err(|e| ExecError::Internal(format!("step task failed: {e}")))??,
                );
            }
        }
    }
}

/// What one turn of the walk records in one commit, then announces and starts.
#[derive(Default)]
struct Turn {
    /// Steps to start once recorded: first attempt, rendered config, when preparing began.
    launch: Vec<(Node, u32, String, Instant)>,
    /// Attempts that ended (their outcome already published to later expressions).
    ended: Vec<Ran>,
    /// Steps decided without their plugin.
    decided: Vec<(Node, StepStatus, Option<String>)>,
    /// Reports of the steps that reached their final state, announced after the commit.
    reports: Vec<StepReport>,
}

impl Turn {
    /// A step decided without its plugin: published at once, so its dependants can be decided
    /// in this turn too.
    fn decide(
        &mut self,
        shared: &RunShared,
        walk: &mut Walk<'_>,
        status: &mut HashMap<String, StepStatus>,
        node: Node,
        (decided, error): (StepStatus, Option<String>),
    ) {
        let id = shared.workflow.dag.id(node);
        let report = shared.publish(Finished::without_outputs(id, decided, error.clone()));
        status.insert(id.to_string(), decided);
        walk.finished(node);
        self.reports.push(report);
        self.decided.push((node, decided, error));
    }

    /// Commit the turn's changes (one statement when they fit in one).
    async fn record(&self, shared: &RunShared) -> Result<(), ExecError> {
        let dag = &shared.workflow.dag;
        let plugin = |node: Node| shared.workflow.steps[dag.id(node)].plugin.to_string();
        let decided: Vec<String> = self.decided.iter().map(|d| plugin(d.0)).collect();
        let ended: Vec<String> = self.ended.iter().map(|r| plugin(r.node)).collect();
        let launch: Vec<String> = self.launch.iter().map(|l| plugin(l.0)).collect();
        let mut writes = Vec::with_capacity(decided.len() + ended.len() + launch.len());
        for ((node, status, error), plugin) in self.decided.iter().zip(&decided) {
            let end = StepEnd {
                status: *status,
                resumable: false,
                outputs: None,
                error: error.as_deref(),
                error_kind: None,
            };
            let step = dag.id(*node);
            writes.push(StepWrite::End {
                step,
                attempt: 0,
                plugin,
                end,
                used: &[],
            });
        }
        for (ran, plugin) in self.ended.iter().zip(&ended) {
            writes.push(StepWrite::End {
                step: dag.id(ran.node),
                attempt: ran.attempt,
                plugin,
                end: ran.end.record(),
                used: &ran.used,
            });
        }
        for ((node, attempt, ..), plugin) in self.launch.iter().zip(&launch) {
            let (step, attempt) = (dag.id(*node), *attempt);
            writes.push(StepWrite::Start {
                step,
                attempt,
                plugin,
            });
        }
        if !writes.is_empty() {
            shared.store.record_steps(&shared.run_id, &writes).await?;
        }
        Ok(())
    }
}

/// Publish how a step's last attempt ended (its outputs move to later expressions; what is
/// recorded stays in `ran`).
fn publish_ran(shared: &RunShared, ran: &mut Ran) -> StepReport {
    let id = shared.workflow.dag.id(ran.node);
    let (attempts, duration) = (ran.attempt, ran.duration);
    match &mut ran.end {
        AttemptEnd::Returned {
            status,
            real,
            masked,
            error,
            ..
        } => shared.publish(Finished {
            id,
            status: *status,
            real_outputs: std::mem::take(real),
            masked_outputs: std::mem::take(masked),
            attempts,
            duration,
            error: error.clone(),
        }),
        AttemptEnd::Fault { message, .. } => shared.publish(Finished {
            attempts,
            duration,
            ..Finished::without_outputs(id, StepStatus::Failed, Some(message.clone()))
        }),
    }
}

/// Evaluate a ready step's `if` and render its config against the outputs it reads; the
/// error is why it fails without running.
fn prepare(shared: &RunShared, node: Node) -> Result<Result<Prepared, String>, ExecError> {
    let (step, resolved) = shared.step(node)?;
    let scope = scope_for(shared, step);
    Ok(prepare_step(step, resolved, &scope, &shared.channel.masker))
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
}
