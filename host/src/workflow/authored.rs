//! The workflow file exactly as written: serde types with spans, no cross-field checks.
//! [`super::validate`] turns a [`WorkflowToml`] into a [`super::Workflow`].

use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// A whole workflow file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowToml {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub inputs: IndexMap<Spanned<String>, InputToml>,
    #[serde(default)]
    pub connections: IndexMap<Spanned<String>, ConnectionToml>,
    #[serde(default)]
    pub schedule: Vec<ScheduleToml>,
    #[serde(default)]
    pub webhook: Option<Spanned<WebhookToml>>,
    #[serde(default)]
    pub steps: IndexMap<Spanned<String>, Spanned<StepToml>>,
}

/// `[inputs.X]`, typed like GitLab `spec:inputs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputToml {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: InputKind,
    #[serde(default)]
    pub default: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub required: Option<bool>,
    #[serde(default)]
    pub options: Option<Spanned<Vec<toml::Value>>>,
    #[serde(default)]
    pub regex: Option<Spanned<String>>,
}

/// The type of an input value.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, strum::Display,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum InputKind {
    #[default]
    String,
    Number,
    Boolean,
    Array,
}

/// `[connections.X]`: a named endpoint whose credentials stay in the host.
#[derive(Debug, Deserialize)]
pub struct ConnectionToml {
    pub kind: Spanned<ConnectionKind>,
    /// Kind-specific settings (url, host, bootstrap servers...), checked by later stages.
    #[serde(flatten)]
    pub settings: BTreeMap<String, toml::Value>,
}

/// What a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, strum::Display)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum ConnectionKind {
    Postgres,
    Kafka,
    Docker,
    Http,
}

/// `[[schedule]]`: when to run the workflow unattended (used by `orch serve`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleToml {
    pub cron: Spanned<String>,
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub overlap: Overlap,
    #[serde(default)]
    pub catchup: Catchup,
    #[serde(default)]
    pub inputs: Option<Spanned<toml::Table>>,
}

/// `[webhook]`: let `orch serve` start runs from signed deliveries (GitHub/Gitea style).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookToml {
    /// Name of the secret holding the HMAC key (looked up like `secrets.NAME`).
    pub secret: Spanned<String>,
    /// Input name -> dotted path into the JSON payload (`repository.full_name`).
    #[serde(default)]
    pub inputs: IndexMap<Spanned<String>, Spanned<String>>,
    /// Accept only deliveries with a signed `X-Webhook-Timestamp` (default); `false` for
    /// forges that cannot send one (GitHub, Gitea), whose deliveries replay under a new id.
    #[serde(default = "yes")]
    pub require_timestamp: bool,
}

fn yes() -> bool {
    true
}

/// What a tick does while the previous run of the same schedule is still going.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, strum::Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Overlap {
    #[default]
    Skip,
    Queue,
    Allow,
    CancelRunning,
}

/// Which ticks missed while the server was down are run when it comes back.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, strum::Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Catchup {
    #[default]
    None,
    Last,
    All,
}

/// `[steps.X]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepToml {
    /// A built-in name, a path to a `.wasm` component, or `{ path, sha256 }`.
    pub plugin: Spanned<toml::Value>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
    #[serde(rename = "if", default)]
    pub condition: Option<Spanned<String>>,
    #[serde(default)]
    pub with: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub retry: Option<Spanned<RetryToml>>,
    #[serde(default)]
    pub memory: Option<Spanned<String>>,
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Keep secret outputs in the host secret store: `"NAME"` (the step's one secret output)
    /// or `{ output = "NAME" }`.
    #[serde(default)]
    pub store_secret: Option<Spanned<toml::Value>>,
}

/// `retry = { max = 3, backoff = "2s" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryToml {
    pub max: u32,
    #[serde(default)]
    pub backoff: Option<String>,
    #[serde(default)]
    pub max_backoff: Option<String>,
}
