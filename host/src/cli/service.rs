//! Commands of the service mode: `serve`, `trigger`, `runs --server`, `token`, `schedule`.

use super::remote::Remote;
use super::settings::{Settings, cancel_on_signal};
use super::{Outcome, RemoteArgs, RunsCommand, ScheduleCommand, TokenCommand, render};
use crate::serve::{ServeConfig, auth, ticks};
use crate::store::{RunDetail, RunRow, RunStatus};
use anyhow::Context;
use comfy_table::Table;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn serve(env: &Settings, config: ServeConfig) -> anyhow::Result<Outcome> {
    let store = env.store().await?;
    let runtime = Arc::new(env.runtime()?);
    let secret_store = Some(env.secret_store()?);
    crate::serve::serve(config, store, runtime, secret_store, cancel_on_signal()).await?;
    Ok(Outcome::Success)
}

fn remote(args: RemoteArgs) -> anyhow::Result<Remote> {
    let server = args
        .server
        .context("no server: pass --server URL or set ORCH_SERVER")?;
    Ok(Remote::new(&server, args.token))
}

pub(super) async fn trigger(
    env: &Settings,
    workflow: &str,
    inputs: &[String],
    wait: bool,
    args: RemoteArgs,
) -> anyhow::Result<Outcome> {
    let server = remote(args)?;
    let body = serde_json::json!({"args": inputs});
    let path = format!("/api/v1/workflows/{}/runs", urlencode(workflow));
    let queued = match server.post(&path, &body).await {
        Ok(q) => q,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(Outcome::Invalid);
        }
    };
    let id = queued["id"].as_str().unwrap_or_default().to_string();
    if !wait {
        if env.json {
            println!("{queued}");
        } else {
            println!(
                "queued run {id} ({})",
                queued["url"].as_str().unwrap_or_default()
            );
        }
        return Ok(Outcome::Success);
    }
    loop {
        let run = server.get(&format!("/api/v1/runs/{id}")).await?;
        let status: Option<RunStatus> = serde_json::from_value(run["status"].clone()).ok();
        if let Some(status) = status.filter(|s| s.is_final()) {
            if env.json {
                println!("{run}");
            } else {
                let detail: RunDetail = detail_from_json(&run)?;
                print!("{}", render::run_detail(&detail));
            }
            return Ok(if status == RunStatus::Succeeded {
                Outcome::Success
            } else {
                Outcome::Failed
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn detail_from_json(run: &serde_json::Value) -> anyhow::Result<RunDetail> {
    serde_json::from_value(run.clone()).context("unexpected run document from the server")
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub(super) async fn remote_runs(
    env: &Settings,
    command: RunsCommand,
    server: &str,
    token: Option<String>,
) -> anyhow::Result<Outcome> {
    let server = Remote::new(server, token);
    match command {
        RunsCommand::List { limit } => {
            let runs = server.get(&format!("/api/v1/runs?limit={limit}")).await?;
            if env.json {
                println!("{}", runs["runs"]);
            } else {
                let runs: Vec<RunRow> = serde_json::from_value(runs["runs"].clone())
                    .context("unexpected runs document from the server")?;
                println!("{}", render::runs_list(&runs));
            }
        }
        RunsCommand::Show { id } => {
            let run = server
                .get(&format!("/api/v1/runs/{}", urlencode(&id)))
                .await?;
            if env.json {
                println!("{run}");
            } else {
                print!("{}", render::run_detail(&detail_from_json(&run)?));
            }
        }
    }
    Ok(Outcome::Success)
}

pub(super) async fn token(env: &Settings, command: TokenCommand) -> anyhow::Result<Outcome> {
    let store = env.store().await?;
    match command {
        TokenCommand::Create { name } => {
            let (token, hash) = auth::new_token();
            let id = uuid::Uuid::now_v7().simple().to_string();
            store.insert_token(&id, &name, &hash).await?;
            if env.json {
                println!(
                    "{}",
                    serde_json::json!({"id": id, "name": name, "token": token})
                );
            } else {
                eprintln!("created token `{name}` ({id}); it is shown once, keep it:");
                println!("{token}");
            }
        }
        TokenCommand::List => {
            let tokens = store.list_tokens().await?;
            if env.json {
                println!("{}", serde_json::to_string(&tokens)?);
            } else {
                let mut table = Table::new();
                table.load_preset(comfy_table::presets::NOTHING);
                table.set_header(["id", "name", "created", "last used", "revoked"]);
                for t in tokens {
                    table.add_row([
                        t.id,
                        t.name,
                        render::time(t.created_at),
                        t.last_used_at.map(render::time).unwrap_or_default(),
                        t.revoked_at.map(render::time).unwrap_or_default(),
                    ]);
                }
                println!("{table}");
            }
        }
        TokenCommand::Revoke { id } => {
            if store.revoke_token(&id).await? == 0 {
                eprintln!("error: no live token with id or name `{id}` (`orch token list`)");
                return Ok(Outcome::Failed);
            }
            eprintln!("revoked `{id}`");
        }
    }
    Ok(Outcome::Success)
}

pub(super) async fn schedule(env: &Settings, command: ScheduleCommand) -> anyhow::Result<Outcome> {
    match command {
        ScheduleCommand::List { workflows, next } => {
            let mut table = Table::new();
            table.load_preset(comfy_table::presets::NOTHING);
            table.set_header([
                "workflow",
                "#",
                "cron",
                "timezone",
                "overlap",
                "catchup",
                "next fire times (UTC)",
            ]);
            let mut rows = Vec::new();
            let mut ok = true;
            for wf in workflows_in(&workflows)? {
                let wf = match wf {
                    Ok(wf) => wf,
                    Err(e) => {
                        eprintln!("{e}");
                        ok = false;
                        continue;
                    }
                };
                for (i, s) in wf.schedules.iter().enumerate() {
                    let mut cursor = chrono::Utc::now();
                    let mut fires = Vec::new();
                    for _ in 0..next {
                        let Some(t) = ticks::next_fire(s, cursor) else {
                            break;
                        };
                        fires.push(t);
                        cursor = t;
                    }
                    rows.push(serde_json::json!({
                        "workflow": wf.name, "schedule": i, "cron": s.cron,
                        "timezone": s.timezone.name(), "overlap": s.overlap, "catchup": s.catchup,
                        "next": fires.iter().map(|t| t.to_rfc3339()).collect::<Vec<_>>(),
                    }));
                    table.add_row([
                        wf.name.clone(),
                        i.to_string(),
                        s.cron.clone(),
                        s.timezone.name().to_string(),
                        s.overlap.to_string(),
                        s.catchup.to_string(),
                        fires
                            .iter()
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    ]);
                }
            }
            if env.json {
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{table}");
            }
            Ok(if ok {
                Outcome::Success
            } else {
                Outcome::Invalid
            })
        }
        ScheduleCommand::Explain {
            workflow,
            limit,
            workflows,
        } => {
            let store = env.store().await?;
            let ticks = store.ticks(&workflow, limit).await?;
            let served = workflows_in(&workflows)
                .ok()
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .find(|w| w.name == workflow);
            if env.json {
                println!("{}", serde_json::to_string(&ticks)?);
                return Ok(Outcome::Success);
            }
            if let Some(wf) = &served {
                for (i, s) in wf.schedules.iter().enumerate() {
                    let next = ticks::next_fire(s, chrono::Utc::now())
                        .map(|t| t.with_timezone(&s.timezone).to_rfc3339())
                        .unwrap_or_else(|| "never".into());
                    println!(
                        "schedule {i}: `{}` in {} (overlap {}, catchup {}); next fire {next}",
                        s.cron,
                        s.timezone.name(),
                        s.overlap,
                        s.catchup
                    );
                }
            }
            if ticks.is_empty() {
                println!("no ticks recorded for `{workflow}` yet");
                return Ok(Outcome::Success);
            }
            let mut table = Table::new();
            table.load_preset(comfy_table::presets::NOTHING);
            table.set_header(["due (UTC)", "#", "outcome", "late", "run", "reason"]);
            for t in ticks {
                table.add_row([
                    render::time_ms(t.fire_at),
                    t.schedule.to_string(),
                    t.outcome.to_string(),
                    format!("{} ms", t.recorded_at - t.fire_at),
                    t.run_id
                        .map(|r| r[..12.min(r.len())].to_string())
                        .unwrap_or_default(),
                    t.reason,
                ]);
            }
            println!("{table}");
            Ok(Outcome::Success)
        }
    }
}

/// Every workflow file of a directory, loaded (errors rendered).
fn workflows_in(dir: &Path) -> anyhow::Result<Vec<Result<crate::workflow::Workflow, String>>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    Ok(paths
        .iter()
        .map(|p| {
            crate::workflow::load(p).map_err(|e| match e {
                crate::workflow::LoadError::Invalid(d) => d.render(false),
                other => other.to_string(),
            })
        })
        .collect())
}
