//! `orch plugin list|inspect`: a plugin's name, version, config schema and what its imports let
//! it reach; `new|build|test` are the author's side (`cli::authoring`).

use crate::cli::CliError;
use crate::cli::PluginCommand;
use crate::cli::authoring;
use crate::cli::render;
use crate::cli::settings::{FEW_SANDBOXES, Settings};
use crate::oci::WasmConfig;
use crate::resolve::lock::{Lock, PluginDiff};
use crate::resolve::{self, ResolvedPlugin};
use crate::workflow::PluginRef;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(super) async fn plugin(settings: &Settings, command: PluginCommand) -> Result<(), CliError> {
    let names: Vec<String> = match command {
        PluginCommand::List => crate::runtime::builtin::names()
            .into_iter()
            .map(String::from)
            .collect(),
        PluginCommand::Inspect { plugin } if plugin.starts_with("oci://") => {
            return inspect_oci(settings, &plugin).await;
        }
        PluginCommand::Inspect { plugin } => vec![plugin],
        PluginCommand::New { name, lang, dir } => {
            return authoring::new(settings, &name, lang, &dir);
        }
        PluginCommand::Build { dir } => return authoring::build(settings, &dir).await,
        PluginCommand::Test {
            dir,
            workflow,
            with,
            allow,
        } => {
            let with = with.map(|json| (json, allow));
            return authoring::test(settings, &dir, workflow.as_deref(), with).await;
        }
        PluginCommand::Push { file, reference } => return push(settings, &file, &reference).await,
        PluginCommand::Pull { reference } => return pull(settings, &reference, None).await,
        PluginCommand::Add { reference, dir } => {
            return pull(settings, &reference, Some(&dir)).await;
        }
        PluginCommand::Diff { old, new } => return diff(settings, &old, &new).await,
    };
    let runtime = settings.runtime(FEW_SANDBOXES)?;
    let mut infos = Vec::new();
    for name in names {
        let plugin = load(settings, &runtime, &name).await?;
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

/// A plugin named on the command line: a built-in, a `.wasm` path or an `oci://` reference.
fn reference(text: &str) -> PluginRef {
    if let Some(oci) = text.strip_prefix("oci://") {
        let (reference, digest) = match oci.split_once('@') {
            Some((r, d)) => (r.to_string(), Some(d.to_string())),
            None => (oci.to_string(), None),
        };
        PluginRef::Oci { reference, digest }
    } else if text.contains('/') || text.ends_with(".wasm") {
        PluginRef::File {
            path: PathBuf::from(text),
            sha256: None,
        }
    } else {
        PluginRef::Builtin(text.to_string())
    }
}

/// Load (pull, compile, describe) a plugin named on the command line.
async fn load(
    settings: &Settings,
    runtime: &crate::runtime::Runtime,
    text: &str,
) -> Result<Arc<ResolvedPlugin>, CliError> {
    let sources = settings.sources(PathBuf::from("."))?;
    resolve::load(runtime, &sources, &reference(text))
        .await
        .map_err(|(message, help)| CliError::invalid(format!("{message}\n  help: {help}")))
}

fn registry(settings: &Settings) -> Result<Arc<crate::oci::Registry>, CliError> {
    settings
        .sources(PathBuf::from("."))?
        .registry
        .ok_or_else(|| CliError::failed("no registry client"))
}

fn oci_error(e: crate::oci::OciError) -> CliError {
    CliError::invalid(e)
}

/// `orch plugin push FILE oci://...`: a checked orch plugin as a CNCF wasm artifact whose
/// config lists its imports and exports and whose annotations carry `describe()`.
async fn push(settings: &Settings, file: &Path, target: &str) -> Result<(), CliError> {
    let parsed = crate::oci::parse(target).map_err(oci_error)?;
    let runtime = settings.runtime(FEW_SANDBOXES)?;
    let plugin = load(settings, &runtime, &file.display().to_string()).await?;
    let bytes = std::fs::read(file)?;
    let layer = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    let config = WasmConfig::component(
        plugin.plugin.imports.clone(),
        plugin.plugin.exports.clone(),
        layer.clone(),
        format!("orch:plugin/step@{}", crate::runtime::WORLD_VERSION),
    );
    let locked = plugin.locked(target.to_string());
    let describe = serde_json::json!({
        "name": plugin.info.name,
        "version": plugin.info.version,
        "description": plugin.info.description,
        "schema": locked.schema,
        "fields": locked.fields,
    });
    let annotations = BTreeMap::from([
        (
            "org.opencontainers.image.title".to_string(),
            plugin.info.name.clone(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            plugin.info.version.clone(),
        ),
        (
            "org.opencontainers.image.description".to_string(),
            plugin.info.description.clone(),
        ),
        (
            crate::oci::DESCRIBE_ANNOTATION.to_string(),
            describe.to_string(),
        ),
    ]);
    let size = bytes.len() as u64;
    let digest = registry(settings)?
        .push(&parsed, bytes, &config, annotations)
        .await
        .map_err(oci_error)?;
    if settings.json {
        println!(
            "{}",
            serde_json::json!({"reference": target, "digest": digest, "component": layer, "size": size})
        );
    } else {
        println!(
            "pushed {} {} to {target}\n  digest {digest}\n  component {layer} ({})",
            plugin.info.name,
            plugin.info.version,
            bytesize::ByteSize(size)
        );
    }
    Ok(())
}

/// `orch plugin pull REF` (and `add`, which also pins it in DIR's lock).
async fn pull(settings: &Settings, text: &str, add_to: Option<&Path>) -> Result<(), CliError> {
    if !text.starts_with("oci://") {
        return Err(CliError::invalid(format!(
            "`{text}` is not an oci:// reference"
        )));
    }
    crate::oci::parse(text).map_err(oci_error)?;
    let runtime = settings.runtime(FEW_SANDBOXES)?;
    let plugin = load(settings, &runtime, text).await?;
    let bare = text.split('@').next().unwrap_or(text).to_string();
    let entry = plugin.locked(bare.clone());
    if let Some(dir) = add_to {
        let mut lock = Lock::read(dir)
            .map_err(CliError::invalid)?
            .unwrap_or_default();
        match lock.plugin(&bare) {
            Some(old) if *old != entry => {
                return Err(CliError::invalid(format!(
                    "{bare} is already locked at {}: `orch lock --upgrade {bare}` shows what changes",
                    old.digest
                )));
            }
            Some(_) => {}
            None => lock.plugins.push(entry.clone()),
        }
        lock.write(dir)?;
    }
    if settings.json {
        println!("{}", serde_json::to_string(&entry)?);
    } else {
        println!(
            "{} {} {}\n  digest {}\n  component {} ({}), precompiled{}",
            bare,
            entry.name,
            entry.version,
            entry.digest,
            entry.component,
            bytesize::ByteSize(entry.size),
            if add_to.is_some() { ", locked" } else { "" }
        );
    }
    Ok(())
}

/// `orch plugin inspect oci://...`: from the manifest and config, without the component.
async fn inspect_oci(settings: &Settings, text: &str) -> Result<(), CliError> {
    let parsed = crate::oci::parse(text).map_err(oci_error)?;
    let artifact = registry(settings)?
        .inspect(&parsed)
        .await
        .map_err(oci_error)?;
    let describe: serde_json::Value = artifact
        .annotations
        .get(crate::oci::DESCRIBE_ANNOTATION)
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    let imports = artifact
        .config
        .component
        .as_ref()
        .map(|c| c.imports.clone())
        .unwrap_or_default();
    if settings.json {
        println!(
            "{}",
            serde_json::json!({
                "reference": text,
                "digest": artifact.manifest_digest,
                "component": artifact.layer_digest,
                "size": artifact.size,
                "describe": describe,
                "capabilities": crate::capability::reach::capabilities(&crate::capability::reach::classify(&imports), false),
                "imports": crate::capability::reach::classify(&imports),
            })
        );
    } else {
        let info = crate::runtime::PluginInfo {
            name: describe["name"].as_str().unwrap_or("?").to_string(),
            version: describe["version"].as_str().unwrap_or("?").to_string(),
            description: describe["description"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            config_schema: String::new(),
        };
        println!(
            "{text}\n  digest {}\n  component {} ({}), not downloaded",
            artifact.manifest_digest,
            artifact.layer_digest,
            bytesize::ByteSize(artifact.size)
        );
        print!("{}", render::plugin_info(&info, &imports));
    }
    Ok(())
}

/// `orch plugin diff OLD NEW`: exit 1 when NEW imports something OLD did not.
async fn diff(settings: &Settings, old: &str, new: &str) -> Result<(), CliError> {
    let runtime = settings.runtime(FEW_SANDBOXES)?;
    let before = load(settings, &runtime, old).await?.locked(new.to_string());
    let after = load(settings, &runtime, new).await?.locked(new.to_string());
    let diff = PluginDiff::between(&before, &after, &[]);
    if settings.json {
        println!("{}", serde_json::to_string(&diff)?);
    } else {
        print!("{}", render::plugin_diff(&diff, settings.color));
    }
    if diff.escalates() {
        return Err(CliError::failed(format!(
            "{new} imports {} that {old} does not",
            diff.added.join(", ")
        )));
    }
    Ok(())
}
