//! An import as files: each workflow as TOML (comments saying where each step came from), the
//! `.env.example` its connections and steps read, and the Markdown report.

use super::Imported;
use super::model::{Connection, Step, Workflow};
use std::fmt::Write as _;
use toml::Value as Toml;

/// The name of the report file.
pub(crate) const REPORT: &str = "import-report.md";
/// The name of the variables file.
pub(crate) const ENV_EXAMPLE: &str = ".env.example";

/// The workflow's file name.
pub(crate) fn file_name(workflow: &Workflow) -> String {
    format!("{}.toml", workflow.name)
}

/// A key as TOML writes it: bare when it can be.
fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        Toml::String(k.to_string()).to_string()
    }
}

/// One value: arrays of more than one string or a long array on several lines.
fn value(v: &Toml) -> String {
    match v {
        Toml::Array(items) if items.len() > 1 && v.to_string().len() > 80 => {
            let mut out = String::from("[\n");
            for item in items {
                let _ = writeln!(out, "  {},", value(item));
            }
            out.push(']');
            out
        }
        other => other.to_string(),
    }
}

pub(crate) fn workflow(w: &Workflow) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported from `{}` by `orch import gitlab`: what did not translate is listed in {REPORT}.",
        w.source
    );
    let _ = writeln!(out, "name = {}", Toml::String(w.name.clone()));
    let _ = writeln!(
        out,
        "description = {}",
        Toml::String(format!("Imported from GitLab CI ({})", w.source))
    );
    for i in &w.inputs {
        let _ = writeln!(out, "\n[inputs.{}]", key(&i.name));
        if let Some(d) = &i.description {
            let _ = writeln!(out, "description = {}", Toml::String(d.clone()));
        }
        let _ = writeln!(out, "type = {}", Toml::String(i.kind.clone()));
        if let Some(d) = &i.default {
            let _ = writeln!(out, "default = {}", value(d));
        }
        if !i.options.is_empty() {
            let _ = writeln!(out, "options = {}", value(&Toml::Array(i.options.clone())));
        }
        if let Some(r) = &i.regex {
            let _ = writeln!(out, "regex = {}", Toml::String(r.clone()));
        }
    }
    for (name, c) in &w.connections {
        connection(&mut out, name, c);
    }
    for s in &w.steps {
        step(&mut out, s);
    }
    out
}

fn connection(out: &mut String, name: &str, c: &Connection) {
    let _ = writeln!(out, "\n[connections.{}]", key(name));
    let _ = writeln!(out, "kind = {}", Toml::String(c.kind.into()));
    for (k, v) in &c.settings {
        let _ = writeln!(out, "{} = {}", key(k), value(v));
    }
    let strings = |items: &[String]| Toml::Array(items.iter().cloned().map(Toml::String).collect());
    if c.kind == "docker" {
        let _ = writeln!(out, "images = {}", value(&strings(&c.images)));
        if !c.bind_paths.is_empty() {
            let _ = writeln!(out, "bind_paths = {}", value(&strings(&c.bind_paths)));
        }
    }
}

fn step(out: &mut String, s: &Step) {
    let _ = writeln!(out, "\n# {}", s.comment);
    let _ = writeln!(out, "[steps.{}]", key(&s.id));
    let _ = writeln!(out, "plugin = {}", Toml::String(s.plugin.into()));
    let strings = |items: &[String]| Toml::Array(items.iter().cloned().map(Toml::String).collect());
    if !s.needs.is_empty() {
        let _ = writeln!(out, "needs = {}", value(&strings(&s.needs)));
    }
    if let Some(c) = &s.condition {
        let _ = writeln!(out, "if = {}", Toml::String(c.clone()));
    }
    if !s.allow.is_empty() {
        let _ = writeln!(out, "allow = {}", value(&strings(&s.allow)));
    }
    if !s.runs_on.is_empty() {
        let _ = writeln!(out, "runs_on = {}", value(&strings(&s.runs_on)));
    }
    if let Some(t) = &s.timeout {
        let _ = writeln!(out, "timeout = {}", Toml::String(t.clone()));
    }
    if let Some(r) = s.retry {
        let _ = writeln!(out, "retry = {{ max = {r}, backoff = \"10s\" }}");
    }
    let _ = writeln!(out, "[steps.{}.with]", key(&s.id));
    for (k, v) in &s.with {
        let _ = writeln!(out, "{} = {}", key(k), value(v));
    }
}

pub(crate) fn env_example(imported: &Imported) -> String {
    let mut out = String::from(
        "# What the imported workflows read: copy this file to .env beside them and fill it in.\n\
         # Secrets (read as secrets.NAME, masked everywhere) are left empty: their values were\n\
         # never copied from the pipeline.\n",
    );
    for e in &imported.env {
        let kind = if e.secret { " (secret)" } else { "" };
        let _ = writeln!(out, "\n# {}{kind}: {}", e.name, e.why);
        if e.secret {
            if !e.example.is_empty() {
                let _ = writeln!(out, "#   e.g. {}", e.example);
            }
            let _ = writeln!(out, "{}=", e.name);
        } else {
            let _ = writeln!(out, "{}={}", e.name, e.example);
        }
    }
    out
}

pub(crate) fn report(imported: &Imported, written: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Import of `{}`\n", imported.source);
    let read: Vec<String> = imported
        .files_read
        .iter()
        .map(|f| format!("`{f}`"))
        .collect();
    let _ = writeln!(out, "Read: {}.\n", read.join(", "));
    let wrote: Vec<String> = imported
        .workflows
        .iter()
        .map(|w| format!("`{}` ({} steps)", file_name(w), w.steps.len()))
        .chain(written.iter().map(|f| format!("`{f}`")))
        .collect();
    let _ = writeln!(out, "Wrote: {}.\n", wrote.join(", "));
    let _ = writeln!(out, "## Jobs\n\n| job | file | became |\n|---|---|---|");
    for row in &imported.rows {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} |",
            row.job,
            row.file,
            row.became.replace('|', "\\|")
        );
    }
    let _ = writeln!(
        out,
        "\n## Not translated, or translated with a difference\n\nEach entry names the file, the job and keyword or line, and what was done instead.\n"
    );
    if imported.notes.is_empty() {
        let _ = writeln!(out, "Nothing: every job and line has an equivalent.");
    }
    for n in &imported.notes {
        let _ = writeln!(
            out,
            "- `{}`: `{}`: {}",
            n.file,
            n.at.replace('`', "'"),
            n.text
        );
    }
    let secrets = imported.env.iter().filter(|e| e.secret).count();
    let _ = writeln!(
        out,
        "\n## Before the first run\n\n1. Copy `{ENV_EXAMPLE}` to `.env` beside the workflow{} and fill it in ({} variables, {secrets} secret).\n2. `orch validate` it, then `orch plan` with the inputs you need: nothing changes until `orch run`.",
        if imported.workflows.len() > 1 {
            "s"
        } else {
            ""
        },
        imported.env.len()
    );
    out
}
