//! Test plugin: never returns from `run` (proves the wall-clock timeout stops guests).
use orch_sdk::{Plugin, StepContext, StepError};

#[derive(schemars::JsonSchema)]
#[allow(dead_code, reason = "only its schema is used")]
struct Config {}

struct Spin;

impl Plugin for Spin {
    fn describe() -> orch_sdk::PluginInfo {
        orch_sdk::info::<Config>("spin", "0.1.0", "Loop forever", &[])
    }
    fn plan(_: StepContext, _: String) -> Result<Vec<orch_sdk::Change>, StepError> {
        Ok(vec![])
    }
    fn run(_: StepContext, _: String) -> Result<Vec<orch_sdk::Output>, StepError> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

orch_sdk::export!(Spin);
