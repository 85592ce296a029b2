//! `orch validate`: check workflow files, including each step's `with` against its plugin's
//! schema. Every file is checked, and each one's problems are shown as they are found.

use crate::cli::prepare;
use crate::cli::settings::Settings;
use crate::cli::{CliError, Exit};
use crate::runtime::Runtime;
use std::path::{Path, PathBuf};

pub(super) async fn validate(settings: &Settings, files: &[PathBuf]) -> Result<(), CliError> {
    let runtime = settings.runtime()?;
    let mut ok = true;
    for file in files {
        match check(settings, &runtime, file).await {
            Ok(steps) if !settings.json => println!("ok: {} ({steps} steps)", file.display()),
            Ok(_) => {}
            // Several files, several reports: each through the one renderer, then on to the next.
            Err(e) => {
                e.report();
                ok = false;
            }
        }
    }
    if ok {
        Ok(())
    } else {
        Err(CliError::Reported(Exit::Invalid))
    }
}

/// One file: its number of steps when it is valid.
async fn check(settings: &Settings, runtime: &Runtime, file: &Path) -> Result<usize, CliError> {
    let wf = prepare::workflow(file)?;
    let steps = wf.steps.len();
    prepare::plugins(settings, runtime, wf).await?;
    Ok(steps)
}
