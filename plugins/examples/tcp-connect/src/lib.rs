//! Test plugin: connects to `addr` over raw TCP (`wasi:sockets`), sends an HTTP/1.0 request and
//! returns the reply: what a step may reach without a `tcp://` grant (nothing), and with one.
use orch_sdk::{Plugin, StepContext, StepError};
use serde::Deserialize;
use std::io::{Read, Write};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// `host:port`.
    addr: String,
}

struct TcpConnect;

impl Plugin for TcpConnect {
    fn describe() -> orch_sdk::PluginInfo {
        orch_sdk::info::<Config>("tcp-connect", "0.1.0", "Raw TCP request", &[])
    }
    fn plan(_: StepContext, _: String) -> Result<Vec<orch_sdk::Change>, StepError> {
        Ok(vec![])
    }
    fn run(_: StepContext, config: String) -> Result<Vec<orch_sdk::Output>, StepError> {
        let config: Config = orch_sdk::config(&config)?;
        let fail = |what: &str, e: std::io::Error| StepError::Failed(format!("{what}: {e}"));
        let mut stream =
            std::net::TcpStream::connect(&config.addr).map_err(|e| fail("connect", e))?;
        stream
            .write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| fail("write", e))?;
        let mut reply = String::new();
        stream
            .read_to_string(&mut reply)
            .map_err(|e| fail("read", e))?;
        Ok(vec![orch_sdk::output("reply", reply)])
    }
}

orch_sdk::export!(TcpConnect);
