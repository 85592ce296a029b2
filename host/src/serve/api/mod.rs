//! The HTTP API (`/api/v1`, JSON), `/healthz` and `/metrics`: one route table builds both the
//! router and the OpenAPI document, so the two cannot disagree.

mod error;
mod runs;
mod server;
mod triggers;

#[cfg(test)]
mod tests;

pub(crate) use error::ApiError;
pub(crate) use runs::log_events;

use super::AppState;
use super::auth;
use crate::store::Scope;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use error::{ApiResult, InternalDetail};
use serde_json::{Map, Value as Json, json};
use std::sync::Arc;

/// The HTTP method of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

impl Method {
    /// The name OpenAPI uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone (a webhook checks its own signature).
    Public,
    /// A caller with a live bearer token.
    Token,
}

/// One route: what the router serves and the OpenAPI document describes.
pub(crate) struct Route {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    /// The handler, served for `method`.
    handler: fn(MethodFilter) -> MethodRouter<Arc<AppState>>,
}

/// Every route.
pub(crate) const ROUTES: &[Route] = &[
    Route {
        method: Method::Get,
        path: "/healthz",
        summary: "Liveness: 200 while the server runs",
        access: Access::Public,
        handler: |m| on(m, server::healthz),
    },
    Route {
        method: Method::Get,
        path: "/metrics",
        summary: "Prometheus metrics (text format); they name workflows, so a token is needed",
        access: Access::Token,
        handler: |m| on(m, server::metrics),
    },
    Route {
        method: Method::Get,
        path: "/api/v1/openapi.json",
        summary: "This document",
        access: Access::Public,
        handler: |m| on(m, server::openapi),
    },
    Route {
        method: Method::Get,
        path: "/api/v1/workflows",
        summary: "Served workflows with their inputs and next schedules; rejected files with their errors",
        access: Access::Token,
        handler: |m| on(m, server::list_workflows),
    },
    Route {
        method: Method::Post,
        path: "/api/v1/workflows/{name}/runs",
        summary: "Trigger a run: body {\"inputs\": {...}} and/or {\"args\": [\"NAME=VALUE\"]}; 202 with the run id",
        access: Access::Token,
        handler: |m| on(m, triggers::trigger),
    },
    Route {
        method: Method::Get,
        path: "/api/v1/runs",
        summary: "Recent runs (query: workflow, limit)",
        access: Access::Token,
        handler: |m| on(m, runs::list_runs),
    },
    Route {
        method: Method::Get,
        path: "/api/v1/runs/{id}",
        summary: "One run with its steps, denials and a page of its log: the last 1000 lines, or 1000 after `logs_after` (query); `logs_before`/`logs_after` count the rest",
        access: Access::Token,
        handler: |m| on(m, runs::show_run),
    },
    Route {
        method: Method::Get,
        path: "/api/v1/runs/{id}/logs",
        summary: "A run's log lines as server-sent events, following a live run (query: follow)",
        access: Access::Token,
        handler: |m| on(m, runs::run_logs),
    },
    Route {
        method: Method::Post,
        path: "/api/v1/runs/{id}/cancel",
        summary: "Cancel a queued or running run",
        access: Access::Token,
        handler: |m| on(m, runs::cancel_run),
    },
    Route {
        method: Method::Post,
        path: "/api/v1/runs/{id}/rerun",
        summary: "Run a recorded run again with the same inputs; body {\"from\": \"failed\"} keeps the steps that succeeded (and all they need); 202 with the new run's id",
        access: Access::Token,
        handler: |m| on(m, runs::rerun_run),
    },
    Route {
        method: Method::Post,
        path: "/api/v1/webhooks/{name}",
        summary: "Trigger a run from a signed webhook delivery (X-Hub-Signature-256, delivery id header)",
        access: Access::Public,
        handler: |m| on(m, triggers::webhook),
    },
];

/// The router over [`ROUTES`]; request bodies above `body_limit` bytes get 413.
pub(crate) fn router(state: Arc<AppState>, body_limit: usize) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        let mut method = (route.handler)(route.method.filter());
        if route.access == Access::Token {
            method =
                method.route_layer(middleware::from_fn_with_state(state.clone(), require_token));
        }
        router = router.route(route.path, method);
    }
    router
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(log_internal_errors))
        .with_state(state)
}

/// The OpenAPI 3.1 document of [`ROUTES`].
pub(crate) fn openapi_document() -> Json {
    let mut paths = Map::new();
    for route in ROUTES {
        let params: Vec<Json> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let method = route.method.as_str();
        let mut op = json!({
            "summary": route.summary,
            "operationId": format!("{method}{}", route.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": {"default": {"description": "JSON body; errors are {\"error\": message}"}},
        });
        if route.access == Access::Token {
            op["security"] = json!([{"bearer": []}]);
        }
        let entry = paths.entry(route.path).or_insert_with(|| json!({}));
        entry[method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "orch", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "a token from `orch token create`"}}},
    })
}

/// An optional JSON body: none (or only blanks) is `T::default()`; bad JSON is 400.
fn optional_json<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// The 202 of a run just queued: its id, status and where to read it.
fn queued(id: &str) -> Response {
    let url = format!("/api/v1/runs/{id}");
    (
        StatusCode::ACCEPTED,
        [(axum::http::header::LOCATION, url.clone())],
        axum::Json(json!({"id": id, "status": crate::store::RunStatus::Queued, "url": url})),
    )
        .into_response()
}

/// Where a reconnecting EventSource stopped (`Last-Event-ID`), if it says.
pub(crate) fn last_event_id(headers: &axum::http::HeaderMap) -> Option<i64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Who triggered a request (the token's name), for `trigger_detail`.
#[derive(Clone)]
struct Caller(String);

/// What a read-only token is told when it tries to change something.
pub(crate) fn read_only_refusal(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "token `{name}` is read-only: it can see runs but not trigger or cancel them (use a token made without --read-only)"
        ),
    )
}

/// Log streams (`follow`) one token may hold open at once: each polls the store.
pub(crate) const MAX_STREAMS_PER_TOKEN: usize = 8;

/// Let through requests with a live bearer token, naming its [`Caller`]; 401 otherwise.
async fn require_token(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(token) = auth::bearer(req.headers()) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send `Authorization: Bearer TOKEN` (create one with `orch token create NAME`)",
        )
        .into_response();
    };
    let caller: ApiResult<String> = match state.store.use_token(&auth::hash_token(token)).await {
        Ok(Some(caller)) if caller.scope == Scope::Read && req.method() != http::Method::GET => {
            Err(read_only_refusal(&caller.name))
        }
        Ok(Some(caller)) => Ok(caller.name),
        Ok(None) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unknown or revoked token",
        )),
        Err(e) => Err(e.into()),
    };
    match caller {
        Ok(name) => {
            req.extensions_mut().insert(Caller(name));
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Log the detail of every 5xx answer with the request it answered (the client only sees
/// "internal error"). One event with the request's fields, not a span: a span's callsite can be
/// cached as disabled by whichever subscriber saw it first.
pub(crate) async fn log_internal_errors(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let mut response = next.run(req).await;
    if let Some(InternalDetail(detail)) = response.extensions_mut().remove::<InternalDetail>() {
        let status = response.status().as_u16();
        tracing::error!(%method, %path, status, "{detail}");
    }
    response
}
