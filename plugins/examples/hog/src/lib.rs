//! Test plugin: allocates 1 MiB blocks until it is stopped (proves the memory cap).
use orch_sdk::{Cx, Step, StepError};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

struct Hog;

impl Step for Hog {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "Allocate without bound";
    fn step(cx: &mut Cx, _: Config) -> Result<(), StepError> {
        if !cx.applying() {
            return Ok(());
        }
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            blocks.push(std::hint::black_box(vec![1u8; 1 << 20]));
        }
    }
}

orch_sdk::export!(Hog);
