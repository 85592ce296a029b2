//! Host side of the `orch:plugin/log` interface: forwards lines and progress to the step's sink.

use super::{StepSink, StepState};
use crate::capability::bindings::orch::plugin::log::{Host, Level};
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};

/// Longest log line kept; longer lines are cut (a plugin cannot flood the store).
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// Severity of a step's log line; the host's own copy of the WIT `level`, so the layers above
/// never name generated types. Its text form is what the store and `--json` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The level's name, as stored.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        }
    }
}

/// The log interface's view of a step.
pub(crate) struct LogHost {
    pub sink: Arc<dyn StepSink>,
}

impl Host for LogHost {
    fn log(&mut self, level: Level, message: String) {
        self.sink.log(level.into(), truncate(&message));
    }

    fn progress(&mut self, current: u64, total: Option<u64>, message: String) {
        self.sink.progress(current, total, truncate(&message));
    }
}

/// Link `orch:plugin/log` into the plugin linker.
pub(crate) fn add_to_linker(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
    crate::capability::bindings::orch::plugin::log::add_to_linker::<_, HasSelf<LogHost>>(
        linker,
        |s: &mut StepState| &mut s.log,
    )
}

fn truncate(s: &str) -> &str {
    if s.len() <= MAX_LINE {
        return s;
    }
    let mut end = MAX_LINE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
