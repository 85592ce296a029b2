//! `orch runs list|show`: recorded runs, from the run store or, with `--server`, from a server.

use crate::cli::CliError;
use crate::cli::remote::{self, Remote};
use crate::cli::render;
use crate::cli::settings::Settings;
use crate::cli::{RemoteArgs, RunsCommand};
use crate::store::RunRow;
use anyhow::Context;

pub(super) async fn runs(
    settings: &Settings,
    command: RunsCommand,
    remote: RemoteArgs,
) -> Result<(), CliError> {
    match remote.server {
        Some(server) => from_server(settings, command, &Remote::new(&server, remote.token)).await,
        None => from_store(settings, command).await,
    }
}

async fn from_store(settings: &Settings, command: RunsCommand) -> Result<(), CliError> {
    let store = settings.store().await?;
    match command {
        RunsCommand::List { limit } => {
            let runs = store.list_runs(limit).await?;
            settings.emit(runs.as_slice(), render::runs_list)?;
        }
        RunsCommand::Show { id, logs_after } => settings.emit(
            &store.get_run_page(&id, logs_after).await?,
            render::run_detail,
        )?,
    }
    Ok(())
}

/// The server's documents go out as they came with `--json`, rendered like the store's without.
async fn from_server(
    settings: &Settings,
    command: RunsCommand,
    server: &Remote,
) -> Result<(), CliError> {
    match command {
        RunsCommand::List { limit } => {
            let runs = server.get(&format!("/api/v1/runs?limit={limit}")).await?;
            if settings.json {
                println!("{}", runs["runs"]);
            } else {
                let runs: Vec<RunRow> = serde_json::from_value(runs["runs"].clone())
                    .context("unexpected runs document from the server")?;
                print!("{}", render::runs_list(&runs));
            }
        }
        RunsCommand::Show { id, logs_after } => {
            let page = logs_after.map_or(String::new(), |seq| format!("?logs_after={seq}"));
            let run = server
                .get(&format!("/api/v1/runs/{}{page}", remote::encode(&id)))
                .await?;
            if settings.json {
                println!("{run}");
            } else {
                print!("{}", render::run_detail(&remote::run_detail(&run)?));
            }
        }
    }
    Ok(())
}
