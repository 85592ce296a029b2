//! The `ollama` plugin against tests/servers/ollama.py, a local server that speaks Ollama's
//! documented HTTP API (no Ollama binary is reachable here), and the llm-summarise workflow.

use crate::harness::http::request;
use crate::harness::pg::{admin_url, psql_at};
use crate::harness::{Orch, Ran, Server, root, step};
use serde_json::Value;

/// GET `path` from the local server, as JSON.
fn get(server: &Server, path: &str) -> Value {
    request("GET", &server.url(path), None, &[], b"").json()
}

fn orch(server: &Server) -> Orch {
    Orch::new().env("OLLAMA_URL", &format!("http://127.0.0.1:{}", server.port))
}

fn seed(orch: &Orch, args: &[&str]) -> Ran {
    let file = root().join("workflows/ollama.toml");
    let mut all = vec!["--json", args[0], file.to_str().unwrap()];
    all.extend_from_slice(&args[1..]);
    orch.orch(&all)
}

#[test]
fn pull_streams_progress_then_a_second_pull_is_skipped() {
    let server = Server::start("ollama.py", &[]);
    let orch = orch(&server);
    let ran = seed(&orch, &["run", "-i", "pull=llama3.2"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let progress: Vec<Value> = ran
        .json_lines()
        .into_iter()
        .filter(|l| l["event"] == "step_progress")
        .collect();
    assert!(progress.len() >= 5, "progress observed: {progress:?}");
    let last = progress.iter().rev().find(|p| p["total"].is_u64()).unwrap();
    assert_eq!(last["current"], last["total"], "{last}");
    let names: Vec<Value> = get(&server, "/api/tags")["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].clone())
        .collect();
    assert_eq!(names, ["llama3.2:latest"]);
    assert_eq!(
        step(&ran.report(), "ollama_pull")["outputs"]["pulled"],
        true
    );

    let file = root().join("workflows/ollama.toml");
    let plan = orch.orch(&["plan", file.to_str().unwrap(), "-i", "pull=llama3.2"]);
    assert!(plan.stdout.contains("no change"), "{}", plan.stdout);
    let again = seed(&orch, &["run", "-i", "pull=llama3.2"]);
    assert_eq!(again.code, 0);
    assert_eq!(
        step(&again.report(), "ollama_pull")["outputs"]["pulled"],
        false
    );
    assert_eq!(get(&server, "/test/pulls")["count"], 1, "no second pull");

    let skipped = seed(&orch, &["run"]);
    assert_eq!(step(&skipped.report(), "ollama_pull")["status"], "skipped");
}

#[test]
fn an_unknown_model_fails_with_the_servers_error() {
    let server = Server::start("ollama.py", &[]);
    let ran = seed(&orch(&server), &["run", "-i", "pull=no-such-model"]);
    assert_eq!(ran.code, 1);
    let error = step(&ran.report(), "ollama_pull")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("pull model manifest: file does not exist"),
        "{error}"
    );
}

#[test]
fn generate_chat_and_embed_return_outputs() {
    let server = Server::start("ollama.py", &[]);
    let orch = orch(&server);
    let ran = orch.run(
        r#"
        name = "llm"
        [connections.ollama]
        kind = "http"
        url = "${{ env.OLLAMA_URL }}"
        [steps.pull]
        plugin = "ollama"
        allow = ["ollama"]
        with = { action = "pull", connection = "ollama", model = "qwen2.5:0.5b" }
        [steps.generate]
        plugin = "ollama"
        needs = ["pull"]
        allow = ["ollama"]
        with = { action = "generate", connection = "ollama", model = "qwen2.5:0.5b", prompt = "the quick brown fox" }
        [steps.chat]
        plugin = "ollama"
        needs = ["pull"]
        allow = ["ollama"]
        with = { action = "chat", connection = "ollama", model = "qwen2.5:0.5b", messages = [{ role = "user", content = "hi there" }] }
        [steps.embed]
        plugin = "ollama"
        needs = ["pull"]
        allow = ["ollama"]
        with = { action = "embed", connection = "ollama", model = "qwen2.5:0.5b", input = ["a", "b"] }
        [steps.missing]
        plugin = "ollama"
        allow = ["ollama"]
        with = { action = "generate", connection = "ollama", model = "not-pulled", prompt = "x" }
        "#,
        &[],
    );
    let report = ran.report();
    assert_eq!(
        step(&report, "generate")["outputs"]["response"],
        "Summary: 4 words, beginning \"the quick brown fox\"."
    );
    assert_eq!(
        step(&report, "chat")["outputs"]["content"],
        "Summary: 2 words, beginning \"hi there\"."
    );
    assert_eq!(
        step(&report, "embed")["outputs"]["embeddings"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let error = step(&report, "missing")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("not found, try pulling it first"), "{error}");
}

#[test]
fn llm_summarise_fetches_summarises_and_stores_in_postgres() {
    let (ollama, source) = (
        Server::start("ollama.py", &[]),
        Server::start("httpbin.py", &[]),
    );
    let pg = admin_url();
    let model = "qwen2.5:0.5b";
    let orch = orch(&ollama)
        .env("SOURCE_URL", &format!("http://127.0.0.1:{}", source.port))
        .env("POSTGRES_ADMIN_URL", &pg);
    let file = root().join("workflows/llm-summarise.toml");
    let ran = orch.orch(&[
        "--json",
        "run",
        file.to_str().unwrap(),
        "-i",
        &format!("model={model}"),
    ]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let summary = step(&ran.report(), "summarise")["outputs"]["response"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(summary.contains("a, b"), "{summary}");
    let stored = psql_at(
        &pg,
        "SELECT summary FROM llm_summaries ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(stored, summary);
}
