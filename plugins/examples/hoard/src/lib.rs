//! Test plugin: creates `count` wasi:http header maps of `bytes` each and keeps every handle, to
//! pin host memory its own linear memory does not show (each handle costs it 4 bytes).
use orch_sdk::wasi::http::types::Fields;
use orch_sdk::{Cx, Step, StepError};
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    count: u32,
    bytes: u32,
}

struct Hoard;

impl Step for Hoard {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "Keeps host resources";
    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        if !cx.applying() {
            return Ok(());
        }
        let value = vec![b'x'; config.bytes as usize];
        let mut kept = Vec::new();
        for _ in 0..config.count {
            let fields = Fields::from_list(&[("x".to_string(), value.clone())])
                .map_err(|e| StepError::Failed(format!("from-list: {e:?}")))?;
            kept.push(fields);
        }
        cx.output("kept", kept.len());
        Ok(())
    }
}

orch_sdk::export!(Hoard);
