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
    let (runtime, spec) = prepare::run_spec(settings, file, pairs).await?;
    let executor = Executor {
        runtime,
        store: settings.store().await?,
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
