//! The web page in a real browser (headless Chromium over WebDriver) against a real `orch
//! serve`: sign in, the form of `hello` (an invalid value refused inline, nothing started;
//! fixed, planned, run), a run followed live without a reload, a long run cancelled, the
//! schedules page, keyboard-only use of the form, labels on every control, a phone-width
//! page. Each page is saved as a screenshot. Plus, over plain HTTP: read-only tokens, CSRF.

use super::harness::{Serve, runs, token, workflows_dir};
use crate::harness::browser::Browser;
use crate::harness::http::request;
use crate::harness::{Orch, root};
use fantoccini::key::Key;
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A small ETL whose first step logs, then works for a while: the page is open before it ends.
const SLOW: &str = r#"
name = "slow"
description = "Extract for a while, transform three ways, load"
[steps.extract]
plugin = "echo"
with = { message = "extract: reading the source", sleep_ms = 6000 }
[steps.clean]
plugin = "echo"
needs = ["extract"]
with = { message = "clean: 120 rows" }
[steps.enrich]
plugin = "echo"
needs = ["extract"]
with = { message = "enrich: 120 rows" }
[steps.score]
plugin = "echo"
needs = ["extract"]
with = { message = "score: 120 rows" }
[steps.load]
plugin = "echo"
needs = ["clean", "enrich", "score"]
with = { message = "load: done" }
"#;

/// A step that would run for minutes: cancelled from the page.
const LONG: &str = r#"
name = "long"
[steps.wait]
plugin = "echo"
with = { message = "waiting a long time", sleep_ms = 300000 }
"#;

/// Every kind of input control.
const KINDS: &str = r#"
name = "kinds"
description = "One input of each kind"
[inputs.items]
type = "array"
description = "Partitions to load"
default = ["2026-12-01", "2026-12-02"]
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
regex = "^[a-z ]*$"
[steps.show]
plugin = "echo"
with = { message = "${{ inputs.mode }} ${{ inputs.batch }} ${{ inputs.items.size() }}" }
"#;

fn sandbox() -> (Orch, Serve, String) {
    let orch = Orch::new();
    let hello = std::fs::read_to_string(root().join("workflows/hello.toml")).unwrap();
    workflows_dir(
        &orch,
        &[
            ("hello.toml", &hello),
            ("slow.toml", SLOW),
            ("long.toml", LONG),
            ("kinds.toml", KINDS),
        ],
    );
    let token = token(&orch, "web-admin");
    let server = Serve::start(&orch, &[]);
    (orch, server, token)
}

async fn sign_in(browser: &Browser, server: &Serve, token: &str) {
    browser.goto(&server.url("/")).await;
    assert!(
        browser.path().await.starts_with("/login"),
        "sent to sign in"
    );
    browser.screenshot("sign-in").await;
    let field = browser.wait_css("#token", WAIT).await;
    field.send_keys(token).await.unwrap();
    browser
        .find("form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    browser.wait_css("table.runs, #runs", WAIT).await;
    assert_eq!(browser.path().await, "/");
}

/// Start `workflow` with its form's defaults: the run's page once it shows.
async fn run_from_form(browser: &Browser, server: &Serve, workflow: &str) {
    browser
        .goto(&server.url(&format!("/workflows/{workflow}")))
        .await;
    let run = browser.wait_css("button.primary", WAIT).await;
    run.click().await.unwrap();
    browser.wait_css("#run", WAIT).await;
}

/// The ids (or names) of form controls without a label.
async fn unlabelled(browser: &Browser) -> Value {
    browser
        .js(r#"return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !(e.tagName === 'BUTTON' && e.textContent.trim()))
            .map(e => e.id || e.name || e.outerHTML)"#)
        .await
}

async fn active_id(browser: &Browser) -> String {
    let v = browser
        .js("const e = document.activeElement; return e.id || e.textContent.trim();")
        .await;
    v.as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_page_plans_runs_follows_and_cancels_in_a_real_browser() {
    let (orch, server, token) = sandbox();
    let browser = Browser::start(1280, 900, false).await;
    sign_in(&browser, &server, &token).await;

    // An invalid value: refused beside its field, with the API's message; nothing started.
    browser.goto(&server.url("/workflows/hello")).await;
    let who = browser.wait_css("#in-who", WAIT).await;
    who.clear().await.unwrap();
    who.send_keys("no!way").await.unwrap();
    browser.find("button.primary").await.click().await.unwrap();
    let error = browser
        .wait_css("#in-who-error", WAIT)
        .await
        .text()
        .await
        .unwrap();
    assert!(error.contains("does not match the regex"), "{error}");
    assert_eq!(
        browser
            .find("#in-who")
            .await
            .attr("aria-invalid")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    assert!(runs(&orch).is_empty(), "an invalid form starts nothing");
    assert_eq!(unlabelled(&browser).await, Value::Array(vec![]));

    // Fixed, then planned with the keyboard alone: Tab through the controls, Space on the
    // checkbox, Enter on Plan; the plan comes back in place.
    let who = browser.find("#in-who").await;
    who.clear().await.unwrap();
    who.send_keys("Ada").await.unwrap();
    who.send_keys(&Key::Tab.to_string()).await.unwrap();
    assert_eq!(active_id(&browser).await, "in-loud");
    let loud = browser.client.active_element().await.unwrap();
    loud.send_keys(" ").await.unwrap();
    assert_eq!(
        browser
            .js("return document.getElementById('in-loud').checked")
            .await,
        Value::Bool(true)
    );
    loud.send_keys(&Key::Tab.to_string()).await.unwrap();
    assert_eq!(active_id(&browser).await, "Plan");
    let plan = browser.client.active_element().await.unwrap();
    plan.send_keys(&Key::Enter.to_string()).await.unwrap();
    let planned = browser.wait_css("#plan", WAIT).await.text().await.unwrap();
    assert!(
        planned.contains("greet") && planned.contains("hello Ada"),
        "{planned}"
    );
    assert!(
        planned.contains("announce") && planned.contains("shout"),
        "{planned}"
    );
    assert_eq!(browser.path().await, "/workflows/hello", "planned in place");
    browser.screenshot("workflow-plan").await;
    assert!(runs(&orch).is_empty(), "a plan starts nothing");

    // Run: to the run's page, every node green (loud, so `shout` ran too).
    browser.find("button.primary").await.click().await.unwrap();
    browser.wait_css("#run", WAIT).await;
    assert!(browser.path().await.starts_with("/runs/"));
    browser
        .wait_js(
            r#"return ['greet','announce','shout'].every(s => document.querySelector(`a.node[data-step="${s}"]`).classList.contains('st-succeeded'))"#,
            WAIT,
            "hello's three nodes turn green",
        )
        .await;
    let recorded = runs(&orch);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["inputs"]["who"], "Ada");
    assert_eq!(recorded[0]["trigger"], "web");

    // A slower run, watched live: the nodes recolour and the log lines arrive, no reload.
    run_from_form(&browser, &server, "slow").await;
    browser.js("window.__sameDocument = 42; return 1").await;
    let load = browser.find(r#"a.node[data-step="load"]"#).await;
    let class = load.attr("class").await.unwrap().unwrap_or_default();
    assert!(
        class.contains("st-pending"),
        "load has not run yet: {class}"
    );
    browser
        .wait_js(
            r#"return document.querySelector('a.node[data-step="extract"]').classList.contains('st-running')
                && document.getElementById('log').textContent.includes('extract: reading the source')"#,
            WAIT,
            "extract runs and its log line shows",
        )
        .await;
    browser.screenshot("run-live").await;
    browser
        .wait_js(
            r#"return [...document.querySelectorAll('svg.dag a.node')].every(n => n.classList.contains('st-succeeded'))
                && document.getElementById('log').textContent.includes('load: done')
                && document.querySelector('#run-status').textContent.includes('succeeded')"#,
            WAIT,
            "every node turns green and load logs",
        )
        .await;
    assert_eq!(
        browser.js("return window.__sameDocument").await,
        42,
        "no reload"
    );
    browser.screenshot("run").await;

    // A long run, cancelled from its page.
    run_from_form(&browser, &server, "long").await;
    let long_run = browser.path().await;
    browser
        .wait_js(
            r#"return document.querySelector('a.node[data-step="wait"]').classList.contains('st-running')"#,
            WAIT,
            "the long step runs",
        )
        .await;
    browser.find("button.danger").await.click().await.unwrap();
    browser
        .wait_js(
            "return document.querySelector('#run-status').textContent.includes('cancelled')",
            WAIT,
            "the run is cancelled",
        )
        .await;
    assert_eq!(browser.path().await, long_run);
    let id = long_run.trim_start_matches("/runs/");
    let cancelled = runs(&orch).into_iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(cancelled["status"], "cancelled");

    // The schedules page: hello's schedule with its next fire in Lisbon time.
    browser.goto(&server.url("/schedules")).await;
    let fires = browser.wait_css("#s-hello", WAIT).await;
    assert_eq!(fires.text().await.unwrap().trim(), "hello");
    let next = browser.text("ol.fires li").await;
    assert!(next.contains("WET") || next.contains("WEST"), "{next}");
    browser.screenshot("schedules").await;

    // Runs, workflows, workers, plugins.
    browser.goto(&server.url("/")).await;
    let rows = browser
        .js("return document.querySelectorAll('table.runs tbody tr').length")
        .await;
    assert_eq!(rows, 3);
    browser.screenshot("runs").await;
    browser.goto(&server.url("/workers")).await;
    assert!(browser.text("main table").await.contains("alive"));
    browser.screenshot("workers").await;
    browser.goto(&server.url("/plugins")).await;
    let plugins = browser.text("main").await;
    assert!(
        plugins.contains("echo") && plugins.contains("hello.greet"),
        "{plugins}"
    );
    browser.screenshot("plugins").await;

    // Every kind of input has a labelled control; array rows can be added.
    browser.goto(&server.url("/workflows/kinds")).await;
    browser.wait_css("#in-batch", WAIT).await;
    assert_eq!(unlabelled(&browser).await, Value::Array(vec![]));
    assert_eq!(
        browser
            .js("return document.querySelector('#in-mode').tagName")
            .await,
        "SELECT"
    );
    assert_eq!(
        browser
            .js("return document.querySelector('#in-batch').type")
            .await,
        "number"
    );
    assert_eq!(
        browser
            .js("return document.querySelector('#in-note').getAttribute('pattern')")
            .await,
        "[a-z ]*"
    );
    browser.find("[data-add]").await.click().await.unwrap();
    let rows = browser.js(r#"return [...document.querySelectorAll('input[name="in.items"]')].map(e => e.getAttribute('aria-label'))"#).await;
    assert_eq!(rows.as_array().unwrap().len(), 4, "{rows}");
    assert_eq!(rows[3], "items, item 4");
    assert_eq!(unlabelled(&browser).await, Value::Array(vec![]));
    browser.screenshot("workflow-form").await;
    browser.close().await;

    // A phone: the run page fits its width.
    let phone = Browser::start(390, 844, true).await;
    sign_in(&phone, &server, &token).await;
    phone.goto(&server.url(&long_run)).await;
    phone.wait_css("#run", WAIT).await;
    let fits = phone
        .js("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        .await;
    assert_eq!(fits, true, "no sideways scrolling at 390 px");
    phone.screenshot("run-phone-dark").await;
    phone.close().await;
}

/// `Cookie` header of a session signed in with `token` over plain HTTP, and its CSRF token.
fn session(server: &Serve, token: &str) -> (String, String) {
    let form = request("GET", &server.url("/login"), None, &[], b"");
    let nonce = cookie_value(&form.head, "orch_login");
    let body = format!("login_csrf={nonce}&next=%2F&token={token}");
    let signed = request(
        "POST",
        &server.url("/login"),
        None,
        &[
            ("Content-Type", "application/x-www-form-urlencoded".into()),
            ("Cookie", format!("orch_login={nonce}")),
        ],
        body.as_bytes(),
    );
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert!(signed.head.contains("httponly") && signed.head.contains("samesite=strict"));
    let cookie = format!(
        "orch_session={}",
        cookie_value(&signed.head, "orch_session")
    );
    // Every page's sign-out form carries the session's CSRF token.
    let page = request(
        "GET",
        &server.url("/"),
        None,
        &[("Cookie", cookie.clone())],
        b"",
    );
    assert_eq!(page.status, 200);
    let csrf = page
        .body
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    (cookie, csrf)
}

fn cookie_value(head: &str, name: &str) -> String {
    head.lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie in {head}"))
        .to_string()
}

fn post_form(
    server: &Serve,
    path: &str,
    cookie: &str,
    body: &str,
) -> crate::harness::http::Response {
    request(
        "POST",
        &server.url(path),
        None,
        &[
            ("Content-Type", "application/x-www-form-urlencoded".into()),
            ("Cookie", cookie.to_string()),
        ],
        body.as_bytes(),
    )
}

#[test]
fn read_only_tokens_look_but_do_not_run_and_every_post_needs_the_csrf_token() {
    let (orch, server, admin) = sandbox();
    let viewer = orch.orch(&["token", "create", "viewer", "--read-only"]);
    assert_eq!(viewer.code, 0, "{}", viewer.stderr);
    let viewer = viewer.stdout.trim().to_string();

    // Without a session: sent to sign in (a page), refused (a POST).
    let anonymous = request("GET", &server.url("/workflows/hello"), None, &[], b"");
    assert_eq!(anonymous.status, 303);
    assert!(
        anonymous
            .head
            .contains("location: /login?next=%2fworkflows%2fhello"),
        "{}",
        anonymous.head
    );
    assert_eq!(
        post_form(&server, "/workflows/hello/run", "", "in.who=x").status,
        401
    );

    // A bad token: the form again, with the reason.
    let form = request("GET", &server.url("/login"), None, &[], b"");
    let nonce = cookie_value(&form.head, "orch_login");
    let wrong = post_form(
        &server,
        "/login",
        &format!("orch_login={nonce}"),
        &format!("login_csrf={nonce}&token=orch_nope"),
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("unknown or revoked token"));
    // A sign-in posted from elsewhere (no matching double-submit cookie) is refused.
    let forged = post_form(
        &server,
        "/login",
        "",
        &format!("login_csrf=x&token={admin}"),
    );
    assert_eq!(forged.status, 403);

    // Read-only: sees the workflow, gets no Run button, and a forged Run is refused.
    let (cookie, csrf) = session(&server, &viewer);
    let page = request(
        "GET",
        &server.url("/workflows/hello"),
        None,
        &[("Cookie", cookie.clone())],
        b"",
    );
    assert!(page.body.contains("read-only") && !page.body.contains(">Run</button>"));
    let refused = post_form(
        &server,
        "/workflows/hello/run",
        &cookie,
        &format!("csrf={csrf}&in.who=x"),
    );
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("is read-only"), "{}", refused.body);

    // Full token: without the CSRF token (or with another session's) nothing starts; with it, a run.
    let (cookie, csrf) = session(&server, &admin);
    for body in ["in.who=x".to_string(), "csrf=00ff&in.who=x".to_string()] {
        let refused = post_form(&server, "/workflows/hello/run", &cookie, &body);
        assert_eq!(refused.status, 403, "{body}");
        assert!(refused.body.contains("CSRF"), "{}", refused.body);
    }
    assert!(runs(&orch).is_empty());
    let started = post_form(
        &server,
        "/workflows/hello/run",
        &cookie,
        &format!("csrf={csrf}&in.who=web"),
    );
    assert_eq!(started.status, 303, "{}", started.body);
    assert!(started.head.contains("location: /runs/"));
    assert_eq!(runs(&orch).len(), 1);

    // Revoking the token ends its sessions.
    assert_eq!(orch.orch(&["token", "revoke", "web-admin"]).code, 0);
    let after = request("GET", &server.url("/"), None, &[("Cookie", cookie)], b"");
    assert_eq!(after.status, 303, "signed out by the revocation");
}

#[test]
fn a_failed_run_is_run_again_from_its_failed_step_with_the_same_inputs() {
    let orch = Orch::new();
    let flaky = format!(
        r#"
name = "flaky"
[inputs.label]
type = "string"
default = "x"
[steps.first]
plugin = "echo"
with = {{ message = "first ran for ${{{{ inputs.label }}}}", outputs = {{ made = "${{{{ inputs.label }}}}-made" }} }}
[steps.check]
plugin = "{fail}"
needs = ["first"]
if = "env.BROKEN == 'yes'"
with = {{ kind = "failed", message = "broken on purpose" }}
[steps.mint]
plugin = "echo"
with = {{ message = "minting", outputs = {{ key = "k-${{{{ run.id }}}}" }}, secret = ["key"] }}
[steps.use_key]
plugin = "echo"
needs = ["mint"]
with = {{ message = "used the key" }}
[steps.last]
plugin = "echo"
needs = ["check"]
with = {{ message = "last read ${{{{ steps.first.outputs.made }}}}" }}
"#,
        fail = crate::harness::example("fail")
    );
    workflows_dir(&orch, &[("flaky.toml", &flaky)]);
    orch.write("wf/.env", "BROKEN=yes\n");
    let admin = token(&orch, "web-admin");
    let server = Serve::start(&orch, &[]);
    let (cookie, csrf) = session(&server, &admin);
    let started = post_form(
        &server,
        "/workflows/flaky/run",
        &cookie,
        &format!("csrf={csrf}&in.label=%3Cb%3Eblue%3C%2Fb%3E"),
    );
    assert_eq!(started.status, 303, "{}", started.body);
    let first_run = location(&started).trim_start_matches("/runs/").to_string();
    super::harness::wait_run_status(&orch, &first_run, "failed", WAIT);

    // Fixed outside orch; re-run from the failed step: `first` is kept, not run again.
    orch.write("wf/.env", "BROKEN=no\n");
    let again = post_form(
        &server,
        &format!("/runs/{first_run}/rerun"),
        &cookie,
        &format!("csrf={csrf}&from=failed"),
    );
    assert_eq!(again.status, 303, "{}", again.body);
    let second_run = location(&again).trim_start_matches("/runs/").to_string();
    assert_ne!(second_run, first_run);
    let done = super::harness::wait_run_status(&orch, &second_run, "succeeded", WAIT);
    assert_eq!(done["inputs"]["label"], "<b>blue</b>", "the same inputs");
    assert!(
        done["trigger_detail"]
            .as_str()
            .unwrap()
            .contains(&first_run)
    );
    let status = |step: &str| {
        done["steps"]
            .as_array()
            .unwrap()
            .iter()
            .rfind(|s| s["step"] == step)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("first"), "succeeded");
    assert_eq!(status("check"), "skipped");
    assert_eq!(status("last"), "succeeded");
    let logs: Vec<String> = done["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !logs.iter().any(|l| l.contains("first ran")),
        "first was not run again: {logs:?}"
    );
    // A step whose outputs held a secret was never stored whole: it runs again, and so does
    // what needs it, though it had succeeded.
    assert!(logs.contains(&"minting".to_string()), "{logs:?}");
    assert!(logs.contains(&"used the key".to_string()), "{logs:?}");
    assert!(
        logs.contains(&"last read <b>blue</b>-made".to_string()),
        "{logs:?}"
    );
    // What a run logs or is given is text on the page, never markup.
    let page = request(
        "GET",
        &server.url(&format!("/runs/{second_run}?step=last")),
        None,
        &[("Cookie", cookie.clone())],
        b"",
    );
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("last read &lt;b&gt;blue&lt;/b&gt;-made"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<b>blue"), "escaped everywhere");
    // The page's live poll: every step at first, then only what changed since its `now`.
    let state_of = |query: &str| {
        let url = server.url(&format!("/runs/{second_run}/state{query}"));
        let answer = request("GET", &url, None, &[("Cookie", cookie.clone())], b"");
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()
    };
    let all = state_of("");
    assert_eq!(all["steps"].as_object().unwrap().len(), 5, "{all}");
    assert_eq!(all["steps"]["last"]["status"], "succeeded");
    let later = all["now"].as_i64().unwrap() + 60_000;
    let quiet = state_of(&format!("?since={later}"));
    assert_eq!(
        quiet["steps"],
        serde_json::json!({}),
        "nothing changed since"
    );
    assert_eq!(quiet["status"], "succeeded");
    // Pages are sent compressed to a browser that takes gzip.
    let zipped = request(
        "GET",
        &server.url(&format!("/runs/{second_run}")),
        None,
        &[
            ("Cookie", cookie.clone()),
            ("Accept-Encoding", "gzip".to_string()),
        ],
        b"",
    );
    assert!(
        zipped.head.contains("content-encoding: gzip"),
        "{}",
        zipped.head
    );

    // A whole re-run runs everything again.
    let whole = post_form(
        &server,
        &format!("/runs/{second_run}/rerun"),
        &cookie,
        &format!("csrf={csrf}"),
    );
    let third_run = location(&whole).trim_start_matches("/runs/").to_string();
    let done = super::harness::wait_run_status(&orch, &third_run, "succeeded", WAIT);
    let logs = done["logs"].to_string();
    assert!(logs.contains("first ran for <b>blue</b>"), "{logs}");
    // Re-running from a failed step needs a failed run.
    let refused = post_form(
        &server,
        &format!("/runs/{third_run}/rerun"),
        &cookie,
        &format!("csrf={csrf}&from=failed"),
    );
    assert_eq!(refused.status, 409);
    assert!(refused.body.contains("not failed"), "{}", refused.body);
}

fn location(response: &crate::harness::http::Response) -> String {
    response
        .head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .trim()
        .to_string()
}
