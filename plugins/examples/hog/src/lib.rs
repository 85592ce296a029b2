//! Test plugin: allocates 1 MiB blocks until it is stopped (proves the memory cap).
use orch_sdk::{Plugin, StepContext, StepError};

#[derive(schemars::JsonSchema)]
#[allow(dead_code, reason = "only its schema is used")]
struct Config {}

struct Hog;

impl Plugin for Hog {
    fn describe() -> orch_sdk::PluginInfo {
        orch_sdk::info::<Config>("hog", "0.1.0", "Allocate without bound", &[])
    }
    fn plan(_: StepContext, _: String) -> Result<Vec<orch_sdk::Change>, StepError> {
        Ok(vec![])
    }
    fn run(_: StepContext, _: String) -> Result<Vec<orch_sdk::Output>, StepError> {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            blocks.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }
}

orch_sdk::export!(Hog);
