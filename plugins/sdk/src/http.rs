//! A small blocking HTTP client over wasi:http, for plugins. Every request goes through the
//! host's gate: `http://NAME/path` reaches the granted `kind = "http"` connection NAME (the host
//! adds its base URL and credential headers), any other URL must be granted in `allow`.
//! Redirects are not followed here; callers that follow one send a new, newly checked request.

use crate::StepError;
use crate::wasi::http::outgoing_handler;
use crate::wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingResponse, Method, OutgoingBody,
    OutgoingRequest, Scheme,
};

/// A request to send.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `POST`, ... (any case).
    pub method: String,
    /// `http://NAME/path` for a connection, or a full URL.
    pub url: String,
    /// Header names and values, in order (a name may repeat).
    pub headers: Vec<(String, String)>,
    /// The body, sent with its `content-length`; `None`: no body.
    pub body: Option<Vec<u8>>,
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Request {
    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: "GET".into(),
            url: url.into(),
            ..Self::default()
        }
    }

    /// `method url` with a JSON body.
    pub fn json(method: &str, url: impl Into<String>, body: &serde_json::Value) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(body.to_string().into_bytes()),
        }
    }
}

/// Why a request failed, in step terms: denied by the gate, retryable (connection, timeout),
/// or failed (bad URL, response too large).
fn error(url: &str, e: ErrorCode) -> StepError {
    match e {
        ErrorCode::HttpRequestDenied => StepError::Denied(format!(
            "request to {url} refused by the host (see the step log for the grant that allows it)"
        )),
        ErrorCode::HttpResponseBodySize(limit) => StepError::Failed(format!(
            "response of {url} is over the size limit{}",
            limit.map_or(String::new(), |l| format!(" ({l} bytes)"))
        )),
        // The transient codes: the same table in the Python and JavaScript SDKs.
        ErrorCode::DnsTimeout
        | ErrorCode::DnsError(_)
        | ErrorCode::DestinationUnavailable
        | ErrorCode::HttpResponseIncomplete
        | ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionTerminated
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionLimitReached
        | ErrorCode::HttpResponseTimeout => {
            StepError::Retryable(format!("request to {url} failed: {e:?}"))
        }
        other => StepError::Failed(format!("request to {url} failed: {other:?}")),
    }
}

fn invalid(message: String) -> StepError {
    StepError::InvalidConfig(message)
}

/// Build and hand `request` to the host; the response arrives later.
fn start(request: &Request) -> Result<FutureIncomingResponse, StepError> {
    let url = request.url.as_str();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid(format!("`{url}` is not a URL (http://host/path)")))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(invalid(format!("`{url}`: scheme `{other}` is not http(s)"))),
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    if authority.is_empty() {
        return Err(invalid(format!("`{url}` has no host")));
    }
    let fields = Fields::new();
    for (name, value) in &request.headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| invalid(format!("header `{name}`: {e:?}")))?;
    }
    if let Some(body) = &request.body {
        // A known length, not chunked: simple servers read bodies by Content-Length only.
        fields
            .set("content-length", &[body.len().to_string().into_bytes()])
            .map_err(|e| invalid(format!("content-length: {e:?}")))?;
    }
    let outgoing = OutgoingRequest::new(fields);
    let method = match request.method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    };
    outgoing
        .set_method(&method)
        .map_err(|()| invalid(format!("method `{}`", request.method)))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid(format!("`{url}`: scheme")))?;
    outgoing
        .set_authority(Some(authority))
        .map_err(|()| invalid(format!("`{url}`: host `{authority}`")))?;
    outgoing
        .set_path_with_query(Some(path))
        .map_err(|()| invalid(format!("`{url}`: path `{path}`")))?;
    let body = outgoing
        .body()
        .map_err(|()| StepError::Failed("request body taken twice".into()))?;
    if let Some(bytes) = &request.body {
        let stream = body
            .write()
            .map_err(|()| StepError::Failed("request stream taken twice".into()))?;
        for piece in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(piece)
                .map_err(|e| StepError::Retryable(format!("sending to {url}: {e:?}")))?;
        }
        drop(stream);
    }
    let pending = outgoing_handler::handle(outgoing, None).map_err(|e| error(url, e))?;
    OutgoingBody::finish(body, None).map_err(|e| error(url, e))?;
    Ok(pending)
}

/// Wait for `pending`'s response and pass its body to `chunk` piece by piece.
fn read(
    url: &str,
    pending: FutureIncomingResponse,
    mut chunk: impl FnMut(&[u8]) -> Result<(), StepError>,
) -> Result<(u16, Vec<(String, String)>), StepError> {
    pending.subscribe().block();
    let response: IncomingResponse = pending
        .get()
        .ok_or_else(|| StepError::Failed("response not ready".into()))?
        .map_err(|()| StepError::Failed("response taken twice".into()))?
        .map_err(|e| error(url, e))?;
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let incoming = response
        .consume()
        .map_err(|()| StepError::Failed("body taken twice".into()))?;
    let stream = incoming
        .stream()
        .map_err(|()| StepError::Failed("stream taken twice".into()))?;
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(bytes) => chunk(&bytes)?,
            Err(crate::wasi::io::streams::StreamError::Closed) => break,
            Err(crate::wasi::io::streams::StreamError::LastOperationFailed(e)) => {
                let detail = crate::wasi::http::types::http_error_code(&e);
                let text = e.to_debug_string();
                return Err(match detail {
                    Some(code) => error(url, code),
                    // The host's response size limit: retrying would hit it again.
                    None if text.contains("size exceeds limit") => StepError::Failed(format!(
                        "response of {url} is over the size limit: {text}"
                    )),
                    None => StepError::Retryable(format!("reading the response of {url}: {text}")),
                });
            }
        }
    }
    drop(stream);
    let _ = crate::wasi::http::types::IncomingBody::finish(incoming);
    Ok((status, headers))
}

/// Send `request` and call `chunk` with each piece of the body as it arrives (NDJSON
/// progress, large downloads); returns the status and headers.
pub fn send_streaming(
    request: &Request,
    chunk: impl FnMut(&[u8]) -> Result<(), StepError>,
) -> Result<(u16, Vec<(String, String)>), StepError> {
    read(&request.url, start(request)?, chunk)
}

/// Send every request, at most `concurrency` in flight; results in the order given.
pub fn send_all(requests: &[Request], concurrency: usize) -> Vec<Result<Response, StepError>> {
    let mut results: Vec<Option<Result<Response, StepError>>> =
        (0..requests.len()).map(|_| None).collect();
    let mut in_flight: Vec<(usize, FutureIncomingResponse)> = Vec::new();
    let mut next = 0;
    while next < requests.len() || !in_flight.is_empty() {
        while next < requests.len() && in_flight.len() < concurrency.max(1) {
            match start(&requests[next]) {
                Ok(pending) => in_flight.push((next, pending)),
                Err(e) => results[next] = Some(Err(e)),
            }
            next += 1;
        }
        if in_flight.is_empty() {
            continue;
        }
        let pollables: Vec<_> = in_flight.iter().map(|(_, p)| p.subscribe()).collect();
        let ready = crate::wasi::io::poll::poll(&pollables.iter().collect::<Vec<_>>());
        drop(pollables);
        let mut ready: Vec<usize> = ready.into_iter().map(|i| i as usize).collect();
        ready.sort_unstable_by(|a, b| b.cmp(a));
        for i in ready {
            let (index, pending) = in_flight.swap_remove(i);
            let mut body = Vec::new();
            let outcome = read(&requests[index].url, pending, |bytes| {
                body.extend_from_slice(bytes);
                Ok(())
            })
            .map(|(status, headers)| Response {
                status,
                headers,
                body,
            });
            results[index] = Some(outcome);
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StepError::Failed("request not sent".into()))))
        .collect()
}

/// Send `request` and read the whole response.
pub fn send(request: &Request) -> Result<Response, StepError> {
    let mut body = Vec::new();
    let (status, headers) = send_streaming(request, |bytes| {
        body.extend_from_slice(bytes);
        Ok(())
    })?;
    Ok(Response {
        status,
        headers,
        body,
    })
}
