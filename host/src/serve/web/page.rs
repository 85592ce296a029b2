//! The frame every page shares (header, navigation, assets) and the small pieces pages are
//! made of: status badges, times, durations, error pages.

use super::super::api::ApiError;
use super::assets;
use super::session::Viewer;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

/// Which navigation entry is the current page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    None,
    Runs,
    Workflows,
    Schedules,
    Workers,
    Plugins,
}

const NAV: &[(Nav, &str, &str)] = &[
    (Nav::Runs, "/", "Runs"),
    (Nav::Workflows, "/workflows", "Workflows"),
    (Nav::Schedules, "/schedules", "Schedules"),
    (Nav::Workers, "/workers", "Workers"),
    (Nav::Plugins, "/plugins", "Plugins"),
];

/// What frames a page.
pub(super) struct Shell<'a> {
    pub title: &'a str,
    pub nav: Nav,
    pub viewer: Option<&'a Viewer>,
}

/// A whole page.
pub(super) fn render(shell: Shell<'_>, body: Markup) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                // htmx must not add inline styles: the policy allows none.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
                title { (shell.title) " · orch" }
                link rel="icon" href=(assets::url("icon.svg")) type="image/svg+xml";
                link rel="stylesheet" href=(assets::url("style.css"));
                script src=(assets::url("htmx.min.js")) defer {}
                script src=(assets::url("app.js")) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" aria-label="orch home" {
                        img src=(assets::url("icon.svg")) alt="" width="22" height="22";
                        span { "orch" }
                    }
                    @if shell.nav != Nav::None {
                        nav aria-label="Main" {
                            @for (nav, href, label) in NAV {
                                a href=(href) aria-current=[(*nav == shell.nav).then_some("page")] { (label) }
                            }
                        }
                    }
                    @if let Some(viewer) = shell.viewer {
                        form.whoami method="post" action="/logout" {
                            (csrf(viewer))
                            span.muted title="the API token this session was opened with" {
                                (viewer.caller.name)
                                @if !viewer.may_run() { " (read-only)" }
                            }
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    };
    Html(page.into_string()).into_response()
}

/// The hidden CSRF field of a form.
pub(super) fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// A page that says what went wrong.
pub(super) fn error_page(viewer: Option<&Viewer>, status: StatusCode, message: &str) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = html! {
        section.problem role="alert" {
            h1 { (status.as_u16()) " " (title) }
            p { (message) }
            p { a href="/" { "Back to the runs" } }
        }
    };
    let mut response = render(
        Shell {
            title,
            nav: Nav::None,
            viewer,
        },
        body,
    );
    *response.status_mut() = status;
    response
}

/// An API error as a page; a server fault's detail goes to the log, never to the page.
pub(super) fn from_api(viewer: Option<&Viewer>, error: ApiError) -> Response {
    if let Some(detail) = error.detail() {
        tracing::error!(status = error.status().as_u16(), "web page: {detail}");
    }
    error_page(viewer, error.status(), error.message())
}

/// A status as a coloured badge.
pub(super) fn badge(status: &str) -> Markup {
    html! { span class={ "badge st-" (status) } { (status.replace('_', " ")) } }
}

/// A time (ms since the epoch) in UTC; the script shows it in the browser's zone.
pub(super) fn time(ms: i64) -> Markup {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => html! {
            time datetime=(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)) {
                (t.format("%Y-%m-%d %H:%M:%S UTC"))
            }
        },
        None => html! { "-" },
    }
}

/// A duration in ms, short: `840 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub(super) fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(840), "840 ms");
        assert_eq!(duration(12_340), "12.3 s");
        assert_eq!(duration(245_000), "4 min 05 s");
        assert_eq!(duration(7_380_000), "2 h 03 min");
        assert_eq!(duration(-5), "0 ms");
    }
}
