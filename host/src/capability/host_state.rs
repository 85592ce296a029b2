//! The per-instance store data: WASI, wasi:http and its gate, the log host, the named
//! connections and the memory limiter.

use super::connections::ConnectionGate;
use super::http::HttpGate;
use super::log::LogHost;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Everything one plugin instance can touch, owned by its `Store`.
pub(crate) struct StepState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub http: WasiHttpCtx,
    pub gate: HttpGate,
    pub log: LogHost,
    /// Named connections (postgres, kafka, docker) the step may open.
    pub connections: ConnectionGate,
    pub limiter: MemoryCap,
}

/// Host-side objects (wasi:http fields, bodies, streams, pollables...) one plugin instance may
/// hold at once: each can pin host memory the linear-memory cap does not see.
pub(crate) const MAX_HOST_RESOURCES: usize = 2048;
/// In-memory bytes of one wasi:http `fields` (headers) a plugin builds.
const MAX_FIELDS_BYTES: usize = 32 * 1024;

impl StepState {
    /// The host-side parts bounded: the resource table, header maps and (through the gate's
    /// hooks) outgoing body buffers, so a guest's handles cannot pin gigabytes of host memory.
    pub(crate) fn new(
        wasi: WasiCtx,
        gate: HttpGate,
        connections: ConnectionGate,
        log: LogHost,
        limiter: MemoryCap,
    ) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HOST_RESOURCES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_FIELDS_BYTES);
        Self {
            wasi,
            table,
            http,
            gate,
            log,
            connections,
            limiter,
        }
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StepState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.gate,
        }
    }
}

/// Most core instances, memories and tables one plugin instance may create. A Rust
/// component has about five instances; componentize-py's about a dozen.
const MAX_INSTANCES: usize = 64;
const MAX_MEMORIES: usize = 16;
const MAX_TABLES: usize = 64;
/// Elements over all tables of one plugin instance.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Caps the plugin instance's linear memory, summed over every memory of every core instance
/// (multi-memory and many core instances do not multiply it), and remembers whether the cap was
/// hit, to explain the trap that follows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemoryCap {
    pub max: u64,
    pub hit: bool,
    /// Bytes of linear memory committed so far, over all memories.
    used: u64,
    /// Table elements so far, over all tables.
    elements: usize,
    /// The growth last allowed, taken back if the engine then fails it.
    pending: (u64, usize),
}

impl MemoryCap {
    pub(crate) fn new(max: u64) -> Self {
        Self {
            max,
            hit: false,
            used: 0,
            elements: 0,
            pending: (0, 0),
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Past the memory's own declared maximum the engine refuses anyway: not our cap.
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        let growth = (desired as u64).saturating_sub(current as u64);
        if self.used + growth > self.max {
            self.hit = true;
            return Ok(false);
        }
        self.used += growth;
        self.pending.0 = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used -= std::mem::take(&mut self.pending.0);
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        let growth = desired.saturating_sub(current);
        if self.elements + growth > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.elements += growth;
        self.pending.1 = growth;
        Ok(true)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.elements -= std::mem::take(&mut self.pending.1);
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}
