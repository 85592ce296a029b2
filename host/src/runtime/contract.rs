//! The plugin contract as the layers above see it: the host's own copies of the WIT records a
//! call takes and returns, so the executor, the server and the CLI never name generated types.

use crate::capability::bindings::orch::plugin::types as wit;

/// Where a call comes from: enough for logs and idempotency keys, nothing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepContext {
    pub run_id: String,
    pub workflow: String,
    pub step_id: String,
    /// 1 for the first try, 2 for the first retry, ...
    pub attempt: u32,
    /// What started the run (`cli`, `cron`, `http`, `webhook`).
    pub trigger: String,
}

impl From<&StepContext> for wit::StepContext {
    fn from(c: &StepContext) -> Self {
        wit::StepContext {
            run_id: c.run_id.clone(),
            workflow: c.workflow.clone(),
            step_id: c.step_id.clone(),
            attempt: c.attempt,
            trigger: c.trigger.clone(),
        }
    }
}

/// The kind of change `plan` predicts; the text form is what `orch plan --json` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum ChangeKind {
    Create,
    Update,
    Replace,
    Delete,
    /// An action with an effect that is not a resource change (a query, a request).
    Run,
    /// Explicitly nothing to do.
    None,
}

impl ChangeKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One change that `run` would make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// What is changed, e.g. "role etl" or "topic events".
    pub resource: String,
    /// Human detail, e.g. the SQL that would run.
    pub detail: String,
}

impl From<wit::Change> for Change {
    fn from(c: wit::Change) -> Self {
        let kind = match c.kind {
            wit::ChangeKind::Create => ChangeKind::Create,
            wit::ChangeKind::Update => ChangeKind::Update,
            wit::ChangeKind::Replace => ChangeKind::Replace,
            wit::ChangeKind::Delete => ChangeKind::Delete,
            wit::ChangeKind::Run => ChangeKind::Run,
            wit::ChangeKind::None => ChangeKind::None,
        };
        Change {
            kind,
            resource: c.resource,
            detail: c.detail,
        }
    }
}

/// One named result of `run`, readable as `steps.ID.outputs.NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub name: String,
    /// JSON text.
    pub value: String,
    /// Masked everywhere by the host from the moment it is returned.
    pub secret: bool,
}

impl From<wit::Output> for Output {
    fn from(o: wit::Output) -> Self {
        Output {
            name: o.name,
            value: o.value,
            secret: o.secret,
        }
    }
}

/// What a plugin says about itself; `orch validate` checks `with` against `config_schema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    /// JSON Schema (draft-07, or any draft naming itself in `$schema`) of the step's `with` table, as JSON text.
    pub config_schema: String,
}

impl From<wit::PluginInfo> for PluginInfo {
    fn from(i: wit::PluginInfo) -> Self {
        PluginInfo {
            name: i.name,
            version: i.version,
            description: i.description,
            config_schema: i.config_schema,
        }
    }
}
