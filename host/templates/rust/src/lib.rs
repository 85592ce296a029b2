//! `{{name}}`: an orch plugin. `orch plugin build` compiles it to `{{name}}.wasm`;
//! `orch plugin test` runs `workflow.toml` against it (plan, then run).

use orch_sdk::{ChangeKind, Cx, Step, StepError};
use serde::Deserialize;

/// The step's `with` table; its JSON Schema is what `orch validate` checks.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Who to greet.
    who: String,
    /// Shout the greeting.
    #[serde(default)]
    loud: bool,
}

struct Plugin;

impl Step for Plugin {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "Greet someone";

    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        if config.who.trim().is_empty() {
            return Err(StepError::InvalidConfig("`who` is empty".into()));
        }
        let mut greeting = format!("hello, {}", config.who);
        if config.loud {
            greeting = greeting.to_uppercase();
        }
        // `orch plan` records the change; `orch run` logs it and returns true: act then. (This
        // plugin's only action is the greeting, so there is nothing more to do.)
        cx.change(ChangeKind::Run, "greeting", &greeting);
        cx.output("greeting", &greeting);
        Ok(())
    }
}

orch_sdk::export!(Plugin);
