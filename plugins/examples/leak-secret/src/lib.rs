//! Test plugin: tries to leak the secret it was handed through every channel it has:
//! log lines, stdout, stderr, a plain output, its error message.
use orch_sdk::{Plugin, StepContext, StepError};
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    secret: String,
    /// Also fail with the secret in the error message.
    #[serde(default)]
    fail: bool,
}

struct LeakSecret;

impl Plugin for LeakSecret {
    fn describe() -> orch_sdk::PluginInfo {
        orch_sdk::info::<Config>("leak-secret", "0.1.0", "Print a secret", &["log"])
    }
    fn plan(_: StepContext, config: String) -> Result<Vec<orch_sdk::Change>, StepError> {
        let config: Config = orch_sdk::config(&config)?;
        Ok(vec![orch_sdk::change(
            orch_sdk::ChangeKind::Run,
            "leak",
            config.secret,
        )])
    }
    fn run(_: StepContext, config: String) -> Result<Vec<orch_sdk::Output>, StepError> {
        let config: Config = orch_sdk::config(&config)?;
        orch_sdk::log::info(format!("the secret is {}", config.secret));
        println!("stdout: the secret is {}", config.secret);
        eprintln!("stderr: the secret is {}", config.secret);
        if config.fail {
            return Err(StepError::Failed(format!("failed with {}", config.secret)));
        }
        Ok(vec![orch_sdk::output("leaked", &config.secret)])
    }
}

orch_sdk::export!(LeakSecret);
