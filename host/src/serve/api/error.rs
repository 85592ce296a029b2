//! The API's one error type: a 4xx says what to fix; a 5xx answers `{"error": "internal
//! error"}` and its detail goes to the server log (`tracing::error!`), never to the client.

use crate::store::StoreError;
use crate::workflow::inputs::InputError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use std::fmt::Display;

/// The `error` of every 5xx answer.
pub(super) const INTERNAL_ERROR: &str = "internal error";

/// An error answered as `{"error": ..., ...}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: Json,
    /// What went wrong on the server (5xx only): logged when answered, never sent.
    detail: Option<String>,
}

/// What a handler answers.
pub(super) type ApiResult<T = Response> = Result<T, ApiError>;

impl ApiError {
    /// A client error (4xx) whose message says what was wrong and how to fix it.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        debug_assert!(
            status.is_client_error(),
            "{status} is not a client error: use `ApiError::internal` or `ApiError::server`"
        );
        Self {
            status,
            body: json!({"error": message.into()}),
            detail: None,
        }
    }

    /// 422, with what is wrong with each input.
    pub(crate) fn inputs(errors: Vec<InputError>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"error": "invalid inputs", "inputs": errors}),
            detail: None,
        }
    }

    /// A fault of the server (500): the client reads "internal error", the log reads `detail`.
    pub(crate) fn internal(detail: impl Display) -> Self {
        Self::server(StatusCode::INTERNAL_SERVER_ERROR, detail, None)
    }

    /// A 5xx answered "internal error" with an optional `hint`: a `'static` text, so it says
    /// the same to every request and can carry nothing of the request, the run or the detail.
    pub(crate) fn server(
        status: StatusCode,
        detail: impl Display,
        hint: Option<&'static str>,
    ) -> Self {
        debug_assert!(status.is_server_error(), "{status} is not a server error");
        let mut body = json!({"error": INTERNAL_ERROR});
        if let Some(hint) = hint {
            body["hint"] = hint.into();
        }
        Self {
            status,
            body,
            detail: Some(detail.to_string()),
        }
    }
}

impl ApiError {
    /// Its status code.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// What the client is told (`internal error` for a 5xx).
    pub(crate) fn message(&self) -> &str {
        self.body["error"].as_str().unwrap_or(INTERNAL_ERROR)
    }

    /// What went wrong on the server, for its log (5xx only).
    pub(crate) fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

/// The detail of a 5xx answer, carried from the handler to the request's log line; never sent.
#[derive(Clone)]
pub(crate) struct InternalDetail(pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(detail) = self.detail {
            // Logged by `log_internal_errors`, which knows the request.
            response.extensions_mut().insert(InternalDetail(detail));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            // These repeat what the client sent, nothing of the store.
            StoreError::NoSuchRun(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::Ambiguous(_) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            // Its text is the driver's (which constraint, which table).
            StoreError::Duplicate(_) => {
                tracing::warn!("store: {e}");
                ApiError::new(StatusCode::CONFLICT, "already recorded")
            }
            StoreError::Open { .. } | StoreError::Migrate(_) | StoreError::Query(_) => {
                ApiError::internal(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn answer(e: ApiError) -> (StatusCode, Json) {
        let response = e.into_response();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn store_faults_answer_internal_error_without_the_driver_text() {
        for e in [
            StoreError::Query("no such table: runs".into()),
            StoreError::Migrate("no such table: _sqlx_migrations".into()),
            StoreError::Open {
                url: "postgres://orch:***@db/orch".into(),
                reason: "no such table: x".into(),
            },
        ] {
            let (status, body) = answer(e.into()).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(body, json!({"error": "internal error"}));
        }
        let (status, body) =
            answer(StoreError::Duplicate("UNIQUE constraint failed: deliveries.id".into()).into())
                .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(!body.to_string().contains("UNIQUE"), "{body}");
    }

    #[tokio::test]
    async fn a_client_error_explains_itself_and_a_server_hint_is_static() {
        let (status, body) = answer(StoreError::NoSuchRun("0193".into()).into()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "no run matches `0193`");
        let (status, body) = answer(ApiError::server(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            Some("try again later"),
        ))
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            json!({"error": "internal error", "hint": "try again later"})
        );
    }
}
