//! Test plugin: tries to leak the secret it was handed through every channel it has:
//! log lines, stdout, stderr, a plain output, its error message.
use orch_sdk::{Cx, Step, StepError};
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

impl Step for LeakSecret {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "Print a secret";
    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        if !cx.applying() {
            cx.change(orch_sdk::ChangeKind::Run, "leak", config.secret);
            return Ok(());
        }
        orch_sdk::log::info(format!("the secret is {}", config.secret));
        println!("stdout: the secret is {}", config.secret);
        eprintln!("stderr: the secret is {}", config.secret);
        if config.fail {
            return Err(StepError::Failed(format!("failed with {}", config.secret)));
        }
        cx.output("leaked", &config.secret);
        Ok(())
    }
}

orch_sdk::export!(LeakSecret);
