//! Helpers for writing orch plugins in Rust.
//!
//! A plugin is a `cdylib` crate built for `wasm32-wasip2` that implements [`Plugin`] and calls
//! [`export!`]. The SDK hides the WIT plumbing: configs arrive as typed structs, outputs leave as
//! JSON, errors say whether the host should retry.
//!
//! ```ignore
//! struct Hello;
//! impl orch_sdk::Plugin for Hello { /* describe, plan, run */ }
//! orch_sdk::export!(Hello);
//! ```

#[doc(hidden)]
#[allow(clippy::too_many_arguments, reason = "generated from WIT")]
pub mod bindings {
    wit_bindgen::generate!({
        world: "step",
        path: "../../wit",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "orch_sdk::bindings",
        export_macro_name: "export_step",
    });
}

pub mod http;

pub use bindings::orch::plugin::docker;
pub use bindings::orch::plugin::kafka;
pub use bindings::orch::plugin::postgres;
pub use bindings::orch::plugin::types::{
    Change, ChangeKind, Output, PluginInfo, StepContext, StepError,
};
pub use bindings::wasi;
pub use schemars;
pub use serde_json;

/// The three calls every plugin answers; see `wit/world.wit` for the contract.
pub trait Plugin {
    /// Name, version, description and config schema.
    fn describe() -> PluginInfo;
    /// Say what `run` would change, changing nothing.
    fn plan(ctx: StepContext, config: String) -> Result<Vec<Change>, StepError>;
    /// Converge; must be idempotent.
    fn run(ctx: StepContext, config: String) -> Result<Vec<Output>, StepError>;
}

/// Export a [`Plugin`] implementation as the component's `step` world.
#[macro_export]
macro_rules! export {
    ($ty:ident) => {
        impl $crate::bindings::Guest for $ty {
            fn describe() -> $crate::PluginInfo {
                <$ty as $crate::Plugin>::describe()
            }
            fn plan(
                ctx: $crate::StepContext,
                config: String,
            ) -> Result<Vec<$crate::Change>, $crate::StepError> {
                <$ty as $crate::Plugin>::plan(ctx, config)
            }
            fn run(
                ctx: $crate::StepContext,
                config: String,
            ) -> Result<Vec<$crate::Output>, $crate::StepError> {
                <$ty as $crate::Plugin>::run(ctx, config)
            }
        }
        $crate::bindings::export_step!($ty with_types_in $crate::bindings);
    };
}

/// Build a [`PluginInfo`] whose schema is derived from the config type.
pub fn info<C: schemars::JsonSchema>(
    name: &str,
    version: &str,
    description: &str,
    capabilities: &[&str],
) -> PluginInfo {
    PluginInfo {
        name: name.into(),
        version: version.into(),
        description: description.into(),
        config_schema: serde_json::to_string(&schemars::schema_for!(C)).unwrap_or_default(),
        capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
    }
}

/// Parse the step's `with` JSON into the plugin's config type (which may borrow from it).
pub fn config<'a, C: serde::Deserialize<'a>>(config: &'a str) -> Result<C, StepError> {
    serde_json::from_str(config).map_err(|e| StepError::InvalidConfig(e.to_string()))
}

/// The `action` of a config, read without parsing the rest: lets a plugin parse a large
/// variant straight into its struct instead of through an internally tagged enum, which
/// buffers the whole input first.
pub fn action(config: &str) -> Result<String, StepError> {
    #[derive(serde::Deserialize)]
    struct Tag {
        action: String,
    }
    self::config::<Tag>(config).map(|t| t.action)
}

/// A plain output, readable as `steps.ID.outputs.NAME`.
pub fn output(name: &str, value: impl serde::Serialize) -> Output {
    Output {
        name: name.into(),
        value: serde_json::to_string(&value).unwrap_or_else(|_| "null".into()),
        secret: false,
    }
}

/// An output the host masks everywhere (a generated password, a token).
pub fn secret_output(name: &str, value: impl serde::Serialize) -> Output {
    Output {
        secret: true,
        ..output(name, value)
    }
}

/// A predicted change for `plan`.
pub fn change(kind: ChangeKind, resource: impl Into<String>, detail: impl Into<String>) -> Change {
    Change {
        kind,
        resource: resource.into(),
        detail: detail.into(),
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

/// Step log lines; the host tags them with run and step and masks secrets.
pub mod log {
    use crate::bindings::orch::plugin::log::{self as host, Level};

    /// Log at info level.
    pub fn info(message: impl AsRef<str>) {
        host::log(Level::Info, message.as_ref());
    }
    /// Log at warn level.
    pub fn warn(message: impl AsRef<str>) {
        host::log(Level::Warn, message.as_ref());
    }
    /// Log at error level.
    pub fn error(message: impl AsRef<str>) {
        host::log(Level::Error, message.as_ref());
    }
    /// Log at debug level.
    pub fn debug(message: impl AsRef<str>) {
        host::log(Level::Debug, message.as_ref());
    }
    /// Report progress of a long action.
    pub fn progress(current: u64, total: Option<u64>, message: impl AsRef<str>) {
        host::progress(current, total, message.as_ref());
    }
}
