//! `orch import gitlab`: a `.gitlab-ci.yml` (with its local includes) as orch workflows.
//! [`load`] reads the pipeline, [`shell`] recognises the lines built-in plugins do better,
//! [`rules`] turns `rules:` into CEL, [`steps`] makes the steps a job becomes, and
//! [`translate`] puts it together.

mod load;
mod rules;
mod shell;
mod steps;
mod translate;

use super::{ImportError, Imported, Options};
use regex::Regex;
use std::path::Path;
use std::sync::LazyLock;

/// Read the pipeline at `path` and translate it.
pub(crate) fn import(path: &Path, options: &Options) -> Result<Imported, ImportError> {
    let pipeline = load::load(path)?;
    translate::translate(pipeline, options)
}

/// `${{ … }}` parts of a text.
static TEMPLATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{\{\s*(.*?)\s*\}\}").expect("valid regex"));

/// A text with `${{ expr }}` parts as one CEL string expression.
pub(crate) fn template_to_cel(text: &str) -> String {
    let mut parts = Vec::new();
    let mut at = 0;
    for c in TEMPLATE.captures_iter(text) {
        let whole = c.get(0).map_or(0..0, |m| m.range());
        if whole.start > at {
            parts.push(rules::quote(&text[at..whole.start]));
        }
        parts.push(c[1].to_string());
        at = whole.end;
    }
    if at < text.len() || parts.is_empty() {
        parts.push(rules::quote(&text[at..]));
    }
    parts.join(" + ")
}

/// The `(scope, NAME)` of each `${{ scope.NAME }}` in a text (inputs, secrets, env).
pub(crate) fn templates_in(text: &str) -> Vec<(String, String)> {
    static NAMED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\$\{\{\s*(inputs|secrets|env)\.([A-Za-z0-9_]+)").expect("valid regex")
    });
    NAMED
        .captures_iter(text)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_become_cel_strings() {
        assert_eq!(template_to_cel("${{inputs.u}}"), "inputs.u");
        assert_eq!(
            template_to_cel("db_${{ inputs.u }}_x"),
            "'db_' + inputs.u + '_x'"
        );
        assert_eq!(template_to_cel(""), "''");
        assert_eq!(
            templates_in("${{ secrets.A }} and ${{env.B}} ${{ inputs.c }}"),
            [
                ("secrets".into(), "A".into()),
                ("env".into(), "B".into()),
                ("inputs".into(), "c".into())
            ]
        );
    }
}
