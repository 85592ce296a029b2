//! Test plugin: fails the way it is told, until `succeed_on_attempt` (to test retries).
use orch_sdk::{Plugin, StepContext, StepError};
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// failed | retryable | invalid-config | denied | trap | exit (calls `exit(3)`, which WASI
    /// 0.2 reports as a failure: code 1)
    kind: String,
    #[serde(default = "default_message")]
    message: String,
    /// Succeed from this attempt on (1 = first try).
    #[serde(default)]
    succeed_on_attempt: Option<u32>,
}

fn default_message() -> String {
    "told to fail".into()
}

struct Fail;

impl Plugin for Fail {
    fn describe() -> orch_sdk::PluginInfo {
        orch_sdk::info::<Config>("fail", "0.1.0", "Fail on purpose", &["log"])
    }
    fn plan(_: StepContext, config: String) -> Result<Vec<orch_sdk::Change>, StepError> {
        let _: Config = orch_sdk::config(&config)?;
        Ok(vec![])
    }
    fn run(ctx: StepContext, config: String) -> Result<Vec<orch_sdk::Output>, StepError> {
        let config: Config = orch_sdk::config(&config)?;
        if config.succeed_on_attempt.is_some_and(|n| ctx.attempt >= n) {
            return Ok(vec![orch_sdk::output("attempt", ctx.attempt)]);
        }
        orch_sdk::log::warn(format!(
            "attempt {} failing: {}",
            ctx.attempt, config.message
        ));
        let message = config.message;
        Err(match config.kind.as_str() {
            "retryable" => StepError::Retryable(message),
            "invalid-config" => StepError::InvalidConfig(message),
            "denied" => StepError::Denied(message),
            "trap" => panic!("{message}"),
            "exit" => std::process::exit(3),
            _ => StepError::Failed(message),
        })
    }
}

orch_sdk::export!(Fail);
