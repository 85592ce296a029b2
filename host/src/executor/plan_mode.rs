//! `orch plan`: ask every step's plugin what `run` would change. Nothing is run or stored.

use super::sink::{RunChannel, StepEvents};
use super::{ExecError, Observer, RunSpec};
use crate::capability::connections::Connections;
use crate::capability::{Granter, Masker};
use crate::runtime::Runtime;
use crate::runtime::{ChangeKind, Invocation, StepContext};
use crate::workflow::expr::{Reference, Scope};
use serde::Serialize;
use serde_json::{Value as Json, json};
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
    spec: RunSpec,
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
    let scope = Scope {
        inputs: Arc::new(Json::Object(spec.inputs)),
        steps: Arc::new(json!({})),
        secrets: Arc::new(Json::Object(lookup.secrets)),
        env: Arc::new(Json::Object(lookup.env)),
        run: Arc::new(
            json!({"id": base.run_id, "trigger": base.trigger, "workflow": workflow.name}),
        ),
    };
    let connections = Arc::new(Connections::resolve(&workflow, &scope, &masker)?);
    let channel = Arc::new(RunChannel {
        masker: masker.clone(),
        observer,
        records: None,
        seq: AtomicI64::new(0),
    });
    let mut steps = Vec::new();
    for step in workflow.steps.values() {
        let mut reads_steps: Vec<String> = step
            .exprs()
            .iter()
            .flat_map(|e| e.references.iter())
            .filter_map(|r| match r {
                Reference::Step(Some(s)) => Some(format!("`{s}`")),
                _ => None,
            })
            .collect();
        reads_steps.sort();
        reads_steps.dedup();
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
            plan_step(
                runtime,
                &spec.workflow,
                step,
                &scope,
                &channel,
                &base,
                &connections,
            )
            .await
        };
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

async fn plan_step(
    runtime: &Runtime,
    plugins: &crate::resolve::ResolvedWorkflow,
    step: &crate::workflow::Step,
    scope: &Scope,
    channel: &Arc<RunChannel>,
    base: &StepContext,
    connections: &Arc<Connections>,
) -> StepPlan {
    let masker = &channel.masker;
    if let Some(condition) = &step.condition {
        match condition.eval_bool(scope) {
            Ok(true) => {}
            Ok(false) => return StepPlan::Skipped(format!("`if` {} is false", condition.source)),
            Err(e) => return StepPlan::Failed(masker.mask(&e.to_string())),
        }
    }
    let config = match step.with.render(scope) {
        Ok(c) => c,
        Err(e) => return StepPlan::Failed(masker.mask(&format!("cannot render `with`: {e}"))),
    };
    let Some(resolved) = plugins.plugin(&step.id) else {
        return StepPlan::Failed(format!("step `{}` has no resolved plugin", step.id));
    };
    if let Err(problems) = resolved.check_config(&config) {
        return StepPlan::Failed(masker.mask(&format!(
            "`with` does not match plugin `{}`: {problems}",
            resolved.info.name
        )));
    }
    // Straight into a buffer: `Value`'s `Display` writes through a formatter, ~3x slower.
    let config = serde_json::to_string(&config).expect("a JSON value always serialises");
    let invocation = Invocation {
        ctx: StepContext {
            step_id: step.id.clone(),
            ..base.clone()
        },
        config: &config,
        limits: step.limits,
        timeout: step.timeout,
        granter: Arc::new(Granter::new(&step.id, step.allow.clone())),
        sink: Arc::new(StepEvents::new(channel.clone(), &step.id)),
        connections: connections.clone(),
    };
    match runtime.plan(&resolved.plugin, invocation).await {
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
        Err(fault) => StepPlan::Failed(masker.mask(&fault.to_string())),
    }
}
