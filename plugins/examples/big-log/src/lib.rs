//! Test plugin: writes one log line of `mib` MiB (what a host must refuse to buffer).
use orch_sdk::{Cx, Step, StepError};
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    mib: u32,
}

struct BigLog;

impl Step for BigLog {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "One huge log line";
    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        if cx.applying() {
            orch_sdk::log::info("x".repeat(config.mib as usize * (1 << 20)));
        }
        Ok(())
    }
}

orch_sdk::export!(BigLog);
