//! `orch trigger`: queue a run of a served workflow through the server's API, and with `--wait`
//! follow it to its end (the exit code says how it ended).

use crate::cli::remote::{self, Remote, RemoteError};
use crate::cli::render;
use crate::cli::settings::Settings;
use crate::cli::{CliError, Exit, RemoteArgs};
use crate::store::RunStatus;
use anyhow::Context;
use serde_json::Value as Json;
use std::time::Duration;

pub(super) async fn trigger(
    settings: &Settings,
    workflow: &str,
    inputs: &[String],
    wait: bool,
    args: RemoteArgs,
) -> Result<(), CliError> {
    let server = args
        .server
        .context("no server: pass --server URL or set ORCH_SERVER")?;
    let server = Remote::new(&server, args.token);
    let queued = queue(&server, workflow, inputs).await?;
    let id = queued["id"].as_str().unwrap_or_default().to_string();
    if !wait {
        if settings.json {
            println!("{queued}");
        } else {
            println!(
                "queued run {id} ({})",
                queued["url"].as_str().unwrap_or_default()
            );
        }
        return Ok(());
    }
    loop {
        let run = server.get(&format!("/api/v1/runs/{id}")).await?;
        let status: Option<RunStatus> = serde_json::from_value(run["status"].clone()).ok();
        if let Some(status) = status.filter(|s| s.is_final()) {
            if settings.json {
                println!("{run}");
            } else {
                print!("{}", render::run_detail(&remote::run_detail(&run)?));
            }
            return if status == RunStatus::Succeeded {
                Ok(())
            } else {
                Err(CliError::Reported(Exit::Failed))
            };
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// POST the run. A request the server refused (bad inputs, unknown workflow, bad token: 4xx)
/// is the user's to fix, exit 2 with the server's message; an unreachable or failing server
/// (5xx) is not, exit 1.
async fn queue(server: &Remote, workflow: &str, inputs: &[String]) -> Result<Json, CliError> {
    let body = serde_json::json!({"args": inputs});
    let path = format!("/api/v1/workflows/{}/runs", remote::encode(workflow));
    server.post(&path, &body).await.map_err(|e| match e {
        e if e.is_refusal() => CliError::invalid(e),
        e @ RemoteError::Status { .. } => CliError::Failed(anyhow::Error::new(e).context(format!(
            "the server could not queue a run of `{workflow}` (its log says why)"
        ))),
        e => CliError::Failed(e.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A server that answers one request with `status` and a JSON `body`.
    fn answering(status: &str, body: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let status = status.to_string();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        });
        url
    }

    async fn queued_at(url: &str) -> CliError {
        queue(&Remote::new(url, None), "greet", &[])
            .await
            .expect_err("the call fails")
    }

    #[tokio::test]
    async fn refused_inputs_exit_2_with_the_servers_message() {
        let url = answering(
            "422 Unprocessable Entity",
            r#"{"error":"invalid inputs","inputs":[{"name":"name","message":"required string input is missing"}]}"#,
        );
        let e = queued_at(&url).await;
        assert_eq!(e.code(), Exit::Invalid);
        let CliError::Invalid(problems) = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            problems,
            [
                "422 Unprocessable Entity: invalid inputs\n  input `name`: required string input is missing"
            ]
        );
    }

    #[tokio::test]
    async fn a_failing_server_exits_1_and_says_so() {
        let url = answering("500 Internal Server Error", r#"{"error":"internal error"}"#);
        let e = queued_at(&url).await;
        assert_eq!(e.code(), Exit::Failed);
        assert_eq!(
            format!("{:#}", failure(e)),
            "the server could not queue a run of `greet` (its log says why): 500 Internal Server Error: internal error"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_exits_1() {
        let url = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", listener.local_addr().expect("address"))
        };
        let e = queued_at(&url).await;
        assert_eq!(e.code(), Exit::Failed);
        let message = format!("{:#}", failure(e));
        assert!(
            message.starts_with(&format!(
                "cannot reach {url}/api/v1/workflows/greet/runs: is `orch serve` running there?: "
            )),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_server_url_that_is_no_url_is_a_usage_error() {
        let e = queued_at("http://bad host").await;
        assert_eq!(e.code(), Exit::Invalid);
    }

    fn failure(e: CliError) -> anyhow::Error {
        match e {
            CliError::Failed(e) => e,
            other => panic!("{other:?}"),
        }
    }
}
