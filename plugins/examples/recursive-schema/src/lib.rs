//! Test plugin: its `describe` publishes a config schema whose `$ref`s loop back on themselves,
//! as a hostile plugin would to make the host's schema compiler run away.
use orch_sdk::{Plugin, StepContext, StepError};

struct RecursiveSchema;

impl Plugin for RecursiveSchema {
    fn describe() -> orch_sdk::PluginInfo {
        let schema = serde_json::json!({
            "$defs": {
                "a": {"anyOf": [{"$ref": "#/$defs/b"}, {"$ref": "#/$defs/b"}]},
                "b": {"allOf": [{"$ref": "#/$defs/a"}, {"$ref": "#"}]}
            },
            "$ref": "#/$defs/a"
        });
        orch_sdk::PluginInfo {
            name: "recursive-schema".into(),
            version: "0.1.0".into(),
            description: "A config schema that refers to itself".into(),
            config_schema: schema.to_string(),
            capabilities: vec![],
        }
    }
    fn plan(_: StepContext, _: String) -> Result<Vec<orch_sdk::Change>, StepError> {
        Ok(vec![])
    }
    fn run(_: StepContext, _: String) -> Result<Vec<orch_sdk::Output>, StepError> {
        Ok(vec![])
    }
}

orch_sdk::export!(RecursiveSchema);
