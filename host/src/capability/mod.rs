//! The WIT boundary: the one `bindgen!` ([`bindings`]), the per-instance host state, and what a
//! step may reach. [`grants`] decides, [`connections`] renders and hands out named
//! connections, [`mask`] hides secrets, [`secrets`] and [`secret_store`] load them; [`log`],
//! [`http`], [`postgres`], [`kafka`] and [`docker`] each implement one host interface and link
//! themselves ([`link`]).

pub(crate) mod bindings;
mod clock;
pub(crate) mod connections;
pub(crate) mod docker;
pub(crate) mod grants;
mod host_state;
pub(crate) mod http;
pub(crate) mod kafka;
pub(crate) mod log;
pub(crate) mod mask;
pub(crate) mod postgres;
pub(crate) mod reach;
pub(crate) mod secret_store;
pub(crate) mod secrets;
pub(crate) mod tcp;

pub(crate) use grants::{Denial, Granter};
pub(crate) use host_state::{MAX_HOST_RESOURCES, MemoryCap, StepState};
pub(crate) use log::LogLevel;
pub(crate) use mask::Masker;

use wasmtime::component::Linker;

/// Where a running step's events go (the executor tags, masks and stores them).
pub trait StepSink: Send + Sync {
    /// One log line from the plugin (log interface, stdout or stderr).
    fn log(&self, level: LogLevel, message: &str);
    /// Progress of a long action.
    fn progress(&self, current: u64, total: Option<u64>, message: &str);
    /// A call refused by a gate; recorded in the audit table.
    fn denied(&self, denial: &Denial);
}

/// Link every interface a plugin may import: deny-by-default WASI, the gated wasi:http, and
/// orch's own (log, postgres, kafka, docker).
pub(crate) fn link(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    clock::add_to_linker(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    log::add_to_linker(linker)?;
    postgres::add_to_linker(linker)?;
    kafka::add_to_linker(linker)?;
    docker::add_to_linker(linker)?;
    Ok(())
}
