//! The wasmtime engine: compile (with a disk cache), instantiate a fresh sandbox per call from a
//! reused `InstancePre`, and enforce memory, fuel and wall-clock limits.

pub(crate) mod builtin;
mod cache;
mod compile;
mod contract;

pub(crate) use cache::content_hash;
pub use compile::child_main as compile_child;
pub(crate) use contract::{Change, ChangeKind, Output, PluginInfo, StepContext};

use crate::capability::bindings::orch::plugin::types::StepError;
use crate::capability::bindings::{Step, StepPre};
use crate::capability::connections::{ConnectionGate, Connections};
use crate::capability::http::HttpGate;
use crate::capability::log::LogHost;
use crate::capability::{Granter, LogLevel, MAX_HOST_RESOURCES, MemoryCap, StepSink, StepState};
use crate::workflow::Limits;
use cache::ComponentCache;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx};

/// How often the epoch advances: the granularity of timeouts and of yielding to other tasks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Bytes of a plugin's stdout/stderr kept per call.
const PIPE_CAPACITY: usize = 1 << 20;
/// Largest component orch compiles (a componentize-py plugin is ~19 MB, a Rust one < 1 MB).
const MAX_COMPONENT_BYTES: usize = 64 << 20;
/// Longest a compile may take (a componentize-py plugin takes ~10 s on 2 cores).
const COMPILE_TIMEOUT: Duration = Duration::from_secs(60);
/// What one host call may copy out of the guest (a COPY batch, a produce, a request body).
const MAX_HOSTCALL_BYTES: usize = 128 << 20;
/// How long a plugin may take to start and describe itself (`orch validate`, serve's load check).
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Plugin instances alive at once in one process, at most; a step past the runtime's count
/// waits for a slot. The pooling allocator reserves (address space only) that many sandboxes
/// when the runtime starts and reuses them, so a step maps, faults in and unmaps no memory,
/// tables or fiber stack: that was most of a no-op step's kernel time (BENCHMARKS.md, "The
/// engine at the floor").
pub const MAX_SANDBOXES: u32 = 256;
/// Bytes of a reused linear memory that are zeroed in place rather than given back to the
/// kernel and faulted in again (a Rust plugin's stack and data fit).
const KEEP_RESIDENT: usize = 2 << 20;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "`{name}` is not a WebAssembly component ({reason}); build it for wasm32-wasip2 or wrap a module with `wasm-tools component new`"
    )]
    NotAComponent { name: String, reason: String },
    #[error("`{name}` does not fit the orch:plugin/step world: {reason}")]
    Incompatible { name: String, reason: String },
    #[error(
        "`{name}` is {} (limit {}): orch refuses components this large to compile",
        bytesize::ByteSize(*.size),
        bytesize::ByteSize(MAX_COMPONENT_BYTES as u64)
    )]
    TooBig { name: String, size: u64 },
    #[error(
        "compiling `{name}` took longer than {}; orch refuses components this slow to compile",
        humantime::format_duration(*.limit)
    )]
    TooSlow { name: String, limit: Duration },
    #[error(
        "compiling `{name}` needed more than {} of memory; orch refuses components this costly to compile",
        bytesize::ByteSize(*.limit)
    )]
    TooHungry { name: String, limit: u64 },
}

/// Why a call did not return a value from the plugin.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Fault {
    #[error("{0}")]
    Guest(#[from] GuestError),
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The wall-clock limit passed, while starting the instance or inside the export.
    #[error("timed out after {} during `{during}`", humantime::format_duration(*.after))]
    Timeout {
        after: Duration,
        during: &'static str,
    },
    #[error("exceeded its memory limit of {}", bytesize::ByteSize(*.0))]
    OutOfMemory(u64),
    /// The guest passed more data to one host call than the host copies.
    #[error(
        "sent more than {} to the host in one call: split it (a log line is cut at 16 KiB anyway)",
        bytesize::ByteSize(*.0 as u64)
    )]
    TooLargeCall(usize),
    /// The guest kept more wasi handles than the host holds for one instance.
    #[error("held more than {0} host resources (handles) at once")]
    TooManyHandles(usize),
    #[error("ran out of fuel ({0} units)")]
    OutOfFuel(u64),
    #[error("cannot start the plugin: {0}")]
    Instantiate(String),
    /// The guest called `exit` (WASI `proc_exit`) instead of returning.
    #[error("plugin exited with code {code} during `{during}` instead of returning")]
    Exited { code: i32, during: &'static str },
}

impl Fault {
    /// Only a guest's `retryable` error is retried.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Fault::Guest(GuestError::Retryable(_)))
    }

    /// Short machine name of the kind of fault, for the store and `--json`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Guest(GuestError::InvalidConfig(_)) => "invalid-config",
            Fault::Guest(GuestError::Denied(_)) => "denied",
            Fault::Guest(GuestError::Retryable(_)) => "retryable",
            Fault::Guest(GuestError::Failed(_)) => "failed",
            Fault::Trap(_) => "trap",
            Fault::Timeout { .. } => "timeout",
            Fault::OutOfMemory(_) => "out-of-memory",
            Fault::OutOfFuel(_) => "out-of-fuel",
            Fault::TooManyHandles(_) => "too-many-handles",
            Fault::TooLargeCall(_) => "too-large-call",
            Fault::Instantiate(_) => "instantiate",
            Fault::Exited { .. } => "exit",
        }
    }
}

/// A plugin's own `step-error`, owned (the generated type is not `Clone` + `Error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("denied: {0}")]
    Denied(String),
    #[error("{0}")]
    Retryable(String),
    #[error("{0}")]
    Failed(String),
}

impl From<StepError> for GuestError {
    fn from(e: StepError) -> Self {
        match e {
            StepError::InvalidConfig(m) => GuestError::InvalidConfig(m),
            StepError::Denied(m) => GuestError::Denied(m),
            StepError::Retryable(m) => GuestError::Retryable(m),
            StepError::Failed(m) => GuestError::Failed(m),
        }
    }
}

/// The version of the `orch:plugin` package (wit/world.wit) this host links.
pub(crate) const WORLD_VERSION: &str = "0.2.0";

/// The version of an `orch:plugin/...` import when it is not [`WORLD_VERSION`].
fn other_world(import: &str) -> Option<&str> {
    let version = import.strip_prefix("orch:plugin/")?.split_once('@')?.1;
    (version != WORLD_VERSION).then_some(version)
}

/// A compiled plugin, ready to instantiate.
pub struct Plugin {
    /// How the workflow named it (built-in name or path).
    pub name: String,
    pub hash: String,
    /// Interfaces the component imports: all it could ever ask the host for.
    pub imports: Vec<String>,
    /// What it exports (`describe`, `plan`, `run`...), for the OCI artifact's config.
    pub exports: Vec<String>,
    pre: StepPre<StepState>,
}

/// Everything one call needs besides the plugin.
pub struct Invocation<'a> {
    pub ctx: StepContext,
    pub config: &'a str,
    pub limits: Limits,
    pub timeout: Duration,
    pub granter: Arc<Granter>,
    pub sink: Arc<dyn StepSink>,
    /// The run's rendered connections (only granted ones can be opened).
    pub connections: Arc<Connections>,
}

/// The engine's settings, the same in the compile child as in the process that runs plugins.
fn engine_config() -> Config {
    let mut wasm = Config::new();
    wasm.epoch_interruption(true);
    wasm.consume_fuel(true);
    wasm.wasm_component_model(true);
    // `ORCH_PERFMAP=1` writes /tmp/perf-PID.map so `perf report` names plugin functions.
    if std::env::var_os("ORCH_PERFMAP").is_some() {
        wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    wasm
}

/// The pool of sandboxes the runtime reuses. The compile child keeps the default on-demand
/// allocator: the pool reserves terabytes of address space, which its `RLIMIT_AS` refuses, and
/// allocation does not change compiled code, so what it compiles loads here.
fn pooled(mut config: Config, slots: u32) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        // A Rust component is ~3 core instances, a componentize-py one ~10.
        .total_core_instances(slots * 16)
        .total_memories(slots * 2)
        .total_tables(slots * 4)
        .total_stacks(slots)
        .max_tables_per_module(4)
        .max_memories_per_module(1)
        // wasm32's own ceiling; a step's `limits.memory` is enforced below it by `MemoryCap`.
        .max_memory_size(4 << 30)
        .table_elements(1 << 17)
        .max_core_instance_size(16 << 20)
        .max_component_instance_size(16 << 20)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .async_stack_keep_resident(64 << 10)
        // Linux 6.7+: reset only the pages a step dirtied, in place.
        .pagemap_scan(wasmtime::Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Settings of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Plugin instances alive at once (capped at [`MAX_SANDBOXES`]): the most steps that run at
    /// once, plus one for a `describe`. Each pooled sandbox costs its fiber stack's guard page
    /// when the runtime starts (~5 µs), so `orch run` of a few steps asks for few.
    pub sandboxes: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            sandboxes: MAX_SANDBOXES,
        }
    }
}

/// The engine, linker and compiled-plugin cache shared by all steps of a process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StepState>,
    cache: ComponentCache,
    loaded: Mutex<HashMap<String, Arc<Plugin>>>,
    /// One permit per pooled sandbox: a step waits here rather than fail when all are in use.
    slots: Arc<Semaphore>,
    ticker_stop: Arc<AtomicBool>,
    /// The `orch` binary that compiles in a child process (`load_async`); `None`: in process.
    compiler: Option<PathBuf>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Build the engine (epoch interruption + fuel) and the linker (every host interface).
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let slots = config.sandboxes.clamp(1, MAX_SANDBOXES);
        let engine = Engine::new(&pooled(engine_config(), slots))?;

        let mut linker = Linker::new(&engine);
        crate::capability::link(&mut linker)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (stop, ticking) = (ticker_stop.clone(), engine.clone());
        std::thread::Builder::new()
            .name("orch-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })?;

        Ok(Self {
            engine,
            linker,
            cache: ComponentCache::new(config.cache_dir),
            compiler: None,
            loaded: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(slots as usize)),
            ticker_stop,
        })
    }

    /// Compile new components in a child process of `exe` (the `orch` binary), bounded in time
    /// and memory, instead of in this process.
    pub fn compile_in_child(mut self, exe: PathBuf) -> Self {
        self.compiler = Some(exe);
        self
    }

    /// Compile (or fetch from cache) and pre-link a plugin, on this thread. Loading the same
    /// bytes twice returns the same [`Plugin`].
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        let hash = content_hash(bytes);
        if let Some(p) = self.lock_loaded().get(&hash) {
            return Ok(p.clone());
        }
        check_component(name, bytes)?;
        let component = self
            .cache
            .load(&self.engine, &hash, bytes)
            .map_err(|e| not_a_component(name, e))?;
        self.link(name, hash, component)
    }

    /// [`Runtime::load`] with the compile in a child process (see
    /// [`Runtime::compile_in_child`]: killed past [`COMPILE_TIMEOUT`], its memory limited), or
    /// else on a blocking thread and refused past the timeout: a compile bomb neither stalls
    /// the async threads nor hangs `orch validate` or serve's load check.
    pub async fn load_async(&self, name: &str, bytes: Vec<u8>) -> Result<Arc<Plugin>, LoadError> {
        let hash = content_hash(&bytes);
        if let Some(p) = self.lock_loaded().get(&hash) {
            return Ok(p.clone());
        }
        check_component(name, &bytes)?;
        if let Some(exe) = &self.compiler {
            let component = match self.cache.lookup(&self.engine, &hash) {
                Some(component) => component,
                None => {
                    let compiled = compile::in_child(exe, &bytes, COMPILE_TIMEOUT)
                        .await
                        .map_err(|failure| match failure {
                            compile::ChildFailure::TooSlow => LoadError::TooSlow {
                                name: name.into(),
                                limit: COMPILE_TIMEOUT,
                            },
                            compile::ChildFailure::TooHungry(limit) => LoadError::TooHungry {
                                name: name.into(),
                                limit,
                            },
                            compile::ChildFailure::Failed(reason) => LoadError::NotAComponent {
                                name: name.into(),
                                reason,
                            },
                        })?;
                    self.cache
                        .store(&self.engine, &hash, &compiled)
                        .map_err(|e| not_a_component(name, e))?
                }
            };
            return self.link(name, hash, component);
        }
        let (engine, cache, key) = (self.engine.clone(), self.cache.clone(), hash.clone());
        let compile = tokio::task::spawn_blocking(move || cache.load(&engine, &key, &bytes));
        let component = match tokio::time::timeout(COMPILE_TIMEOUT, compile).await {
            Err(_) => {
                return Err(LoadError::TooSlow {
                    name: name.into(),
                    limit: COMPILE_TIMEOUT,
                });
            }
            Ok(Err(join)) => return Err(not_a_component(name, join.into())),
            Ok(Ok(compiled)) => compiled.map_err(|e| not_a_component(name, e))?,
        };
        self.link(name, hash, component)
    }

    /// Pre-link a compiled component against the host interfaces and remember it.
    fn link(
        &self,
        name: &str,
        hash: String,
        component: wasmtime::component::Component,
    ) -> Result<Arc<Plugin>, LoadError> {
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        if let Some(old) = imports.iter().find_map(|i| other_world(i)) {
            return Err(LoadError::Incompatible {
                name: name.into(),
                reason: format!(
                    "it was built for orch:plugin@{old} and this orch speaks @{WORLD_VERSION}: rebuild it with the 0.2 SDK (`orch plugin build`)"
                ),
            });
        }
        let incompatible = |e: wasmtime::Error| LoadError::Incompatible {
            name: name.into(),
            reason: format!("{e:#}"),
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(incompatible)?;
        let pre = StepPre::new(instance_pre).map_err(incompatible)?;
        let plugin = Arc::new(Plugin {
            name: name.into(),
            hash: hash.clone(),
            imports,
            exports: component
                .component_type()
                .exports(&self.engine)
                .map(|(name, _)| name.to_string())
                .collect(),
            pre,
        });
        self.lock_loaded().insert(hash, plugin.clone());
        Ok(plugin)
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Plugin>>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ask a plugin to describe itself, in a sandbox with no grants.
    pub async fn describe(
        &self,
        plugin: &Plugin,
        sink: Arc<dyn StepSink>,
    ) -> Result<PluginInfo, Fault> {
        let granter = Arc::new(Granter::new("describe", vec![]));
        let limits = Limits {
            memory: crate::workflow::DEFAULT_MEMORY,
            fuel: None,
        };
        let deadline = tokio::time::Instant::now() + DESCRIBE_TIMEOUT;
        let started = self.instantiate(plugin, limits, granter, sink, Arc::default());
        let mut sandbox = within(deadline, DESCRIBE_TIMEOUT, started).await??;
        let result = within(
            deadline,
            DESCRIBE_TIMEOUT,
            sandbox.instance.call_describe(&mut sandbox.store),
        )
        .await;
        let limiter = sandbox.store.data().limiter;
        match result {
            Err(timeout) => Err(timeout.during("describe")),
            Ok(Err(e)) => Err(classify_trap(e, limiter, None, "describe")),
            Ok(Ok(info)) => Ok(info.into()),
        }
    }

    /// Call the plugin's `plan` (a dry run) in a fresh instance with the invocation's limits.
    pub async fn plan(&self, plugin: &Plugin, inv: Invocation<'_>) -> Result<Vec<Change>, Fault> {
        let changes = self
            .call(plugin, inv, "plan", |instance, store, ctx, config| {
                Box::pin(instance.call_plan(store, ctx, config))
            })
            .await?;
        Ok(changes.into_iter().map(Change::from).collect())
    }

    /// Call the plugin's `run` in a fresh instance with the invocation's limits.
    pub async fn run(&self, plugin: &Plugin, inv: Invocation<'_>) -> Result<Vec<Output>, Fault> {
        let outputs = self
            .call(plugin, inv, "run", |instance, store, ctx, config| {
                Box::pin(instance.call_run(store, ctx, config))
            })
            .await?;
        Ok(outputs.into_iter().map(Output::from).collect())
    }

    /// Instantiate, call one export within the timeout, turn stdout/stderr into log lines and
    /// explain a failure.
    async fn call<T>(
        &self,
        plugin: &Plugin,
        inv: Invocation<'_>,
        name: &'static str,
        export: impl for<'s> FnOnce(
            &'s Step,
            &'s mut Store<StepState>,
            &'s crate::capability::bindings::orch::plugin::types::StepContext,
            &'s str,
        ) -> BoxFuture<'s, wasmtime::Result<Result<T, StepError>>>,
    ) -> Result<T, Fault> {
        let sink = inv.sink.clone();
        let deadline = tokio::time::Instant::now() + inv.timeout;
        let started = self.instantiate(plugin, inv.limits, inv.granter, inv.sink, inv.connections);
        let mut sandbox = within(deadline, inv.timeout, started).await??;
        let ctx = (&inv.ctx).into();
        let Sandbox {
            store, instance, ..
        } = &mut sandbox;
        let result = within(
            deadline,
            inv.timeout,
            export(instance, store, &ctx, inv.config),
        )
        .await;
        sandbox.pipes.drain_into(sink.as_ref());
        let limiter = sandbox.store.data().limiter;
        match result {
            Err(timeout) => Err(timeout.during(name)),
            Ok(Err(trap)) => Err(classify_trap(trap, limiter, inv.limits.fuel, name)),
            Ok(Ok(Err(guest))) => Err(Fault::Guest(guest.into())),
            Ok(Ok(Ok(returned))) => Ok(returned),
        }
    }

    async fn instantiate(
        &self,
        plugin: &Plugin,
        limits: Limits,
        granter: Arc<Granter>,
        sink: Arc<dyn StepSink>,
        connections: Arc<Connections>,
    ) -> Result<Sandbox, Fault> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Fault::Instantiate("the runtime is shutting down".into()))?;
        let (mut store, pipes) = self.sandbox(limits, granter, sink, connections)?;
        let instance = plugin
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| classify_trap(e, store.data().limiter, limits.fuel, "instantiation"))?;
        Ok(Sandbox {
            store,
            instance,
            pipes,
            _slot: slot,
        })
    }

    /// A fresh store: WASI with only the granted directories and sockets, the gates, the
    /// limiter, fuel, and an epoch deadline that yields every tick (so timeouts can fire).
    fn sandbox(
        &self,
        limits: Limits,
        granter: Arc<Granter>,
        sink: Arc<dyn StepSink>,
        connections: Arc<Connections>,
    ) -> Result<(Store<StepState>, Pipes), Fault> {
        let pipes = Pipes {
            stdout: MemoryOutputPipe::new(PIPE_CAPACITY),
            stderr: MemoryOutputPipe::new(PIPE_CAPACITY),
        };
        let mut wasi = WasiCtx::builder();
        wasi.stdout(pipes.stdout.clone())
            .stderr(pipes.stderr.clone());
        crate::capability::tcp::gate(&mut wasi, &granter, &sink);
        for (host, guest) in granter.dirs() {
            // Validated canonical: a link planted in its path since then is refused, not
            // followed (to the secret store, ~/.ssh...).
            match std::fs::canonicalize(host) {
                Ok(now) if now == host => {}
                Ok(now) => {
                    return Err(Fault::Instantiate(format!(
                        "granted directory `{guest}` changed since the workflow was validated: `{}` now leads to `{}`",
                        host.display(),
                        now.display()
                    )));
                }
                Err(e) => {
                    return Err(Fault::Instantiate(format!(
                        "cannot open granted directory `{guest}`: {e}"
                    )));
                }
            }
            wasi.preopened_dir(host, guest, FsPerms::ReadOnly)
                .map_err(|e| {
                    Fault::Instantiate(format!("cannot open granted directory `{guest}`: {e:#}"))
                })?;
        }
        let wasi = wasi.build();
        let gate = HttpGate {
            granter: granter.clone(),
            sink: sink.clone(),
            connections: connections.clone(),
        };
        let connections = ConnectionGate {
            opened: Default::default(),
            granter,
            connections,
            sink: sink.clone(),
        };
        let limiter = MemoryCap::new(limits.memory);
        let state = StepState::new(wasi, gate, connections, LogHost { sink }, limiter);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store
            .set_fuel(limits.fuel.unwrap_or(u64::MAX))
            .map_err(|e| Fault::Instantiate(format!("{e:#}")))?;
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        store.set_hostcall_fuel(MAX_HOSTCALL_BYTES);
        Ok((store, pipes))
    }
}

/// One instance in its store, holding its pool slot. Fields drop in order: the store gives its
/// memory back to the pool before the permit lets the next step take it.
struct Sandbox {
    store: Store<StepState>,
    instance: Step,
    pipes: Pipes,
    _slot: OwnedSemaphorePermit,
}

/// The deadline passed; `during` names what was running.
struct TimedOut(Duration);

impl TimedOut {
    fn during(self, during: &'static str) -> Fault {
        Fault::Timeout {
            after: self.0,
            during,
        }
    }
}

impl From<TimedOut> for Fault {
    fn from(timeout: TimedOut) -> Self {
        timeout.during("instantiation")
    }
}

/// `work` if it finishes by `deadline`. A guest that loops (in a `start` function, or an export)
/// yields at every epoch tick, so the deadline is met within a tick.
async fn within<T>(
    deadline: tokio::time::Instant,
    limit: Duration,
    work: impl std::future::Future<Output = T>,
) -> Result<T, TimedOut> {
    tokio::time::timeout_at(deadline, work)
        .await
        .map_err(|_| TimedOut(limit))
}

/// A guest's captured stdout and stderr, turned into log lines after the call.
struct Pipes {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl Pipes {
    fn drain_into(&self, sink: &dyn StepSink) {
        for (pipe, level, tag) in [
            (&self.stdout, LogLevel::Info, "stdout"),
            (&self.stderr, LogLevel::Warn, "stderr"),
        ] {
            let bytes = pipe.contents();
            for line in String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| !l.trim().is_empty())
            {
                sink.log(level, &format!("[{tag}] {line}"));
            }
        }
    }
}

/// Explain a wasmtime error: memory cap, fuel, or the trap itself.
fn classify_trap(
    error: wasmtime::Error,
    limiter: MemoryCap,
    fuel: Option<u64>,
    during: &'static str,
) -> Fault {
    if limiter.hit {
        return Fault::OutOfMemory(limiter.max);
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Fault::Exited {
            code: exit.0,
            during,
        };
    }
    // wasmtime's own limit on what one host call copies out of the guest (its error type is
    // private: known by its text).
    if format!("{error:#}").contains("fuel allocated for hostcalls has been exhausted") {
        return Fault::TooLargeCall(MAX_HOSTCALL_BYTES);
    }
    if let Some(wasmtime::component::ResourceTableError::Full) = error.downcast_ref() {
        return Fault::TooManyHandles(MAX_HOST_RESOURCES);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Fault::OutOfFuel(fuel.unwrap_or(u64::MAX)),
        Some(trap) => Fault::Trap(trap.to_string()),
        // The first line of the chain, unless it only announces a backtrace: then the cause.
        None => {
            let top = format!("{error:#}");
            let first = top.lines().next().unwrap_or_default();
            let said = if first.trim_end().ends_with("backtrace:") {
                error.root_cause().to_string()
            } else {
                first.to_string()
            };
            Fault::Trap(said.lines().next().unwrap_or_default().to_string())
        }
    }
}

/// Refuse what is not a component, or too big to compile in bounded time and memory, before
/// Cranelift sees it.
fn check_component(name: &str, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() > MAX_COMPONENT_BYTES {
        return Err(LoadError::TooBig {
            name: name.into(),
            size: bytes.len() as u64,
        });
    }
    if !is_component(bytes) {
        let reason = if bytes.starts_with(b"\0asm") {
            "it is a core module"
        } else {
            "no WebAssembly header"
        };
        return Err(LoadError::NotAComponent {
            name: name.into(),
            reason: reason.into(),
        });
    }
    Ok(())
}

fn not_a_component(name: &str, e: wasmtime::Error) -> LoadError {
    LoadError::NotAComponent {
        name: name.into(),
        reason: format!("{e:#}"),
    }
}

/// A component starts with `\0asm` and the component-model layer (version 0x0d, layer 1);
/// a core module has layer 0.
fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes.starts_with(b"\0asm") && bytes[6..8] == [1, 0]
}

#[cfg(test)]
mod tests;
