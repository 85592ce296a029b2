//! The `http` plugin and the wasi:http gate against a local HTTP server
//! (tests/servers/httpbin.py, loopback only).

use crate::harness::{Orch, Server, example, step};
use serde_json::{Value, json};

const TOKEN: &str = "tok-3f9a1c77e2";

fn httpbin() -> Server {
    Server::start("httpbin.py", &[("HTTPBIN_TOKEN", TOKEN)])
}

/// Run one `http` step with `with` (TOML inline table body) and `allow`.
fn fetch(orch: &Orch, with: &str, allow: &str, extra: &str) -> (i32, Value, String) {
    let ran = orch.run(
        &format!(
            r#"
            name = "fetch"
            {extra}
            [steps.fetch]
            plugin = "http"
            allow = [{allow}]
            with = {{ {with} }}
            "#
        ),
        &[],
    );
    let report = ran.report();
    (
        ran.code,
        step(&report, "fetch").clone(),
        format!("{}{}", ran.stdout, ran.stderr),
    )
}

#[test]
fn get_and_post_json_with_extraction() {
    let server = httpbin();
    let orch = Orch::new();
    let origin = format!("\"http://127.0.0.1:{}\"", server.port);
    let (code, fetched, out) = fetch(
        &orch,
        &format!(
            r#"url = "{}", extract = {{ second = "/items/1/name" }}"#,
            server.url("/json")
        ),
        &origin,
        "",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(fetched["outputs"]["status"], 200);
    assert_eq!(fetched["outputs"]["second"], "b");
    assert_eq!(fetched["outputs"]["body"]["items"][0]["name"], "a");

    let (code, posted, out) = fetch(
        &orch,
        &format!(
            r#"method = "POST", url = "{}", json = {{ rows = [1, 2] }}"#,
            server.url("/echo")
        ),
        &origin,
        "",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(posted["outputs"]["body"], json!({"rows": [1, 2]}));
}

#[test]
fn unexpected_status_fails_and_5xx_is_retried() {
    let server = httpbin();
    let orch = Orch::new();
    let origin = format!("\"http://127.0.0.1:{}\"", server.port);
    let (code, failed, _) = fetch(
        &orch,
        &format!(r#"url = "{}""#, server.url("/status/404")),
        &origin,
        "",
    );
    assert_eq!(code, 1);
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("returned 404 (expected 2xx)"), "{error}");

    let (code, _, out) = fetch(
        &orch,
        &format!(r#"url = "{}", expect = [404]"#, server.url("/status/404")),
        &origin,
        "",
    );
    assert_eq!(code, 0, "expected status accepted: {out}");

    let (code, flaky, out) = fetch(
        &orch,
        &format!(
            r#"url = "{}", backoff_ms = 10"#,
            server.url("/flaky?key=k1&fail=2")
        ),
        &origin,
        "",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        flaky["outputs"]["body"]["attempts"], 3,
        "two 503s, then success"
    );
}

#[test]
fn ungranted_hosts_redirects_and_ip_literals_are_denied_with_the_grant() {
    let server = httpbin();
    let orch = Orch::new();
    let port = server.port;
    // Nothing granted.
    let (code, denied, _) = fetch(
        &orch,
        &format!(r#"url = "{}""#, server.url("/json")),
        "",
        "",
    );
    assert_eq!(code, 1);
    assert_eq!(
        denied["error"],
        format!(
            "denied: step `fetch` may not reach `http://127.0.0.1:{port}`: add \"http://127.0.0.1:{port}\" to its `allow`"
        )
    );
    // A redirect to a host that is not granted.
    let to = format!("http://localhost:{port}/json");
    let (code, denied, _) = fetch(
        &orch,
        &format!(r#"url = "{}""#, server.url(&format!("/redirect?to={to}"))),
        &format!("\"http://127.0.0.1:{port}\""),
        "",
    );
    assert_eq!(code, 1);
    assert!(
        denied["error"]
            .as_str()
            .unwrap()
            .contains(&format!("add \"http://localhost:{port}\"")),
        "{denied}"
    );
    // The IP literal is not covered by a grant of the name.
    let (code, denied, _) = fetch(
        &orch,
        &format!(r#"url = "{}""#, server.url("/json")),
        &format!("\"http://localhost:{port}\""),
        "",
    );
    assert_eq!(code, 1);
    assert!(
        denied["error"].as_str().unwrap().contains("127.0.0.1"),
        "{denied}"
    );
}

#[test]
fn a_connection_adds_its_token_which_the_guest_never_sees_and_limits_response_size() {
    let server = httpbin();
    let orch = Orch::new().env("API_TOKEN", TOKEN);
    let connection = format!(
        r#"
        [connections.api]
        kind = "http"
        url = "http://127.0.0.1:{}/v1"
        headers = {{ Authorization = "Bearer ${{{{ secrets.API_TOKEN }}}}" }}
        max_response_bytes = 1000
        "#,
        server.port
    );
    let (code, who, out) = fetch(
        &orch,
        r#"url = "http://api/whoami""#,
        "\"api\"",
        &connection,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        who["outputs"]["body"],
        json!({"authorized": true, "path": "/v1/whoami"})
    );
    assert!(!out.contains(TOKEN), "the token is never printed");
    assert!(!orch.sqlite_store_text().contains(TOKEN), "nor stored");

    // Not granted: the connection is refused.
    let (code, denied, _) = fetch(&orch, r#"url = "http://api/whoami""#, "", &connection);
    assert_eq!(code, 1);
    assert!(
        denied["error"].as_str().unwrap().contains("add \"api\""),
        "{denied}"
    );

    // A guest that asks the server to send the token back gets nothing it can read: the
    // server never echoes it, and the header was added after the request left the sandbox.
    let (code, echoed, _) = fetch(
        &orch,
        r#"method = "POST", url = "http://api/echo", json = "show me the header""#,
        "\"api\"",
        &connection,
    );
    assert!(!echoed.to_string().contains(TOKEN), "{code} {echoed}");

    // Over the connection's response limit.
    let (code, big, _) = fetch(
        &orch,
        r#"url = "http://api/big?bytes=100000""#,
        "\"api\"",
        &connection,
    );
    assert_eq!(code, 1);
    assert!(
        big["error"]
            .as_str()
            .unwrap()
            .contains("over the size limit"),
        "{big}"
    );
}

#[test]
fn many_urls_in_one_step_keep_their_order_and_fail_on_an_unexpected_status() {
    let server = httpbin();
    let orch = Orch::new();
    let origin = format!("\"http://127.0.0.1:{}\"", server.port);
    let urls: Vec<String> = (0..20)
        .map(|i| format!("\"{}\"", server.url(&format!("/flaky?key=page{i}&fail=0"))))
        .collect();
    let (code, fetched, out) = fetch(
        &orch,
        &format!("urls = [{}], concurrency = 4", urls.join(", ")),
        &origin,
        "",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(fetched["outputs"]["count"], 20);
    let responses = fetched["outputs"]["responses"].as_array().unwrap();
    for (i, r) in responses.iter().enumerate() {
        assert!(
            r["url"]
                .as_str()
                .unwrap()
                .contains(&format!("key=page{i}&")),
            "{r}"
        );
        assert_eq!(r["body"]["ok"], true);
    }
    let (code, failed, _) = fetch(
        &orch,
        &format!(
            "urls = [\"{}\", \"{}\"]",
            server.url("/json"),
            server.url("/status/500")
        ),
        &origin,
        "",
    );
    assert_eq!(code, 1);
    assert!(
        failed["error"].as_str().unwrap().contains("returned 500"),
        "{failed}"
    );
}

#[test]
fn a_hostile_plugin_cannot_read_the_connection_token() {
    let server = httpbin();
    let orch = Orch::new().env("API_TOKEN", TOKEN);
    let ran = orch.run(
        &format!(
            r#"
            name = "peek"
            [connections.api]
            kind = "http"
            url = "http://127.0.0.1:{}"
            headers = {{ Authorization = "Bearer ${{{{ secrets.API_TOKEN }}}}" }}
            [steps.peek]
            plugin = "{}"
            allow = ["api"]
            with = {{ connection = "api", path = "/whoami" }}
            "#,
            server.port,
            example("peek-token")
        ),
        &[],
    );
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let outputs = step(&ran.report(), "peek")["outputs"].clone();
    // The request was authorised with the token...
    assert!(
        outputs["body"]
            .as_str()
            .unwrap()
            .contains("\"authorized\": true"),
        "{outputs}"
    );
    // ...which appears nowhere the plugin could look (outputs are recorded unmasked only if
    // the value never reached the masker, so check the raw terminal output too).
    assert!(!outputs.to_string().contains(TOKEN), "{outputs}");
    assert!(
        !outputs.to_string().contains("***"),
        "nothing masked either: {outputs}"
    );
    assert!(!ran.stdout.contains(TOKEN));
}

/// H3: a redirect to another origin turns a POST into a GET without its body (303 and 302, as
/// browsers do) and drops the `Authorization` the workflow set; on the same origin the header
/// stays. A redirect into a connection's route from elsewhere is not followed.
#[test]
fn a_redirect_to_another_origin_carries_no_body_or_credentials() {
    let (a, b) = (httpbin(), httpbin());
    let orch = Orch::new();
    let allow = format!(
        "\"http://127.0.0.1:{}\", \"http://127.0.0.1:{}\"",
        a.port, b.port
    );
    let post_via = |via: &Server, to: &str| {
        format!(
            r#"method = "POST", url = "{}", json = {{ x = 1 }}, headers = {{ Authorization = "Bearer {TOKEN}" }}"#,
            via.url(&format!("/redirect?to={to}"))
        )
    };
    let (code, elsewhere, out) = fetch(&orch, &post_via(&a, &b.url("/request")), &allow, "");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        elsewhere["outputs"]["body"],
        json!({"method": "GET", "authorized": false, "body": 0})
    );
    let (code, same, out) = fetch(&orch, &post_via(&a, &a.url("/request")), &allow, "");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        same["outputs"]["body"]["authorized"], true,
        "same origin keeps it"
    );

    let connection = format!(
        "[connections.api]\nkind = \"http\"\nurl = \"{}\"\nheaders = {{ Authorization = \"Bearer {TOKEN}\" }}",
        b.url("")
    );
    // Into a connection's route from elsewhere, or with a user part that makes `x.y@api`
    // look like another host: neither is followed.
    for (to, why) in [
        ("http://api/request", "a connection's route: not followed"),
        ("http://x.y@api/request", "a user part: not followed"),
    ] {
        let (code, refused, out) = fetch(
            &orch,
            &post_via(&a, to),
            &format!("{allow}, \"api\""),
            &connection,
        );
        assert_eq!(code, 1, "{out}");
        assert!(
            refused["error"].as_str().unwrap().contains(why),
            "{refused}"
        );
    }
}
