//! A small JSON client of `orch serve`'s API, for `orch trigger` and `orch runs --server`.

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value as Json;

/// A server and the token to call it with.
pub struct Remote {
    base: String,
    token: Option<String>,
}

impl Remote {
    /// `server` like `http://127.0.0.1:8080`.
    pub fn new(server: &str, token: Option<String>) -> Self {
        Self {
            base: server.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// GET a JSON document.
    pub async fn get(&self, path: &str) -> anyhow::Result<Json> {
        self.call("GET", path, None).await
    }

    /// POST a JSON body.
    pub async fn post(&self, path: &str, body: &Json) -> anyhow::Result<Json> {
        self.call("POST", path, Some(body)).await
    }

    async fn call(&self, method: &str, path: &str, body: Option<&Json>) -> anyhow::Result<Json> {
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
                Full::new(Bytes::from(serde_json::to_vec(b)?))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request
            .body(body)
            .with_context(|| format!("invalid server URL `{url}`"))?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        let response = client
            .request(request)
            .await
            .with_context(|| format!("cannot reach {url}: is `orch serve` running there?"))?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let json: Json = serde_json::from_slice(&bytes).unwrap_or_else(
            |_| serde_json::json!({"error": String::from_utf8_lossy(&bytes).into_owned()}),
        );
        if !status.is_success() {
            let message = json["error"].as_str().unwrap_or("request failed");
            let details = json
                .get("inputs")
                .and_then(Json::as_array)
                .map(|errors| {
                    errors
                        .iter()
                        .map(|e| {
                            format!(
                                "\n  input `{}`: {}",
                                e["name"].as_str().unwrap_or("?"),
                                e["message"].as_str().unwrap_or("?")
                            )
                        })
                        .collect::<String>()
                })
                .unwrap_or_default();
            if status == http::StatusCode::UNAUTHORIZED {
                bail!("{status}: {message} (pass --token or set ORCH_TOKEN){details}");
            }
            bail!("{status}: {message}{details}");
        }
        Ok(json)
    }
}
