//! The web page: HTML rendered on the server (maud) from the same state as the API, enhanced
//! by the vendored htmx and one small script of ours; every page also works as plain links and
//! forms. A browser signs in with an API token and holds a session cookie.

mod assets;
mod dag;
mod overview;
mod page;
mod runs;
mod session;
mod workflows;

use super::AppState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use std::sync::Arc;
use tower_http::compression::CompressionLayer;

pub(crate) use dag::LayoutCache;

/// Plans run at once from the page; more are asked to wait (each instantiates every plugin
/// of a workflow and may reach its services).
pub(crate) const MAX_PLANS: usize = 2;

/// The page's routes; the API keeps `/api/v1`, `/healthz` and `/metrics`. Forms above
/// `body_limit` bytes get 413, as API bodies do.
pub(crate) fn router(state: Arc<AppState>, body_limit: usize) -> Router {
    Router::new()
        .route("/", get(runs::list))
        .route("/runs/{id}", get(runs::show))
        .route("/runs/{id}/state", get(runs::state))
        .route("/runs/{id}/log", get(runs::older_lines))
        .route("/runs/{id}/log/stream", get(runs::stream))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/rerun", post(runs::rerun))
        .route("/workflows", get(workflows::list))
        .route("/workflows/{name}", get(workflows::show))
        .route("/workflows/{name}/plan", post(workflows::plan))
        .route("/workflows/{name}/run", post(workflows::run))
        .route("/schedules", get(overview::schedules))
        .route("/workers", get(overview::workers))
        .route("/plugins", get(overview::plugins))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/assets/{file}", get(assets::serve))
        // A 1000-step run page is ~700 KB of HTML; gzip sends a tenth (event streams are left
        // alone by the default predicate).
        .layer(CompressionLayer::new().gzip(true))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(super::api::log_internal_errors))
        .with_state(state)
}

/// What every answer of the page carries: no script or style from elsewhere, no framing, no
/// sniffing, no referrer beyond this origin.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // Pages hold run data and the session's CSRF token: no cache keeps them (assets say
    // otherwise themselves).
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
