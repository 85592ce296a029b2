//! Test plugin: its `describe` publishes a config schema whose `$ref`s loop back on themselves,
//! as a hostile plugin would to make the host's schema compiler run away.
use orch_sdk::{Cx, Step, StepError};

struct RecursiveSchema;

impl Step for RecursiveSchema {
    type Config<'a> = serde_json::Value;
    const DESCRIPTION: &'static str = "A config schema that refers to itself";

    fn schema() -> String {
        serde_json::json!({
            "$defs": {
                "a": {"anyOf": [{"$ref": "#/$defs/b"}, {"$ref": "#/$defs/b"}]},
                "b": {"allOf": [{"$ref": "#/$defs/a"}, {"$ref": "#"}]}
            },
            "$ref": "#/$defs/a"
        })
        .to_string()
    }

    fn step(_: &mut Cx, _: serde_json::Value) -> Result<(), StepError> {
        Ok(())
    }
}

orch_sdk::export!(RecursiveSchema);
