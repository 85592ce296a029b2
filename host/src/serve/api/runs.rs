//! Recorded runs over the API: listing, one run in full, its log lines as server-sent events
//! (following a live run), and cancelling.

use super::super::AppState;
use super::super::runner::Cancelled;
use super::error::{ApiError, ApiResult, INTERNAL_ERROR};
use super::{Caller, MAX_STREAMS_PER_TOKEN};
use crate::store::{LogRow, RunStatus, Trigger};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde::Deserialize;
use serde_json::json;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

#[derive(Deserialize)]
pub(super) struct RunsQuery {
    workflow: Option<String>,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    50
}

pub(super) async fn list_runs(
    State(state): State<Arc<AppState>>,
    Query(q): Query<RunsQuery>,
) -> ApiResult {
    let runs = state
        .store
        .list_runs_of(q.workflow.as_deref(), q.limit.clamp(1, 1000))
        .await?;
    Ok(axum::Json(json!({"runs": runs})).into_response())
}

#[derive(Deserialize)]
pub(super) struct ShowQuery {
    /// The page of log lines after this sequence number (`-1`: from the first); default: the
    /// last page.
    logs_after: Option<i64>,
}

pub(super) async fn show_run(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> ApiResult {
    let detail = state.store.get_run_page(&id, q.logs_after).await?;
    Ok(axum::Json(detail).into_response())
}

pub(super) async fn cancel_run(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult {
    let (id, status) = state.cancel_run(&id).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"id": id, "status": status})),
    )
        .into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RerunBody {
    /// `failed`: keep what succeeded, run the failed steps and what follows them.
    from: Option<String>,
}

pub(super) async fn rerun_run(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(Caller(caller)): Extension<Caller>,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: RerunBody = super::optional_json(&body)?;
    let from_failed = match body.from.as_deref() {
        None => false,
        Some("failed") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "`from` is `{other}`: only \"failed\" is known (or leave it out to run everything)"
                ),
            ));
        }
    };
    let detail = format!("token {caller}");
    let new = state
        .rerun(&id, from_failed, Trigger::Http, &detail)
        .await?;
    Ok(super::queued(&new))
}

impl AppState {
    /// Cancel a queued or running run: its id and where it stands now (`cancelling` while its
    /// running steps stop).
    pub(crate) async fn cancel_run(&self, id: &str) -> Result<(String, &'static str), ApiError> {
        let run = self.store.get_run(id).await?.run;
        if run.status.is_final() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("run {} already ended: {}", run.id, run.status),
            ));
        }
        let status = match self.runner.cancel(&run.id).await? {
            Cancelled::Running => "cancelling",
            Cancelled::Waiting => RunStatus::Cancelled.as_str(),
            Cancelled::NotActive => {
                self.store
                    .finish_run(
                        &run.id,
                        RunStatus::Cancelled,
                        Some("cancelled before it started"),
                    )
                    .await?;
                RunStatus::Cancelled.as_str()
            }
        };
        Ok((run.id, status))
    }
}

#[derive(Deserialize)]
pub(super) struct LogsQuery {
    #[serde(default = "yes")]
    follow: bool,
}

fn yes() -> bool {
    true
}

pub(super) async fn run_logs(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
    Extension(Caller(caller)): Extension<Caller>,
    headers: HeaderMap,
) -> ApiResult {
    let after = super::last_event_id(&headers).unwrap_or(-1);
    log_events(state, &id, after, None, q.follow, caller).await
}

/// A run's log lines after `after` (of one step, if given) as server-sent events, held as one
/// of `caller`'s open streams.
pub(crate) async fn log_events(
    state: Arc<AppState>,
    run: &str,
    after: i64,
    step: Option<String>,
    follow: bool,
    caller: String,
) -> ApiResult {
    let run = state.store.get_run(run).await?.run;
    let slot = StreamSlot::take(&state, caller)?;
    let start = Follow {
        state,
        run: run.id,
        after,
        step,
        buffer: VecDeque::new(),
        ended: false,
        follow,
        _slot: slot,
    };
    let stream = futures::stream::unfold(start, |mut f| async move {
        let event = f.next().await?;
        Some((Ok::<_, Infallible>(event), f))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Where a log stream stands: `log` events for lines after `after`, then one `end` event with
/// the run's final status (or one `error` event).
struct Follow {
    state: Arc<AppState>,
    run: String,
    /// The last line read (its `seq`); `-1` before any.
    after: i64,
    /// Only this step's lines.
    step: Option<String>,
    buffer: VecDeque<LogRow>,
    ended: bool,
    /// Wait for new lines until the run ends; otherwise end after the lines recorded so far.
    follow: bool,
    /// Held while the stream is open.
    _slot: StreamSlot,
}

/// One of a token's [`MAX_STREAMS_PER_TOKEN`] log streams, given back when dropped.
struct StreamSlot {
    state: Arc<AppState>,
    caller: String,
}

impl StreamSlot {
    fn take(state: &Arc<AppState>, caller: String) -> Result<Self, ApiError> {
        let mut open = state.streams.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(caller.clone()).or_default();
        if *count >= MAX_STREAMS_PER_TOKEN {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "token `{caller}` has {MAX_STREAMS_PER_TOKEN} log streams open: close one first"
                ),
            ));
        }
        *count += 1;
        Ok(Self {
            state: state.clone(),
            caller,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.state.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.caller) {
            *count = count.saturating_sub(1);
        }
    }
}

impl Follow {
    /// The next event; `None` once the stream ended.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(line) = self.buffer.pop_front() {
                self.after = line.seq;
                if self.step.as_ref().is_some_and(|s| *s != line.step) {
                    continue;
                }
                let event = SseEvent::default()
                    .event("log")
                    .id(line.seq.to_string())
                    .json_data(&line)
                    .unwrap_or_default();
                return Some(event);
            }
            if self.ended {
                return None;
            }
            // Status first, then lines: lines written before the end are never missed.
            let read = async {
                let status = self.state.store.run(&self.run).await?.map(|r| r.status);
                let lines = self
                    .state
                    .store
                    .logs_after(&self.run, self.after, 500)
                    .await?;
                Ok::<_, crate::store::StoreError>((status, lines))
            };
            match read.await {
                Ok((_, lines)) if !lines.is_empty() => self.buffer.extend(lines),
                // An interrupted run goes on only when a server restarts and resumes it.
                Ok((status, _))
                    if !self.follow
                        || status.is_none_or(|s| s.is_final() || s == RunStatus::Interrupted) =>
                {
                    self.ended = true;
                    let status = status.unwrap_or(RunStatus::Failed);
                    return Some(
                        SseEvent::default()
                            .event("end")
                            .json_data(json!({"status": status}))
                            .unwrap_or_default(),
                    );
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => {
                    // The response is already under way: log here, tell the client no more.
                    tracing::error!(run = %self.run, "log stream: store: {e}");
                    self.ended = true;
                    return Some(
                        SseEvent::default()
                            .event("error")
                            .json_data(json!({"error": INTERNAL_ERROR}))
                            .unwrap_or_default(),
                    );
                }
            }
        }
    }
}
