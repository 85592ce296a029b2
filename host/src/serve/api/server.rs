//! What the server itself answers: liveness, Prometheus metrics, the OpenAPI document and the
//! list of served and rejected workflows.

use super::super::AppState;
use super::super::fire_times::next_fire;
use super::error::ApiResult;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Map, Value as Json, json};
use std::sync::Arc;

pub(super) async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> ApiResult {
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

pub(super) async fn openapi() -> impl IntoResponse {
    axum::Json(super::openapi_document())
}

pub(super) async fn list_workflows(State(state): State<Arc<AppState>>) -> impl IntoResponse {
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
                        "next": next_fire(sc, now).map(|t| t.to_rfc3339()),
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
