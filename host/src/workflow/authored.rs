//! The workflow file exactly as written: serde types with spans, no cross-field checks.
//! [`super::validate`] turns a [`WorkflowToml`] into a [`super::Workflow`].

use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// A whole workflow file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowToml {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, InputToml>")]
    pub inputs: IndexMap<Spanned<String>, InputToml>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ConnectionToml>")]
    pub connections: IndexMap<Spanned<String>, ConnectionToml>,
    #[serde(default)]
    pub schedule: Vec<ScheduleToml>,
    #[serde(default)]
    #[schemars(with = "Option<WebhookToml>")]
    pub webhook: Option<Spanned<WebhookToml>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, StepToml>")]
    pub steps: IndexMap<Spanned<String>, Spanned<StepToml>>,
}

/// `[inputs.X]`, typed like GitLab `spec:inputs`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputToml {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: InputKind,
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub default: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub required: Option<bool>,
    #[serde(default)]
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    pub options: Option<Spanned<Vec<toml::Value>>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub regex: Option<Spanned<String>>,
}

/// The type of an input value.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Deserialize,
    serde::Serialize,
    strum::Display,
    schemars::JsonSchema,
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
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ConnectionToml {
    #[schemars(with = "ConnectionKind")]
    pub kind: Spanned<ConnectionKind>,
    /// Kind-specific settings (url, host, bootstrap servers...), checked by later stages.
    #[serde(flatten)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub settings: BTreeMap<String, toml::Value>,
}

/// What a connection talks to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Deserialize,
    serde::Serialize,
    strum::Display,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum ConnectionKind {
    Postgres,
    Kafka,
    Docker,
    Http,
}

/// `[[schedule]]`: when to run the workflow unattended (used by `orch serve`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleToml {
    #[schemars(with = "String")]
    pub cron: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub overlap: Overlap,
    #[serde(default)]
    pub catchup: Catchup,
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub inputs: Option<Spanned<toml::Table>>,
}

/// `[webhook]`: let `orch serve` start runs from signed deliveries (GitHub/Gitea style).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookToml {
    /// Name of the secret holding the HMAC key (looked up like `secrets.NAME`).
    #[schemars(with = "String")]
    pub secret: Spanned<String>,
    /// Input name -> dotted path into the JSON payload (`repository.full_name`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
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
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Deserialize,
    serde::Serialize,
    strum::Display,
    schemars::JsonSchema,
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
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Deserialize,
    serde::Serialize,
    strum::Display,
    schemars::JsonSchema,
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
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepToml {
    /// A built-in name, a path to a `.wasm` component, or `{ path, sha256 }`.
    #[schemars(with = "PluginRefSchema")]
    pub plugin: Spanned<toml::Value>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub needs: Vec<Spanned<String>>,
    #[serde(rename = "if", default)]
    #[schemars(with = "Option<String>")]
    pub condition: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub with: Option<Spanned<toml::Table>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<RetryToml>")]
    pub retry: Option<Spanned<RetryToml>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub memory: Option<Spanned<String>>,
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Labels a worker must all have to run this step (`orch serve --worker-labels`), like
    /// GitLab runner tags; none: any worker that takes untagged steps.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub runs_on: Vec<Spanned<String>>,
    /// Keep secret outputs in the host secret store: `"NAME"` (the step's one secret output)
    /// or `{ OUTPUT = "NAME" }`.
    #[serde(default)]
    #[schemars(with = "Option<StoreSecretSchema>")]
    pub store_secret: Option<Spanned<toml::Value>>,
}

/// `retry = { max = 3, backoff = "2s" }`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryToml {
    pub max: u32,
    #[serde(default)]
    pub backoff: Option<String>,
    #[serde(default)]
    pub max_backoff: Option<String>,
}

/// `plugin = ...` as the schema describes it (parsed by hand in validation, for its messages).
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "schema only")]
enum PluginRefSchema {
    /// A built-in name (`echo`, `postgres`...), a path to a `.wasm` component, or
    /// `oci://HOST[:PORT]/REPOSITORY:TAG`.
    Name(String),
    /// A component by path, pinned by its SHA-256 when given: refused if the file changes.
    Pinned(PinnedPlugin),
    /// A component in an OCI registry, pinned to a manifest digest when given.
    Oci(OciPlugin),
}

#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "schema only")]
struct OciPlugin {
    /// `HOST[:PORT]/REPOSITORY:TAG`.
    oci: String,
    #[schemars(regex(pattern = r"^sha256:[0-9a-fA-F]{64}$"))]
    digest: Option<String>,
}

#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "schema only")]
struct PinnedPlugin {
    path: String,
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    sha256: Option<String>,
}

/// `store_secret = ...` as the schema describes it.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "schema only")]
enum StoreSecretSchema {
    /// The host secret to keep the step's one secret output in.
    Name(String),
    /// Secret output name → host secret name (`{ password = "APP_DB_PASSWORD" }`).
    Outputs(BTreeMap<String, String>),
}
