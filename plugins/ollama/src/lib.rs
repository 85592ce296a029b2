//! Built-in `ollama`: models (pull, list, show, delete) and generation (generate, chat, embed)
//! through Ollama's HTTP API on a granted `kind = "http"` connection.
//!
//! So the step needs no `docker exec`, and the server's address and token stay in the host.

use orch_sdk::http::{Request, Response};
use orch_sdk::{ChangeKind, Cx, Step, StepError};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

/// `with` of an `ollama` step; `action` picks the variant. `connection` names a granted http
/// connection whose `url` is the Ollama server (e.g. http://ollama:11434).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
enum Config {
    /// Pull `model` unless the server already lists it (or `force`); progress is streamed.
    Pull {
        connection: String,
        model: String,
        #[serde(default)]
        force: bool,
    },
    /// The installed models.
    List { connection: String },
    /// A model's details.
    Show { connection: String, model: String },
    /// Delete `model` if installed.
    Delete { connection: String, model: String },
    /// One completion: `prompt` in, `response` text out.
    Generate {
        connection: String,
        model: String,
        prompt: String,
        #[serde(default)]
        system: Option<String>,
        /// Ollama options, e.g. { temperature = 0, num_predict = 128 }.
        #[serde(default)]
        options: Map<String, Json>,
        /// "json" or a JSON schema, to constrain the output.
        #[serde(default)]
        format: Option<Json>,
    },
    /// A chat turn: `messages` ([{role, content}]) in, the assistant's `content` out.
    Chat {
        connection: String,
        model: String,
        messages: Vec<Message>,
        #[serde(default)]
        options: Map<String, Json>,
        #[serde(default)]
        format: Option<Json>,
    },
    /// Embeddings of `input` (a string or a list of strings).
    Embed {
        connection: String,
        model: String,
        input: Json,
    },
}

#[derive(Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Message {
    role: String,
    content: String,
}

/// Ollama's own name for a model: `llama3.2` is `llama3.2:latest`.
fn full_name(model: &str) -> String {
    if model.rsplit('/').next().is_some_and(|n| n.contains(':')) {
        model.to_string()
    } else {
        format!("{model}:latest")
    }
}

fn url(connection: &str, path: &str) -> String {
    format!("http://{connection}{path}")
}

/// The server's `{"error": ...}` if it sent one, else the status and body.
fn server_error(what: &str, r: &Response) -> StepError {
    let body: Option<Json> = serde_json::from_slice(&r.body).ok();
    let message = body
        .as_ref()
        .and_then(|b| b.get("error"))
        .and_then(Json::as_str)
        .map(String::from)
        .unwrap_or_else(|| String::from_utf8_lossy(&r.body).chars().take(300).collect());
    let text = format!("ollama {what}: {message} (HTTP {})", r.status);
    if r.status >= 500 && !message.contains("file does not exist") {
        StepError::Retryable(text)
    } else {
        StepError::Failed(text)
    }
}

fn call(what: &str, request: Request) -> Result<Json, StepError> {
    let response = orch_sdk::http::send(&request)?;
    if !(200..300).contains(&response.status) {
        return Err(server_error(what, &response));
    }
    if response.body.is_empty() {
        return Ok(Json::Null);
    }
    serde_json::from_slice(&response.body)
        .map_err(|e| StepError::Failed(format!("ollama {what}: not JSON: {e}")))
}

fn installed(connection: &str) -> Result<Vec<Json>, StepError> {
    let tags = call("tags", Request::get(url(connection, "/api/tags")))?;
    Ok(tags
        .get("models")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default())
}

fn is_installed(models: &[Json], model: &str) -> bool {
    let wanted = full_name(model);
    models.iter().any(|m| {
        m.get("name")
            .and_then(Json::as_str)
            .is_some_and(|n| full_name(n) == wanted)
    })
}

/// Stream `/api/pull`, reporting NDJSON progress lines; fails on an `error` line.
fn pull(connection: &str, model: &str) -> Result<(), StepError> {
    let request = Request::json(
        "POST",
        url(connection, "/api/pull"),
        &json!({ "model": model, "stream": true }),
    );
    let mut pending = Vec::new();
    let mut failure: Option<String> = None;
    let mut last_status = String::new();
    let mut handle_line = |line: &[u8]| {
        let Ok(event) = serde_json::from_slice::<Json>(line) else {
            return;
        };
        if let Some(error) = event.get("error").and_then(Json::as_str) {
            failure = Some(error.to_string());
            return;
        }
        let status = event.get("status").and_then(Json::as_str).unwrap_or("");
        let total = event.get("total").and_then(Json::as_u64);
        let completed = event.get("completed").and_then(Json::as_u64).unwrap_or(0);
        orch_sdk::log::progress(completed, total, format!("{model}: {status}"));
        if status != last_status {
            orch_sdk::log::debug(format!("{model}: {status}"));
            last_status = status.to_string();
        }
    };
    let (status, _) = orch_sdk::http::send_streaming(&request, |bytes| {
        pending.extend_from_slice(bytes);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            handle_line(&line);
        }
        Ok(())
    })?;
    if !pending.is_empty() {
        handle_line(&pending);
    }
    if let Some(error) = failure {
        return Err(StepError::Failed(format!("ollama pull {model}: {error}")));
    }
    if !(200..300).contains(&status) {
        return Err(StepError::Failed(format!(
            "ollama pull {model}: HTTP {status}"
        )));
    }
    Ok(())
}

struct Ollama;

impl Step for Ollama {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str =
        "Ollama models (pull, list, show, delete) and generate, chat, embed";

    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        match config {
            Config::Pull {
                connection,
                model,
                force,
            } => {
                let present = is_installed(&installed(&connection)?, &model);
                let pulled = if present && !force {
                    cx.change(ChangeKind::None, format!("model {model}"), "already pulled");
                    false
                } else {
                    let (kind, detail) = if present {
                        (ChangeKind::Update, "pull again (force)")
                    } else {
                        (ChangeKind::Create, "pull")
                    };
                    if cx.change(kind, format!("model {model}"), detail) {
                        pull(&connection, &model)?;
                    }
                    true
                };
                cx.output("model", full_name(&model));
                cx.output("pulled", pulled);
            }
            Config::List { connection } => {
                let models = installed(&connection)?;
                let names: Vec<&str> = models
                    .iter()
                    .filter_map(|m| m.get("name").and_then(Json::as_str))
                    .collect();
                cx.output("names", &names);
                cx.output("models", &models);
            }
            Config::Show { connection, model } => {
                // A read, but a POST in Ollama's API: the host lets a plan send only GET and HEAD.
                if cx.applying() {
                    let shown = call(
                        &format!("show {model}"),
                        Request::json(
                            "POST",
                            url(&connection, "/api/show"),
                            &json!({ "model": model }),
                        ),
                    )?;
                    for field in ["details", "model_info", "parameters"] {
                        cx.output(field, shown.get(field).unwrap_or(&Json::Null));
                    }
                }
            }
            Config::Delete { connection, model } => {
                if !is_installed(&installed(&connection)?, &model) {
                    cx.change(ChangeKind::None, format!("model {model}"), "not installed");
                } else if cx.change(ChangeKind::Delete, format!("model {model}"), "delete") {
                    call(
                        &format!("delete {model}"),
                        Request::json(
                            "DELETE",
                            url(&connection, "/api/delete"),
                            &json!({ "model": model }),
                        ),
                    )?;
                }
            }
            Config::Generate {
                connection,
                model,
                prompt,
                system,
                options,
                format,
            } => {
                if cx.change(ChangeKind::Run, format!("model {model}"), "generate") {
                    let mut body = json!({ "model": model, "prompt": prompt, "stream": false, "options": options });
                    if let Some(system) = system {
                        body["system"] = Json::String(system);
                    }
                    if let Some(format) = format {
                        body["format"] = format;
                    }
                    let answer = call(
                        &format!("generate with {model}"),
                        Request::json("POST", url(&connection, "/api/generate"), &body),
                    )?;
                    for field in ["response", "eval_count"] {
                        cx.output(field, answer.get(field).unwrap_or(&Json::Null));
                    }
                }
            }
            Config::Chat {
                connection,
                model,
                messages,
                options,
                format,
            } => {
                if cx.change(ChangeKind::Run, format!("model {model}"), "chat") {
                    let mut body = json!({ "model": model, "messages": messages, "stream": false, "options": options });
                    if let Some(format) = format {
                        body["format"] = format;
                    }
                    let answer = call(
                        &format!("chat with {model}"),
                        Request::json("POST", url(&connection, "/api/chat"), &body),
                    )?;
                    let message = answer.get("message").cloned().unwrap_or(Json::Null);
                    cx.output("content", message.get("content").unwrap_or(&Json::Null));
                    cx.output("message", &message);
                }
            }
            Config::Embed {
                connection,
                model,
                input,
            } => {
                if !matches!(&input, Json::String(_) | Json::Array(_)) {
                    return Err(StepError::InvalidConfig(
                        "`input` must be a string or a list of strings".into(),
                    ));
                }
                if cx.change(ChangeKind::Run, format!("model {model}"), "embed") {
                    let answer = call(
                        &format!("embed with {model}"),
                        Request::json(
                            "POST",
                            url(&connection, "/api/embed"),
                            &json!({ "model": model, "input": input }),
                        ),
                    )?;
                    cx.output(
                        "embeddings",
                        answer.get("embeddings").unwrap_or(&Json::Null),
                    );
                }
            }
        }
        Ok(())
    }
}

orch_sdk::export!(Ollama);
