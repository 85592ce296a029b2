//! The HTTP API (`/api/v1`, JSON), `/healthz` and `/metrics`. The route table below builds
//! both the router and the OpenAPI document, so the two cannot disagree.

use super::Shared;
use super::auth::{self, WebhookError};
use super::runner::Cancelled;
use crate::capability::Masker;
use crate::capability::secrets;
use crate::store::{NewRun, RunStatus, StoreError, Trigger, new_run_id};
use crate::workflow::inputs::{self, InputError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

type AppState = Arc<Shared>;

/// One route: what the router serves and the OpenAPI document describes.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// Needs a bearer token.
    pub auth: bool,
}

/// Every route.
pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/healthz",
        summary: "Liveness: 200 while the server runs",
        auth: false,
    },
    Route {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics (text format)",
        auth: false,
    },
    Route {
        method: "get",
        path: "/api/v1/openapi.json",
        summary: "This document",
        auth: false,
    },
    Route {
        method: "get",
        path: "/api/v1/workflows",
        summary: "Served workflows with their inputs and next schedules; rejected files with their errors",
        auth: true,
    },
    Route {
        method: "post",
        path: "/api/v1/workflows/{name}/runs",
        summary: "Trigger a run: body {\"inputs\": {...}} and/or {\"args\": [\"NAME=VALUE\"]}; 202 with the run id",
        auth: true,
    },
    Route {
        method: "get",
        path: "/api/v1/runs",
        summary: "Recent runs (query: workflow, limit)",
        auth: true,
    },
    Route {
        method: "get",
        path: "/api/v1/runs/{id}",
        summary: "One run with its steps, logs and denials",
        auth: true,
    },
    Route {
        method: "get",
        path: "/api/v1/runs/{id}/logs",
        summary: "A run's log lines as server-sent events, following a live run (query: follow)",
        auth: true,
    },
    Route {
        method: "post",
        path: "/api/v1/runs/{id}/cancel",
        summary: "Cancel a queued or running run",
        auth: true,
    },
    Route {
        method: "post",
        path: "/api/v1/webhooks/{name}",
        summary: "Trigger a run from a signed webhook delivery (X-Hub-Signature-256, delivery id header)",
        auth: false,
    },
];

fn handler(route: &Route) -> MethodRouter<AppState> {
    match (route.method, route.path) {
        ("get", "/healthz") => get(healthz),
        ("get", "/metrics") => get(metrics),
        ("get", "/api/v1/openapi.json") => get(openapi),
        ("get", "/api/v1/workflows") => get(list_workflows),
        ("post", "/api/v1/workflows/{name}/runs") => post(trigger),
        ("get", "/api/v1/runs") => get(list_runs),
        ("get", "/api/v1/runs/{id}") => get(show_run),
        ("get", "/api/v1/runs/{id}/logs") => get(run_logs),
        ("post", "/api/v1/runs/{id}/cancel") => post(cancel_run),
        ("post", "/api/v1/webhooks/{name}") => post(webhook),
        (method, path) => unreachable!("route {method} {path} has no handler"),
    }
}

/// The router over [`ROUTES`]; request bodies above `body_limit` bytes get 413.
pub fn router(state: AppState, body_limit: usize) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        let mut method = handler(route);
        if route.auth {
            method =
                method.route_layer(middleware::from_fn_with_state(state.clone(), require_token));
        }
        router = router.route(route.path, method);
    }
    router
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The OpenAPI 3.1 document of [`ROUTES`].
pub fn openapi_document() -> Json {
    let mut paths = Map::new();
    for route in ROUTES {
        let params: Vec<Json> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": route.summary,
            "operationId": format!("{}{}", route.method, route.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": {"default": {"description": "JSON body; errors are {\"error\": message}"}},
        });
        if route.auth {
            op["security"] = json!([{"bearer": []}]);
        }
        let entry = paths.entry(route.path).or_insert_with(|| json!({}));
        entry[route.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "orch", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "a token from `orch token create`"}}},
    })
}

/// An error answered as `{"error": ..., ...}`.
pub struct ApiError {
    status: StatusCode,
    body: Json,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"error": message.into()}),
        }
    }

    fn inputs(errors: Vec<InputError>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"error": "invalid inputs", "inputs": errors}),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NoSuchRun(_) => StatusCode::NOT_FOUND,
            StoreError::Ambiguous(_) => StatusCode::BAD_REQUEST,
            StoreError::Duplicate(_) => StatusCode::CONFLICT,
            _ => {
                tracing::error!("store: {e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

/// Who triggered a request (the token's name), for `trigger_detail`.
#[derive(Clone)]
struct Caller(String);

async fn require_token(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(token) = auth::bearer(req.headers()) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send `Authorization: Bearer TOKEN` (create one with `orch token create NAME`)",
        )
        .into_response();
    };
    match state.store.use_token(&auth::hash_token(token)).await {
        Ok(Some(name)) => {
            req.extensions_mut().insert(Caller(name));
            next.run(req).await
        }
        Ok(None) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked token").into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn metrics(State(state): State<AppState>) -> ApiResult {
    state
        .metrics
        .set_runs(&state.store.count_runs_by_status().await?);
    state.metrics.set_queue_depth(state.runner.queue_depth());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response())
}

async fn openapi() -> impl IntoResponse {
    axum::Json(openapi_document())
}

async fn list_workflows(State(state): State<AppState>) -> impl IntoResponse {
    let now = chrono::Utc::now();
    let served: Vec<Json> = state
        .registry
        .all()
        .iter()
        .map(|s| {
            let wf = &s.workflow;
            let inputs: Map<String, Json> = wf
                .inputs
                .iter()
                .map(|(name, spec)| (name.clone(), spec.to_json()))
                .collect();
            let schedules: Vec<Json> = wf
                .schedules
                .iter()
                .map(|sc| {
                    json!({
                        "cron": sc.cron,
                        "timezone": sc.timezone.name(),
                        "overlap": sc.overlap,
                        "catchup": sc.catchup,
                        "next": super::ticks::next_fire(sc, now).map(|t| t.to_rfc3339()),
                    })
                })
                .collect();
            json!({
                "name": wf.name,
                "description": wf.description,
                "path": s.path.display().to_string(),
                "steps": wf.steps.len(),
                "inputs": inputs,
                "schedules": schedules,
                "webhook": wf.webhook.is_some(),
            })
        })
        .collect();
    axum::Json(json!({"workflows": served, "rejected": state.registry.rejected()}))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    /// Typed values.
    #[serde(default)]
    inputs: IndexMap<String, Json>,
    /// `NAME=VALUE` pairs parsed like `orch run --input`.
    #[serde(default)]
    args: Vec<String>,
}

async fn trigger(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> ApiResult {
    let served = state.served(&name)?;
    let body: TriggerBody = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"))
        })?
    };
    let wf = &served.workflow;
    let mut given = inputs::parse_cli_pairs(&wf.inputs, &body.args).map_err(ApiError::inputs)?;
    given.extend(body.inputs);
    let values = inputs::resolve(&wf.inputs, &given).map_err(ApiError::inputs)?;
    let detail = caller.map(|c| format!("token {}", c.0.0));
    state
        .enqueue(
            &served.workflow,
            values,
            Trigger::Http,
            detail.as_deref(),
            None,
        )
        .await
}

#[derive(Deserialize)]
struct RunsQuery {
    workflow: Option<String>,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    50
}

async fn list_runs(State(state): State<AppState>, Query(q): Query<RunsQuery>) -> ApiResult {
    let runs = state
        .store
        .list_runs_of(q.workflow.as_deref(), q.limit.clamp(1, 1000))
        .await?;
    Ok(axum::Json(json!({"runs": runs})).into_response())
}

async fn show_run(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    Ok(axum::Json(state.store.get_run(&id).await?).into_response())
}

#[derive(Deserialize)]
struct LogsQuery {
    #[serde(default = "yes")]
    follow: bool,
}

fn yes() -> bool {
    true
}

async fn run_logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let run = state.store.get_run(&id).await?.run;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(-1);
    struct Follow {
        state: AppState,
        run: String,
        after: i64,
        buffer: VecDeque<crate::store::LogRow>,
        ended: bool,
        follow: bool,
    }
    let start = Follow {
        state,
        run: run.id,
        after,
        buffer: VecDeque::new(),
        ended: false,
        follow: q.follow,
    };
    let stream = futures::stream::unfold(start, |mut f| async move {
        loop {
            if let Some(line) = f.buffer.pop_front() {
                f.after = line.seq;
                let event = SseEvent::default()
                    .event("log")
                    .id(line.seq.to_string())
                    .json_data(&line)
                    .unwrap_or_default();
                return Some((Ok::<_, Infallible>(event), f));
            }
            if f.ended {
                return None;
            }
            // Status first, then lines: lines written before the end are never missed.
            let status = match f.state.store.run(&f.run).await {
                Ok(Some(r)) => r.status,
                _ => RunStatus::Failed,
            };
            match f.state.store.logs_after(&f.run, f.after, 500).await {
                Ok(lines) if !lines.is_empty() => f.buffer.extend(lines),
                Ok(_) if status.is_final() || !f.follow => {
                    f.ended = true;
                    let event = SseEvent::default()
                        .event("end")
                        .json_data(json!({"status": status}))
                        .unwrap_or_default();
                    return Some((Ok(event), f));
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => {
                    f.ended = true;
                    let event = SseEvent::default()
                        .event("error")
                        .json_data(json!({"error": e.to_string()}))
                        .unwrap_or_default();
                    return Some((Ok(event), f));
                }
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn cancel_run(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let run = state.store.get_run(&id).await?.run;
    if run.status.is_final() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("run {} already ended: {}", run.id, run.status),
        ));
    }
    let status = match state.runner.cancel(&run.id).await? {
        Cancelled::Running => "cancelling",
        Cancelled::Waiting => RunStatus::Cancelled.as_str(),
        Cancelled::NotActive => {
            state
                .store
                .finish_run(
                    &run.id,
                    RunStatus::Cancelled,
                    Some("cancelled before it started"),
                )
                .await?;
            RunStatus::Cancelled.as_str()
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"id": run.id, "status": status})),
    )
        .into_response())
}

async fn webhook(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let served = state.served(&name)?;
    let wf = &served.workflow;
    let hook = wf.webhook.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("workflow `{name}` has no [webhook] section"),
        )
    })?;
    let lookup = secrets::resolve(
        std::slice::from_ref(&hook.secret),
        &[],
        &wf.dir,
        &state.process_env,
        state.secret_store.as_ref(),
        &Masker::default(),
    )
    .map_err(|e| {
        tracing::error!("webhook of {name}: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the webhook secret `{}` is not set on the server",
                hook.secret
            ),
        )
    })?;
    let secret = lookup.secrets[&hook.secret]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let now = chrono::Utc::now().timestamp();
    let delivery = auth::verify_delivery(secret.as_bytes(), &headers, &body, now).map_err(|e| {
        let status = match e {
            WebhookError::NoDelivery | WebhookError::BadTimestamp => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, e.to_string())
    })?;
    let payload: Json = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("payload is not JSON: {e}")))?;
    let given: IndexMap<String, Json> = hook
        .inputs
        .iter()
        .filter_map(|(input, path)| {
            Some((input.clone(), auth::payload_value(&payload, path)?.clone()))
        })
        .collect();
    let values = inputs::resolve(&wf.inputs, &given).map_err(ApiError::inputs)?;
    let detail = format!("delivery {delivery}");
    state
        .enqueue(wf, values, Trigger::Webhook, Some(&detail), Some(&delivery))
        .await
}

impl Shared {
    fn served(&self, name: &str) -> Result<Arc<super::registry::Served>, ApiError> {
        self.registry.get(name).ok_or_else(|| {
            let names: Vec<String> = self
                .registry
                .all()
                .iter()
                .map(|s| s.workflow.name.clone())
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let hint = match crate::workflow::did_you_mean(name, &names) {
                Some(s) => format!("; did you mean `{s}`?"),
                None => String::new(),
            };
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no workflow `{name}` is served{hint}"),
            )
        })
    }

    /// Record a queued run (and its delivery) and hand it to the runner: 202 once committed.
    async fn enqueue(
        &self,
        wf: &crate::workflow::Workflow,
        inputs: Map<String, Json>,
        trigger: Trigger,
        detail: Option<&str>,
        delivery: Option<&str>,
    ) -> ApiResult {
        if self.runner.stopping() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is stopping: try again once it is back",
            ));
        }
        let id = new_run_id();
        let inputs = Json::Object(inputs);
        let run = NewRun {
            id: &id,
            workflow: &wf.name,
            workflow_path: &wf.source.path,
            inputs: &inputs,
            trigger,
            trigger_detail: detail,
            status: RunStatus::Queued,
        };
        match self.store.enqueue_run(run, delivery).await {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) if let Some(delivery) = delivery => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("delivery `{delivery}` was already received: replays are ignored"),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        self.runner.submit(id.clone(), wf.name.clone(), None, false);
        let url = format!("/api/v1/runs/{id}");
        Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, url.clone())],
            axum::Json(json!({"id": id, "status": RunStatus::Queued, "url": url})),
        )
            .into_response())
    }
}
