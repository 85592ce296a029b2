//! Test plugin: GETs `url` with the raw wasi:http client, so a host denial is visible as
//! `HttpRequestDenied` (higher-level clients hide it as a reset).
use orch_sdk::wasi::http::outgoing_handler;
use orch_sdk::wasi::http::types::{ErrorCode, Fields, OutgoingRequest, Scheme};
use orch_sdk::{Cx, Step, StepError};
use serde::Deserialize;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// e.g. http://127.0.0.1:8080/path
    url: String,
}

struct HttpGet;

fn split(url: &str) -> Result<(Scheme, &str, &str), StepError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| StepError::InvalidConfig(format!("`{url}` has no scheme")))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(StepError::InvalidConfig(format!("scheme `{other}`"))),
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    Ok((scheme, authority, path))
}

fn get(url: &str) -> Result<(u16, String), StepError> {
    let (scheme, authority, path) = split(url)?;
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&scheme)).ok();
    request.set_authority(Some(authority)).ok();
    request.set_path_with_query(Some(path)).ok();
    let pending = outgoing_handler::handle(request, None).map_err(denied_or_failed)?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or_else(|| StepError::Failed("response not ready".into()))?
        .map_err(|()| StepError::Failed("response taken twice".into()))?
        .map_err(denied_or_failed)?;
    let status = response.status();
    let body = response
        .consume()
        .map_err(|()| StepError::Failed("body taken twice".into()))?;
    let stream = body
        .stream()
        .map_err(|()| StepError::Failed("stream taken twice".into()))?;
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

fn denied_or_failed(e: ErrorCode) -> StepError {
    match e {
        ErrorCode::HttpRequestDenied => StepError::Denied("HTTP request denied by the host".into()),
        other => StepError::Retryable(format!("{other:?}")),
    }
}

impl Step for HttpGet {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "GET a URL";
    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        if !cx.applying() {
            cx.change(orch_sdk::ChangeKind::Run, "GET", config.url);
            return Ok(());
        }
        let (status, body) = get(&config.url)?;
        orch_sdk::log::info(format!("GET {} -> {status}", config.url));
        cx.output("status", status);
        cx.output("body", body);
        Ok(())
    }
}

orch_sdk::export!(HttpGet);
