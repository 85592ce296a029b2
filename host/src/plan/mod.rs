//! The DAG of a validated workflow: who waits for whom, when a step may start, how failure and
//! skips propagate, and how the graph is drawn.

mod graph;

pub use graph::{GraphFormat, render};

use crate::workflow::Workflow;
use std::collections::HashMap;

/// The state of a step within one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    /// Its own `if` was false.
    Skipped,
    /// A step it needs failed (or was itself upstream-failed); it never ran.
    UpstreamFailed,
}

impl StepStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::UpstreamFailed => "upstream_failed",
        }
    }

    /// Did the step end badly (for the run's outcome and for dependants)?
    pub fn is_failure(self) -> bool {
        matches!(self, StepStatus::Failed | StepStatus::UpstreamFailed)
    }
}

/// What to do with a step whose needs have all finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Every need succeeded or was skipped by its own `if`.
    Run,
    /// A need failed: the step is `upstream_failed` without running.
    UpstreamFailed,
}

/// The DAG: steps in topological order with their edges both ways.
#[derive(Debug, Clone)]
pub struct Plan {
    pub order: Vec<String>,
    pub needs: HashMap<String, Vec<String>>,
    pub dependents: HashMap<String, Vec<String>>,
}

impl Plan {
    /// Build the DAG of a workflow (already known to be acyclic).
    pub fn new(workflow: &Workflow) -> Self {
        let mut dependents: HashMap<String, Vec<String>> = HashMap::new();
        let mut needs = HashMap::new();
        for step in workflow.steps.values() {
            for need in &step.needs {
                dependents
                    .entry(need.clone())
                    .or_default()
                    .push(step.id.clone());
            }
            needs.insert(step.id.clone(), step.needs.clone());
        }
        Self {
            order: workflow.steps.keys().cloned().collect(),
            needs,
            dependents,
        }
    }

    /// Steps with no needs, in order.
    pub fn roots(&self) -> Vec<String> {
        self.order
            .iter()
            .filter(|id| self.needs[*id].is_empty())
            .cloned()
            .collect()
    }

    /// Decide a step once all its needs are finished.
    pub fn readiness(&self, step: &str, status: &HashMap<String, StepStatus>) -> Readiness {
        let failed = self.needs[step]
            .iter()
            .any(|n| status.get(n).is_some_and(|s| s.is_failure()));
        if failed {
            Readiness::UpstreamFailed
        } else {
            Readiness::Run
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(src: &str) -> (Plan, Workflow) {
        let wf = crate::workflow::parse(std::path::Path::new("t.toml"), src).unwrap();
        (Plan::new(&wf), wf)
    }

    const DIAMOND: &str = r#"
        name = "d"
        [steps.a]
        plugin = "echo"
        [steps.d]
        plugin = "echo"
        needs = ["b", "c"]
        [steps.b]
        plugin = "echo"
        needs = ["a"]
        [steps.c]
        plugin = "echo"
        needs = ["a"]
    "#;

    #[test]
    fn orders_dependencies_first() {
        let (p, _) = plan(DIAMOND);
        assert_eq!(p.order, ["a", "b", "c", "d"]);
        assert_eq!(p.roots(), ["a"]);
    }

    #[test]
    fn failed_need_makes_step_upstream_failed_and_skipped_need_does_not() {
        let (p, _) = plan(DIAMOND);
        let mut status = HashMap::from([
            ("b".to_string(), StepStatus::Skipped),
            ("c".to_string(), StepStatus::Succeeded),
        ]);
        assert_eq!(p.readiness("d", &status), Readiness::Run);
        status.insert("c".into(), StepStatus::UpstreamFailed);
        assert_eq!(p.readiness("d", &status), Readiness::UpstreamFailed);
    }
}
