//! `orch plan`: what a run would change, asking every plugin and changing nothing.

use crate::cli::CliError;
use crate::cli::prepare;
use crate::cli::progress::TerminalObserver;
use crate::cli::render;
use crate::cli::settings::{FEW_SANDBOXES, Settings};
use crate::executor::{self, Observer, Silent};
use std::path::Path;
use std::sync::Arc;

pub(super) async fn plan(
    settings: &Settings,
    file: &Path,
    pairs: &[String],
) -> Result<(), CliError> {
    let (runtime, spec) = prepare::run_spec(settings, file, pairs, FEW_SANDBOXES).await?;
    // Planning changes nothing and records nothing: the store is not opened.
    let observer: Arc<dyn Observer> = if settings.json {
        Arc::new(Silent)
    } else {
        Arc::new(TerminalObserver::new(false))
    };
    let report = executor::plan(&runtime, spec, observer).await?;
    super::conclude(settings, &report, render::plan, report.ok())
}
