//! Test plugin: logs the config it was handed and returns it as output `config`.
use orch_sdk::{Cx, Step, StepError};

/// Any JSON object.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config(serde_json::Map<String, serde_json::Value>);

struct EchoConfig;

impl Step for EchoConfig {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "Return the config";
    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        let text = serde_json::to_string(&config.0).unwrap_or_default();
        if cx.applying() {
            orch_sdk::log::info(format!("config: {text}"));
        } else {
            cx.change(orch_sdk::ChangeKind::Run, "echo", text);
        }
        let (attempt, run_id) = (cx.context().attempt, cx.context().run_id.clone());
        cx.output("config", config.0);
        cx.output("attempt", attempt);
        cx.output("run_id", run_id);
        Ok(())
    }
}

orch_sdk::export!(EchoConfig);
