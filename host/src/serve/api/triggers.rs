//! What records a run: a trigger with a bearer token, or a signed webhook delivery. Either way
//! the `queued` run row is committed before the 202 answer, then handed to the runner.

use super::super::AppState;
use super::super::auth::{self, WebhookError};
use super::super::registry::Served;
use super::Caller;
use super::error::{ApiError, ApiResult};
use crate::capability::Masker;
use crate::capability::secrets;
use crate::resolve::ResolvedWorkflow;
use crate::store::{AttemptRow, NewRun, RunStatus, StepStatus, StoreError, Trigger, new_run_id};
use crate::workflow::inputs;
use crate::workflow::{Workflow, did_you_mean};
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use std::collections::HashSet;
use std::sync::Arc;

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

pub(super) async fn trigger(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    caller: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> ApiResult {
    let served = state.served(&name)?;
    let body: TriggerBody = super::optional_json(&body)?;
    let wf = &served.workflow;
    let mut given = inputs::parse_cli_pairs(&wf.inputs, &body.args).map_err(ApiError::inputs)?;
    given.extend(body.inputs);
    let values = inputs::resolve(&wf.inputs, &given).map_err(ApiError::inputs)?;
    let detail = caller.map(|c| format!("token {}", c.0.0));
    state
        .enqueue(wf, values, Trigger::Http, detail.as_deref(), None)
        .await
}

/// How long an unauthenticated delivery may take to send its body (headers have their own
/// timeout in the server loop): a trickled body must not hold a connection slot.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) async fn webhook(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult {
    let headers = request.headers().clone();
    let body = tokio::time::timeout(BODY_READ_TIMEOUT, Bytes::from_request(request, &()))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the body took longer than 10s to arrive",
            )
        })?
        .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
    // Unauthenticated: one answer for "no such workflow" and "no webhook", and no names of
    // other workflows (no did-you-mean), so a stranger learns nothing from guessing.
    let not_here = || ApiError::new(StatusCode::NOT_FOUND, format!("no webhook `{name}`"));
    let served = state.registry.get(&name).ok_or_else(not_here)?;
    let wf = &served.workflow;
    let hook = wf.webhook.as_ref().ok_or_else(not_here)?;
    let lookup = secrets::resolve(
        std::slice::from_ref(&hook.secret),
        &[],
        &wf.dir,
        &state.process_env,
        state.secret_store.as_ref(),
        &Masker::default(),
    )
    .map_err(|e| {
        ApiError::server(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("webhook of `{name}`: secret `{}`: {e}", hook.secret),
            Some("the webhook's secret is not set on the server"),
        )
    })?;
    let secret = lookup.secrets[&hook.secret]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // An empty key would let anyone sign a delivery (HMAC("", body)).
    if secret.is_empty() {
        return Err(ApiError::server(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("webhook of `{name}`: secret `{}` is empty", hook.secret),
            Some("the webhook's secret is empty on the server: set it"),
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let verified = auth::verify_delivery(
        secret.as_bytes(),
        &headers,
        &body,
        now,
        hook.require_timestamp,
    );
    let delivery = verified.map_err(|e| {
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

impl AppState {
    /// The served workflow `name`; 404 naming the closest served name.
    pub(crate) fn served(&self, name: &str) -> Result<Arc<Served>, ApiError> {
        self.registry.get(name).ok_or_else(|| {
            let names: Vec<String> = self
                .registry
                .all()
                .iter()
                .map(|s| s.workflow.name.clone())
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let hint = match did_you_mean(name, &names) {
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
        wf: &Workflow,
        inputs: Map<String, Json>,
        trigger: Trigger,
        detail: Option<&str>,
        delivery: Option<&str>,
    ) -> ApiResult {
        let id = self
            .queue_run(wf, inputs, trigger, detail, delivery)
            .await?;
        Ok(super::queued(&id))
    }

    /// Record a queued run (and its delivery) and hand it to the runner; its id once committed.
    pub(crate) async fn queue_run(
        &self,
        wf: &Workflow,
        inputs: Map<String, Json>,
        trigger: Trigger,
        detail: Option<&str>,
        delivery: Option<&str>,
    ) -> Result<String, ApiError> {
        self.refuse_when_stopping()?;
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
            wait_group: false,
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
        self.runner.submit();
        Ok(id)
    }

    /// Run again the recorded run `of` with the same inputs (checked against the workflow as
    /// served now): all of it, or (`from_failed`) only what did not succeed. A step is kept
    /// when its last attempt succeeded with its real outputs recorded (or was skipped) and
    /// every step it needs is kept too: a step downstream of one that runs again runs again.
    /// Kept steps are matched by id in the workflow as served now. The new run's id.
    pub(crate) async fn rerun(
        &self,
        of: &str,
        from_failed: bool,
        trigger: Trigger,
        detail: &str,
    ) -> Result<String, ApiError> {
        self.refuse_when_stopping()?;
        let old = self.store.get_run(of).await?.run;
        let served = self.served(&old.workflow)?;
        let wf = &served.workflow;
        if from_failed && old.status != RunStatus::Failed {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "run {} is {}, not failed: re-run all of it instead",
                    old.id, old.status
                ),
            ));
        }
        let given: IndexMap<String, Json> = old
            .inputs
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let inputs = Json::Object(inputs::resolve(&wf.inputs, &given).map_err(ApiError::inputs)?);
        let keep = if from_failed {
            kept_steps(wf, &self.store.attempts(&old.id).await?)
        } else {
            Vec::new()
        };
        let id = new_run_id();
        let detail = format!("{detail}; re-run of {}", old.id);
        let run = NewRun {
            id: &id,
            workflow: &wf.name,
            workflow_path: &wf.source.path,
            inputs: &inputs,
            trigger,
            trigger_detail: Some(&detail),
            status: RunStatus::Queued,
            wait_group: false,
        };
        self.store.record_rerun(run, &old.id, &keep).await?;
        self.runner.submit();
        Ok(id)
    }

    fn refuse_when_stopping(&self) -> Result<(), ApiError> {
        if self.runner.stopping() {
            return Err(ApiError::server(
                StatusCode::SERVICE_UNAVAILABLE,
                "a trigger came in while the server stops",
                Some("the server is stopping: try again once it is back"),
            ));
        }
        Ok(())
    }
}

/// The steps of a failed run a re-run keeps, in order: see [`AppState::rerun`].
fn kept_steps(wf: &ResolvedWorkflow, attempts: &[AttemptRow]) -> Vec<String> {
    let last = AttemptRow::last_of_each(attempts);
    let dag = wf.dag();
    let mut kept: HashSet<&str> = HashSet::new();
    let mut order = Vec::new();
    for id in dag.order() {
        let Some(node) = dag.node(id) else { continue };
        let done = last.get(id).is_some_and(|a| {
            (a.status == StepStatus::Succeeded && a.resumable) || a.status == StepStatus::Skipped
        });
        if done && dag.needs(node).iter().all(|&n| kept.contains(dag.id(n))) {
            kept.insert(id);
            order.push(id.to_string());
        }
    }
    order
}
