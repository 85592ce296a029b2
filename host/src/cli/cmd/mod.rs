//! One module per subcommand: a function from the command's arguments to `Ok(())` or a
//! [`CliError`] for the edge to show. [`dispatch`] picks it.

mod graph;
mod import;
mod lock;
mod plan;
mod plugin;
mod run;
mod runs;
mod schedule;
mod secret;
mod serve;
mod token;
mod trigger;
mod validate;
mod workers;

pub(super) use graph::GraphFormat;

use super::settings::Settings;
use super::{Cli, CliError, Command, Exit};
use serde::Serialize;

/// Run the parsed command.
pub(super) async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let settings = Settings::new(&cli);
    match cli.command {
        Command::Run {
            file,
            inputs,
            parallel,
        } => run::run(&settings, &file, &inputs, parallel).await,
        Command::Plan { file, inputs } => plan::plan(&settings, &file, &inputs).await,
        Command::Validate { files } => validate::validate(&settings, &files).await,
        Command::Graph { file, format } => graph::graph(&file, format),
        Command::Runs { command, remote } => runs::runs(&settings, command, remote).await,
        Command::Serve { args } => serve::serve(&settings, args).await,
        Command::Trigger {
            workflow,
            inputs,
            wait,
            remote,
        } => trigger::trigger(&settings, &workflow, &inputs, wait, remote).await,
        Command::Token { command } => token::token(&settings, command).await,
        Command::Workers { command } => workers::workers(&settings, command).await,
        Command::Schedule { command } => schedule::schedule(&settings, command).await,
        Command::Plugin { command } => plugin::plugin(&settings, command).await,
        Command::Secret { command } => secret::secret(&settings, command),
        Command::Schema { what } => {
            let super::SchemaKind::Workflow = what;
            print!("{}", super::schema::workflow_text());
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "orch", &mut std::io::stdout());
            Ok(())
        }
        Command::Init { dir } => super::schema::init(&dir),
        Command::Import { command } => import::import(&settings, command).await,
        Command::Lock {
            path,
            suggest: Some(runs),
            ..
        } => lock::suggest(&settings, &path, runs).await,
        Command::Lock {
            path,
            upgrade,
            accept,
            suggest: None,
        } => lock::lock(&settings, &path, upgrade, accept).await,
    }
}

/// `orch plan` then, if the plan went through, `orch run` (what `orch plugin test` does).
pub(super) async fn plan_then_run(
    settings: &Settings,
    file: &std::path::Path,
) -> Result<(), CliError> {
    plan::plan(settings, file, &[]).await?;
    run::run(settings, file, &[], 8).await
}

/// How `run` and `plan` end: the report as JSON or as text, then exit 1 unless it
/// `went_through`.
fn conclude<R: Serialize>(
    settings: &Settings,
    report: &R,
    text: fn(&R) -> String,
    went_through: bool,
) -> Result<(), CliError> {
    settings.emit(report, text)?;
    if went_through {
        Ok(())
    } else {
        Err(CliError::Reported(Exit::Failed))
    }
}
