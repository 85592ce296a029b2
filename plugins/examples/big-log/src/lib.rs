//! Test plugin: writes one log line of `mib` MiB (what a host must refuse to buffer).
use orch_sdk::{Plugin, StepContext, StepError};
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    mib: u32,
}

struct BigLog;

impl Plugin for BigLog {
    fn describe() -> orch_sdk::PluginInfo {
        orch_sdk::info::<Config>("big-log", "0.1.0", "One huge log line", &[])
    }
    fn plan(_: StepContext, _: String) -> Result<Vec<orch_sdk::Change>, StepError> {
        Ok(vec![])
    }
    fn run(_: StepContext, config: String) -> Result<Vec<orch_sdk::Output>, StepError> {
        let config: Config = orch_sdk::config(&config)?;
        let line = "x".repeat(config.mib as usize * (1 << 20));
        orch_sdk::log::info(line);
        Ok(vec![])
    }
}

orch_sdk::export!(BigLog);
