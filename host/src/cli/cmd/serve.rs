//! `orch serve`: serve a directory of workflows (cron schedules, the HTTP API, webhooks) until
//! Ctrl-C or SIGTERM.

use crate::cli::CliError;
use crate::cli::ServeArgs;
use crate::cli::settings::{Settings, cancel_on_signal};
use crate::serve::ServeConfig;
use std::sync::Arc;

/// The server's settings; `--locked` (global) also makes a missing lock an error.
fn config(settings: &Settings, args: ServeArgs) -> Result<ServeConfig, CliError> {
    let mut sources = settings.sources(args.workflows.clone())?;
    sources.locked = !args.unlocked;
    sources.strict = settings.locked;
    sources.reload(sources.strict).map_err(CliError::invalid)?;
    Ok(ServeConfig {
        workflows: args.workflows,
        bind: args.bind,
        grace: args.grace,
        worker: crate::serve::WorkerConfig {
            labels: args.worker_labels,
            untagged: !args.tagged_only,
            lease: args.lease,
            max_steps: args.parallel.max(1),
            max_runs: args.max_runs.max(1),
        },
        reload_every: args.reload_every,
        body_limit: args.max_body,
        sources,
    })
}

pub(super) async fn serve(settings: &Settings, args: ServeArgs) -> Result<(), CliError> {
    let store = settings.store().await?;
    let runtime = Arc::new(settings.runtime(crate::runtime::MAX_SANDBOXES)?);
    let secret_store = Some(settings.secret_store()?);
    crate::serve::serve(
        config(settings, args)?,
        store,
        runtime,
        secret_store,
        cancel_on_signal(),
    )
    .await?;
    Ok(())
}
