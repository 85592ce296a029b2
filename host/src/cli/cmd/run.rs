//! `orch run`: run a workflow now, with live progress on stderr and the summary on stdout.

use crate::cli::CliError;
use crate::cli::prepare;
use crate::cli::progress::{JsonObserver, TerminalObserver};
use crate::cli::render;
use crate::cli::settings::Settings;
use crate::executor::{Executor, Observer};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

pub(super) async fn run(
    settings: &Settings,
    file: &Path,
    pairs: &[String],
    parallel: usize,
) -> Result<(), CliError> {
    // The store opens and migrates on a task of its own while the plugins load.
    let store = settings.open_store_soon();
    // One sandbox per step running at once, and one for a plugin describing itself.
    let sandboxes = u32::try_from(parallel.saturating_add(1)).unwrap_or(u32::MAX);
    // A workflow that is wrong is reported as such, whatever the store says.
    let (runtime, spec) = prepare::run_spec(settings, file, pairs, sandboxes)
        .await
        .inspect_err(|_| store.abort())?;
    let store = store.await.map_err(anyhow::Error::from)??;
    let executor = Executor {
        runtime,
        store,
        max_parallel: parallel,
    };
    let observer: Arc<dyn Observer> = if settings.json {
        Arc::new(JsonObserver)
    } else {
        Arc::new(TerminalObserver::new(std::io::stderr().is_terminal()))
    };
    let report = executor.run(spec, observer).await?;
    super::conclude(settings, &report, render::run_summary, report.succeeded())
}
