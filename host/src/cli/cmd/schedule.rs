//! `orch schedule list|explain`: each schedule's next fire times, and why recent ticks did what
//! they did.

use crate::cli::render;
use crate::cli::settings::Settings;
use crate::cli::{CliError, Exit, ScheduleCommand};
use crate::serve::fire_times as ticks;
use crate::workflow::{self, LoadError, Workflow};
use anyhow::Context;
use std::path::Path;

pub(super) async fn schedule(
    settings: &Settings,
    command: ScheduleCommand,
) -> Result<(), CliError> {
    match command {
        ScheduleCommand::List { workflows, next } => list(settings, &workflows, next),
        ScheduleCommand::Explain {
            workflow,
            limit,
            workflows,
        } => explain(settings, &workflow, limit, &workflows).await,
    }
}

/// Every schedule of a workflows directory with its next `next` fire times. A file that does not
/// load is reported and skipped; the table still shows the others, then the exit code is 2.
fn list(settings: &Settings, dir: &Path, next: usize) -> Result<(), CliError> {
    let mut table = render::plain_table(&[
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
    for wf in workflows_in(dir)? {
        let wf = match wf {
            Ok(wf) => wf,
            Err(problem) => {
                // Several files, several problems: each printed as it is found (the text
                // `workflows_in` rendered), and the listing goes on.
                eprintln!("{problem}");
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
    if settings.json {
        println!("{}", serde_json::Value::Array(rows));
    } else {
        println!("{table}");
    }
    if ok {
        Ok(())
    } else {
        Err(CliError::Reported(Exit::Invalid))
    }
}

/// Recent ticks of a workflow's schedules, after its next fire times when its file is in `dir`.
async fn explain(
    settings: &Settings,
    workflow: &str,
    limit: i64,
    dir: &Path,
) -> Result<(), CliError> {
    let store = settings.store().await?;
    let ticks = store.ticks(workflow, limit).await?;
    if settings.json {
        println!("{}", serde_json::to_string(&ticks)?);
        return Ok(());
    }
    let served = workflows_in(dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .find(|w| w.name == workflow);
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
    } else {
        print!("{}", render::ticks(&ticks));
    }
    Ok(())
}

/// Every workflow file of a directory, loaded; a file that does not load comes back as the text
/// to show for it (its diagnostics, rendered).
fn workflows_in(dir: &Path) -> anyhow::Result<Vec<Result<Workflow, String>>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    Ok(paths
        .iter()
        .map(|p| {
            workflow::load(p).map_err(|e| match e {
                LoadError::Invalid(d) => d.render(false),
                other => other.to_string(),
            })
        })
        .collect())
}
