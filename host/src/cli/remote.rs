//! A small JSON client of `orch serve`'s API, for `orch trigger` and `orch runs --server`, and
//! [`RemoteError`], which says whose fault a failed call was.

use crate::store::RunDetail;
use anyhow::Context;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value as Json;

/// A call to the server that did not return a document.
#[derive(Debug, thiserror::Error)]
pub(super) enum RemoteError {
    /// `--server` and the path do not make a URL.
    #[error("invalid server URL `{url}`: {error}")]
    Url { url: String, error: http::Error },
    /// Nothing answered: no server there, or the connection failed.
    #[error("cannot reach {url}: is `orch serve` running there?")]
    Unreachable {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The answer was cut off.
    #[error(transparent)]
    Body(#[from] hyper::Error),
    /// The server answered with an error status; `message` is its `error` text, with the
    /// failing inputs and a hint when there are any.
    #[error("{status}: {message}")]
    Status { status: StatusCode, message: String },
}

impl RemoteError {
    /// The server refused the request (4xx: bad inputs, unknown workflow, bad token), or there
    /// was no URL to send it to: the caller's to fix. Otherwise the server is unreachable or
    /// failed (5xx).
    pub(super) fn is_refusal(&self) -> bool {
        match self {
            RemoteError::Url { .. } => true,
            RemoteError::Status { status, .. } => status.is_client_error(),
            RemoteError::Unreachable { .. } | RemoteError::Body(_) => false,
        }
    }
}

/// A server and the token to call it with.
pub(super) struct Remote {
    base: String,
    token: Option<String>,
}

impl Remote {
    /// `server` like `http://127.0.0.1:8080`.
    pub(super) fn new(server: &str, token: Option<String>) -> Self {
        Self {
            base: server.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// GET a JSON document.
    pub(super) async fn get(&self, path: &str) -> Result<Json, RemoteError> {
        self.call("GET", path, None).await
    }

    /// POST a JSON body.
    pub(super) async fn post(&self, path: &str, body: &Json) -> Result<Json, RemoteError> {
        self.call("POST", path, Some(body)).await
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Json>,
    ) -> Result<Json, RemoteError> {
        let url = format!("{}{path}", self.base);
        let mut request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("accept", "application/json");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(b) => {
                request = request.header("content-type", "application/json");
                Full::new(Bytes::from(b.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let request = match request.body(body) {
            Ok(request) => request,
            Err(error) => return Err(RemoteError::Url { url, error }),
        };
        let client = Client::builder(TokioExecutor::new()).build_http();
        let response = match client.request(request).await {
            Ok(response) => response,
            Err(source) => return Err(RemoteError::Unreachable { url, source }),
        };
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let json: Json = serde_json::from_slice(&bytes).unwrap_or_else(
            |_| serde_json::json!({"error": String::from_utf8_lossy(&bytes).into_owned()}),
        );
        if !status.is_success() {
            let mut message = json["error"]
                .as_str()
                .unwrap_or("request failed")
                .to_string();
            if status == StatusCode::UNAUTHORIZED {
                message.push_str(" (pass --token or set ORCH_TOKEN)");
            }
            for e in json
                .get("inputs")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                message.push_str(&format!(
                    "\n  input `{}`: {}",
                    e["name"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("?")
                ));
            }
            return Err(RemoteError::Status { status, message });
        }
        Ok(json)
    }
}

/// `text` as one segment of a URL path.
pub(super) fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A run document of the API as the store's [`RunDetail`], to render it the same way.
pub(super) fn run_detail(run: &Json) -> anyhow::Result<RunDetail> {
    serde_json::from_value(run.clone()).context("unexpected run document from the server")
}
