//! Built-in `echo`: logs a message and publishes the given values as outputs.
//! Useful to wire steps together, to name values once, and as the no-op step in benchmarks.

use orch_sdk::{ChangeKind, Plugin, StepContext, StepError};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `with` of an `echo` step.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Logged at info level.
    #[serde(default)]
    message: Option<String>,
    /// Published as `steps.ID.outputs.NAME`.
    #[serde(default)]
    outputs: BTreeMap<String, serde_json::Value>,
    /// Names among `outputs` to publish as secrets (masked everywhere).
    #[serde(default)]
    secret: Vec<String>,
    /// Wait this long before returning: stands in for work in demos and tests.
    #[serde(default)]
    sleep_ms: u64,
}

struct Echo;

impl Plugin for Echo {
    fn describe() -> orch_sdk::PluginInfo {
        orch_sdk::info::<Config>(
            "echo",
            env!("CARGO_PKG_VERSION"),
            "Log a message and publish outputs",
            &["log"],
        )
    }

    fn plan(_ctx: StepContext, config: String) -> Result<Vec<orch_sdk::Change>, StepError> {
        let config: Config = orch_sdk::config(&config)?;
        Ok(config
            .message
            .map(|m| orch_sdk::change(ChangeKind::Run, "log", m))
            .into_iter()
            .collect())
    }

    fn run(_ctx: StepContext, config: String) -> Result<Vec<orch_sdk::Output>, StepError> {
        let config: Config = orch_sdk::config(&config)?;
        if let Some(message) = &config.message {
            orch_sdk::log::info(message);
        }
        if config.sleep_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(config.sleep_ms));
        }
        Ok(config
            .outputs
            .iter()
            .map(|(name, value)| {
                if config.secret.contains(name) {
                    orch_sdk::secret_output(name, value)
                } else {
                    orch_sdk::output(name, value)
                }
            })
            .collect())
    }
}

orch_sdk::export!(Echo);
