//! Test plugin: fails the way it is told, until `succeed_on_attempt` (to test retries).
use orch_sdk::{Cx, Step, StepError};
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

impl Step for Fail {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "Fail on purpose";
    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        if !cx.applying() {
            return Ok(());
        }
        let attempt = cx.context().attempt;
        if config.succeed_on_attempt.is_some_and(|n| attempt >= n) {
            cx.output("attempt", attempt);
            return Ok(());
        }
        orch_sdk::log::warn(format!("attempt {attempt} failing: {}", config.message));
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
