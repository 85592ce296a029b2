//! `orch validate`: check workflow files, including each step's `with` against its plugin's
//! schema. Every file is checked, and each one's problems are shown as they are found.

use crate::cli::prepare;
use crate::cli::settings::{FEW_SANDBOXES, Settings};
use crate::cli::{CliError, Exit};
use crate::runtime::Runtime;
use std::path::{Path, PathBuf};

pub(super) async fn validate(settings: &Settings, files: &[PathBuf]) -> Result<(), CliError> {
    let runtime = settings.runtime(FEW_SANDBOXES)?;
    let mut ok = true;
    let mut routed = Vec::new();
    for file in files {
        match check(settings, &runtime, file).await {
            Ok((steps, labels)) => {
                if !settings.json {
                    let noun = if steps == 1 { "step" } else { "steps" };
                    println!("ok: {} ({steps} {noun})", file.display());
                }
                routed.extend(labels);
            }
            // Several files, several reports: each through the one renderer, then on to the next.
            Err(e) => {
                e.report();
                ok = false;
            }
        }
    }
    if !routed.is_empty() {
        warn_unserved_labels(settings, &routed).await;
    }
    if ok {
        Ok(())
    } else {
        Err(CliError::Reported(Exit::Invalid))
    }
}

/// A step routed by `runs_on`: where, and which labels.
struct Routed {
    file: PathBuf,
    step: String,
    labels: Vec<String>,
}

/// One file: its number of steps and its routed steps, when it is valid.
async fn check(
    settings: &Settings,
    runtime: &Runtime,
    file: &Path,
) -> Result<(usize, Vec<Routed>), CliError> {
    let wf = prepare::workflow(file)?;
    let steps = wf.steps.len();
    let routed = wf
        .steps
        .values()
        .filter(|s| !s.runs_on.is_empty())
        .map(|s| Routed {
            file: file.to_path_buf(),
            step: s.id.clone(),
            labels: s.runs_on.clone(),
        })
        .collect();
    prepare::plugins(settings, runtime, wf).await?;
    Ok((steps, routed))
}

/// Warn about `runs_on` labels no worker registered in the run store has had in the last day:
/// such a step would wait (a warning, not an error: the worker may simply not be up yet).
async fn warn_unserved_labels(settings: &Settings, routed: &[Routed]) {
    let Some(store) = settings.existing_store().await else {
        return;
    };
    let day = 24 * 3600 * 1000;
    let Ok(workers) = store.workers(crate::store::now_ms() - day).await else {
        return;
    };
    // One warning per file and label set, naming its steps.
    let mut groups: Vec<(&Routed, Vec<&str>)> = Vec::new();
    for r in routed {
        if workers.iter().any(|w| w.can_run(&r.labels)) {
            continue;
        }
        match groups
            .iter_mut()
            .find(|(g, _)| g.file == r.file && g.labels == r.labels)
        {
            Some((_, steps)) => steps.push(&r.step),
            None => groups.push((r, vec![&r.step])),
        }
    }
    for (r, steps) in groups {
        let seen: std::collections::BTreeSet<&str> = workers
            .iter()
            .flat_map(|w| w.labels.iter().map(String::as_str))
            .collect();
        let missing: Vec<&str> = r
            .labels
            .iter()
            .map(String::as_str)
            .filter(|l| !seen.contains(l))
            .collect();
        let what = if missing.is_empty() {
            format!("no worker had all of `{}`", r.labels.join("`, `"))
        } else {
            format!("no worker had `{}`", missing.join("`, `"))
        };
        let who = match steps.len() {
            1 => format!("step `{}` runs", steps[0]),
            _ => format!("steps `{}` run", steps.join("`, `")),
        };
        eprintln!(
            "warning: {}: {who} on `{}`, but {what} in the last day ({} workers seen): \
             it will wait until one runs, e.g. `orch serve --worker-labels {}`",
            r.file.display(),
            r.labels.join("`, `"),
            workers.len(),
            r.labels.join(",")
        );
    }
}
