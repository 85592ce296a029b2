//! Built-in `http`: one HTTP request, for ETL extracts and for calling other services.
//!
//! The URL is a granted connection (`http://NAME/path`: base URL and credentials stay in the
//! host) or a destination granted in `allow`. Redirects are followed here, one checked request
//! per hop.

use orch_sdk::http::{Request, Response};
use orch_sdk::{ChangeKind, Cx, Output, Step, StepError};
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::time::Duration;

/// `with` of an `http` step.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// GET, POST, PUT, PATCH, DELETE, HEAD...
    #[serde(default = "get")]
    method: String,
    /// `http://CONNECTION/path` for a granted http connection, or a granted URL.
    #[serde(default)]
    url: Option<String>,
    /// Many URLs with the same method, headers and body, `concurrency` at a time (for paged
    /// extracts); outputs `responses` in the same order. No redirects or retries per URL.
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default = "eight")]
    concurrency: usize,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Appended to the URL, form-encoded.
    #[serde(default)]
    query: BTreeMap<String, Json>,
    /// A JSON body (sets content-type: application/json).
    #[serde(default)]
    json: Option<Json>,
    /// A text body.
    #[serde(default)]
    body: Option<String>,
    /// Status codes that count as success (default: any 2xx).
    #[serde(default)]
    expect: Vec<u16>,
    /// Retries on 5xx, 429 and connection errors, with exponential backoff.
    #[serde(default = "three")]
    retries: u32,
    #[serde(default = "backoff")]
    backoff_ms: u64,
    #[serde(default = "yes")]
    follow_redirects: bool,
    /// Outputs taken from the JSON response by JSON pointer, e.g. { id = "/data/0/id" }.
    #[serde(default)]
    extract: BTreeMap<String, String>,
}

fn get() -> String {
    "GET".into()
}
fn eight() -> usize {
    8
}
fn three() -> u32 {
    3
}
fn backoff() -> u64 {
    200
}
fn yes() -> bool {
    true
}

const MAX_REDIRECTS: usize = 5;

impl Config {
    fn url(&self) -> Result<String, StepError> {
        let url = match (&self.url, self.urls.is_empty()) {
            (Some(url), true) => url,
            _ => {
                return Err(StepError::InvalidConfig(
                    "set `url` (one request) or `urls` (many), not both".into(),
                ));
            }
        };
        self.with_query(url)
    }

    fn with_query(&self, url: &str) -> Result<String, StepError> {
        if self.query.is_empty() {
            return Ok(url.to_string());
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.query {
            let text = match value {
                Json::String(s) => s.clone(),
                Json::Array(_) | Json::Object(_) => {
                    return Err(StepError::InvalidConfig(format!(
                        "query `{key}` must be a string, number or boolean"
                    )));
                }
                other => other.to_string(),
            };
            query.append_pair(key, &text);
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok(format!("{url}{sep}{}", query.finish()))
    }

    fn request(&self, url: String) -> Result<Request, StepError> {
        if self.json.is_some() && self.body.is_some() {
            return Err(StepError::InvalidConfig(
                "set `json` or `body`, not both".into(),
            ));
        }
        let mut request = match &self.json {
            Some(json) => Request::json(&self.method, url, json),
            None => Request {
                method: self.method.to_ascii_uppercase(),
                url,
                headers: vec![],
                body: self.body.clone().map(String::into_bytes),
            },
        };
        request
            .headers
            .extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(request)
    }

    fn expected(&self, status: u16) -> bool {
        if self.expect.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expect.contains(&status)
        }
    }
}

/// `Location` resolved against the request URL: absolute, scheme-relative (`//host/x`), or a
/// path on the same origin (`/x`, or `x` taken from the root).
fn redirect_target(url: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let scheme = url.split("://").next().unwrap_or("http");
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    let origin_end = url
        .find("://")
        .and_then(|i| url[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(url.len());
    let slash = if location.starts_with('/') { "" } else { "/" };
    format!("{}{slash}{location}", &url[..origin_end])
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `scheme://host[:port]` of a URL, lowercased.
fn origin(url: &str) -> String {
    let rest_at = url.find("://").map_or(0, |i| i + 3);
    let end = url[rest_at..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| rest_at + i);
    url[..end].to_ascii_lowercase()
}

/// `http://NAME/...` with a bare name and no port: the host routes it to connection NAME,
/// with that connection's credentials.
fn is_connection_route(url: &str) -> bool {
    let authority = origin(url);
    let host = authority.rsplit("://").next().unwrap_or_default();
    !host.contains(['.', ':', '[']) && host != "localhost"
}

/// Headers that carry credentials: never sent on to another origin.
fn is_credential(header: &str) -> bool {
    let h = header.to_ascii_lowercase();
    ["authorization", "cookie", "proxy-authorization"].contains(&h.as_str())
        || h.contains("token")
        || h.contains("api-key")
        || h.contains("secret")
}

/// Send with redirects followed (each hop a new request the host checks), as browsers do:
/// 301/302/303 turn into a GET without a body; a hop to another origin drops credential
/// headers, and may not lead into a connection route (whose credentials the host adds).
fn send_following(config: &Config, url: String) -> Result<(String, Response), StepError> {
    let mut request = config.request(url)?;
    for _ in 0..=MAX_REDIRECTS {
        let response = orch_sdk::http::send(&request)?;
        let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
        let location = match header(&response, "location") {
            Some(location) if redirect && config.follow_redirects => location,
            _ => return Ok((request.url, response)),
        };
        let next = redirect_target(&request.url, location);
        // `http://x.y@api/...` goes to `api`: no redirect may carry a user part.
        if origin(&next).contains('@') {
            return Err(StepError::Denied(format!(
                "{} redirected to {next}, a URL with a user part: not followed",
                request.url
            )));
        }
        if origin(&next) != origin(&request.url) {
            if is_connection_route(&next) {
                return Err(StepError::Denied(format!(
                    "{} redirected to {next}, a connection's route: not followed from another origin",
                    request.url
                )));
            }
            request.headers.retain(|(k, _)| !is_credential(k));
        }
        if matches!(response.status, 301..=303) && request.method != "HEAD" {
            request.method = "GET".into();
            request.body = None;
            request
                .headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        }
        orch_sdk::log::info(format!("{} -> {next}", response.status));
        request.url = next;
    }
    Err(StepError::Failed(format!(
        "more than {MAX_REDIRECTS} redirects from {}",
        request.url
    )))
}

/// `urls`: all of them, `concurrency` at a time; the step fails on the first unexpected status.
fn run_many(config: &Config) -> Result<Vec<Output>, StepError> {
    if config.url.is_some() {
        return Err(StepError::InvalidConfig(
            "set `url` (one request) or `urls` (many), not both".into(),
        ));
    }
    let requests = config
        .urls
        .iter()
        .map(|u| config.request(config.with_query(u)?))
        .collect::<Result<Vec<_>, _>>()?;
    let results = orch_sdk::http::send_all(&requests, config.concurrency);
    let mut responses = Vec::with_capacity(results.len());
    for (request, result) in requests.iter().zip(results) {
        let response = result?;
        if !config.expected(response.status) {
            return Err(StepError::Failed(format!(
                "{} {} returned {}",
                config.method, request.url, response.status
            )));
        }
        let body = serde_json::from_slice::<Json>(&response.body)
            .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&response.body).into_owned()));
        responses.push(serde_json::json!({
            "url": request.url,
            "status": response.status,
            "body": body,
        }));
    }
    orch_sdk::log::info(format!("{} {} requests", config.method, responses.len()));
    Ok(vec![
        orch_sdk::output("count", responses.len()),
        orch_sdk::output("responses", responses),
    ])
}

fn run(config: &Config) -> Result<Vec<Output>, StepError> {
    if !config.urls.is_empty() {
        return run_many(config);
    }
    let url = config.url()?;
    let mut attempt = 0;
    let (final_url, response) = loop {
        let outcome = send_following(config, url.clone());
        let retryable = match &outcome {
            Ok((_, r)) => r.status >= 500 || r.status == 429,
            Err(StepError::Retryable(_)) => true,
            Err(_) => false,
        };
        if !retryable || attempt >= config.retries {
            break outcome?;
        }
        let why = match &outcome {
            Ok((_, r)) => format!("status {}", r.status),
            Err(e) => format!("{e:?}"),
        };
        let wait = config.backoff_ms.saturating_mul(1 << attempt.min(16));
        orch_sdk::log::warn(format!(
            "{} {url}: {why}; retry {} of {} in {wait} ms",
            config.method,
            attempt + 1,
            config.retries
        ));
        std::thread::sleep(Duration::from_millis(wait));
        attempt += 1;
    };
    let text = String::from_utf8_lossy(&response.body).into_owned();
    let json: Option<Json> = serde_json::from_slice(&response.body).ok();
    orch_sdk::log::info(format!(
        "{} {final_url} -> {} ({} bytes)",
        config.method,
        response.status,
        response.body.len()
    ));
    if !config.expected(response.status) {
        let excerpt: String = text.chars().take(500).collect();
        let error = format!(
            "{} {final_url} returned {} (expected {}): {excerpt}",
            config.method,
            response.status,
            if config.expect.is_empty() {
                "2xx".to_string()
            } else {
                format!("{:?}", config.expect)
            }
        );
        return Err(if response.status >= 500 || response.status == 429 {
            StepError::Retryable(error)
        } else {
            StepError::Failed(error)
        });
    }
    let mut outputs = vec![
        orch_sdk::output("status", response.status),
        orch_sdk::output(
            "headers",
            response
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), Json::String(v.clone())))
                .collect::<Map<_, _>>(),
        ),
        orch_sdk::output("body", json.clone().unwrap_or(Json::String(text))),
    ];
    for (name, pointer) in &config.extract {
        let Some(json) = &json else {
            return Err(StepError::Failed(format!(
                "cannot extract `{name}`: the response is not JSON"
            )));
        };
        let value = json.pointer(pointer).ok_or_else(|| {
            StepError::Failed(format!(
                "cannot extract `{name}`: nothing at `{pointer}` in the response"
            ))
        })?;
        outputs.push(orch_sdk::output(name, value));
    }
    Ok(outputs)
}

struct Http;

impl Step for Http {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str = "One HTTP request: status check, retries, JSON extraction";

    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        let (what, detail) = if config.urls.is_empty() {
            (config.url()?, "request".to_string())
        } else {
            (
                format!("{} URLs", config.urls.len()),
                "requests".to_string(),
            )
        };
        let detail = format!("{} {detail}", config.method.to_ascii_uppercase());
        if cx.change(ChangeKind::Run, what, detail) {
            for output in run(&config)? {
                cx.publish(output);
            }
        }
        Ok(())
    }
}

orch_sdk::export!(Http);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_to_another_origin_drops_credentials_and_never_enters_a_connection_route() {
        assert_eq!(origin("HTTP://A.example:8080/x?y"), "http://a.example:8080");
        assert_eq!(origin("http://api"), "http://api");
        assert!(is_connection_route("http://api/admin/delete"));
        for other in [
            "http://api.example.com/x",
            "http://127.0.0.1:9/x",
            "http://api:80/x",
            "http://localhost/x",
        ] {
            assert!(!is_connection_route(other), "{other}");
        }
        for credential in ["Authorization", "cookie", "X-Api-Key", "X-Auth-Token"] {
            assert!(is_credential(credential), "{credential}");
        }
        assert!(!is_credential("accept"));
        // The user part and a bare `@host` cannot pass for another origin.
        assert!(origin(&redirect_target("http://a:1/x", "@api/admin")).ends_with("a:1"));
        assert!(origin("http://x.y@api/admin").contains('@'));
        assert_eq!(
            redirect_target("https://a/x", "//b/y"),
            "https://b/y",
            "scheme-relative"
        );
    }

    #[test]
    fn redirects_resolve_against_the_origin() {
        assert_eq!(
            redirect_target("http://a:1/x/y?q", "/z"),
            "http://a:1/z".to_string()
        );
        assert_eq!(redirect_target("http://a/x", "https://b/c"), "https://b/c");
    }
}
