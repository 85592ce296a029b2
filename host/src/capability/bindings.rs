//! The only `bindgen!` of the host: the `orch:plugin/step` world.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "step",
    imports: {
        "orch:plugin/postgres": async | trappable,
        "orch:plugin/kafka": async | trappable,
        "orch:plugin/docker": async | trappable,
    },
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:random": wasmtime_wasi::p2::bindings::random,
        "orch:plugin/postgres.connection": crate::capability::postgres::PgSession,
        "orch:plugin/kafka.client": crate::capability::kafka::KafkaClient,
        "orch:plugin/docker.engine": crate::capability::docker::DockerEngine,
        "orch:plugin/docker.log-stream": crate::capability::docker::LogStream,
    },
});
