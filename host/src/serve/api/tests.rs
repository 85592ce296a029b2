//! The API in process: the real router over a real SQLite store, registry and runtime, called
//! with `tower::ServiceExt::oneshot`, without a socket.

use super::super::registry::Scan;
use super::super::{AppState, ServeConfig, auth};
use super::{Access, ROUTES, router};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::{NewRun, RunStatus, Scope, Store, Trigger, new_run_id};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value as Json, json};
use sqlx::Connection;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tower::ServiceExt;

/// One engine for every test: each compiles the `echo` plugin once, not once per test.
static RUNTIME: LazyLock<Arc<Runtime>> = LazyLock::new(|| {
    Arc::new(Runtime::new(RuntimeConfig::default()).expect("the wasm engine starts"))
});

const GREET: &str = r#"
name = "greet"
[inputs.name]
type = "string"
required = true
[inputs.count]
type = "number"
default = 1
[steps.hello]
plugin = "echo"
with = { message = "hello ${{ inputs.name }}" }
"#;

const HOOK: &str = r#"
name = "hook"
[webhook]
secret = "HOOK_SECRET"
[steps.show]
plugin = "echo"
with = { message = "delivered" }
"#;

/// Bodies above this get 413.
const BODY_LIMIT: usize = 4096;

/// A server's state and router over a temp dir: its workflows, its SQLite store, one token.
struct App {
    dir: tempfile::TempDir,
    state: Arc<AppState>,
    router: Router,
    /// A live token named `ci`.
    token: String,
}

impl App {
    async fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let workflows = dir.path().join("workflows");
        std::fs::create_dir(&workflows).unwrap();
        for (name, text) in files {
            std::fs::write(workflows.join(name), text).unwrap();
        }
        let store = Store::open(&db_url(dir.path())).await.unwrap();
        let config = ServeConfig {
            workflows: workflows.clone(),
            bind: ([127, 0, 0, 1], 0).into(),
            grace: Duration::from_secs(1),
            worker: crate::serve::WorkerConfig {
                max_runs: 2,
                max_steps: 2,
                ..Default::default()
            },
            reload_every: Duration::from_secs(3600),
            body_limit: BODY_LIMIT,
            sources: Default::default(),
        };
        let state = AppState::new(&config, store, RUNTIME.clone(), None, HashMap::new());
        let scan: Scan = state
            .registry
            .scan(&workflows, &RUNTIME, &Default::default())
            .await
            .unwrap();
        assert!(scan.rejected.is_empty(), "{:?}", scan.rejected);
        let (token, hash) = auth::new_token();
        state
            .store
            .insert_token("t-ci", "ci", &hash, Scope::Run)
            .await
            .unwrap();
        Self {
            router: router(state.clone(), config.body_limit),
            dir,
            state,
            token,
        }
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(request.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// A call with the live token.
    async fn authed(&self, method: &str, path: &str, body: Json) -> Answer {
        self.call(method, path, Some(&self.token), &body.to_string())
            .await
    }

    /// A recorded run of `greet` that ended with `status`; its id.
    async fn ended_run(&self, status: RunStatus) -> String {
        let id = new_run_id();
        let store = &self.state.store;
        store
            .create_run(NewRun {
                id: &id,
                workflow: "greet",
                workflow_path: "greet.toml",
                inputs: &json!({"name": "x"}),
                trigger: Trigger::Http,
                trigger_detail: None,
                status: RunStatus::Queued,
                wait_group: false,
            })
            .await
            .unwrap();
        store.finish_run(&id, status, None).await.unwrap();
        id
    }

    async fn run_count(&self) -> usize {
        self.state.store.list_runs(100).await.unwrap().len()
    }

    /// Run `sql` on the store from a connection of its own, as an operator (or a bug) would.
    async fn sql(&self, sql: &'static str) {
        let mut conn = sqlx::SqliteConnection::connect(&db_url(self.dir.path()))
            .await
            .unwrap();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
}

fn db_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("orch.db").display())
}

/// What the router answered.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Json {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// What `tracing` logs on this thread while the guard lives (`#[tokio::test]` runs the test
/// and everything it awaits on one thread). One global subscriber writes each event to the
/// buffer of the thread it happens on: thread-local subscribers (`set_default`) lose events
/// when another test thread met a callsite first and its "never" interest got cached.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURING: std::cell::RefCell<Option<Log>> = const { std::cell::RefCell::new(None) };
}

/// Stops capturing this thread's events when dropped.
struct Capturing;

impl Drop for Capturing {
    fn drop(&mut self) {
        CAPTURING.with(|c| c.borrow_mut().take());
    }
}

/// Writes to the capturing buffer of the current thread, if any.
struct ThisThread;

impl std::io::Write for ThisThread {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURING.with(|c| {
            if let Some(log) = &*c.borrow() {
                log.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn capture(&self) -> Capturing {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(|| ThisThread)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other test sets a global subscriber");
        });
        CAPTURING.with(|c| *c.borrow_mut() = Some(self.clone()));
        Capturing
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

const TRIGGER: &str = "/api/v1/workflows/greet/runs";

#[tokio::test]
async fn a_trigger_with_a_live_token_records_a_queued_run_and_answers_202_with_its_url() {
    let app = App::new(&[("greet.toml", GREET)]).await;
    let ok = app
        .authed(
            "POST",
            TRIGGER,
            json!({"inputs": {"name": "ann", "count": 2}}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
    let id = ok.json()["id"].as_str().unwrap().to_string();
    let url = format!("/api/v1/runs/{id}");
    assert_eq!(ok.headers[header::LOCATION], url.as_str());
    assert_eq!(ok.json()["url"], url.as_str());
    let run = app.state.store.run(&id).await.unwrap().unwrap();
    assert_eq!(run.trigger, Trigger::Http);
    assert_eq!(run.trigger_detail.as_deref(), Some("token ci"));
    assert_eq!(run.inputs, json!({"name": "ann", "count": 2}));
}

#[tokio::test]
async fn requests_without_a_live_token_get_401_with_www_authenticate() {
    let app = App::new(&[("greet.toml", GREET)]).await;
    let (old, hash) = auth::new_token();
    app.state
        .store
        .insert_token("t-old", "old", &hash, Scope::Run)
        .await
        .unwrap();
    assert_eq!(app.state.store.revoke_token("old").await.unwrap(), 1);
    let body = json!({"inputs": {"name": "x"}}).to_string();
    for (token, says) in [
        (None, "missing bearer token"),
        (Some("orch_not-a-token"), "unknown or revoked token"),
        (Some(old.as_str()), "unknown or revoked token"),
    ] {
        let refused = app.call("POST", TRIGGER, token, &body).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(refused.headers[header::WWW_AUTHENTICATE], "Bearer");
        let error = refused.json()["error"].as_str().unwrap().to_string();
        assert!(error.starts_with(says), "{token:?}: {error}");
    }
    assert_eq!(app.run_count().await, 0);
}

#[tokio::test]
async fn a_read_only_token_sees_runs_but_cannot_trigger_or_cancel() {
    let app = App::new(&[("greet.toml", GREET)]).await;
    let (viewer, hash) = auth::new_token();
    app.state
        .store
        .insert_token("t-view", "viewer", &hash, Scope::Read)
        .await
        .unwrap();
    let body = json!({"inputs": {"name": "x"}}).to_string();
    let refused = app.call("POST", TRIGGER, Some(&viewer), &body).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let error = refused.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("`viewer` is read-only"), "{error}");
    assert_eq!(app.run_count().await, 0);
    let listed = app.call("GET", "/api/v1/runs", Some(&viewer), "").await;
    assert_eq!(listed.status, StatusCode::OK);
    let cancel = app
        .call("POST", "/api/v1/runs/nope/cancel", Some(&viewer), "")
        .await;
    assert_eq!(cancel.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_recorded_run_is_run_again_with_its_inputs() {
    let app = App::new(&[("greet.toml", GREET)]).await;
    let failed = app.ended_run(RunStatus::Failed).await;
    let again = app
        .authed(
            "POST",
            &format!("/api/v1/runs/{failed}/rerun"),
            json!({"from": "failed"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    let id = again.json()["id"].as_str().unwrap().to_string();
    let run = app.state.store.run(&id).await.unwrap().unwrap();
    assert_eq!(
        run.inputs,
        json!({"name": "x", "count": 1}),
        "the same inputs, checked"
    );
    assert_eq!(run.trigger, Trigger::Http);
    assert!(run.trigger_detail.unwrap().contains(&failed));
    // Only a failed run is re-run from its failed steps; an unknown `from` is refused.
    let ok = app.ended_run(RunStatus::Succeeded).await;
    let refused = app
        .authed(
            "POST",
            &format!("/api/v1/runs/{ok}/rerun"),
            json!({"from": "failed"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    let refused = app
        .authed(
            "POST",
            &format!("/api/v1/runs/{ok}/rerun"),
            json!({"from": "middle"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let whole = app
        .call(
            "POST",
            &format!("/api/v1/runs/{ok}/rerun"),
            Some(&app.token),
            "",
        )
        .await;
    assert_eq!(whole.status, StatusCode::ACCEPTED, "{}", whole.body);
    assert_eq!(app.run_count().await, 4);
}

#[tokio::test]
async fn a_trigger_missing_an_input_gets_422_naming_it_and_records_nothing() {
    let app = App::new(&[("greet.toml", GREET)]).await;
    let missing = app.authed("POST", TRIGGER, json!({})).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing.json()["error"], "invalid inputs");
    assert_eq!(missing.json()["inputs"][0]["name"], "name");
    // An empty body is no body: the same answer.
    let empty = app.call("POST", TRIGGER, Some(&app.token), "").await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.run_count().await, 0);
}

#[tokio::test]
async fn a_wrong_type_or_a_misspelt_arg_gets_422_with_did_you_mean() {
    let app = App::new(&[("greet.toml", GREET)]).await;
    let wrong = app
        .authed(
            "POST",
            TRIGGER,
            json!({"inputs": {"name": "a", "count": "many"}, "args": ["nmae=x"]}),
        )
        .await;
    assert_eq!(
        wrong.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        wrong.body
    );
    let problems = wrong.json()["inputs"].to_string();
    assert!(
        problems.contains("count") && problems.contains("did you mean `name`"),
        "{problems}"
    );
    let typed = app
        .authed(
            "POST",
            TRIGGER,
            json!({"inputs": {"name": "a", "count": "many"}}),
        )
        .await;
    assert_eq!(typed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(typed.json()["inputs"][0]["name"], "count", "{}", typed.body);
    let unknown_field = app.authed("POST", TRIGGER, json!({"input": {}})).await;
    assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);
    assert!(
        unknown_field.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body")
    );
    assert_eq!(app.run_count().await, 0);
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let app = App::new(&[("greet.toml", GREET)]).await;
    let big = json!({"inputs": {"name": "x".repeat(BODY_LIMIT + 1)}});
    assert_eq!(
        app.authed("POST", TRIGGER, big).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let small = json!({"inputs": {"name": "x".repeat(BODY_LIMIT / 2)}});
    assert_eq!(
        app.authed("POST", TRIGGER, small).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn an_unknown_workflow_gets_404_with_did_you_mean() {
    let app = App::new(&[("greet.toml", GREET)]).await;
    let unknown = app
        .authed("POST", "/api/v1/workflows/gret/runs", json!({}))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.json()["error"],
        "no workflow `gret` is served; did you mean `greet`?"
    );
    let far = app
        .authed("POST", "/api/v1/workflows/zzz/runs", json!({}))
        .await;
    assert_eq!(far.json()["error"], "no workflow `zzz` is served");
}

#[tokio::test]
async fn an_unknown_route_gets_404_and_a_wrong_method_405() {
    let app = App::new(&[]).await;
    let nowhere = app.authed("GET", "/api/v1/nowhere", json!({})).await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    for (method, path) in [
        ("DELETE", "/api/v1/runs"),
        ("GET", "/api/v1/workflows/greet/runs"),
        ("POST", "/healthz"),
    ] {
        let answer = app.call(method, path, Some(&app.token), "").await;
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_each_answers() {
    let app = App::new(&[("greet.toml", GREET)]).await;
    let doc = app
        .call("GET", "/api/v1/openapi.json", None, "")
        .await
        .json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            documented.push((method.clone(), path.clone()));
            let secured = op.get("security").is_some();
            let route = ROUTES
                .iter()
                .find(|r| r.path == path && r.method.as_str() == method)
                .unwrap_or_else(|| panic!("{method} {path} is documented but not routed"));
            assert_eq!(secured, route.access == Access::Token, "{method} {path}");
            let concrete = path.replace("{name}", "greet").replace("{id}", "nope");
            let verb = route.method.as_str().to_uppercase();
            let answer = app.call(&verb, &concrete, Some(&app.token), "").await;
            assert!(
                answer.status != StatusCode::METHOD_NOT_ALLOWED
                    && !(answer.status == StatusCode::NOT_FOUND && answer.body.is_empty()),
                "{method} {path}: {}",
                answer.status
            );
        }
    }
    let mut routed: Vec<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.as_str().to_string(), r.path.to_string()))
        .collect();
    routed.sort();
    documented.sort();
    assert_eq!(documented, routed);
}

#[tokio::test]
async fn cancelling_an_ended_run_gets_409_and_an_unknown_one_404() {
    let app = App::new(&[("greet.toml", GREET)]).await;
    let id = app.ended_run(RunStatus::Succeeded).await;
    let ended = app
        .authed("POST", &format!("/api/v1/runs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(ended.status, StatusCode::CONFLICT);
    assert_eq!(
        ended.json()["error"],
        format!("run {id} already ended: succeeded")
    );
    let unknown = app
        .authed("POST", "/api/v1/runs/nope/cancel", json!({}))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["error"], "no run matches `nope`");
}

#[tokio::test]
async fn a_store_failure_answers_500_internal_error_and_only_the_log_has_the_driver_text() {
    let app = App::new(&[("greet.toml", GREET)]).await;
    let log = Log::default();
    let _guard = log.capture();

    app.sql("DROP TABLE runs").await;
    let listed = app.authed("GET", "/api/v1/runs?limit=5", json!({})).await;
    assert_eq!(listed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(listed.json(), json!({"error": "internal error"}));
    let triggered = app
        .authed("POST", TRIGGER, json!({"inputs": {"name": "x"}}))
        .await;
    assert_eq!(triggered.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(triggered.json(), json!({"error": "internal error"}));

    // The token check fails the same way, before any handler.
    app.sql("DROP TABLE api_tokens").await;
    let checked = app.authed("GET", "/api/v1/workflows", json!({})).await;
    assert_eq!(checked.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(checked.json(), json!({"error": "internal error"}));
    assert!(checked.headers.get(header::WWW_AUTHENTICATE).is_none());

    let log = log.text();
    for (what, needle) in [
        ("the list", "path=/api/v1/runs "),
        ("the trigger", "path=/api/v1/workflows/greet/runs "),
        ("the token check", "path=/api/v1/workflows "),
        ("the driver text", "no such table"),
    ] {
        assert!(log.contains(needle), "{what}: `{needle}` not in\n{log}");
    }
    assert_eq!(log.matches("ERROR").count(), 3, "one line per 500:\n{log}");
}

#[tokio::test]
async fn a_webhook_whose_secret_is_not_set_answers_500_without_naming_it() {
    let app = App::new(&[("hook.toml", HOOK)]).await;
    let log = Log::default();
    let _guard = log.capture();
    let hook = app.call("POST", "/api/v1/webhooks/hook", None, "{}").await;
    assert_eq!(hook.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        hook.json(),
        json!({"error": "internal error", "hint": "the webhook's secret is not set on the server"})
    );
    assert!(log.text().contains("HOOK_SECRET"), "{}", log.text());
}

/// T1: a trigger cannot point a connection somewhere else through an input: 422, no run.
#[tokio::test]
async fn a_trigger_whose_input_would_redirect_a_connection_gets_422() {
    const PG: &str = r#"
name = "pg"
[inputs.db]
type = "string"
[connections.pg]
kind = "postgres"
url = "postgres://etl@127.0.0.1:1/${{ inputs.db }}"
[steps.hello]
plugin = "echo"
with = { message = "hi" }
"#;
    let app = App::new(&[("pg.toml", PG)]).await;
    let path = "/api/v1/workflows/pg/runs";
    let evil = app
        .authed(
            "POST",
            path,
            json!({"inputs": {"db": "x?host=evil.example"}}),
        )
        .await;
    assert_eq!(
        evil.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        evil.body
    );
    assert_eq!(evil.json()["inputs"][0]["name"], "db");
    assert!(evil.body.contains("connection `pg`"), "{}", evil.body);
    assert_eq!(app.run_count().await, 0);
    let fine = app
        .authed("POST", path, json!({"inputs": {"db": "datalab"}}))
        .await;
    assert_eq!(fine.status, StatusCode::ACCEPTED, "{}", fine.body);
}

/// S4: webhooks are unauthenticated: a wrong name gets a plain 404 that names no workflow.
#[tokio::test]
async fn an_unknown_webhook_gets_a_404_that_names_no_other_workflow() {
    let app = App::new(&[("hook.toml", HOOK), ("greet.toml", GREET)]).await;
    for name in ["hok", "greet"] {
        let answer = app
            .call("POST", &format!("/api/v1/webhooks/{name}"), None, "{}")
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{name}");
        assert_eq!(
            answer.json(),
            json!({"error": format!("no webhook `{name}`")})
        );
    }
}

/// S1: an empty secret (`HOOK_SECRET=` left as a placeholder) would accept `HMAC("", body)`.
#[tokio::test]
async fn a_webhook_whose_secret_is_empty_refuses_deliveries_signed_with_the_empty_key() {
    let app = App::new(&[("hook.toml", HOOK), (".env", "HOOK_SECRET=\n")]).await;
    let body = r#"{"ref":"main"}"#;
    let signature = auth::sign(b"", body.as_bytes());
    let request = Request::builder()
        .method("POST")
        .uri("/api/v1/webhooks/hook")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-hub-signature-256", signature)
        .header("x-github-delivery", "d-empty-1")
        .body(Body::from(body))
        .unwrap();
    let answer = app.send(request).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        answer.json(),
        json!({"error": "internal error", "hint": "the webhook's secret is empty on the server: set it"})
    );
    assert_eq!(app.run_count().await, 0);
}

#[tokio::test]
async fn a_trigger_while_the_server_stops_answers_503_with_a_hint() {
    let app = App::new(&[("greet.toml", GREET)]).await;
    app.state.runner.shutdown(Duration::ZERO).await;
    let stopping = app
        .authed("POST", TRIGGER, json!({"inputs": {"name": "x"}}))
        .await;
    assert_eq!(stopping.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        stopping.json(),
        json!({"error": "internal error", "hint": "the server is stopping: try again once it is back"})
    );
    assert_eq!(app.run_count().await, 0);
}

/// S5: a token holds at most a few log streams open; a stream on an interrupted run ends
/// instead of polling for ever.
#[tokio::test]
async fn log_streams_are_capped_per_token_and_end_for_interrupted_runs() {
    let app = App::new(&[("greet.toml", GREET)]).await;
    let id = app.ended_run(RunStatus::Interrupted).await;
    let stream = || {
        Request::builder()
            .uri(format!("/api/v1/runs/{id}/logs"))
            .header(header::AUTHORIZATION, format!("Bearer {}", app.token))
            .body(Body::empty())
            .unwrap()
    };
    // Ends by itself: collecting the body returns.
    let ended = tokio::time::timeout(Duration::from_secs(5), app.send(stream()))
        .await
        .expect("the stream of an interrupted run ends");
    assert!(
        ended.body.contains("event: end") && ended.body.contains("interrupted"),
        "{}",
        ended.body
    );
    // Held open (bodies not read): the cap applies, and a closed one frees its slot.
    let mut open = Vec::new();
    for _ in 0..super::MAX_STREAMS_PER_TOKEN {
        let response = app.router.clone().oneshot(stream()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        open.push(response);
    }
    let refused = app.send(stream()).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("log streams open"),
        "{}",
        refused.body
    );
    open.pop();
    let again = app.router.clone().oneshot(stream()).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
}
