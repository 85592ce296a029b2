//! `orch plugin list|inspect`: a plugin's name, version, config schema and what its imports let
//! it reach; `new|build|test` are the author's side (`cli::authoring`).

use crate::cli::CliError;
use crate::cli::PluginCommand;
use crate::cli::authoring;
use crate::cli::render;
use crate::cli::settings::Settings;
use crate::resolve;
use crate::workflow::PluginRef;
use std::path::PathBuf;

pub(super) async fn plugin(settings: &Settings, command: PluginCommand) -> Result<(), CliError> {
    let names: Vec<String> = match command {
        PluginCommand::List => crate::runtime::builtin::names()
            .into_iter()
            .map(String::from)
            .collect(),
        PluginCommand::Inspect { plugin } => vec![plugin],
        PluginCommand::New { name, lang, dir } => {
            return authoring::new(settings, &name, lang, &dir);
        }
        PluginCommand::Build { dir } => return authoring::build(settings, &dir).await,
        PluginCommand::Test { dir, workflow } => {
            return authoring::test(settings, &dir, workflow.as_deref()).await;
        }
    };
    let runtime = settings.runtime()?;
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
        let plugin = resolve::load(&runtime, &reference)
            .await
            .map_err(|(message, help)| CliError::invalid(format!("{message}\n  help: {help}")))?;
        infos.push((plugin.info.clone(), plugin.plugin.imports.clone()));
    }
    if settings.json {
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
    Ok(())
}
