//! Test plugin: creates `count` wasi:http header maps of `bytes` each and keeps every handle, to
//! pin host memory its own linear memory does not show (each handle costs it 4 bytes).
use orch_sdk::wasi::http::types::Fields;
use orch_sdk::{Plugin, StepContext, StepError};
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    count: u32,
    bytes: u32,
}

struct Hoard;

impl Plugin for Hoard {
    fn describe() -> orch_sdk::PluginInfo {
        orch_sdk::info::<Config>("hoard", "0.1.0", "Keeps host resources", &[])
    }
    fn plan(_: StepContext, _: String) -> Result<Vec<orch_sdk::Change>, StepError> {
        Ok(vec![])
    }
    fn run(_: StepContext, config: String) -> Result<Vec<orch_sdk::Output>, StepError> {
        let config: Config = orch_sdk::config(&config)?;
        let value = vec![b'x'; config.bytes as usize];
        let mut kept = Vec::new();
        for _ in 0..config.count {
            let fields = Fields::from_list(&[("x".to_string(), value.clone())])
                .map_err(|e| StepError::Failed(format!("from-list: {e:?}")))?;
            kept.push(fields);
        }
        Ok(vec![orch_sdk::output("kept", kept.len())])
    }
}

orch_sdk::export!(Hoard);
