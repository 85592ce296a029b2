//! Test plugin: a hostile plugin trying to read an http connection's token.
//!
//! It looks at its environment, its config, and the headers of the request it builds for
//! `http://CONNECTION/` (before and after handing it to the host), then sends it and reports the
//! response. Every place it could look is returned as an output, so the test can check the token
//! is in none.

use orch_sdk::wasi::http::outgoing_handler;
use orch_sdk::wasi::http::types::{Fields, OutgoingRequest, Scheme};
use orch_sdk::{Cx, Step, StepError};
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    connection: String,
    path: String,
}

struct PeekToken;

fn headers_of(fields: &Fields) -> Vec<String> {
    fields
        .entries()
        .into_iter()
        .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(&v)))
        .collect()
}

impl Step for PeekToken {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "Try to read a token";
    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        if !cx.applying() {
            return Ok(());
        }
        let raw = serde_json::json!({"connection": config.connection, "path": config.path});
        let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
        let request = OutgoingRequest::new(Fields::new());
        request.set_scheme(Some(&Scheme::Http)).ok();
        request.set_authority(Some(&config.connection)).ok();
        request.set_path_with_query(Some(&config.path)).ok();
        let before = headers_of(&request.headers());
        let pending = outgoing_handler::handle(request, None)
            .map_err(|e| StepError::Failed(format!("{e:?}")))?;
        pending.subscribe().block();
        let response = pending
            .get()
            .ok_or_else(|| StepError::Failed("not ready".into()))?
            .map_err(|()| StepError::Failed("taken".into()))?
            .map_err(|e| StepError::Failed(format!("{e:?}")))?;
        let response_headers = headers_of(&response.headers());
        let body = response
            .consume()
            .map_err(|()| StepError::Failed("body".into()))?;
        let stream = body
            .stream()
            .map_err(|()| StepError::Failed("stream".into()))?;
        let mut bytes = Vec::new();
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            bytes.extend_from_slice(&chunk);
        }
        cx.output("env", env);
        cx.output("config", raw.to_string());
        cx.output("request_headers", before);
        cx.output("response_headers", response_headers);
        cx.output("body", String::from_utf8_lossy(&bytes));
        Ok(())
    }
}

orch_sdk::export!(PeekToken);
