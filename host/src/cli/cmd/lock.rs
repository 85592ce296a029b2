//! `orch lock`: pin the plugins of a directory of workflows in `orch.lock`, and refuse, until
//! accepted, an upgrade that lets a plugin import something new.

use crate::cli::CliError;
use crate::cli::prepare;
use crate::cli::render;
use crate::cli::settings::{FEW_SANDBOXES, Settings};
use crate::resolve::lock::{Lock, LockedPlugin, LockedStep, PluginDiff, source_key, steps_of};
use crate::resolve::{self, Sources};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The workflow files of `path` (a file, or every `*.toml` of a directory) and the directory
/// the lock lives in.
fn workflows(path: &Path) -> Result<(PathBuf, Vec<PathBuf>), CliError> {
    if path.is_file() {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        return Ok((dir, vec![path.to_path_buf()]));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok((path.to_path_buf(), files))
}

/// What `orch lock` found: new entries, changed ones with their diff, and the new lock.
pub(super) struct Locking {
    pub lock: Lock,
    pub added: Vec<String>,
    pub changed: Vec<PluginDiff>,
}

/// Resolve every workflow of `path` and compute the lock: references already locked stay
/// pinned unless named by `upgrade` (`Some(None)`: all of them).
pub(super) async fn compute(
    settings: &Settings,
    path: &Path,
    upgrade: Option<Option<&str>>,
) -> Result<(PathBuf, Locking), CliError> {
    let (dir, files) = workflows(path)?;
    let old = Lock::read(&dir)
        .map_err(CliError::invalid)?
        .unwrap_or_default();
    if let Some(Some(name)) = upgrade
        && !old
            .plugins
            .iter()
            .any(|p| p.source == name || p.name == name)
    {
        let known: Vec<&str> = old.plugins.iter().map(|p| p.source.as_str()).collect();
        return Err(CliError::invalid(format!(
            "nothing in the lock is `{name}`; locked: {}",
            known.join(", ")
        )));
    }
    // The pins resolution may use: every entry but the ones being upgraded.
    let mut pins = old.clone();
    pins.plugins.retain(|p| match upgrade {
        None => true,
        Some(None) => false,
        Some(Some(name)) => p.source != name && p.name != name,
    });
    let mut sources: Sources = settings.sources(dir.clone())?;
    sources.lock = Some(Arc::new(pins));
    sources.locked = false;
    let runtime = settings.runtime(FEW_SANDBOXES)?;
    let mut plugins: BTreeMap<String, LockedPlugin> = BTreeMap::new();
    let mut steps: Vec<LockedStep> = Vec::new();
    for file in &files {
        let workflow = prepare::workflow(file)?;
        let resolved = resolve::resolve(&runtime, &sources, workflow)
            .await
            .map_err(|d| CliError::Diagnostics(d.render(settings.color)))?;
        for step in resolved.steps.values() {
            let source = source_key(&step.plugin, &sources.lock_dir);
            if let Some(plugin) = resolved.plugin(&step.id) {
                plugins
                    .entry(source.clone())
                    .or_insert_with(|| plugin.locked(source));
            }
        }
        steps.extend(steps_of(resolved.workflow(), &sources.lock_dir));
    }
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for (source, new) in &plugins {
        match old.plugin(source) {
            None => added.push(source.clone()),
            Some(before) if before != new => {
                let diff = PluginDiff::between(before, new, &steps);
                if !diff.is_empty() {
                    changed.push(diff);
                }
            }
            Some(_) => {}
        }
    }
    let lock = Lock {
        version: 1,
        plugins: plugins.into_values().collect(),
        steps,
    };
    Ok((
        dir,
        Locking {
            lock,
            added,
            changed,
        },
    ))
}

/// `orch lock [PATH] [--upgrade [NAME]] [--accept]`.
pub(super) async fn lock(
    settings: &Settings,
    path: &Path,
    upgrade: Option<Option<String>>,
    accept: bool,
) -> Result<(), CliError> {
    let upgrade = upgrade.as_ref().map(|u| u.as_deref());
    let (dir, mut locking) = compute(settings, path, upgrade).await?;
    let escalations = locking.changed.iter().filter(|d| d.escalates()).count();
    if settings.json {
        println!(
            "{}",
            serde_json::json!({
                "lock": dir.join(crate::resolve::lock::LOCK_FILE),
                "added": locking.added,
                "changed": locking.changed,
                "escalations": escalations,
                "written": escalations == 0 || accept,
            })
        );
    } else {
        for source in &locking.added {
            println!("+ {source} (new)");
        }
        for diff in &locking.changed {
            print!("{}", render::plugin_diff(diff, settings.color));
        }
    }
    if escalations > 0 && !accept {
        return Err(CliError::failed(format!(
            "{escalations} plugin(s) would import something new: review the diff above, then run `orch lock --upgrade --accept` to record it (nothing was written)"
        )));
    }
    let written = locking
        .lock
        .write(&dir)
        .map_err(|e| CliError::failed(format!("writing the lock in {}: {e}", dir.display())))?;
    if !settings.json {
        println!(
            "locked {} plugin(s), {} step(s) in {}",
            locking.lock.plugins.len(),
            locking.lock.steps.len(),
            written.display()
        );
    }
    Ok(())
}

/// `orch lock --suggest [RUNS]`: grants each locked step holds but did not use in the last
/// RUNS runs of its workflow (directories are not observed, so never suggested).
pub(super) async fn suggest(settings: &Settings, path: &Path, runs: u32) -> Result<(), CliError> {
    let (dir, _) = workflows(path)?;
    let lock = Lock::read(&dir)
        .map_err(CliError::invalid)?
        .ok_or_else(|| {
            CliError::invalid(format!(
                "no orch.lock in {}: run `orch lock` first",
                dir.display()
            ))
        })?;
    let store = settings.store().await?;
    let mut by_workflow: BTreeMap<&str, crate::store::GrantsUsed> = BTreeMap::new();
    let mut unused = Vec::new();
    for step in &lock.steps {
        if !by_workflow.contains_key(step.workflow.as_str()) {
            let lately = store.grants_used_lately(&step.workflow, runs).await?;
            by_workflow.insert(&step.workflow, lately);
        }
        let lately = &by_workflow[step.workflow.as_str()];
        let (used, seen) = (
            &lately.used,
            lately.ran.get(&step.step).copied().unwrap_or(0),
        );
        if seen == 0 {
            continue;
        }
        for grant in &step.grants {
            let observed = !grant.starts_with("./") && !grant.starts_with('/');
            if observed && !used.iter().any(|(s, g)| *s == step.step && g == grant) {
                unused.push((
                    format!("{}/{}", step.workflow, step.step),
                    grant.clone(),
                    seen,
                ));
            }
        }
    }
    if settings.json {
        let rows: Vec<_> = unused
            .iter()
            .map(|(step, grant, seen)| serde_json::json!({"step": step, "grant": grant, "runs": seen}))
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
    } else if unused.is_empty() {
        println!("every observed grant was used in the last {runs} runs of its workflow");
    } else {
        for (step, grant, seen) in &unused {
            println!(
                "step {step}: \"{grant}\" unused in its last {seen} run(s): remove it from `allow` if it is not needed"
            );
        }
    }
    Ok(())
}
