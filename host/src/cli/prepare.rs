//! A workflow file made ready for a command: validated, plugins resolved, `--input`s bound, and
//! for `run` and `plan` the whole [`RunSpec`]; problems come back as [`CliError`]s (exit 2).

use super::CliError;
use super::settings::{Settings, cancel_on_signal};
use crate::executor::{RunControl, RunSpec};
use crate::resolve::{self, ResolvedWorkflow};
use crate::runtime::Runtime;
use crate::store::Trigger;
use crate::workflow::{self, LoadError, Workflow, inputs};
use serde_json::{Map, Value as Json};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

/// Read, parse and validate a workflow file.
pub(super) fn workflow(file: &Path) -> Result<Workflow, CliError> {
    workflow::load(file).map_err(|e| match e {
        LoadError::Invalid(diagnostics) => {
            CliError::Diagnostics(diagnostics.render(std::io::stderr().is_terminal()))
        }
        e @ LoadError::Read { .. } => CliError::invalid(e),
    })
}

/// Load the workflow's plugins and check every `with` against its plugin's schema.
pub(super) async fn plugins(
    settings: &Settings,
    runtime: &Runtime,
    wf: Workflow,
) -> Result<ResolvedWorkflow, CliError> {
    let dir = std::path::Path::new(&*wf.source.path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(
            || std::path::PathBuf::from("."),
            std::path::Path::to_path_buf,
        );
    let sources = settings
        .sources(dir)?
        .reload(settings.locked)
        .map_err(CliError::invalid)?;
    resolve::resolve(runtime, &sources, wf)
        .await
        .map_err(|d| CliError::Diagnostics(d.render(settings.color)))
}

/// Parse `--input` pairs and bind them to the declared inputs; every bad one is reported.
fn inputs(wf: &Workflow, pairs: &[String]) -> Result<Map<String, Json>, CliError> {
    let invalid = |errors: Vec<inputs::InputError>| {
        CliError::Invalid(
            errors
                .iter()
                .map(|e| format!("{}: {e}", wf.source.path))
                .collect(),
        )
    };
    let given = inputs::parse_cli_pairs(&wf.inputs, pairs).map_err(invalid)?;
    inputs::resolve(&wf.inputs, &given).map_err(invalid)
}

/// Everything before a run or a plan: workflow, inputs, runtime (with room for `sandboxes`
/// plugin instances at once), plugins.
pub(super) async fn run_spec(
    settings: &Settings,
    file: &Path,
    pairs: &[String],
    sandboxes: u32,
) -> Result<(Arc<Runtime>, RunSpec), CliError> {
    let wf = workflow(file)?;
    let inputs = inputs(&wf, pairs)?;
    let runtime = Arc::new(settings.runtime(sandboxes)?);
    let workflow = plugins(settings, &runtime, wf).await?;
    let spec = RunSpec {
        workflow: Arc::new(workflow),
        inputs,
        trigger: Trigger::Cli,
        process_env: std::env::vars().collect(),
        control: RunControl {
            cancel: cancel_on_signal(),
            ..Default::default()
        },
        resume: None,
        secret_store: Some(settings.secret_store()?),
    };
    Ok((runtime, spec))
}
