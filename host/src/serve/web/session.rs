//! Signing in to the page: an API token is exchanged for a random session id, held in an
//! HttpOnly, SameSite=Strict cookie (the store keeps its hash, and the session ends with the
//! token). Every POST carries the session's CSRF token; the sign-in form, which has no session
//! yet, carries a double-submit token of its own.

use super::super::AppState;
use super::super::auth::{bearer_free_token, hash_token};
use super::page::{self, Nav, Shell};
use crate::store::{Caller, Scope};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use maud::html;
use serde::Deserialize;
use std::sync::Arc;
use subtle::ConstantTimeEq;

const SESSION_COOKIE: &str = "orch_session";
const LOGIN_COOKIE: &str = "orch_login";
/// How long a session lasts without signing in again.
const SESSION_TTL_SECS: i64 = 12 * 3600;

/// A signed-in browser.
pub(super) struct Viewer {
    pub caller: Caller,
    /// The CSRF token its forms carry.
    pub csrf: String,
}

impl Viewer {
    /// May it trigger and cancel runs (not a read-only token)?
    pub(super) fn may_run(&self) -> bool {
        self.caller.scope == Scope::Run
    }

    /// The `trigger_detail` of what it starts.
    pub(super) fn detail(&self) -> String {
        format!("web page, token {}", self.caller.name)
    }
}

impl FromRequestParts<Arc<AppState>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Response> {
        if let Some(id) = cookie(&parts.headers, SESSION_COOKIE) {
            match state.store.session(&hash_token(&id)).await {
                Ok(Some(session)) => {
                    return Ok(Viewer {
                        caller: session.caller,
                        csrf: session.csrf,
                    });
                }
                Ok(None) => {}
                Err(e) => return Err(page::from_api(None, e.into())),
            }
        }
        Err(sign_in_first(parts))
    }
}

/// A page sends the browser to sign in (and back); a script's request gets 401.
fn sign_in_first(parts: &Parts) -> Response {
    let scripted = parts.headers.contains_key("hx-request")
        || parts.uri.path().ends_with("/state")
        || parts.uri.path().ends_with("/stream");
    if scripted || parts.method != Method::GET {
        return (
            StatusCode::UNAUTHORIZED,
            "not signed in (or the session ended): reload the page to sign in",
        )
            .into_response();
    }
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    Redirect::to(&format!("/login?next={next}")).into_response()
}

/// What a POST needs beyond the session.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Needs {
    /// Only a signed-in session (signing out).
    Session,
    /// A token that may start and cancel runs.
    Run,
}

/// Check a POSTed form: its CSRF token (constant time), and whether the viewer may do what it
/// asks; its fields, or the page that refuses it.
pub(super) fn checked(
    viewer: &Viewer,
    fields: Vec<(String, String)>,
    needs: Needs,
) -> Result<Vec<(String, String)>, Box<Response>> {
    let sent = field(&fields, "csrf").unwrap_or_default();
    if !bool::from(sent.as_bytes().ct_eq(viewer.csrf.as_bytes())) {
        return Err(Box::new(page::error_page(
            Some(viewer),
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or stale: reload the page and submit again",
        )));
    }
    if needs == Needs::Run && !viewer.may_run() {
        return Err(Box::new(page::error_page(
            Some(viewer),
            StatusCode::FORBIDDEN,
            &format!(
                "token `{}` is read-only: it can see runs but not start or cancel them (sign in with a token made without --read-only)",
                viewer.caller.name
            ),
        )));
    }
    Ok(fields)
}

/// The first value of a form field.
pub(super) fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    next: Option<String>,
}

pub(super) async fn login_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if let Some(id) = cookie(&headers, SESSION_COOKIE)
        && let Ok(Some(_)) = state.store.session(&hash_token(&id)).await
    {
        return Redirect::to(next).into_response();
    }
    login_form(&headers, next, None, StatusCode::OK)
}

/// The sign-in form, with a fresh double-submit token in its cookie and hidden field.
fn login_form(
    headers: &HeaderMap,
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let nonce = random_hex();
    let body = html! {
        section.signin {
            h1 { "Sign in" }
            p.muted { "Paste an API token. Create one on the server with "
                code { "orch token create NAME" } " (add " code { "--read-only" }
                " for a token that can look but not run)." }
            form method="post" action="/login" {
                input type="hidden" name="login_csrf" value=(nonce);
                input type="hidden" name="next" value=(next);
                div.field {
                    label for="token" { "API token" }
                    input #token type="password" name="token" required autocomplete="off"
                        autofocus aria-describedby=[error.map(|_| "token-error")]
                        aria-invalid=[error.map(|_| "true")];
                    @if let Some(error) = error {
                        p.error #token-error role="alert" { (error) }
                    }
                }
                button.primary type="submit" { "Sign in" }
            }
        }
    };
    let mut response = page::render(
        Shell {
            title: "Sign in",
            nav: Nav::None,
            viewer: None,
        },
        body,
    );
    *response.status_mut() = status;
    let cookie = Cookie::build((LOGIN_COOKIE, nonce))
        .path("/login")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(https(headers))
        .max_age(cookie::time::Duration::minutes(30));
    set_cookie(&mut response, cookie.build());
    response
}

pub(super) async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> Response {
    let next = safe_next(field(&fields, "next")).to_string();
    let sent = field(&fields, "login_csrf").unwrap_or_default();
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
        return login_form(
            &headers,
            &next,
            Some("the sign-in form expired: sign in again"),
            StatusCode::FORBIDDEN,
        );
    }
    // A new sign-in replaces the browser's previous session.
    if let Some(old) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = state.store.close_session(&hash_token(&old)).await
    {
        return page::from_api(None, e.into());
    }
    let token = bearer_free_token(field(&fields, "token").unwrap_or_default());
    let id = random_hex();
    let csrf = random_hex();
    let opened = state
        .store
        .open_session(
            &hash_token(&id),
            &hash_token(token),
            &csrf,
            SESSION_TTL_SECS * 1000,
        )
        .await;
    match opened {
        Ok(Some(caller)) => {
            tracing::info!(token = %caller.name, "web page: signed in");
            let mut response = Redirect::to(&next).into_response();
            let session = Cookie::build((SESSION_COOKIE, id))
                .path("/")
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(https(&headers))
                .max_age(cookie::time::Duration::seconds(SESSION_TTL_SECS));
            set_cookie(&mut response, session.build());
            response
        }
        Ok(None) => login_form(
            &headers,
            &next,
            Some("unknown or revoked token: check it, or create one with `orch token create NAME`"),
            StatusCode::UNAUTHORIZED,
        ),
        Err(e) => page::from_api(None, e.into()),
    }
}

pub(super) async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    viewer: Viewer,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> Response {
    if let Err(refused) = checked(&viewer, fields, Needs::Session) {
        return *refused;
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = state.store.close_session(&hash_token(&id)).await
    {
        return page::from_api(Some(&viewer), e.into());
    }
    let mut response = Redirect::to("/login").into_response();
    let gone = Cookie::build((SESSION_COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::ZERO);
    set_cookie(&mut response, gone.build());
    response
}

/// Where to go after signing in: a path of this site only (not `//evil.example`).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        // Browsers drop tabs and newlines from URLs: `/\t/evil` would become `//evil`.
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            n
        }
        _ => "/",
    }
}

/// Behind a TLS-terminating proxy the cookies are `Secure`.
fn https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

fn set_cookie(response: &mut Response, cookie: Cookie<'_>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_paths_of_this_site_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/runs/abc?step=x")), "/runs/abc?step=x");
        for bad in [
            "//evil.example/x",
            "https://evil.example",
            "/\\evil.example",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
