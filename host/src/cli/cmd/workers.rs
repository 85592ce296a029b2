//! `orch workers list`: the `orch serve` processes sharing the run store.

use crate::cli::render;
use crate::cli::settings::Settings;
use crate::cli::{CliError, WorkersCommand};

pub(super) async fn workers(settings: &Settings, command: WorkersCommand) -> Result<(), CliError> {
    let store = settings.store().await?;
    match command {
        WorkersCommand::List { since } => {
            let since_ms = i64::try_from(since.as_millis()).unwrap_or(i64::MAX / 2);
            store.sync_clock().await?;
            let now = store.now();
            let workers = store.workers(now - since_ms).await?;
            settings.emit(workers.as_slice(), |w| render::workers(w, now))?;
        }
    }
    Ok(())
}
