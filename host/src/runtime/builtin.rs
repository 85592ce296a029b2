//! Plugins compiled into the binary by `host/build.rs` (one per crate directly under `plugins/`).

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// The component bytes of a built-in plugin.
pub(crate) fn get(name: &str) -> Option<&'static [u8]> {
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// Names of all built-in plugins.
pub(crate) fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}
