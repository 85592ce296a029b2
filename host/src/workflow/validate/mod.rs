//! Cross-field checks that turn a [`WorkflowToml`] into a [`Workflow`], collecting every
//! problem with its span instead of stopping at the first.

use super::authored::WorkflowToml;
use super::diagnostic::{Diagnostic, Source};
use super::model::*;
use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;

mod connections;
mod grants;
mod inputs;
mod schedule;
mod steps;

/// Validate `raw`; on failure every diagnostic found is returned.
pub(super) fn validate(
    raw: WorkflowToml,
    source: Source,
    dir: PathBuf,
) -> Result<Workflow, Vec<Diagnostic>> {
    let mut v = Validator {
        source: &source,
        errors: Vec::new(),
        step_ids: raw.steps.keys().map(|k| k.get_ref().clone()).collect(),
        step_set: raw.steps.keys().map(|k| k.get_ref().clone()).collect(),
    };
    let name = raw.name.get_ref().trim().to_string();
    if name.is_empty() {
        v.error(
            Diagnostic::at(raw.name.span(), "workflow `name` is empty")
                .help("name the workflow, e.g. name = \"datalab\""),
        );
    }
    let mut inputs = v.inputs(raw.inputs);
    let connections = v.connections(raw.connections);
    v.connection_inputs(&mut inputs, &connections);
    let schedules = raw
        .schedule
        .into_iter()
        .filter_map(|s| v.schedule(s, &inputs))
        .collect();
    let webhook = raw.webhook.and_then(|w| v.webhook(w, &inputs));
    let (steps, dag) = v.steps(raw.steps, &inputs, &connections, &dir);
    if !v.errors.is_empty() {
        return Err(v.errors);
    }
    Ok(Workflow {
        name,
        description: raw.description,
        source,
        dir,
        inputs,
        connections,
        schedules,
        webhook,
        steps,
        dag,
    })
}

struct Validator<'a> {
    source: &'a Source,
    errors: Vec<Diagnostic>,
    /// Every step id, for reference checks.
    step_ids: Vec<String>,
    /// The same, for lookups.
    step_set: HashSet<String>,
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Validator<'_> {
    fn error(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    fn identifier(&mut self, name: &Spanned<String>, what: &str) -> bool {
        let ok = is_identifier(name.get_ref());
        if !ok {
            self.error(
                Diagnostic::at(name.span(), format!("{what} name `{}` is not an identifier", name.get_ref()))
                    .help("use letters, digits and `_`, starting with a letter or `_` (expressions read it as a field)"),
            );
        }
        ok
    }

    /// Narrow `span` to where `needle` first appears inside it (for expressions in `with`).
    fn narrow(&self, span: Range<usize>, needle: &str) -> Range<usize> {
        self.source.text[span.clone()]
            .find(needle)
            .map(|i| span.start + i..span.start + i + needle.len())
            .unwrap_or(span)
    }
}

const EXPR_HELP: &str = "expressions are CEL, e.g. inputs.db_user != '' or steps.make.outputs.id; templates are ${{ expr }}";

#[cfg(test)]
mod tests {
    #[test]
    fn steps_are_ordered_dependencies_first_and_every_error_is_collected() {
        let wf = crate::workflow::parse(
            std::path::Path::new("w.toml"),
            "name = \"w\"\n[steps.b]\nplugin = \"echo\"\nneeds = [\"a\"]\n[steps.a]\nplugin = \"echo\"\n",
        )
        .unwrap();
        assert_eq!(wf.steps.keys().collect::<Vec<_>>(), ["a", "b"]);
        let err = crate::workflow::parse(
            std::path::Path::new("w.toml"),
            "name = \"w\"\n[steps.a]\nplugin = \"echo\"\nneeds = [\"x\"]\ntimeout = \"soon\"\nmemory = \"1KiB\"\n",
        )
        .unwrap_err();
        let crate::workflow::LoadError::Invalid(d) = err else {
            panic!("expected diagnostics")
        };
        let messages: Vec<&str> = d.items.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains("unknown step `x`"));
        assert!(messages[1].contains("invalid timeout `soon`"));
        assert!(messages[2].contains("invalid memory limit `1KiB`"));
    }
}
