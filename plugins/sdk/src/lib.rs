//! Write orch plugins in Rust.
//!
//! A plugin is a `cdylib` crate built for `wasm32-wasip2` that implements [`Step`] and calls
//! [`export!`]. One body serves both of the host's calls: in a dry run (`orch plan`) the body
//! reads the world and declares what it would change; in a run it declares the same changes
//! and makes them. The config arrives typed, its JSON Schema (what `orch validate` checks a
//! step's `with` against) is derived from the type, and name and version come from the crate.
//!
//! ```ignore
//! use orch_sdk::{ChangeKind, Cx, Step, StepError};
//!
//! /// `with` of a `greet` step.
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     /// Who to greet.
//!     who: String,
//! }
//!
//! struct Greet;
//!
//! impl Step for Greet {
//!     type Config<'a> = Config;
//!     const DESCRIPTION: &'static str = "Greet someone";
//!
//!     fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
//!         let greeting = format!("hello, {}", config.who);
//!         if cx.change(ChangeKind::Run, "greeting", &greeting) {
//!             orch_sdk::log::info(&greeting);
//!         }
//!         cx.output("greeting", greeting);
//!         Ok(())
//!     }
//! }
//!
//! orch_sdk::export!(Greet);
//! ```
//!
//! What a plugin may reach is not declared: the host reads it from the component's imports and
//! grants each call only what the workflow's `allow` names (`orch plugin inspect` shows both).
#![warn(missing_docs)]

#[doc(hidden)]
#[allow(clippy::too_many_arguments, reason = "generated from WIT")]
pub mod bindings {
    wit_bindgen::generate!({
        world: "step",
        path: "wit",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "orch_sdk::bindings",
        export_macro_name: "export_step",
    });
}

pub mod http;
pub mod log;

pub use bindings::orch::plugin::docker;
pub use bindings::orch::plugin::kafka;
pub use bindings::orch::plugin::postgres;
pub use bindings::orch::plugin::types::{
    Change, ChangeKind, Output, PluginInfo, StepContext, StepError,
};
pub use bindings::wasi;
pub use schemars;
pub use serde_json;

/// A plugin: one body for the dry run and the run.
pub trait Step {
    /// The step's `with` table, parsed once per call (it may borrow from the JSON text). Its
    /// JSON Schema is published by `describe` and enforced by `orch validate`.
    type Config<'a>: serde::Deserialize<'a> + schemars::JsonSchema;

    /// One line for `orch plugin list`.
    const DESCRIPTION: &'static str;

    /// Read the world, declare each difference with [`Cx::change`] and make it only when that
    /// returns `true`; publish results with [`Cx::output`]. Must be idempotent: a second run
    /// finds nothing to change.
    fn step(cx: &mut Cx, config: Self::Config<'_>) -> Result<(), StepError>;

    /// Parse the JSON text of `with`. Override it with [`config_by_action`] when the action
    /// picks the shape and the config can carry large row batches.
    fn parse(config: &str) -> Result<Self::Config<'_>, StepError> {
        crate::config(config)
    }

    /// The config schema as JSON text; derived from [`Step::Config`] unless overridden.
    /// Draft-07: the host compiles its meta-schema in ~2 ms where draft 2020-12's takes
    /// ~13 ms, and every `orch run` and `orch validate` compiles one.
    fn schema() -> String {
        let schema = schemars::generate::SchemaSettings::draft07()
            .into_generator()
            .into_root_schema_for::<Self::Config<'static>>();
        serde_json::to_string(&schema).unwrap_or_else(|_| "{}".into())
    }
}

/// Which of the host's two calls the body is serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `orch plan`: change nothing, say what would change.
    Plan,
    /// `orch run`: converge.
    Apply,
}

/// What the body sees of its call, and where it records changes and outputs.
pub struct Cx {
    mode: Mode,
    context: StepContext,
    changes: Vec<Change>,
    outputs: Vec<Output>,
}

impl Cx {
    /// A context for `mode`; the export glue makes one per call (tests may too).
    pub fn new(mode: Mode, context: StepContext) -> Self {
        Cx {
            mode,
            context,
            changes: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Plan or apply.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `true` when the body should make its changes.
    pub fn applying(&self) -> bool {
        self.mode == Mode::Apply
    }

    /// Run id, workflow, step id, attempt and trigger: for logs and idempotency keys.
    pub fn context(&self) -> &StepContext {
        &self.context
    }

    /// Declare a change. In a plan it is recorded and `false` comes back (do not make it); in a
    /// run it is logged and `true` comes back (make it now).
    pub fn change(
        &mut self,
        kind: ChangeKind,
        resource: impl Into<String>,
        detail: impl Into<String>,
    ) -> bool {
        self.declare(change(kind, resource, detail))
    }

    /// [`Cx::change`] for a change built elsewhere (see [`change`]).
    pub fn declare(&mut self, change: Change) -> bool {
        if self.applying() && change.kind != ChangeKind::None {
            log::info(describe_change(&change));
        }
        self.changes.push(change);
        self.applying()
    }

    /// The changes declared so far.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// Publish `value` as `steps.ID.outputs.NAME` (ignored in a plan).
    pub fn output(&mut self, name: &str, value: impl serde::Serialize) {
        self.publish(output(name, value));
    }

    /// Publish an output the host masks everywhere (a generated password, a token).
    pub fn secret_output(&mut self, name: &str, value: impl serde::Serialize) {
        self.publish(secret_output(name, value));
    }

    /// [`Cx::output`] for an output built elsewhere (see [`output`], [`secret_output`]).
    pub fn publish(&mut self, output: Output) {
        if self.applying() {
            self.outputs.push(output);
        }
    }

    /// The outputs published so far.
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// The changes and outputs recorded, handed over (what the export glue returns).
    pub fn into_parts(self) -> (Vec<Change>, Vec<Output>) {
        (self.changes, self.outputs)
    }
}

/// A change, for [`Cx::declare`] or a plugin's own planning code.
pub fn change(kind: ChangeKind, resource: impl Into<String>, detail: impl Into<String>) -> Change {
    Change {
        kind,
        resource: resource.into(),
        detail: detail.into(),
    }
}

/// A plain output, readable as `steps.ID.outputs.NAME`, for [`Cx::publish`].
pub fn output(name: &str, value: impl serde::Serialize) -> Output {
    Output {
        name: name.into(),
        value: serde_json::to_string(&value).unwrap_or_else(|_| "null".into()),
        secret: false,
    }
}

/// An output the host masks everywhere, for [`Cx::publish`].
pub fn secret_output(name: &str, value: impl serde::Serialize) -> Output {
    Output {
        secret: true,
        ..output(name, value)
    }
}

/// "create role etl: CREATE ROLE etl", the line a run logs for each change.
fn describe_change(change: &Change) -> String {
    let kind = match change.kind {
        ChangeKind::Create => "create",
        ChangeKind::Update => "update",
        ChangeKind::Replace => "replace",
        ChangeKind::Delete => "delete",
        ChangeKind::Run => "run",
        ChangeKind::None => "no change",
    };
    if change.detail.is_empty() || change.detail == change.resource {
        format!("{kind} {}", change.resource)
    } else {
        format!("{kind} {}: {}", change.resource, change.detail)
    }
}

/// The export glue behind [`export!`]; not for direct use.
#[doc(hidden)]
pub mod glue {
    use super::*;

    /// `describe` from the crate's name and version and the step's schema.
    pub fn describe<S: Step>(crate_name: &str, version: &str) -> PluginInfo {
        PluginInfo {
            name: plugin_name(crate_name).into(),
            version: version.into(),
            description: S::DESCRIPTION.into(),
            config_schema: S::schema(),
        }
    }

    /// Parse the config once and run the body in `mode`.
    pub fn call<S: Step>(mode: Mode, ctx: StepContext, config: &str) -> Result<Cx, StepError> {
        let parsed = S::parse(config)?;
        let mut cx = Cx::new(mode, ctx);
        S::step(&mut cx, parsed)?;
        Ok(cx)
    }

    /// A crate `orch-plugin-fetch` or `orch-fetch` is the plugin `fetch`.
    pub fn plugin_name(crate_name: &str) -> &str {
        crate_name
            .strip_prefix("orch-plugin-")
            .or_else(|| crate_name.strip_prefix("orch-"))
            .unwrap_or(crate_name)
    }
}

/// Export a [`Step`] implementation as the component's `step` world; its name and version are
/// the crate's (`orch-` or `orch-plugin-` prefixes dropped).
#[macro_export]
macro_rules! export {
    ($ty:ident) => {
        impl $crate::bindings::Guest for $ty {
            fn describe() -> $crate::PluginInfo {
                $crate::glue::describe::<$ty>(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
            }
            fn plan(
                ctx: $crate::StepContext,
                config: String,
            ) -> Result<Vec<$crate::Change>, $crate::StepError> {
                $crate::glue::call::<$ty>($crate::Mode::Plan, ctx, &config)
                    .map(|cx| cx.into_parts().0)
            }
            fn run(
                ctx: $crate::StepContext,
                config: String,
            ) -> Result<Vec<$crate::Output>, $crate::StepError> {
                $crate::glue::call::<$ty>($crate::Mode::Apply, ctx, &config)
                    .map(|cx| cx.into_parts().1)
            }
        }
        $crate::bindings::export_step!($ty with_types_in $crate::bindings);
    };
}

/// Parse JSON `config` into `C` (which may borrow from it); a mismatch is `invalid-config`
/// naming the field and position.
pub fn config<'a, C: serde::Deserialize<'a>>(config: &'a str) -> Result<C, StepError> {
    serde_json::from_str(config).map_err(|e| StepError::InvalidConfig(e.to_string()))
}

/// Deserialise a config whose shape is picked by its `action` field without buffering the
/// whole input (an internally tagged enum would): `pick` gets the action and the raw JSON
/// text and parses the right type straight from it. For configs carrying large row batches.
/// A step's own call goes through [`Step::parse`]: override it with [`config_by_action`] and
/// the same `pick`, which reads the text once (this reads it whole first, as a `RawValue`).
pub fn by_action<'de, D, T>(
    deserializer: D,
    pick: impl FnOnce(&str, &'de str) -> Result<T, serde_json::Error>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    use serde::de::Error;
    let raw = <&'de serde_json::value::RawValue>::deserialize(deserializer)?;
    let action = action_of(raw.get()).map_err(D::Error::custom)?;
    pick(&action, raw.get()).map_err(D::Error::custom)
}

/// [`by_action`] for [`Step::parse`]: the text is read once, by `pick` (100 000 Kafka records
/// are 3.4 MB to scan).
pub fn config_by_action<'a, T>(
    config: &'a str,
    pick: impl FnOnce(&str, &'a str) -> Result<T, serde_json::Error>,
) -> Result<T, StepError> {
    action_of(config)
        .and_then(|action| pick(&action, config))
        .map_err(|e| StepError::InvalidConfig(e.to_string()))
}

/// The `action` of a config object, read without reading past it: the host writes keys in
/// order, so it comes before large fields like `rows` and `records`.
fn action_of(config: &str) -> Result<String, serde_json::Error> {
    use serde::de::{Error, IgnoredAny, MapAccess, Visitor};
    /// Raised to stop reading once the action is known.
    const FOUND: &str = "orch: action found";
    struct Tag<'a>(&'a mut Option<String>);
    impl<'de> Visitor<'de> for Tag<'_> {
        type Value = ();
        fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
            f.write_str("an object with an `action`")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == "action" {
                    *self.0 = Some(map.next_value()?);
                    return Err(A::Error::custom(FOUND));
                }
                map.next_value::<IgnoredAny>()?;
            }
            Err(A::Error::missing_field("action"))
        }
    }
    let mut action = None;
    let mut de = serde_json::Deserializer::from_str(config);
    let read = serde::Deserializer::deserialize_map(&mut de, Tag(&mut action));
    match (action, read) {
        (Some(action), _) => Ok(action),
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Err(serde_json::Error::missing_field("action")),
    }
}

impl From<postgres::Error> for StepError {
    /// Unreachable servers are retryable; denials and server answers are not.
    fn from(e: postgres::Error) -> Self {
        match e {
            postgres::Error::Denied(m) => StepError::Denied(m),
            postgres::Error::Unavailable(m) => {
                StepError::Retryable(format!("postgres unavailable: {m}"))
            }
            postgres::Error::Database(db) => {
                StepError::Failed(format!("postgres error {}: {}", db.code, db.message))
            }
            postgres::Error::Other(m) => StepError::Failed(m),
        }
    }
}

impl From<kafka::Error> for StepError {
    /// Unreachable brokers are retryable; denials and broker refusals are not.
    fn from(e: kafka::Error) -> Self {
        match e {
            kafka::Error::Denied(m) => StepError::Denied(m),
            kafka::Error::Unavailable(m) => StepError::Retryable(format!("kafka unavailable: {m}")),
            kafka::Error::Broker(b) => {
                StepError::Failed(format!("kafka error {}: {}", b.code, b.message))
            }
            kafka::Error::Other(m) => StepError::Failed(m),
        }
    }
}

/// When to pull an image, as a step's `with` says it (`"missing"`, the default, `"always"` or
/// `"never"`): the host's [`docker::PullPolicy`] with a schema that lists the choices.
#[derive(
    serde::Deserialize, serde::Serialize, schemars::JsonSchema, Default, Clone, Copy, Debug,
)]
#[serde(rename_all = "lowercase")]
#[allow(
    missing_docs,
    reason = "documented on the type; variant docs would change the schema"
)]
pub enum Pull {
    #[default]
    Missing,
    Always,
    Never,
}

impl From<Pull> for docker::PullPolicy {
    fn from(pull: Pull) -> Self {
        match pull {
            Pull::Missing => docker::PullPolicy::Missing,
            Pull::Always => docker::PullPolicy::Always,
            Pull::Never => docker::PullPolicy::Never,
        }
    }
}

impl From<docker::Error> for StepError {
    /// An unreachable engine is retryable; denials, missing objects and refusals are not.
    fn from(e: docker::Error) -> Self {
        match e {
            docker::Error::Denied(m) => StepError::Denied(m),
            docker::Error::Unavailable(m) => {
                StepError::Retryable(format!("docker engine unavailable: {m}"))
            }
            docker::Error::NotFound(m) => StepError::Failed(format!("not found: {m}")),
            docker::Error::Engine(m) => StepError::Failed(format!("docker engine: {m}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names_lose_the_orch_prefix() {
        assert_eq!(glue::plugin_name("orch-echo"), "echo");
        assert_eq!(glue::plugin_name("orch-plugin-fetch"), "fetch");
        assert_eq!(glue::plugin_name("fetch"), "fetch");
    }

    #[test]
    fn the_action_is_read_without_reading_what_follows_it() {
        // What follows `action` is not read: the type `pick` parses checks it.
        let truncated = r#"{"action": "load", "rows": [{"id": 1}, {"id""#;
        assert_eq!(action_of(truncated).unwrap(), "load");
        let later = r#"{"connection": "db", "rows": [{"a\"ction": 1}], "action": "produce"}"#;
        assert_eq!(action_of(later).unwrap(), "produce");
        for bad in [
            r#"{"rows": []}"#,
            "[]",
            r#"{"action": 3}"#,
            r#"{"rows": [}"#,
        ] {
            assert!(action_of(bad).is_err(), "{bad}");
        }
        let missing = action_of(r#"{"rows": []}"#).unwrap_err().to_string();
        assert!(missing.contains("missing field `action`"), "{missing}");
    }

    #[test]
    fn a_config_picked_by_action_is_parsed_from_its_text_as_through_serde() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Load<'a> {
            action: &'a str,
            #[serde(borrow)]
            rows: &'a serde_json::value::RawValue,
        }
        struct Picked<'a>(Load<'a>);
        impl<'de> serde::Deserialize<'de> for Picked<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                by_action(d, pick)
            }
        }
        fn pick<'a>(action: &str, text: &'a str) -> Result<Picked<'a>, serde_json::Error> {
            assert_eq!(action, "load");
            serde_json::from_str(text).map(Picked)
        }
        let text = r#"{"action": "load", "rows": [{"id": 1}, {"id": 2}]}"#;
        let direct = config_by_action(text, pick).unwrap().0;
        assert_eq!(direct.rows.get(), r#"[{"id": 1}, {"id": 2}]"#);
        let through_serde = config::<Picked<'_>>(text).unwrap().0;
        assert_eq!(
            (direct.action, direct.rows.get()),
            (through_serde.action, through_serde.rows.get())
        );
        // Errors are `invalid-config`, with the position in the text.
        for (bad, says) in [
            (
                r#"{"action": "load", "rows": [], "nope": 1}"#,
                "unknown field `nope`",
            ),
            (r#"{"action": "load", "rows": [}"#, "line 1 column 29"),
            (r#"{"rows": []}"#, "missing field `action`"),
        ] {
            match config_by_action(bad, pick) {
                Err(StepError::InvalidConfig(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("{bad}: {:?}", other.map(|p| p.0)),
            }
        }
    }

    #[test]
    fn changes_are_recorded_and_acted_on_only_when_applying() {
        let ctx = || StepContext {
            run_id: "r".into(),
            workflow: "w".into(),
            step_id: "s".into(),
            attempt: 1,
            trigger: "cli".into(),
        };
        let mut plan = Cx::new(Mode::Plan, ctx());
        assert!(!plan.change(ChangeKind::Create, "role etl", "CREATE ROLE etl"));
        plan.output("role", "etl");
        assert_eq!(plan.changes().len(), 1);
        assert!(plan.outputs().is_empty(), "a plan publishes no outputs");
        let change = &plan.changes()[0];
        assert_eq!(describe_change(change), "create role etl: CREATE ROLE etl");
    }
}
