//! The server-wide pages: every schedule with its next fires and recent ticks (what `orch
//! schedule explain` prints), the workers sharing the store, and the plugins the served
//! workflows use with what their imports reach and the grants steps give them.

use super::super::AppState;
use super::page::{self, Nav, Shell, badge, time};
use super::session::Viewer;
use super::workflows::next_fires;
use crate::capability::reach::{self, Access};
use crate::runtime::builtin;
use axum::extract::State;
use axum::response::Response;
use maud::html;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Ticks shown per workflow.
const TICKS: i64 = 10;
/// Workers stopped or lost longer ago than this are not listed.
const WORKERS_SINCE_MS: i64 = 24 * 3600 * 1000;

pub(super) async fn schedules(State(state): State<Arc<AppState>>, viewer: Viewer) -> Response {
    let mut served = state.registry.all();
    served.retain(|s| !s.workflow.schedules.is_empty());
    served.sort_by(|a, b| a.workflow.name.cmp(&b.workflow.name));
    let mut ticks = Vec::new();
    for s in &served {
        match state.store.ticks(&s.workflow.name, TICKS).await {
            Ok(t) => ticks.push(t),
            Err(e) => return page::from_api(Some(&viewer), e.into()),
        }
    }
    let now = chrono::Utc::now();
    let body = html! {
        h1 { "Schedules" }
        @if served.is_empty() { p.empty { "No served workflow has a " code { "[[schedule]]" } "." } }
        @for (s, ticks) in served.iter().zip(&ticks) {
            @let wf = &s.workflow;
            section.card aria-labelledby={ "s-" (wf.name) } {
                h2 id={ "s-" (wf.name) } { a href={ "/workflows/" (wf.name) } { (wf.name) } }
                @for (i, sc) in wf.schedules.iter().enumerate() {
                    div.schedule data-schedule=(i) {
                        p { "#" (i) " " code { (sc.cron) } " in " (sc.timezone.name())
                            span.muted { " · overlap " (sc.overlap) ", catch-up " (sc.catchup) } }
                        (next_fires(sc, now))
                    }
                }
                h3 { "Recent ticks" }
                @if ticks.is_empty() { p.muted { "No tick recorded yet." } }
                @else {
                    div.scroll {
                        table {
                            thead { tr { th { "Due" } th { "#" } th { "Outcome" } th { "Late" } th { "Run" } th { "Reason" } } }
                            tbody {
                                @for t in ticks {
                                    tr {
                                        td { (time(t.fire_at)) }
                                        td { (t.schedule) }
                                        td { (badge(t.outcome.as_str())) }
                                        td { (page::duration(t.recorded_at - t.fire_at)) }
                                        td { @if let Some(r) = &t.run_id { a.mono href={ "/runs/" (r) } { (&r[..12.min(r.len())]) } } }
                                        td { (t.reason) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page::render(
        Shell {
            title: "Schedules",
            nav: Nav::Schedules,
            viewer: Some(&viewer),
        },
        body,
    )
}

pub(super) async fn workers(State(state): State<Arc<AppState>>, viewer: Viewer) -> Response {
    let now = state.store.now();
    let workers = match state.store.workers(now - WORKERS_SINCE_MS).await {
        Ok(w) => w,
        Err(e) => return page::from_api(Some(&viewer), e.into()),
    };
    let body = html! {
        h1 { "Workers" }
        p.muted { "Every " code { "orch serve" } " sharing this store, heard from in the last day." }
        div.scroll {
            table {
                thead { tr { th { "Worker" } th { "Labels" } th { "State" } th { "Heartbeat" } th { "Steps" } th { "Version" } th { "Started" } } }
                tbody {
                    @for w in &workers {
                        tr {
                            td.mono { (w.id) }
                            td {
                                @for l in &w.labels { span.label { (l) } " " }
                                @if !w.untagged { span.muted { "tagged only" } }
                            }
                            td { (badge(w.state(now))) }
                            td { (page::duration(now - w.heartbeat_at)) " ago" }
                            td { (w.running) }
                            td { (w.version) }
                            td { (time(w.started_at)) }
                        }
                    }
                }
            }
        }
    };
    page::render(
        Shell {
            title: "Workers",
            nav: Nav::Workers,
            viewer: Some(&viewer),
        },
        body,
    )
}

/// One plugin component and the steps that run it.
struct Used {
    name: String,
    version: String,
    description: String,
    source: String,
    digest: String,
    imports: Vec<String>,
    /// `(workflow, step, grants)`.
    steps: Vec<(String, String, Vec<String>)>,
}

pub(super) async fn plugins(State(state): State<Arc<AppState>>, viewer: Viewer) -> Response {
    let mut by_digest: BTreeMap<String, Used> = BTreeMap::new();
    for served in state.registry.all() {
        let wf = &served.workflow;
        for step in wf.steps.values() {
            let Some(p) = wf.plugin(&step.id) else {
                continue;
            };
            let used = by_digest
                .entry(p.origin.component.clone())
                .or_insert_with(|| Used {
                    name: p.info.name.clone(),
                    version: p.info.version.clone(),
                    description: p.info.description.clone(),
                    source: step.plugin.to_string(),
                    digest: p.origin.component.clone(),
                    imports: p.plugin.imports.clone(),
                    steps: vec![],
                });
            used.steps.push((
                wf.name.clone(),
                step.id.clone(),
                step.allow.iter().map(ToString::to_string).collect(),
            ));
        }
    }
    let mut used: Vec<Used> = by_digest.into_values().collect();
    used.sort_by(|a, b| a.name.cmp(&b.name));
    let unused: Vec<&str> = builtin::names()
        .into_iter()
        .filter(|n| !used.iter().any(|u| u.source == *n))
        .collect();
    let body = html! {
        h1 { "Plugins" }
        p.muted { "What each plugin's imports let it reach, and what the steps that run it grant. A plugin reaches nothing a step does not grant." }
        @for u in &used {
            @let reached = reach::classify(&u.imports);
            section.card {
                h2 { (u.name) " " span.muted { (u.version) } }
                p { (u.description) }
                dl.facts {
                    dt { "Source" } dd.mono { (u.source) }
                    dt { "Digest" } dd.mono.wrap { (u.digest) }
                    dt { "Can be granted" } dd { (reach::capabilities(&reached, false).join(", ")) }
                    dt { "Refused" } dd { (reach::capabilities(&reached, true).join(", ")) }
                }
                details {
                    summary { "Imports (" (reached.len()) ")" }
                    div.scroll {
                        table {
                            thead { tr { th { "Import" } th { "Capability" } th { "Access" } } }
                            tbody {
                                @for r in &reached {
                                    tr {
                                        td.mono { (r.import) }
                                        td { (r.capability) }
                                        td { @match r.access {
                                            Access::Always(d) => { "always: " (d) },
                                            Access::Granted(d) => { "granted by " (d) },
                                            Access::Denied(d) => { "denied: " (d) },
                                        } }
                                    }
                                }
                            }
                        }
                    }
                }
                h3 { "Steps running it" }
                ul {
                    @for (wf, step, grants) in &u.steps {
                        li {
                            a href={ "/workflows/" (wf) } { (wf) } "." code { (step) }
                            @if grants.is_empty() { span.muted { " · no grants" } }
                            @else { " · allow " @for g in grants { code { (g) } " " } }
                        }
                    }
                }
            }
        }
        @if !unused.is_empty() {
            p.muted { "Built-in, not used by a served workflow: " (unused.join(", ")) }
        }
    };
    page::render(
        Shell {
            title: "Plugins",
            nav: Nav::Plugins,
            viewer: Some(&viewer),
        },
        body,
    )
}
