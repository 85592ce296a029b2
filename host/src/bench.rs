//! A small facade for the bench binaries (`host/benches`): the calls below the executor they
//! time, so the runtime and capability modules stay private. Not a stable API.

use crate::capability::{Denial, Granter, LogLevel, StepSink};
use crate::runtime::{Invocation, Plugin, Runtime, StepContext, builtin};
use crate::workflow::Limits;
use std::sync::Arc;
use std::time::Duration;

/// The component bytes of a built-in plugin.
pub fn builtin_plugin(name: &str) -> Option<&'static [u8]> {
    builtin::get(name)
}

/// A compiled, pre-linked plugin.
pub struct LoadedPlugin(Arc<Plugin>);

/// Compile (or load from the cache) a plugin; the time a step's first use costs.
pub fn load_plugin(runtime: &Runtime, name: &str, bytes: &[u8]) -> Result<LoadedPlugin, String> {
    runtime
        .load(name, bytes)
        .map(LoadedPlugin)
        .map_err(|e| e.to_string())
}

/// One step's sandbox: a fresh instance of `plugin` from its pre-linked form, and its `run`
/// called with `config`, no grants, no connections, output discarded.
pub async fn run_once(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    step_id: &str,
    config: &str,
) -> Result<(), String> {
    let invocation = Invocation {
        ctx: StepContext {
            run_id: "bench".into(),
            workflow: "bench".into(),
            step_id: step_id.into(),
            attempt: 1,
            trigger: "cli".into(),
        },
        config,
        limits: Limits {
            memory: 256 << 20,
            fuel: None,
        },
        timeout: Duration::from_secs(10),
        granter: Arc::new(Granter::new(step_id, vec![])),
        sink: Arc::new(Discard),
        connections: Default::default(),
    };
    runtime
        .run(&plugin.0, invocation)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A new API token and the hash the store keeps of it (for the serve bench's requests).
pub fn new_token() -> (String, String) {
    crate::serve::auth::new_token()
}

/// Drops a step's logs and denials.
struct Discard;

impl StepSink for Discard {
    fn log(&self, _: LogLevel, _: &str) {}
    fn progress(&self, _: u64, _: Option<u64>, _: &str) {}
    fn denied(&self, _: &Denial) {}
}
