//! Test plugin: logs the config it was handed and returns it as output `config`.
use orch_sdk::{Plugin, StepContext, StepError};

/// Any JSON object.
#[derive(schemars::JsonSchema)]
#[allow(dead_code, reason = "only its schema is used")]
struct Config(serde_json::Map<String, serde_json::Value>);

struct EchoConfig;

impl Plugin for EchoConfig {
    fn describe() -> orch_sdk::PluginInfo {
        orch_sdk::info::<Config>("echo-config", "0.1.0", "Return the config", &["log"])
    }
    fn plan(_: StepContext, config: String) -> Result<Vec<orch_sdk::Change>, StepError> {
        Ok(vec![orch_sdk::change(
            orch_sdk::ChangeKind::Run,
            "echo",
            config,
        )])
    }
    fn run(ctx: StepContext, config: String) -> Result<Vec<orch_sdk::Output>, StepError> {
        let value: serde_json::Value = orch_sdk::config(&config)?;
        orch_sdk::log::info(format!("config: {config}"));
        Ok(vec![
            orch_sdk::output("config", value),
            orch_sdk::output("attempt", ctx.attempt),
            orch_sdk::output("run_id", ctx.run_id),
        ])
    }
}

orch_sdk::export!(EchoConfig);
