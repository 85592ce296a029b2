//! The only `bindgen!` of the host: the `orch:plugin/step` world.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "step",
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
});

pub use self::orch::plugin::log::Level;
pub use self::orch::plugin::types::ChangeKind;
