//! The wasi:http gate: every outgoing request is checked against the step's grants before the
//! host connects. A refusal is reported to the sink (audited) and returned to the guest as
//! `HttpRequestDenied`.
//!
//! A request to `http://NAME/path` where NAME is a granted `kind = "http"` connection is sent
//! to that connection's `url` (+ path) with its `headers` added here, so tokens never enter the
//! sandbox. Anything else must match an origin in `allow`. The check is on the URI the host
//! connects to; redirects are not followed by the host (a guest that follows one sends a new
//! request, checked again).

use super::connections::{Connections, ResolvedConnection};
use super::{Granter, StepSink};
use crate::workflow::ConnectionKind;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Response bodies larger than this fail the request, unless the connection sets
/// `max_response_bytes`.
pub(crate) const DEFAULT_MAX_RESPONSE: u64 = 64 * 1024 * 1024;
/// How long a response may take to start, unless the connection sets `timeout_secs`.
const DEFAULT_FIRST_BYTE: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BETWEEN_BYTES: Duration = Duration::from_secs(120);
/// Bytes of a request body the host buffers per outgoing body, before the guest must wait:
/// wasmtime's default (1 MiB per body) lets a guest pin a megabyte per handle.
const BODY_CHUNK: usize = 64 * 1024;

/// The wasi:http hooks of one step.
pub(crate) struct HttpGate {
    pub granter: Arc<Granter>,
    pub sink: Arc<dyn StepSink>,
    pub connections: Arc<Connections>,
}

type ResponseFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = Result<(), Error>> + Send>,
            )>,
        > + Send,
>;

fn refused(message: String) -> ResponseFuture {
    tracing::debug!("{message}");
    Box::new(async { Err(Error::HttpRequestDenied) })
}

/// Does a request path hold a `..` segment, plain or percent-encoded (`%2e%2e`, `.%2E`)? The
/// upstream would resolve it above the connection's base path, with the connection's
/// credentials.
fn climbs_out(path_and_query: &str) -> bool {
    let path = path_and_query.split(['?', '#']).next().unwrap_or_default();
    path.split('/').any(|segment| {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        decoded == ".." || decoded.split('\\').any(|part| part == "..")
    })
}

/// Point `request` at `connection`'s base URL and add its headers.
fn route(
    request: &mut http::Request<WasiBody>,
    name: &str,
    connection: &ResolvedConnection,
) -> Result<(), String> {
    let base = connection
        .setting("url")
        .ok_or_else(|| format!("http connection `{name}` has no `url`"))?;
    let base: http::Uri = base
        .parse()
        .map_err(|e| format!("http connection `{name}`: bad `url`: {e}"))?;
    let prefix = base.path().trim_end_matches('/').to_string();
    let rest = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    if climbs_out(&rest) {
        return Err(format!(
            "http connection `{name}`: the path `{rest}` leaves the connection's base path"
        ));
    }
    // The upstream sees its own name, not the connection's.
    let authority = base
        .authority()
        .map(|a| a.as_str().to_string())
        .ok_or_else(|| format!("http connection `{name}`: `url` has no host"))?;
    let mut parts = base.into_parts();
    parts.path_and_query = Some(
        format!("{prefix}{rest}")
            .parse()
            .map_err(|e| format!("http connection `{name}`: bad path: {e}"))?,
    );
    *request.uri_mut() =
        http::Uri::from_parts(parts).map_err(|e| format!("http connection `{name}`: {e}"))?;
    let host = http::HeaderValue::try_from(authority)
        .map_err(|e| format!("http connection `{name}`: bad host: {e}"))?;
    request.headers_mut().insert(http::header::HOST, host);
    if let Some(serde_json::Value::Object(headers)) = connection.settings.get("headers") {
        for (key, value) in headers {
            let (Ok(key), Some(Ok(value))) = (
                http::HeaderName::try_from(key.as_str()),
                value.as_str().map(http::HeaderValue::try_from),
            ) else {
                return Err(format!("http connection `{name}`: bad header `{key}`"));
            };
            request.headers_mut().insert(key, value);
        }
    }
    Ok(())
}

impl WasiHttpHooks for HttpGate {
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        1
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        _ = fut;
        let uri = request.uri().clone();
        // A plan reads: only safe methods leave the sandbox.
        let method = request.method().clone();
        if !method.is_safe() || method == http::Method::TRACE {
            let what = || format!("send {method} {uri}");
            if let Err(denial) = self.granter.write(what) {
                self.sink.denied(&denial);
                return refused(denial.to_string());
            }
        }
        let host = uri.host().unwrap_or_default().to_string();
        let connection = self
            .connections
            .get(&host)
            .filter(|c| c.kind == ConnectionKind::Http && uri.port_u16().is_none());
        let (max_response, first_byte) = match connection {
            Some(connection) => {
                if let Err(denial) = self.granter.grant_connection(&host) {
                    self.sink.denied(&denial);
                    return refused(denial.to_string());
                }
                if let Err(message) = route(&mut request, &host, connection) {
                    self.sink.log(super::LogLevel::Error, &message);
                    return refused(message);
                }
                let number = |key: &str| connection.settings.get(key).and_then(|v| v.as_u64());
                (
                    number("max_response_bytes").unwrap_or(DEFAULT_MAX_RESPONSE),
                    number("timeout_secs").map_or(DEFAULT_FIRST_BYTE, Duration::from_secs),
                )
            }
            None => {
                let scheme = uri.scheme_str().unwrap_or("https").to_string();
                if let Err(denial) = self.granter.grant_http(&scheme, &host, uri.port_u16()) {
                    self.sink.denied(&denial);
                    return refused(denial.to_string());
                }
                (DEFAULT_MAX_RESPONSE, DEFAULT_FIRST_BYTE)
            }
        };
        let options = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: Some(options.connect_timeout.unwrap_or(CONNECT_TIMEOUT)),
            first_byte_timeout: Some(options.first_byte_timeout.unwrap_or(first_byte)),
            between_bytes_timeout: Some(options.between_bytes_timeout.unwrap_or(BETWEEN_BYTES)),
        };
        Box::new(async move {
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, max_response as usize)
                .map_err(move |e| match e.downcast::<Error>() {
                    Ok(e) => *e,
                    Err(_) => Error::HttpResponseBodySize(Some(max_response)),
                })
                .boxed_unsync();
            Ok((
                http::Response::from_parts(parts, body),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::climbs_out;

    #[test]
    fn dot_segments_plain_or_encoded_climb_out_and_names_with_dots_do_not() {
        for path in [
            "/../x",
            "/a/../../x",
            "/%2e%2e/x",
            "/.%2E/x",
            "/a/%2E%2e?q=1",
            "/a\\..\\x",
        ] {
            assert!(climbs_out(path), "{path}");
        }
        for path in ["/x", "/a..b/c", "/...", "/v1/x?next=../y", "/.well-known/x"] {
            assert!(!climbs_out(path), "{path}");
        }
    }
}
