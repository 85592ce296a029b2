//! Host side of the `orch:plugin/log` interface: forwards lines and progress to the step's sink.

use super::StepSink;
use crate::runtime::bindings::orch::plugin::log::{Host, Level};
use std::sync::Arc;

/// Longest log line kept; longer lines are cut (a plugin cannot flood the store).
pub const MAX_LINE: usize = 16 * 1024;

/// The log interface's view of a step.
pub struct LogHost {
    pub sink: Arc<dyn StepSink>,
}

impl Host for LogHost {
    fn log(&mut self, level: Level, message: String) {
        self.sink.log(level, truncate(&message));
    }

    fn progress(&mut self, current: u64, total: Option<u64>, message: String) {
        self.sink.progress(current, total, truncate(&message));
    }
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
