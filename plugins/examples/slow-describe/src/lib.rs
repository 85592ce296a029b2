//! Test plugin: `describe` never returns (what `orch validate` and serve's load check must
//! survive: a bounded time to describe, then a clear refusal).
use orch_sdk::{Plugin, StepContext, StepError};

struct SlowDescribe;

impl Plugin for SlowDescribe {
    fn describe() -> orch_sdk::PluginInfo {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    fn plan(_: StepContext, _: String) -> Result<Vec<orch_sdk::Change>, StepError> {
        Ok(vec![])
    }
    fn run(_: StepContext, _: String) -> Result<Vec<orch_sdk::Output>, StepError> {
        Ok(vec![])
    }
}

orch_sdk::export!(SlowDescribe);
