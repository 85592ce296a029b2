//! Writing plugins: `orch plugin new` (a scaffold per language), `orch plugin build` (the
//! language's toolchain, then a check that the result fits the world and a precompile into the
//! cache) and `orch plugin test` (plan, then run, the plugin's own test workflow).

mod kit;
mod toolchain;

use crate::cli::CliError;
use crate::cli::settings::Settings;
use std::path::{Path, PathBuf};

pub(super) use toolchain::build;

/// The kit written out beside the component cache.
fn kit(settings: &Settings) -> Result<PathBuf, CliError> {
    let cache = absolute(&settings.kit_cache()?)?;
    kit::materialize(&cache).map_err(|e| {
        CliError::failed(format!(
            "writing the plugin kit to {}: {e}",
            cache.display()
        ))
    })
}

/// `path` made absolute: the toolchains run in the plugin's directory, so every path handed to
/// them must not depend on where orch was started.
fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    std::path::absolute(path).map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))
}

/// The workflow of `orch plugin test --with JSON --allow GRANT...`.
fn one_step(
    name: &str,
    artifact: &Path,
    config: &str,
    allow: &[String],
) -> Result<String, CliError> {
    let bad = |e: String| {
        CliError::invalid(format!(
            "--with: {e}\n  help: give the step's config as a JSON object, e.g. --with '{{\"who\": \"world\"}}'"
        ))
    };
    let json: serde_json::Value = serde_json::from_str(config).map_err(|e| bad(e.to_string()))?;
    if !json.is_object() {
        return Err(bad("not a JSON object".into()));
    }
    let with = toml::Value::try_from(&json).map_err(|e| bad(format!("{e} (TOML has no null)")))?;
    let mut step = toml::Table::new();
    step.insert("plugin".into(), artifact.display().to_string().into());
    step.insert(
        "allow".into(),
        toml::Value::Array(allow.iter().map(|g| g.clone().into()).collect()),
    );
    step.insert("with".into(), with);
    let mut steps = toml::Table::new();
    steps.insert("test".into(), step.into());
    let mut workflow = toml::Table::new();
    workflow.insert("name".into(), format!("{name}-test").into());
    workflow.insert("steps".into(), steps.into());
    toml::to_string(&workflow).map_err(|e| bad(e.to_string()))
}

/// A language orch can build plugins from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    /// What a plugin directory is written in, from the file its toolchain reads.
    fn of(dir: &Path) -> Result<Lang, CliError> {
        if dir.join("Cargo.toml").is_file() {
            Ok(Lang::Rust)
        } else if dir.join("app.py").is_file() {
            Ok(Lang::Python)
        } else if dir.join("package.json").is_file() {
            Ok(Lang::Js)
        } else {
            Err(CliError::invalid(format!(
                "{} is not a plugin directory: expected Cargo.toml (Rust), app.py (Python) or package.json (JavaScript)\n  help: create one with `orch plugin new NAME --lang rust|python|js`",
                dir.display()
            )))
        }
    }
}

/// The component a plugin directory builds: `DIR/NAME.wasm`, NAME being the directory's name.
fn artifact(dir: &Path) -> Result<PathBuf, CliError> {
    let name = plugin_name(dir)?;
    Ok(dir.join(format!("{name}.wasm")))
}

fn plugin_name(dir: &Path) -> Result<String, CliError> {
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| CliError::invalid(format!("{}: {e}", dir.display())))?;
    dir.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| CliError::invalid(format!("{} has no name", dir.display())))
}

/// A plugin name: what a crate, a Python module file and an npm package all accept.
fn check_name(name: &str) -> Result<(), CliError> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(CliError::invalid(format!(
            "`{name}` is not a plugin name: use lowercase letters, digits and `-`, starting with a letter (e.g. `fetch-prices`)"
        )))
    }
}

/// `orch plugin new NAME --lang LANG [--dir PARENT]`: a directory that builds and whose test
/// passes as written.
pub(super) fn new(
    settings: &Settings,
    name: &str,
    lang: Lang,
    parent: &Path,
) -> Result<(), CliError> {
    check_name(name)?;
    let dir = absolute(parent)?.join(name);
    if dir.exists() {
        return Err(CliError::invalid(format!(
            "{} already exists: pick another name or remove it",
            dir.display()
        )));
    }
    let fill = |text: &str| text.replace("{{name}}", name);
    let prefix = format!("templates/{lang}/");
    let mut written = Vec::new();
    for (path, bytes) in kit::files(&prefix) {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => std::fs::write(&target, fill(text))?,
            Err(_) => std::fs::write(&target, bytes)?,
        }
        written.push(path);
    }
    std::fs::write(
        dir.join("workflow.schema.json"),
        crate::cli::schema::workflow_text(),
    )?;
    written.push("workflow.schema.json");
    written.sort_unstable();
    if settings.json {
        println!(
            "{}",
            serde_json::json!({"dir": dir, "lang": lang.to_string(), "files": written})
        );
    } else {
        println!("created {} ({lang} plugin):", dir.display());
        for path in written {
            println!("  {path}");
        }
        println!(
            "next:\n  cd {}\n  orch plugin build\n  orch plugin test",
            dir.display()
        );
    }
    Ok(())
}

/// `orch plugin test [DIR]`: build when a source is newer than the component, then plan and
/// run DIR/workflow.toml (or `workflow`), or one step with a given config and grants.
pub(super) async fn test(
    settings: &Settings,
    dir: &Path,
    workflow: Option<&Path>,
    with: Option<(String, Vec<String>)>,
) -> Result<(), CliError> {
    let dir = &absolute(dir)?;
    let artifact = artifact(dir)?;
    if toolchain::stale(dir, &artifact) {
        build(settings, dir).await?;
    }
    if let Some((config, allow)) = with {
        // A one-step workflow beside the plugin (grants like "./data" are relative to it),
        // removed afterwards.
        let text = one_step(&plugin_name(dir)?, &artifact, &config, &allow)?;
        let file = tempfile::Builder::new()
            .prefix(".orch-test-")
            .suffix(".toml")
            .tempfile_in(dir)?;
        std::fs::write(file.path(), text)?;
        return super::cmd::plan_then_run(settings, file.path()).await;
    }
    let workflow = workflow
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("workflow.toml"));
    if !workflow.is_file() {
        return Err(CliError::invalid(format!(
            "no test workflow at {}: write one that uses `plugin = \"{}\"`, or pass --workflow FILE",
            workflow.display(),
            artifact.file_name().unwrap_or_default().to_string_lossy()
        )));
    }
    super::cmd::plan_then_run(settings, &workflow).await
}
