//! The walk over a run's DAG: start ready steps up to the bound, decide dependants as steps
//! finish (run, or upstream-failed), and stop on cancel, drain or halt.

use super::step::{finish_without_running, run_step};
use super::{ExecError, Executor, RunControl, RunShared, StepReport, Walked};
use crate::dag::{Dag, Node, Walk};
use crate::store::StepStatus;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::task::JoinSet;

impl Executor {
    /// Walk the DAG from the steps already `done`: start ready steps up to the bound, decide
    /// dependants as steps finish. Reports of finished steps are pushed to `reports`.
    pub(super) async fn walk(
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
