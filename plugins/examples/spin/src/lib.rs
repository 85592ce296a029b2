//! Test plugin: never returns from `run` (proves the wall-clock timeout stops guests).
use orch_sdk::{Cx, Step, StepError};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

struct Spin;

impl Step for Spin {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "Loop forever";
    fn step(cx: &mut Cx, _: Config) -> Result<(), StepError> {
        if !cx.applying() {
            return Ok(());
        }
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

orch_sdk::export!(Spin);
