//! What a step may reach, and the host side of each interface a plugin imports.
//!
//! One module per concern: [`grants`] decides, [`log`] and [`http`] implement host
//! interfaces, [`mask`] hides secrets, [`secrets`] loads them.

pub mod connections;
pub mod docker;
pub mod grants;
pub mod http;
pub mod kafka;
pub mod log;
pub mod mask;
pub mod postgres;
pub mod secret_store;
pub mod secrets;

pub use grants::{Denial, Granter};
pub use mask::Masker;

use crate::runtime::bindings::Level;

/// Where a running step's events go (the executor tags, masks and stores them).
pub trait StepSink: Send + Sync {
    /// One log line from the plugin (log interface, stdout or stderr).
    fn log(&self, level: Level, message: &str);
    /// Progress of a long action.
    fn progress(&self, current: u64, total: Option<u64>, message: &str);
    /// A call refused by a gate; recorded in the audit table.
    fn denied(&self, denial: &Denial);
}
