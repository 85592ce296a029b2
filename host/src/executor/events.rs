//! What the executor tells observers as a run goes (terminal progress, `--json` lines).
//! Every text in an event is already masked.

use crate::store::StepStatus;
use serde::Serialize;
use std::time::Duration;

/// One thing that happened in a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        workflow: String,
    },
    StepStarted {
        step: String,
        attempt: u32,
    },
    StepLog {
        step: String,
        level: &'static str,
        message: String,
    },
    StepProgress {
        step: String,
        current: u64,
        total: Option<u64>,
        message: String,
    },
    StepRetrying {
        step: String,
        attempt: u32,
        #[serde(with = "millis")]
        delay: Duration,
        error: String,
    },
    StepFinished {
        step: String,
        status: StepStatus,
        #[serde(with = "millis")]
        duration: Duration,
        error: Option<String>,
    },
}

/// Receives events as they happen; must be cheap (called on the executor's path).
pub trait Observer: Send + Sync {
    fn event(&self, event: &Event);
}

/// Ignores everything (library use, benchmarks).
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _: &Event) {}
}

pub(super) mod millis {
    use serde::Serializer;
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}
