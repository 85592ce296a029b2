//! Test plugin: connects to `addr` over raw TCP (`wasi:sockets`), sends an HTTP/1.0 request and
//! returns the reply: what a step may reach without a `tcp://` grant (nothing), and with one.
use orch_sdk::{Cx, Step, StepError};
use serde::Deserialize;
use std::io::{Read, Write};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// `host:port`.
    addr: String,
}

struct TcpConnect;

impl Step for TcpConnect {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "Raw TCP request";
    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        if !cx.applying() {
            return Ok(());
        }
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
        cx.output("reply", reply);
        Ok(())
    }
}

orch_sdk::export!(TcpConnect);
