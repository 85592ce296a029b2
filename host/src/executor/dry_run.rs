//! The dry run behind `orch plan`: ask every step's plugin what `run` would change. Nothing is
//! run or stored; the steps are prepared exactly as a run prepares them.

use super::sink::{RunChannel, StepEvents};
use super::step::{Prepared, explain, mask_error, prepare_step};
use super::{ExecError, Observer, RunSpec};
use crate::capability::connections::Connections;
use crate::capability::{Granter, Masker};
use crate::resolve::ResolvedWorkflow;
use crate::runtime::Runtime;
use crate::runtime::{ChangeKind, Fault, GuestError, Invocation, StepContext};
use crate::workflow::expr::{Reference, Scope};
use crate::workflow::{Step, StepsRead};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

/// One predicted change, masked.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedChange {
    pub kind: &'static str,
    pub resource: String,
    pub detail: String,
}

/// What a step would do.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum StepPlan {
    /// The plugin's prediction (empty: no change).
    Changes(Vec<PlannedChange>),
    /// Its `if` is false with these inputs.
    Skipped(String),
    /// Its config depends on outputs of steps that have not run.
    Unknown(String),
    /// The plugin could not plan (bad config, unreachable service...).
    Failed(String),
}

/// One step of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub id: String,
    pub plugin: String,
    pub plan: StepPlan,
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub workflow: String,
    pub steps: Vec<PlannedStep>,
}

impl PlanReport {
    /// Did every step plan (changes, skipped or unknown)?
    pub fn ok(&self) -> bool {
        !self
            .steps
            .iter()
            .any(|s| matches!(s.plan, StepPlan::Failed(_)))
    }
}

/// Plan every step in order. Steps whose config reads other steps' outputs are `unknown`.
/// Needs no store: planning records nothing.
pub async fn plan(
    runtime: &Runtime,
    mut spec: RunSpec,
    observer: Arc<dyn Observer>,
) -> Result<PlanReport, ExecError> {
    let workflow = spec.workflow.clone();
    let masker = Arc::new(Masker::default());
    let lookup = spec.lookup(&masker)?;
    let base = StepContext {
        run_id: "plan".into(),
        workflow: workflow.name.clone(),
        step_id: String::new(),
        attempt: 1,
        trigger: spec.trigger.to_string(),
    };
    let scope = spec.base_scope(&base.run_id, lookup);
    let connections = Arc::new(Connections::resolve(&workflow, &scope, &masker)?);
    let channel = Arc::new(RunChannel {
        masker: masker.clone(),
        dag: Some(workflow.clone()),
        observer,
        records: None,
        seq: AtomicI64::new(0),
    });
    let mut steps = Vec::new();
    // What each planned step would change first, for the steps that need it.
    let mut changing: Vec<(String, String)> = Vec::new();
    for id in workflow.dag().order() {
        let Some(step) = workflow.steps.get(id) else {
            continue;
        };
        let reads_steps: Vec<String> = match step.steps_read() {
            StepsRead::These(ids) => ids.iter().map(|id| format!("`{id}`")).collect(),
            StepsRead::All => vec![],
        };
        // A condition that reads only inputs/env/secrets decides now, even if `with` cannot.
        let skipped = step.condition.as_ref().filter(|c| {
            !c.references.iter().any(|r| matches!(r, Reference::Step(_)))
                && c.eval_bool(&scope).is_ok_and(|v| !v)
        });
        let plan = if let Some(c) = skipped {
            StepPlan::Skipped(format!("`if` {} is false", c.source))
        } else if !reads_steps.is_empty() {
            StepPlan::Unknown(format!("known after {} run", reads_steps.join(", ")))
        } else {
            let upstream: Vec<String> = changing
                .iter()
                .filter(|(up, _)| workflow.dag().is_ancestor(up, id))
                .map(|(up, change)| format!("`{up}` ({change})"))
                .collect();
            let context = PlanContext {
                channel: &channel,
                base: &base,
                connections: &connections,
                upstream: (!upstream.is_empty()).then(|| upstream.join(", ")),
            };
            plan_step(runtime, &spec.workflow, step, &scope, context).await
        };
        match &plan {
            StepPlan::Changes(changes) => {
                if let Some(first) = changes.first() {
                    let change = format!("{}: {}", first.resource, first.detail);
                    changing.push((id.to_string(), change));
                }
            }
            // Not known either: what needs it waits on it too.
            StepPlan::Unknown(_) => changing.push((id.to_string(), "not known yet".into())),
            StepPlan::Skipped(_) | StepPlan::Failed(_) => {}
        }
        steps.push(PlannedStep {
            id: step.id.clone(),
            plugin: step.plugin.to_string(),
            plan,
        });
    }
    Ok(PlanReport {
        workflow: workflow.name.clone(),
        steps,
    })
}

/// What planning one step needs beyond the step: the run's channel and connections, and what
/// the steps it needs would change first.
struct PlanContext<'a> {
    channel: &'a Arc<RunChannel>,
    base: &'a StepContext,
    connections: &'a Arc<Connections>,
    /// The upstream steps that would change something, described; `None`: none would.
    upstream: Option<String>,
}

async fn plan_step(
    runtime: &Runtime,
    workflow: &ResolvedWorkflow,
    step: &Step,
    scope: &Scope,
    context: PlanContext<'_>,
) -> StepPlan {
    let PlanContext {
        channel,
        base,
        connections,
        upstream,
    } = context;
    let masker = &channel.masker;
    let Some(resolved) = workflow.plugin(&step.id) else {
        return StepPlan::Failed(format!("step `{}` has no resolved plugin", step.id));
    };
    let config = match prepare_step(step, resolved, scope, masker) {
        Ok(Prepared::Config(config)) => config,
        Ok(Prepared::Skipped) => {
            let condition = step.condition.as_ref().map_or("", |c| c.source.as_str());
            return StepPlan::Skipped(format!("`if` {condition} is false"));
        }
        Err(error) => return StepPlan::Failed(error),
    };
    let events = Arc::new(StepEvents::new(channel.clone(), &step.id));
    let invocation = Invocation {
        ctx: StepContext {
            step_id: step.id.clone(),
            ..base.clone()
        },
        config: &config,
        limits: step.limits,
        timeout: step.timeout,
        granter: Arc::new(Granter::new(&step.id, step.allow.clone()).for_plan()),
        sink: events.clone(),
        connections: connections.clone(),
    };
    let planned = runtime.plan(&resolved.plugin, invocation).await;
    let denials = events.take_denials();
    match planned {
        Ok(changes) => StepPlan::Changes(
            changes
                .into_iter()
                .filter(|c| c.kind != ChangeKind::None)
                .map(|c| PlannedChange {
                    kind: c.kind.as_str(),
                    resource: masker.mask(&c.resource),
                    detail: masker.mask(&c.detail),
                })
                .collect(),
        ),
        // A plan that fails on what an upstream step would create first (a topic, a role)
        // is not wrong: it cannot be known until that step has run.
        Err(Fault::Guest(GuestError::Failed(why) | GuestError::Retryable(why)))
            if let Some(upstream) = &upstream
                && denials.is_empty() =>
        {
            StepPlan::Unknown(masker.mask(&format!(
                "known after {upstream} has run (planned now, it says: {why})"
            )))
        }
        Err(fault) => {
            let (kind, message) = explain(&fault, &denials);
            StepPlan::Failed(mask_error(&events, masker, kind, &message))
        }
    }
}
