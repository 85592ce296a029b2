//! Step log lines and progress; the host tags them with run and step and masks secrets.

use crate::bindings::orch::plugin::log::{self as host, Level};

/// Log at trace level.
pub fn trace(message: impl AsRef<str>) {
    host::log(Level::Trace, message.as_ref());
}
/// Log at debug level.
pub fn debug(message: impl AsRef<str>) {
    host::log(Level::Debug, message.as_ref());
}
/// Log at info level.
pub fn info(message: impl AsRef<str>) {
    host::log(Level::Info, message.as_ref());
}
/// Log at warn level.
pub fn warn(message: impl AsRef<str>) {
    host::log(Level::Warn, message.as_ref());
}
/// Log at error level.
pub fn error(message: impl AsRef<str>) {
    host::log(Level::Error, message.as_ref());
}
/// Report progress of a long action: `current` of `total` units (`None`: unknown).
pub fn progress(current: u64, total: Option<u64>, message: impl AsRef<str>) {
    host::progress(current, total, message.as_ref());
}
