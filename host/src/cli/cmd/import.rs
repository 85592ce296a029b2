//! `orch import gitlab`: write the workflows of a GitLab pipeline, then validate them.

use super::validate;
use crate::cli::settings::Settings;
use crate::cli::{CliError, ImportCommand};
use crate::import::{self, Options};

pub(super) async fn import(settings: &Settings, command: ImportCommand) -> Result<(), CliError> {
    let ImportCommand::Gitlab {
        file,
        out,
        split,
        name,
        force,
    } = command;
    let out = out.unwrap_or_else(|| {
        file.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf()
    });
    let options = Options {
        out: out.clone(),
        split,
        name,
    };
    let imported = import::gitlab(&file, &options).map_err(CliError::invalid)?;
    let written = imported.write(&out, force).map_err(CliError::failed)?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    let workflows: Vec<_> = written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .cloned()
        .collect();
    println!(
        "{} entries on what did not translate exactly: {} (read it before the first run)",
        imported.untranslated(),
        out.join("import-report.md").display()
    );
    validate::validate(settings, &workflows).await
}
