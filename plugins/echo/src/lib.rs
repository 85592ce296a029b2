//! Built-in `echo`: logs a message and publishes the given values as outputs.
//! Useful to wire steps together, to name values once, and as the no-op step in benchmarks.

use orch_sdk::{ChangeKind, Cx, Step, StepError};
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

impl Step for Echo {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "Log a message and publish outputs";

    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        // The message is the action: logged once as itself, not as a change line.
        if let Some(message) = &config.message {
            if cx.applying() {
                orch_sdk::log::info(message);
            } else {
                cx.change(ChangeKind::Run, "log", message);
            }
        }
        if cx.applying() && config.sleep_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(config.sleep_ms));
        }
        for (name, value) in &config.outputs {
            if config.secret.contains(name) {
                cx.secret_output(name, value);
            } else {
                cx.output(name, value);
            }
        }
        Ok(())
    }
}

orch_sdk::export!(Echo);
