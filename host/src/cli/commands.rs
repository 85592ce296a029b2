//! One function per subcommand; each returns an [`Outcome`] or an error for the edge to print.

use super::progress::{JsonObserver, TerminalObserver};
use super::settings::{Settings, cancel_on_signal};
use super::{Cli, Command, Outcome, PluginCommand, RunsCommand, SecretCommand, render};
use crate::executor::{ExecError, Executor, Observer, RunSpec};
use crate::resolve::{self as resolved, ResolvedWorkflow};
use crate::runtime::Runtime;
use crate::store::Trigger;
use crate::workflow::{self, LoadError, PluginRef, Workflow, inputs};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Run the parsed command.
pub async fn dispatch(cli: Cli) -> anyhow::Result<Outcome> {
    let env = Settings::new(&cli);
    match cli.command {
        Command::Run {
            file,
            inputs,
            parallel,
        } => run(&env, &file, &inputs, parallel).await,
        Command::Plan { file, inputs } => plan(&env, &file, &inputs).await,
        Command::Validate { files } => validate(&env, &files).await,
        Command::Graph { file, format } => match load(&file) {
            Ok(wf) => {
                print!("{}", super::graph::render(&wf, format));
                Ok(Outcome::Success)
            }
            Err(outcome) => Ok(outcome),
        },
        Command::Runs { command, remote } => match remote.server {
            Some(server) => super::service::remote_runs(&env, command, &server, remote.token).await,
            None => runs(&env, command).await,
        },
        Command::Serve {
            workflows,
            bind,
            grace,
            max_runs,
            parallel,
            reload_every,
            max_body,
        } => {
            let config = crate::serve::ServeConfig {
                workflows,
                bind,
                grace,
                max_runs,
                max_parallel: parallel,
                reload_every,
                body_limit: max_body,
            };
            super::service::serve(&env, config).await
        }
        Command::Trigger {
            workflow,
            inputs,
            wait,
            remote,
        } => super::service::trigger(&env, &workflow, &inputs, wait, remote).await,
        Command::Token { command } => super::service::token(&env, command).await,
        Command::Schedule { command } => super::service::schedule(&env, command).await,
        Command::Plugin { command } => plugin(&env, command).await,
        Command::Secret { command } => secret(&env, command),
    }
}

/// Load a workflow, printing its diagnostics on failure.
fn load(file: &Path) -> Result<Workflow, Outcome> {
    match workflow::load(file) {
        Ok(wf) => Ok(wf),
        Err(LoadError::Invalid(diagnostics)) => {
            eprint!("{}", diagnostics.render(std::io::stderr().is_terminal()));
            Err(Outcome::Invalid)
        }
        Err(e @ LoadError::Read { .. }) => {
            eprintln!("error: {e}");
            Err(Outcome::Invalid)
        }
    }
}

/// Load plugins and check every `with`, printing diagnostics on failure.
async fn resolve(
    env: &Settings,
    runtime: &Runtime,
    wf: Workflow,
) -> Result<ResolvedWorkflow, Outcome> {
    resolved::resolve(runtime, wf).await.map_err(|d| {
        eprint!("{}", d.render(env.color));
        Outcome::Invalid
    })
}

/// Parse `--input` pairs and resolve them against the declared inputs.
fn resolve_inputs(
    wf: &Workflow,
    pairs: &[String],
) -> Result<serde_json::Map<String, serde_json::Value>, Outcome> {
    let report = |errors: Vec<inputs::InputError>| {
        for e in errors {
            eprintln!("error: {}: {e}", wf.source.path);
        }
        Outcome::Invalid
    };
    let given = inputs::parse_cli_pairs(&wf.inputs, pairs).map_err(report)?;
    inputs::resolve(&wf.inputs, &given).map_err(report)
}

/// Everything before a run or a plan: workflow, inputs, runtime, plugins. `Err(outcome)` when
/// something was invalid (already reported).
async fn prepare(
    env: &Settings,
    file: &Path,
    pairs: &[String],
) -> anyhow::Result<Result<(Arc<Runtime>, RunSpec), Outcome>> {
    let wf = match load(file) {
        Ok(wf) => wf,
        Err(o) => return Ok(Err(o)),
    };
    let inputs = match resolve_inputs(&wf, pairs) {
        Ok(i) => i,
        Err(o) => return Ok(Err(o)),
    };
    let runtime = Arc::new(env.runtime()?);
    let workflow = match resolve(env, &runtime, wf).await {
        Ok(p) => p,
        Err(o) => return Ok(Err(o)),
    };
    let spec = RunSpec {
        workflow: Arc::new(workflow),
        inputs,
        trigger: Trigger::Cli,
        process_env: std::env::vars().collect(),
        control: crate::executor::RunControl {
            cancel: cancel_on_signal(),
            ..Default::default()
        },
        resume: None,
        secret_store: Some(env.secret_store()?),
    };
    Ok(Ok((runtime, spec)))
}

/// A missing secret or env value is the user's to fix (exit 2); anything else is an error.
fn reported<T>(result: Result<T, ExecError>) -> anyhow::Result<Result<T, Outcome>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(e @ (ExecError::Lookup(_) | ExecError::Connection(_))) => {
            eprintln!("error: {e}");
            Ok(Err(Outcome::Invalid))
        }
        Err(e) => Err(e.into()),
    }
}

async fn run(
    env: &Settings,
    file: &Path,
    pairs: &[String],
    parallel: usize,
) -> anyhow::Result<Outcome> {
    let (runtime, spec) = match prepare(env, file, pairs).await? {
        Ok(prepared) => prepared,
        Err(o) => return Ok(o),
    };
    let executor = Executor {
        runtime,
        store: env.store().await?,
        max_parallel: parallel,
    };
    let observer: Arc<dyn Observer> = if env.json {
        Arc::new(JsonObserver)
    } else {
        Arc::new(TerminalObserver::new(std::io::stderr().is_terminal()))
    };
    let report = match reported(executor.run(spec, observer).await)? {
        Ok(r) => r,
        Err(o) => return Ok(o),
    };
    if env.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", render::run_summary(&report));
    }
    Ok(if report.succeeded() {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

async fn plan(env: &Settings, file: &Path, pairs: &[String]) -> anyhow::Result<Outcome> {
    let (runtime, spec) = match prepare(env, file, pairs).await? {
        Ok(prepared) => prepared,
        Err(o) => return Ok(o),
    };
    // Planning changes nothing and records nothing: the store is not opened.
    let observer: Arc<dyn Observer> = if env.json {
        Arc::new(crate::executor::Silent)
    } else {
        Arc::new(TerminalObserver::new(false))
    };
    let report = match reported(crate::executor::plan(&runtime, spec, observer).await)? {
        Ok(r) => r,
        Err(o) => return Ok(o),
    };
    if env.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render::plan(&report));
    }
    Ok(if report.ok() {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

async fn validate(env: &Settings, files: &[PathBuf]) -> anyhow::Result<Outcome> {
    let runtime = env.runtime()?;
    let mut ok = true;
    for file in files {
        let Ok(wf) = load(file) else {
            ok = false;
            continue;
        };
        let steps = wf.steps.len();
        if resolve(env, &runtime, wf).await.is_err() {
            ok = false;
            continue;
        }
        if !env.json {
            println!("ok: {} ({steps} steps)", file.display());
        }
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::Invalid
    })
}

async fn runs(env: &Settings, command: RunsCommand) -> anyhow::Result<Outcome> {
    let store = env.store().await?;
    match command {
        RunsCommand::List { limit } => {
            let runs = store.list_runs(limit).await?;
            if env.json {
                println!("{}", serde_json::to_string(&runs)?);
            } else {
                println!("{}", render::runs_list(&runs));
            }
        }
        RunsCommand::Show { id } => {
            let detail = store.get_run(&id).await?;
            if env.json {
                println!("{}", serde_json::to_string(&detail)?);
            } else {
                print!("{}", render::run_detail(&detail));
            }
        }
    }
    Ok(Outcome::Success)
}

async fn plugin(env: &Settings, command: PluginCommand) -> anyhow::Result<Outcome> {
    let runtime = env.runtime()?;
    let names: Vec<String> = match command {
        PluginCommand::List => crate::runtime::builtin::names()
            .into_iter()
            .map(String::from)
            .collect(),
        PluginCommand::Inspect { plugin } => vec![plugin],
    };
    let mut infos = Vec::new();
    for name in names {
        let reference = if name.contains('/') || name.ends_with(".wasm") {
            PluginRef::File {
                path: PathBuf::from(&name),
                sha256: None,
            }
        } else {
            PluginRef::Builtin(name.clone())
        };
        match resolved::load(&runtime, &reference).await {
            Ok(p) => infos.push((p.info.clone(), p.plugin.imports.clone())),
            Err((message, help)) => {
                eprintln!("error: {message}\n  help: {help}");
                return Ok(Outcome::Invalid);
            }
        }
    }
    if env.json {
        let json: Vec<_> = infos
            .iter()
            .map(|(info, imports)| render::plugin_json(info, imports))
            .collect();
        println!("{}", serde_json::to_string(&json)?);
    } else {
        for (info, imports) in &infos {
            print!("{}", render::plugin_info(info, imports));
        }
    }
    Ok(Outcome::Success)
}

fn secret(env: &Settings, command: SecretCommand) -> anyhow::Result<Outcome> {
    let store = env.secret_store()?;
    match command {
        SecretCommand::List => {
            for name in store.list()? {
                println!("{name}");
            }
        }
        SecretCommand::Get { name } => match store.get(&name)? {
            Some(value) => println!("{value}"),
            None => {
                eprintln!(
                    "error: no secret `{name}` in the secret store (`orch secret list` shows them)"
                );
                return Ok(Outcome::Failed);
            }
        },
        SecretCommand::Set { name } => {
            let mut value = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)?;
            store.set(&name, value.trim_end_matches(['\n', '\r']))?;
        }
        SecretCommand::Rm { name } => {
            if !store.remove(&name)? {
                eprintln!("error: no secret `{name}` in the secret store");
                return Ok(Outcome::Failed);
            }
        }
    }
    Ok(Outcome::Success)
}
