//! The runs list and one run: its DAG recoloured live, the step table, a step's log (tail
//! first, older pages on demand, new lines streamed), outputs, denials; cancel and re-run.

use super::super::AppState;
use super::super::api::ApiError;
use super::dag::{self, NodeState};
use super::page::{self, Nav, Shell, badge, duration, time};
use super::session::{self, Needs, Viewer};
use crate::store::{LogRow, RunFilter, RunRow, RunStatus, StepRow, StepStatus, Trigger};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use indexmap::IndexMap;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Runs per page of the list.
const PAGE: i64 = 50;
/// Log lines shown at first, and per "older lines" page.
const LOG_PAGE: i64 = 200;

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    workflow: Option<String>,
    status: Option<String>,
    before: Option<String>,
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let workflow = q.workflow.as_deref().filter(|w| !w.is_empty());
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse::<RunStatus>() {
            Ok(s) => Some(s),
            Err(_) => {
                return page::error_page(
                    Some(&viewer),
                    StatusCode::BAD_REQUEST,
                    &format!("unknown status `{s}`: pick one from the list"),
                );
            }
        },
    };
    let filter = RunFilter {
        workflow,
        status,
        before: q.before.as_deref().filter(|b| !b.is_empty()),
    };
    let runs = match state.store.runs_page(&filter, PAGE + 1).await {
        Ok(runs) => runs,
        Err(e) => return page::from_api(Some(&viewer), e.into()),
    };
    let now = state.store.now();
    let table = runs_table(&runs, &filter, now);
    // htmx refreshes only the table.
    if headers.contains_key("hx-request") {
        return Html(table.into_string()).into_response();
    }
    let mut names: Vec<String> = state
        .registry
        .all()
        .iter()
        .map(|s| s.workflow.name.clone())
        .collect();
    names.sort();
    let body = html! {
        div.heading {
            h1 { "Runs" }
            form.filters method="get" action="/" {
                label for="f-workflow" { "Workflow" }
                select #f-workflow name="workflow" {
                    option value="" { "all" }
                    @for name in &names {
                        option value=(name) selected[workflow == Some(name.as_str())] { (name) }
                    }
                }
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" { "any" }
                    @for s in [RunStatus::Queued, RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed, RunStatus::Cancelled, RunStatus::Interrupted] {
                        option value=(s.as_str()) selected[status == Some(s)] { (s.as_str()) }
                    }
                }
                button type="submit" { "Filter" }
            }
        }
        (table)
    };
    page::render(
        Shell {
            title: "Runs",
            nav: Nav::Runs,
            viewer: Some(&viewer),
        },
        body,
    )
}

/// The table of a page of runs, refreshing itself every 2 s while it shows the first page.
fn runs_table(runs: &[RunRow], filter: &RunFilter<'_>, now: i64) -> Markup {
    let more = runs.len() as i64 > PAGE;
    let shown = &runs[..runs.len().min(PAGE as usize)];
    let query = |before: Option<&str>| {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        if let Some(w) = filter.workflow {
            pairs.append_pair("workflow", w);
        }
        if let Some(s) = filter.status {
            pairs.append_pair("status", s.as_str());
        }
        if let Some(b) = before {
            pairs.append_pair("before", b);
        }
        format!("/?{}", pairs.finish())
    };
    let live = filter.before.is_none();
    html! {
        div #runs hx-get=[live.then(|| query(None))] hx-trigger=[live.then_some("every 2s")]
            hx-swap="outerHTML" {
            @if shown.is_empty() {
                p.empty { "No runs yet. Start one from a workflow's page, or with "
                    code { "orch trigger" } "." }
            } @else {
                div.scroll {
                    table.runs {
                        thead { tr { th { "Run" } th { "Workflow" } th { "Trigger" } th { "Status" } th { "Started" } th { "Duration" } } }
                        tbody {
                            @for run in shown {
                                tr {
                                    td { a.mono href={ "/runs/" (run.id) } { (short_id(&run.id)) } }
                                    td { a href={ "/workflows/" (run.workflow) } { (run.workflow) } }
                                    td title=[run.trigger_detail.as_deref()] { (run.trigger.as_str()) }
                                    td { (badge(run.status.as_str())) }
                                    td { (time(run.started_at.unwrap_or(run.created_at))) }
                                    td { (run_duration(run, now)) }
                                }
                            }
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if !live { a href=(query(None)) { "Newest" } }
                @if more && let Some(last) = shown.last() {
                    a href=(query(Some(&last.id))) { "Older runs" }
                }
            }
        }
    }
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn run_duration(run: &RunRow, now: i64) -> String {
    match (run.started_at, run.finished_at) {
        (Some(start), Some(end)) => duration(end - start),
        (Some(start), None) if !run.status.is_final() => duration(now - start),
        _ => String::new(),
    }
}

/// How one step stands: its last attempt.
struct StepSummary<'a> {
    last: &'a StepRow,
    attempts: i64,
    ms: Option<i64>,
}

impl StepSummary<'_> {
    fn node(&self) -> NodeState<'_> {
        NodeState {
            status: self.last.status.as_str(),
            attempts: self.attempts,
            ms: self.ms,
            note: None,
        }
    }
}

/// Each recorded step's last attempt, in the order they started.
fn summarize(steps: &[StepRow], now: i64) -> IndexMap<&str, StepSummary<'_>> {
    let mut out: IndexMap<&str, StepSummary<'_>> = IndexMap::new();
    for row in steps {
        let ms = match (row.finished_at, row.status) {
            (Some(end), _) => Some(end - row.started_at),
            (None, StepStatus::Running) => Some(now - row.started_at),
            _ => None,
        };
        let entry = out.entry(row.step.as_str()).or_insert(StepSummary {
            last: row,
            attempts: 0,
            ms,
        });
        entry.attempts = entry.attempts.max(row.attempt);
        if row.attempt >= entry.last.attempt {
            entry.last = row;
            entry.ms = ms;
        }
    }
    out
}

#[derive(Deserialize, Default)]
pub(super) struct ShowQuery {
    step: Option<String>,
}

pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    match render_run(&state, &viewer, &id, q.step.filter(|s| !s.is_empty())).await {
        Ok(page) => page,
        Err(e) => page::from_api(Some(&viewer), e),
    }
}

async fn render_run(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    step: Option<String>,
) -> Result<Response, ApiError> {
    let detail = state.store.get_run_without_log(id).await?;
    let run = &detail.run;
    let now = state.store.now();
    let summary = summarize(&detail.steps, now);
    let served = state.registry.get(&run.workflow);
    // Steps in the workflow's order, then any recorded step it no longer has.
    let mut order: Vec<&str> = served
        .as_ref()
        .map(|s| s.workflow.dag().order().collect())
        .unwrap_or_default();
    let known: std::collections::HashSet<&str> = order.iter().copied().collect();
    order.extend(summary.keys().filter(|s| !known.contains(*s)));
    let states: HashMap<&str, NodeState<'_>> =
        summary.iter().map(|(k, s)| (*k, s.node())).collect();
    let base = format!("/runs/{}", run.id);
    let step_link = |s: &str| {
        let s: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        format!("{base}?step={s}#log")
    };
    let dag_svg = served.as_ref().map(|s| {
        let layout = state.layouts.get(s.workflow.dag());
        dag::svg(
            &layout,
            &format!("Steps of {} and what they need", run.workflow),
            &states,
            step_link,
        )
    });
    let selected = step.as_deref().and_then(|s| summary.get(s));
    let mut tail = state
        .store
        .log_tail(&run.id, step.as_deref(), None, LOG_PAGE + 1)
        .await?;
    let older = tail.len() as i64 > LOG_PAGE;
    if older {
        tail.remove(0);
    }
    let last_seq = tail.last().map_or(-1, |l| l.seq);
    let step_query = step_query(step.as_deref());
    let final_ = run.status.is_final();
    let body = html! {
        div.heading #run data-run=(run.id) data-status=(run.status.as_str()) {
            h1 {
                a href={ "/workflows/" (run.workflow) } { (run.workflow) }
                " " span.mono.muted { (short_id(&run.id)) }
            }
            span #run-status { (badge(run.status.as_str())) }
            div.actions {
                @if viewer.may_run() {
                    form method="post" action={ (base) "/cancel" } data-when="active" hidden[final_] {
                        (page::csrf(viewer))
                        button.danger type="submit" { "Cancel run" }
                    }
                    form method="post" action={ (base) "/rerun" } data-when="final" hidden[!final_] {
                        (page::csrf(viewer))
                        button type="submit" { "Re-run" }
                    }
                    form method="post" action={ (base) "/rerun" } data-when="failed" hidden[run.status != RunStatus::Failed] {
                        (page::csrf(viewer))
                        input type="hidden" name="from" value="failed";
                        button type="submit" { "Re-run from failed step" }
                    }
                }
            }
        }
        dl.facts {
            dt { "Trigger" } dd { (run.trigger.as_str()) @if let Some(d) = &run.trigger_detail { span.muted { " · " (d) } } }
            dt { "Created" } dd { (time(run.created_at)) }
            dt { "Duration" } dd #run-duration { (run_duration(run, now)) }
            @if let Some(obj) = run.inputs.as_object().filter(|o| !o.is_empty()) {
                dt { "Inputs" }
                dd { @for (k, v) in obj { code { (k) "=" (v) } " " } }
            }
        }
        @if let Some(error) = &run.error {
            p.error role="alert" { (error) }
        }
        @for w in &detail.waiting {
            p.notice { "waiting " code { (w.step) } ": " (w.reason) }
        }
        @if let Some(svg) = dag_svg {
            section.graph aria-label="DAG" {
                div.scroll { (svg) }
            }
        }
        div.split {
            section aria-labelledby="steps-h" {
                h2 #steps-h { "Steps" }
                div.scroll {
                    table.steps {
                        thead { tr { th { "Step" } th { "Status" } th { "Attempts" } th { "Duration" } th { "Worker" } } }
                        tbody {
                            @for s in &order {
                                @let sum = summary.get(s);
                                tr data-step=(s) aria-current=[(step.as_deref() == Some(*s)).then_some("true")] {
                                    td { a href=(step_link(s)) { (s) } }
                                    td.c-status { (badge(sum.map_or("pending", |x| x.last.status.as_str()))) }
                                    td.c-attempts { (sum.map_or(0, |x| x.attempts)) }
                                    td.c-duration { (sum.and_then(|x| x.ms).map(duration).unwrap_or_default()) }
                                    td.c-worker.mono.muted { (sum.and_then(|x| x.last.worker.as_deref()).unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
            section #log-panel aria-labelledby="log-h" {
                h2 #log-h {
                    @if let Some(s) = &step { "Log of " code { (s) } " " a.small href=(base) { "(all steps)" } }
                    @else { "Log" }
                }
                @if let Some(sel) = selected {
                    @if let Some(error) = &sel.last.error {
                        p.error { (error) }
                    }
                    @if let Some(outputs) = sel.last.outputs.as_ref().filter(|o| o.as_object().is_some_and(|m| !m.is_empty())) {
                        details open {
                            summary { "Outputs" }
                            pre.outputs { (serde_json::to_string_pretty(outputs).unwrap_or_default()) }
                        }
                    }
                }
                div.log #log role="log" aria-live="polite"
                    data-stream={ (base) "/log/stream?after=" (last_seq) (step_query) }
                    data-live=[(!final_).then_some("1")] {
                    @if older {
                        (older_button(&base, &step_query, tail.first().map_or(0, |l| l.seq)))
                    }
                    @if tail.is_empty() { p.empty.muted #log-empty { "No log lines yet." } }
                    (lines(&tail))
                }
            }
        }
        @if !detail.audit.is_empty() {
            section aria-labelledby="denied-h" {
                h2 #denied-h { "Denied" }
                div.scroll {
                    table {
                        thead { tr { th { "Step" } th { "When" } th { "Action" } th { "Target" } th { "Reason" } } }
                        tbody {
                            @for a in &detail.audit {
                                tr { td { (a.step) } td { (time(a.ts)) } td { (a.action) } td.mono { (a.target) } td { (a.reason) } }
                            }
                        }
                    }
                }
            }
        }
        @if !detail.used.is_empty() {
            details {
                summary { "Grants used (" (detail.used.len()) ")" }
                ul.mono { @for u in &detail.used { li { (u.step) ": " (u.grant) } } }
            }
        }
    };
    Ok(page::render(
        Shell {
            title: &format!("Run {} of {}", short_id(&run.id), run.workflow),
            nav: Nav::Runs,
            viewer: Some(viewer),
        },
        body,
    ))
}

/// `&step=STEP` for a URL, or nothing.
fn step_query(step: Option<&str>) -> String {
    step.map(|s| {
        let s: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        format!("&step={s}")
    })
    .unwrap_or_default()
}

fn older_button(base: &str, step_query: &str, before: i64) -> Markup {
    html! {
        button.link.older type="button"
            hx-get={ (base) "/log?before=" (before) (step_query) }
            hx-target="this" hx-swap="outerHTML" { "Show older lines" }
    }
}

fn lines(lines: &[LogRow]) -> Markup {
    html! {
        @for l in lines {
            div class={ "line lv-" (l.level) } data-seq=(l.seq) {
                span.ts { (log_time(l.ts)) }
                span.step { (l.step) @if l.attempt > 1 { "#" (l.attempt) } }
                span.msg { (l.message) }
            }
        }
    }
}

fn log_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_default()
}

#[derive(Deserialize)]
pub(super) struct OlderQuery {
    before: i64,
    step: Option<String>,
}

/// A page of older log lines, headed by the button for the page before it.
pub(super) async fn older_lines(
    State(state): State<Arc<AppState>>,
    _viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<OlderQuery>,
) -> Response {
    let step = q.step.filter(|s| !s.is_empty());
    let mut page = match state
        .store
        .log_tail(&id, step.as_deref(), Some(q.before), LOG_PAGE + 1)
        .await
    {
        Ok(lines) => lines,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let more = page.len() as i64 > LOG_PAGE;
    if more {
        page.remove(0);
    }
    let base = format!("/runs/{id}");
    let step_query = step_query(step.as_deref());
    let markup = html! {
        @if more { (older_button(&base, &step_query, page.first().map_or(0, |l| l.seq))) }
        (lines(&page))
    };
    Html(markup.into_string()).into_response()
}

#[derive(Deserialize, Default)]
pub(super) struct StateQuery {
    /// The `now` of the previous answer: only steps changed since then are sent.
    since: Option<i64>,
}

/// How far back a `since` poll looks before the time it names: a step stamped just before a
/// poll may be committed just after it.
const SINCE_MARGIN_MS: i64 = 10_000;

/// Where a run stands, for the page's script: the run's status and the node of each step that
/// changed since the last poll (all of them on the first).
pub(super) async fn state(
    State(state): State<Arc<AppState>>,
    _viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<StateQuery>,
) -> Response {
    let now = state.store.now();
    let read = async {
        let run = state
            .store
            .run(&id)
            .await?
            .ok_or_else(|| crate::store::StoreError::NoSuchRun(id.clone()))?;
        let since = q.since.map(|t| t - SINCE_MARGIN_MS);
        let steps = state.store.step_rows(&run.id, since).await?;
        Ok::<_, crate::store::StoreError>((run, steps))
    };
    let (run, rows) = match read.await {
        Ok(read) => read,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let steps: serde_json::Map<String, serde_json::Value> = summarize(&rows, now)
        .iter()
        .map(|(id, s)| {
            let node = s.node();
            (
                id.to_string(),
                json!({
                    "status": node.status,
                    "attempts": s.attempts,
                    "duration": s.ms.map(duration),
                    "meta": dag::node_meta(&node),
                    "worker": s.last.worker,
                }),
            )
        })
        .collect();
    axum::Json(json!({
        "now": now,
        "status": run.status,
        "final": run.status.is_final(),
        "duration": run_duration(&run, now),
        "error": run.error,
        "steps": steps,
    }))
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct StreamQuery {
    #[serde(default = "minus_one")]
    after: i64,
    step: Option<String>,
}

fn minus_one() -> i64 {
    -1
}

/// New log lines as server-sent events (one of the signed-in token's streams).
pub(super) async fn stream(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<StreamQuery>,
) -> Response {
    let step = q.step.filter(|s| !s.is_empty());
    // A reconnecting EventSource says where it stopped: no line is sent twice.
    let after = super::super::api::last_event_id(&headers).unwrap_or(q.after);
    super::super::api::log_events(state, &id, after, step, true, viewer.caller.name)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn cancel(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> Response {
    if let Err(refused) = session::checked(&viewer, fields, Needs::Run) {
        return *refused;
    }
    match state.cancel_run(&id).await {
        Ok((id, _)) => Redirect::to(&format!("/runs/{id}")).into_response(),
        Err(e) => page::from_api(Some(&viewer), e),
    }
}

pub(super) async fn rerun(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> Response {
    let fields = match session::checked(&viewer, fields, Needs::Run) {
        Ok(f) => f,
        Err(refused) => return *refused,
    };
    let from_failed = session::field(&fields, "from") == Some("failed");
    match state
        .rerun(&id, from_failed, Trigger::Web, &viewer.detail())
        .await
    {
        Ok(new) => Redirect::to(&format!("/runs/{new}")).into_response(),
        Err(e) => page::from_api(Some(&viewer), e),
    }
}
