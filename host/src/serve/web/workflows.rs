//! Served workflows, and one workflow's page: its DAG, schedules, recent runs and the form
//! generated from its typed inputs, with **Plan** (what a run would change, asking every
//! plugin, changing nothing) and **Run**. Inputs are checked on the server with the API's own
//! rules and messages, shown beside the field they are about.

use super::super::AppState;
use super::super::fire_times::next_fire;
use super::super::registry::Served;
use super::dag;
use super::page::{self, Nav, Shell, badge, time};
use super::session::{self, Needs, Viewer};
use crate::executor::{PlanReport, RunControl, RunSpec, Silent, StepPlan};
use crate::store::{RunFilter, Trigger};
use crate::workflow::inputs::{self, InputError, InputSpec};
use crate::workflow::{InputKind, Workflow};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use indexmap::IndexMap;
use maud::{Markup, html};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The longest a Plan may take (plugins ask real services).
const PLAN_TIMEOUT: Duration = Duration::from_secs(120);
/// Next fire times shown per schedule.
const NEXT_FIRES: usize = 3;

pub(super) async fn list(State(state): State<Arc<AppState>>, viewer: Viewer) -> Response {
    let mut served = state.registry.all();
    served.sort_by(|a, b| a.workflow.name.cmp(&b.workflow.name));
    let rejected = state.registry.rejected();
    let now = chrono::Utc::now();
    let body = html! {
        h1 { "Workflows" }
        @if served.is_empty() { p.empty { "No workflow is served: put a valid " code { "*.toml" } " in the server's directory." } }
        @else {
            div.scroll {
                table {
                    thead { tr { th { "Workflow" } th { "Description" } th { "Steps" } th { "Inputs" } th { "Next fire" } } }
                    tbody {
                        @for s in &served {
                            @let wf = &s.workflow;
                            tr {
                                td { a href={ "/workflows/" (wf.name) } { (wf.name) } }
                                td { (wf.description.as_deref().unwrap_or("")) }
                                td { (wf.steps.len()) }
                                td { (wf.inputs.len()) }
                                td { @if let Some(t) = wf.schedules.iter().filter_map(|sc| next_fire(sc, now)).min() { (time(t.timestamp_millis())) } }
                            }
                        }
                    }
                }
            }
        }
        @if !rejected.is_empty() {
            h2 { "Not served" }
            @for r in &rejected {
                section.problem {
                    h3.mono { (r.path) }
                    pre { (r.errors) }
                }
            }
        }
    };
    page::render(
        Shell {
            title: "Workflows",
            nav: Nav::Workflows,
            viewer: Some(&viewer),
        },
        body,
    )
}

/// What the form holds: the raw text of each field, as typed.
#[derive(Default)]
struct FormValues(IndexMap<String, Vec<String>>);

impl FormValues {
    /// The declared defaults, as a new form shows them.
    fn defaults(wf: &Workflow) -> Self {
        let mut values = IndexMap::new();
        for (name, spec) in &wf.inputs {
            let raw = match &spec.default {
                None => vec![],
                Some(Json::Array(items)) => items.iter().map(text_of).collect(),
                Some(Json::Bool(true)) => vec!["true".into()],
                Some(Json::Bool(false)) => vec![],
                Some(v) if spec.options.is_some() => vec![v.to_string()],
                Some(v) => vec![text_of(v)],
            };
            values.insert(name.clone(), raw);
        }
        Self(values)
    }

    /// The `in.NAME` fields of a posted form.
    fn posted(fields: &[(String, String)]) -> Self {
        let mut values: IndexMap<String, Vec<String>> = IndexMap::new();
        for (key, value) in fields {
            if let Some(name) = key.strip_prefix("in.") {
                values
                    .entry(name.to_string())
                    .or_default()
                    .push(value.clone());
            }
        }
        Self(values)
    }

    fn get(&self, name: &str) -> &[String] {
        self.0.get(name).map_or(&[], Vec::as_slice)
    }

    /// Typed inputs, checked like the API checks them; each problem names its input.
    fn resolve(&self, wf: &Workflow) -> Result<serde_json::Map<String, Json>, Vec<InputError>> {
        let mut given = IndexMap::new();
        let mut errors = Vec::new();
        for (name, spec) in &wf.inputs {
            let raw = self.get(name);
            let parsed = match spec.kind {
                InputKind::Boolean => Ok(Some(Json::Bool(raw.iter().any(|v| v == "true")))),
                InputKind::Array => {
                    let rows: Vec<Json> = raw
                        .iter()
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| Json::String(v.clone()))
                        .collect();
                    // No rows for a required array is no value, as an empty field is.
                    Ok((!(rows.is_empty() && spec.required)).then_some(Json::Array(rows)))
                }
                _ => match raw.last().map(String::as_str) {
                    None => Ok(None),
                    Some("") if spec.kind == InputKind::Number || spec.required => Ok(None),
                    Some(v) if spec.options.is_some() => Ok(Some(
                        serde_json::from_str(v).unwrap_or(Json::String(v.into())),
                    )),
                    Some(v) => spec.parse_cli(v).map(Some),
                },
            };
            match parsed {
                Ok(Some(v)) => {
                    given.insert(name.clone(), v);
                }
                Ok(None) => {}
                Err(message) => errors.push(InputError {
                    name: name.clone(),
                    message,
                }),
            }
        }
        match inputs::resolve(&wf.inputs, &given) {
            Ok(values) if errors.is_empty() => Ok(values),
            Ok(_) => Err(errors),
            Err(more) => {
                // A field that did not parse was left out: its "missing" is not news.
                let unparsed: Vec<String> = errors.iter().map(|e| e.name.clone()).collect();
                errors.extend(more.into_iter().filter(|e| !unparsed.contains(&e.name)));
                Err(errors)
            }
        }
    }
}

/// A value as a text field shows it.
fn text_of(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What the form section shows besides the fields.
#[derive(Default)]
struct Outcome {
    errors: Vec<InputError>,
    plan: Option<Result<PlanReport, String>>,
}

pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Response {
    let served = match state.served(&name) {
        Ok(s) => s,
        Err(e) => return page::from_api(Some(&viewer), e),
    };
    let values = FormValues::defaults(&served.workflow);
    workflow_page(
        &state,
        &viewer,
        &served,
        &values,
        &Outcome::default(),
        StatusCode::OK,
    )
    .await
}

async fn workflow_page(
    state: &AppState,
    viewer: &Viewer,
    served: &Served,
    values: &FormValues,
    outcome: &Outcome,
    status: StatusCode,
) -> Response {
    let wf = &served.workflow;
    let recent = state
        .store
        .runs_page(
            &RunFilter {
                workflow: Some(&wf.name),
                ..Default::default()
            },
            5,
        )
        .await
        .unwrap_or_default();
    let layout = state.layouts.get(wf.dag());
    let plugins: Vec<(&str, String)> = wf
        .steps
        .values()
        .map(|s| (s.id.as_str(), s.plugin.to_string()))
        .collect();
    let notes: HashMap<&str, dag::NodeState<'_>> = plugins
        .iter()
        .map(|(id, plugin)| {
            let state = dag::NodeState {
                status: "pending",
                attempts: 0,
                ms: None,
                note: Some(plugin.rsplit('/').next().unwrap_or(plugin)),
            };
            (*id, state)
        })
        .collect();
    let graph = dag::svg(
        &layout,
        &format!("Steps of {} and what they need", wf.name),
        &notes,
        |_| "#steps".to_string(),
    );
    let now = chrono::Utc::now();
    let body = html! {
        div.heading {
            h1 { (wf.name) }
            @if wf.webhook.is_some() { span.badge { "webhook" } }
        }
        @if let Some(d) = &wf.description { p.lead { (d) } }
        div.split {
            section aria-labelledby="form-h" {
                h2 #form-h { "Start a run" }
                (form_section(wf, viewer, values, outcome))
            }
            section aria-labelledby="sched-h" {
                h2 #sched-h { "Schedules" }
                @if wf.schedules.is_empty() { p.muted { "None: runs start from this form, the API or a webhook." } }
                @for (i, sc) in wf.schedules.iter().enumerate() {
                    div.schedule {
                        p { code { (sc.cron) } " in " (sc.timezone.name()) span.muted { " · overlap " (sc.overlap) ", catch-up " (sc.catchup) } }
                        (next_fires(sc, now))
                        @if !sc.inputs.is_empty() {
                            p.muted { "inputs: " @for (k, v) in &sc.inputs { code { (k) "=" (v) } " " } }
                        }
                        @if i + 1 < wf.schedules.len() { hr; }
                    }
                }
                h2 { "Recent runs" }
                @if recent.is_empty() { p.muted { "None yet." } }
                ul.recent {
                    @for r in &recent {
                        li { a.mono href={ "/runs/" (r.id) } { (&r.id[..12.min(r.id.len())]) } " " (badge(r.status.as_str())) " " (time(r.created_at)) }
                    }
                }
            }
        }
        section.graph #steps aria-label="DAG" {
            h2 { "Steps" }
            div.scroll { (graph) }
        }
    };
    let mut response = page::render(
        Shell {
            title: &wf.name,
            nav: Nav::Workflows,
            viewer: Some(viewer),
        },
        body,
    );
    *response.status_mut() = status;
    response
}

/// The next fire times of a schedule, in its own timezone.
pub(super) fn next_fires(
    sc: &crate::workflow::Schedule,
    now: chrono::DateTime<chrono::Utc>,
) -> Markup {
    let mut fires = Vec::new();
    let mut cursor = now;
    while fires.len() < NEXT_FIRES {
        let Some(t) = next_fire(sc, cursor) else {
            break;
        };
        fires.push(t);
        cursor = t;
    }
    html! {
        @if fires.is_empty() { p.muted { "never fires again" } }
        @else {
            ol.fires aria-label="Next fire times" {
                @for t in &fires {
                    li {
                        time datetime=(t.to_rfc3339()) {
                            (t.with_timezone(&sc.timezone).format("%a %Y-%m-%d %H:%M %Z (UTC%:z)"))
                        }
                    }
                }
            }
        }
    }
}

/// The form (with its errors) and the plan: what Plan swaps in place.
fn form_section(wf: &Workflow, viewer: &Viewer, values: &FormValues, outcome: &Outcome) -> Markup {
    let base = format!("/workflows/{}", wf.name);
    let error_of = |name: &str| {
        outcome
            .errors
            .iter()
            .filter(|e| e.name == name)
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let unknown: Vec<&InputError> = outcome
        .errors
        .iter()
        .filter(|e| !wf.inputs.contains_key(&e.name))
        .collect();
    html! {
        div #run-form-wrap {
            form #run-form method="post" action={ (base) "/run" } novalidate {
                (page::csrf(viewer))
                @if wf.inputs.is_empty() { p.muted { "This workflow takes no inputs." } }
                @for (name, spec) in &wf.inputs {
                    @let error = error_of(name);
                    (field(name, spec, values.get(name), (!error.is_empty()).then_some(error.as_str())))
                }
                @for e in unknown { p.error role="alert" { "input `" (e.name) "`: " (e.message) } }
                @if !outcome.errors.is_empty() {
                    p.error role="alert" #form-errors { "Fix the inputs marked above: nothing was started." }
                }
                div.buttons {
                    @if viewer.may_run() {
                        button type="submit" formaction={ (base) "/plan" }
                            hx-post={ (base) "/plan" } hx-target="#run-form-wrap" hx-swap="outerHTML"
                            hx-disabled-elt="this" { "Plan" }
                        button.primary type="submit" formaction={ (base) "/run" }
                            hx-post={ (base) "/run" } hx-target="#run-form-wrap" hx-swap="outerHTML"
                            hx-disabled-elt="this" { "Run" }
                    } @else {
                        p.muted { "Your token is read-only: it can look, not plan or run." }
                    }
                    span.htmx-indicator.muted { "asking the plugins…" }
                }
            }
            @if let Some(plan) = &outcome.plan {
                section #plan aria-labelledby="plan-h" {
                    h3 #plan-h { "Plan" }
                    @match plan {
                        Ok(report) => (plan_report(report)),
                        Err(e) => p.error role="alert" { (e) },
                    }
                }
            }
        }
    }
}

/// One input as a labelled control, with its description as help and its error beside it.
fn field(name: &str, spec: &InputSpec, raw: &[String], error: Option<&str>) -> Markup {
    let id = format!("in-{name}");
    let key = format!("in.{name}");
    let help = spec.description.as_ref().map(|_| format!("{id}-help"));
    let err = error.map(|_| format!("{id}-error"));
    let described: Option<String> = match (&help, &err) {
        (None, None) => None,
        (a, b) => Some(
            [a.as_deref(), b.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
        ),
    };
    let value = raw.last().map(String::as_str).unwrap_or("");
    let invalid = error.map(|_| "true");
    let required = spec.required;
    html! {
        div.field.invalid[error.is_some()] {
            @match (spec.kind, &spec.options) {
                (InputKind::Boolean, _) => {
                    div.check {
                        input type="checkbox" id=(id) name=(key) value="true" checked[value == "true"]
                            aria-describedby=[described.as_deref()] aria-invalid=[invalid];
                        label for=(id) { (name) }
                    }
                }
                (InputKind::Array, _) => {
                    fieldset.rows aria-describedby=[described.as_deref()] {
                        legend { (name) @if required { " (required)" } }
                        div.row-list data-name=(key) {
                            @for (i, v) in raw.iter().chain(std::iter::once(&String::new())).enumerate() {
                                div.row {
                                    input type="text" name=(key) value=(v) aria-label={ (name) ", item " (i + 1) };
                                    button.link.remove type="button" aria-label={ "Remove item " (i + 1) " of " (name) } { "Remove" }
                                }
                            }
                        }
                        button.link.add type="button" data-add=(key) { "Add item" }
                    }
                }
                (_, Some(options)) => {
                    label for=(id) { (name) @if required { " (required)" } }
                    select id=(id) name=(key) aria-describedby=[described.as_deref()] aria-invalid=[invalid] {
                        @for o in options {
                            @let v = o.to_string();
                            option value=(v) selected[v == value] { (text_of(o)) }
                        }
                    }
                }
                (InputKind::Number, None) => {
                    label for=(id) { (name) @if required { " (required)" } }
                    input type="number" step="any" id=(id) name=(key) value=(value) required[required]
                        aria-describedby=[described.as_deref()] aria-invalid=[invalid];
                }
                _ => {
                    label for=(id) { (name) @if required { " (required)" } }
                    input type="text" id=(id) name=(key) value=(value) required[required]
                        pattern=[spec.regex.as_ref().map(|r| html_pattern(r.as_str()))]
                        aria-describedby=[described.as_deref()] aria-invalid=[invalid];
                }
            }
            @if let (Some(h), Some(d)) = (&help, &spec.description) { p.help id=(h) { (d) } }
            @if let (Some(e), Some(msg)) = (&err, error) { p.error id=(e) role="alert" { (msg) } }
        }
    }
}

/// A regex as an HTML `pattern` (which is anchored by the browser): the anchors go.
fn html_pattern(re: &str) -> String {
    let re = re.strip_prefix('^').unwrap_or(re);
    let re = re.strip_suffix('$').unwrap_or(re);
    re.to_string()
}

/// A plan, step by step: `+` create, `~` change, `-` delete.
fn plan_report(report: &PlanReport) -> Markup {
    let changes: usize = report
        .steps
        .iter()
        .map(|s| match &s.plan {
            StepPlan::Changes(c) => c.len(),
            _ => 0,
        })
        .sum();
    html! {
        p.lead #plan-summary {
            @if changes == 0 { "No changes: a run would find everything as it should be." }
            @else { (changes) " change" @if changes > 1 { "s" } " would be made." }
        }
        ol.plan {
            @for s in &report.steps {
                li {
                    span.step { (s.id) } " " span.muted { (s.plugin) } " "
                    @match &s.plan {
                        StepPlan::Changes(c) if c.is_empty() => span.badge.st-succeeded { "no change" },
                        StepPlan::Changes(c) => {
                            ul {
                                @for ch in c {
                                    li class={ "change ch-" (ch.kind) } {
                                        span.sign aria-hidden="true" { (sign(ch.kind)) }
                                        " " (ch.kind) " " code { (ch.resource) }
                                        @if !ch.detail.is_empty() { span.muted { " · " (ch.detail) } }
                                    }
                                }
                            }
                        },
                        StepPlan::Skipped(why) => { span.badge.st-skipped { "skipped" } " " span.muted { (why) } },
                        StepPlan::Unknown(why) => { span.badge.st-pending { "unknown" } " " span.muted { (why) } },
                        StepPlan::Failed(why) => { span.badge.st-failed { "cannot plan" } " " span.error { (why) } },
                    }
                }
            }
        }
    }
}

fn sign(kind: &str) -> &'static str {
    match kind {
        "create" => "+",
        "delete" => "−",
        "update" | "replace" => "~",
        "run" => "▸",
        _ => "•",
    }
}

pub(super) async fn plan(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> Response {
    let (served, values) = match posted_form(&state, &viewer, &name, fields) {
        Ok(posted) => posted,
        Err(refused) => return *refused,
    };
    let outcome = match values.resolve(&served.workflow) {
        Err(errors) => Outcome { errors, plan: None },
        Ok(inputs) => Outcome {
            errors: vec![],
            plan: Some(plan_run(&state, &served, inputs).await),
        },
    };
    let status = if outcome.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    if headers.contains_key("hx-request") {
        // htmx swaps only 2xx answers by default: the errors come back as 200 here.
        let section = form_section(&served.workflow, &viewer, &values, &outcome);
        return Html(section.into_string()).into_response();
    }
    workflow_page(&state, &viewer, &served, &values, &outcome, status).await
}

/// A POSTed form of workflow `name`, checked (CSRF, scope): the workflow and the values.
fn posted_form(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
    fields: Vec<(String, String)>,
) -> Result<(Arc<Served>, FormValues), Box<Response>> {
    let fields = session::checked(viewer, fields, Needs::Run)?;
    let served = state
        .served(name)
        .map_err(|e| Box::new(page::from_api(Some(viewer), e)))?;
    Ok((served, FormValues::posted(&fields)))
}

/// Ask every step's plugin what a run with these inputs would change.
async fn plan_run(
    state: &AppState,
    served: &Served,
    inputs: serde_json::Map<String, Json>,
) -> Result<PlanReport, String> {
    let Ok(_slot) = state.plans.try_acquire() else {
        return Err(format!(
            "{} plans are being made already: try again in a moment",
            super::MAX_PLANS
        ));
    };
    let spec = RunSpec {
        workflow: served.workflow.clone(),
        inputs,
        trigger: Trigger::Web,
        process_env: state.process_env.clone(),
        secret_store: state.secret_store.clone(),
        control: RunControl::default(),
        resume: None,
    };
    let planned = crate::executor::plan(&state.runtime, spec, Arc::new(Silent));
    match tokio::time::timeout(PLAN_TIMEOUT, planned).await {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => Err(format!("cannot plan: {e}")),
        Err(_) => Err(format!(
            "the plan took longer than {}s: a service may be unreachable",
            PLAN_TIMEOUT.as_secs()
        )),
    }
}

pub(super) async fn run(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> Response {
    let (served, values) = match posted_form(&state, &viewer, &name, fields) {
        Ok(posted) => posted,
        Err(refused) => return *refused,
    };
    match values.resolve(&served.workflow) {
        Err(errors) => {
            let outcome = Outcome { errors, plan: None };
            if headers.contains_key("hx-request") {
                let section = form_section(&served.workflow, &viewer, &values, &outcome);
                return Html(section.into_string()).into_response();
            }
            workflow_page(
                &state,
                &viewer,
                &served,
                &values,
                &outcome,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Ok(inputs) => {
            let detail = viewer.detail();
            match state
                .queue_run(&served.workflow, inputs, Trigger::Web, Some(&detail), None)
                .await
            {
                // htmx follows `HX-Redirect` with a full page load.
                Ok(id) if headers.contains_key("hx-request") => {
                    ([("hx-redirect", format!("/runs/{id}"))], "").into_response()
                }
                Ok(id) => Redirect::to(&format!("/runs/{id}")).into_response(),
                Err(e) => page::from_api(Some(&viewer), e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FormValues, html_pattern};
    use serde_json::json;

    fn workflow() -> crate::workflow::Workflow {
        let text = r#"
name = "kinds"
[inputs.items]
type = "array"
[inputs.mode]
type = "string"
options = ["fast", "thorough"]
default = "fast"
[inputs.batch]
type = "number"
default = 500
[inputs.dry]
type = "boolean"
[inputs.note]
type = "string"
regex = "^[a-z]*$"
[steps.show]
plugin = "echo"
"#;
        crate::workflow::parse(std::path::Path::new("kinds.toml"), text).unwrap()
    }

    fn posted(pairs: &[(&str, &str)]) -> FormValues {
        let fields: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        FormValues::posted(&fields)
    }

    #[test]
    fn a_form_becomes_typed_inputs() {
        let wf = workflow();
        let values = posted(&[
            ("csrf", "x"),
            ("in.items", "a"),
            ("in.items", ""),
            ("in.items", "b"),
            ("in.mode", "\"thorough\""),
            ("in.batch", "25"),
            ("in.dry", "true"),
            ("in.note", "ok"),
        ])
        .resolve(&wf)
        .unwrap();
        assert_eq!(
            serde_json::Value::Object(values),
            json!({"items": ["a", "b"], "mode": "thorough", "batch": 25, "dry": true, "note": "ok"})
        );
        // Unchecked box, empty number: false and the default.
        let values = posted(&[("in.batch", ""), ("in.note", "x"), ("in.items", "a")])
            .resolve(&wf)
            .unwrap();
        assert_eq!(values["dry"], false);
        assert_eq!(values["batch"], 500);
        assert_eq!(values["mode"], "fast");
    }

    #[test]
    fn each_bad_field_is_named_with_the_apis_message() {
        let wf = workflow();
        let errors = posted(&[
            ("in.batch", "many"),
            ("in.mode", "\"turbo\""),
            ("in.note", "No!"),
        ])
        .resolve(&wf)
        .unwrap_err();
        let by = |name: &str| {
            errors
                .iter()
                .find(|e| e.name == name)
                .map(|e| e.message.clone())
                .unwrap_or_default()
        };
        assert_eq!(by("batch"), "expected a number, got `many`");
        assert!(
            by("mode").contains("is not one of the options"),
            "{errors:?}"
        );
        assert!(
            by("note").contains("does not match the regex"),
            "{errors:?}"
        );
        assert!(
            by("items").contains("required array input is missing"),
            "{errors:?}"
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
        // A required field left empty is missing, not an empty value.
        let errors = posted(&[("in.note", ""), ("in.items", "a")])
            .resolve(&wf)
            .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .message
                .contains("required string input is missing")
        );
    }

    #[test]
    fn a_regex_loses_its_anchors_as_a_pattern() {
        assert_eq!(html_pattern("^[a-z]+$"), "[a-z]+");
        assert_eq!(html_pattern("[a-z]+"), "[a-z]+");
    }
}
