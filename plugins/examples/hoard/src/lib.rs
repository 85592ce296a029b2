//! Test plugin: creates `count` wasi:http header maps of `bytes` each and keeps every handle, to
//! pin host memory its own linear memory does not show (each handle costs it 4 bytes). With
//! `sleeps`, it keeps `count` pending clock subscriptions instead (orch's own monotonic clock).
use orch_sdk::wasi::http::types::Fields;
use orch_sdk::{Cx, Step, StepError};
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    count: u32,
    #[serde(default)]
    bytes: u32,
    /// Keep clock subscriptions (an hour away) rather than header maps.
    #[serde(default)]
    sleeps: bool,
}

struct Hoard;

impl Step for Hoard {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "Keeps host resources";
    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        if !cx.applying() {
            return Ok(());
        }
        if config.sleeps {
            use orch_sdk::wasi::clocks::monotonic_clock;
            let hour = 3_600_000_000_000;
            let kept: Vec<_> = (0..config.count)
                .map(|_| monotonic_clock::subscribe_duration(hour))
                .collect();
            cx.output("kept", kept.len());
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
