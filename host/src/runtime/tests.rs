//! The sandbox's limits against hand-written components that do what no SDK would: many
//! memories, a `start` function that never returns, more handles than the host keeps.

use super::*;
use crate::capability::Denial;
use wasmtime::component::Component;

struct Quiet;

impl StepSink for Quiet {
    fn log(&self, _: LogLevel, _: &str) {}
    fn progress(&self, _: u64, _: Option<u64>, _: &str) {}
    fn denied(&self, _: &Denial) {}
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

const MIB: u64 = 1 << 20;

/// Instantiate a component with no imports and no exports in a step's sandbox.
async fn start(runtime: &Runtime, wat: &str, memory: u64, timeout: Duration) -> Result<(), Fault> {
    let bytes = wat::parse_str(wat).unwrap();
    let component = Component::new(&runtime.engine, &bytes).unwrap();
    let pre = runtime.linker.instantiate_pre(&component).unwrap();
    let limits = Limits { memory, fuel: None };
    let granter = Arc::new(Granter::new("test", vec![]));
    let (mut store, _pipes) = runtime.sandbox(limits, granter, Arc::new(Quiet), Arc::default())?;
    let deadline = tokio::time::Instant::now() + timeout;
    within(deadline, timeout, pre.instantiate_async(&mut store))
        .await?
        .map(drop)
        .map_err(|e| classify_trap(e, store.data().limiter, None, "instantiation"))
}

/// [`start`] with a 64 MiB cap and 5 s to start.
async fn start_under_64_mib(runtime: &Runtime, wat: &str) -> Result<(), Fault> {
    start(runtime, wat, 64 * MIB, Duration::from_secs(5)).await
}

/// `instances` core instances of a module with one memory of `pages` 64 KiB pages each.
fn many_memories(instances: usize, pages: u32) -> String {
    let each = "(core instance (instantiate $m))".repeat(instances);
    format!("(component (core module $m (memory {pages})) {each})")
}

#[tokio::test]
async fn memory_is_capped_per_plugin_instance_not_per_memory() {
    let runtime = runtime();
    // 16 memories of 8 MiB: each under a 64 MiB cap, 128 MiB together.
    let fault = start_under_64_mib(&runtime, &many_memories(16, 128))
        .await
        .unwrap_err();
    assert_eq!(fault.to_string(), "exceeded its memory limit of 64.0 MiB");
    // The same memories, fewer of them: 4 x 8 MiB fits.
    start_under_64_mib(&runtime, &many_memories(4, 128))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_component_cannot_create_more_memories_than_the_cap() {
    let runtime = runtime();
    // Empty memories cost nothing against the byte cap; their count is capped on its own.
    let fault = start_under_64_mib(&runtime, &many_memories(100, 0))
        .await
        .unwrap_err();
    assert_eq!(
        fault.to_string(),
        "plugin trapped: resource limit exceeded: memory count too high at 17"
    );
}

#[tokio::test]
async fn a_start_function_that_never_returns_times_out() {
    let runtime = runtime();
    let spin = "(component (core module $m (func $spin (loop br 0)) (start $spin)) \
                (core instance (instantiate $m)))";
    let started = std::time::Instant::now();
    let fault = start(&runtime, spin, 64 * MIB, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(
        fault.to_string(),
        "timed out after 300ms during `instantiation`"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn components_too_big_to_compile_are_refused_before_cranelift() {
    let runtime = runtime();
    let mut huge = wat::parse_str("(component)").unwrap();
    huge.resize(MAX_COMPONENT_BYTES + 1, 0);
    let Err(error) = runtime.load_async("huge", huge).await else {
        panic!("a 64 MiB component was compiled")
    };
    assert_eq!(
        error.to_string(),
        "`huge` is 64.0 MiB (limit 64.0 MiB): orch refuses components this large to compile"
    );
}

#[test]
fn the_world_version_is_the_wit_package_version() {
    let world = include_str!("../../../wit/world.wit");
    assert!(
        world.contains(&format!("package orch:plugin@{WORLD_VERSION};")),
        "wit/world.wit and WORLD_VERSION disagree"
    );
    assert_eq!(other_world("orch:plugin/log@0.1.0"), Some("0.1.0"));
    assert_eq!(
        other_world(&format!("orch:plugin/log@{WORLD_VERSION}")),
        None
    );
    assert_eq!(other_world("wasi:http/types@0.2.12"), None);
}
