//! `orch serve`: serve a directory of workflows (cron schedules, the HTTP API, webhooks) until
//! Ctrl-C or SIGTERM.

use crate::cli::CliError;
use crate::cli::ServeArgs;
use crate::cli::settings::{Settings, cancel_on_signal};
use crate::serve::ServeConfig;
use std::sync::Arc;

impl From<ServeArgs> for ServeConfig {
    fn from(args: ServeArgs) -> Self {
        ServeConfig {
            workflows: args.workflows,
            bind: args.bind,
            grace: args.grace,
            max_runs: args.max_runs,
            max_parallel: args.parallel,
            reload_every: args.reload_every,
            body_limit: args.max_body,
        }
    }
}

pub(super) async fn serve(settings: &Settings, args: ServeArgs) -> Result<(), CliError> {
    let store = settings.store().await?;
    let runtime = Arc::new(settings.runtime()?);
    let secret_store = Some(settings.secret_store()?);
    crate::serve::serve(
        args.into(),
        store,
        runtime,
        secret_store,
        cancel_on_signal(),
    )
    .await?;
    Ok(())
}
