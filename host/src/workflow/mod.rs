//! Workflow files: TOML text → [`authored::WorkflowToml`] → validated [`Workflow`].
//!
//! Every problem is reported with file:line:col, an excerpt and the fix; nothing runs until a
//! workflow validates. Checks that need the plugins themselves (does the file exist, does
//! `with` match the plugin's schema) happen in the resolve stage, one layer up.

pub mod authored;
mod diagnostic;
pub mod expr;
pub mod inputs;
mod model;
mod validate;

pub use authored::{Catchup, ConnectionKind, InputKind, Overlap, WorkflowToml};
pub use diagnostic::{Diagnostic, Diagnostics, Source};
pub use model::*;

use std::path::Path;
use std::sync::Arc;

/// Why a workflow could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read workflow `{path}`: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// Read, parse and validate a workflow file.
pub fn load(path: &Path) -> Result<Workflow, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|error| LoadError::Read {
        path: path.display().to_string(),
        error,
    })?;
    parse(path, &text)
}

/// Parse and validate workflow text that was read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Workflow, LoadError> {
    let source = Source {
        path: Arc::from(path.display().to_string()),
        text: Arc::from(text),
    };
    let invalid = |items| {
        LoadError::Invalid(Diagnostics {
            file: source.clone(),
            items,
        })
    };
    let raw: authored::WorkflowToml =
        toml::from_str(text).map_err(|e| invalid(vec![toml_diagnostic(&e)]))?;
    // `wf.toml` has the parent "", which names no directory.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    validate::validate(raw, source.clone(), dir).map_err(invalid)
}

/// A TOML or serde error as a diagnostic, with "did you mean" for unknown keys.
fn toml_diagnostic(error: &toml::de::Error) -> Diagnostic {
    let message = error.message().trim().to_string();
    let help = unknown_field_hint(&message);
    let diagnostic = match error.span() {
        Some(span) => Diagnostic::at(span, message),
        None => Diagnostic::global(message),
    };
    match help {
        Some(help) => diagnostic.help(help),
        None => diagnostic,
    }
}

/// serde says "unknown field `nedds`, expected one of `plugin`, `needs`"; suggest the closest.
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let expected: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    Some(hint(unknown, &expected, "", || {
        format!("allowed keys here: {}", expected.join(", "))
    }))
}

/// "did you mean `PREFIX{closest}`?" when a candidate is close enough to `name` to be a typo,
/// else `otherwise()`: the help of every "unknown name" diagnostic.
pub fn hint(
    name: &str,
    candidates: &[&str],
    prefix: &str,
    otherwise: impl FnOnce() -> String,
) -> String {
    match did_you_mean(name, candidates) {
        Some(s) => format!("did you mean `{prefix}{s}`?"),
        None => otherwise(),
    }
}

/// The candidate closest to `name`, if it is close enough to be a typo.
pub fn did_you_mean<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(name, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
