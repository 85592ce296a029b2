//! Test plugin: `describe` never returns (what `orch validate` and serve's load check must
//! survive: a bounded time to describe, then a clear refusal). Written against the raw world
//! bindings, since the SDK's `describe` always returns.
use orch_sdk::{Change, Output, PluginInfo, StepContext, StepError};

struct SlowDescribe;

impl orch_sdk::bindings::Guest for SlowDescribe {
    fn describe() -> PluginInfo {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    fn plan(_: StepContext, _: String) -> Result<Vec<Change>, StepError> {
        Ok(vec![])
    }
    fn run(_: StepContext, _: String) -> Result<Vec<Output>, StepError> {
        Ok(vec![])
    }
}

orch_sdk::bindings::export_step!(SlowDescribe with_types_in orch_sdk::bindings);
