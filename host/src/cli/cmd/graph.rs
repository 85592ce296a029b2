//! `orch graph`: a workflow's DAG drawn as plain text, Graphviz dot or Mermaid.

use crate::cli::CliError;
use crate::cli::prepare;
use crate::workflow::Workflow;
use std::path::Path;

/// Output format of `orch graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Text,
    Dot,
    Mermaid,
}

pub(super) fn graph(file: &Path, format: GraphFormat) -> Result<(), CliError> {
    let wf = prepare::workflow(file)?;
    print!("{}", render(&wf, format));
    Ok(())
}

/// Draw the workflow's DAG.
fn render(workflow: &Workflow, format: GraphFormat) -> String {
    let mut out = String::new();
    match format {
        GraphFormat::Text => {
            out.push_str(&format!("{}\n", workflow.name));
            for step in workflow.steps.values() {
                out.push_str(&format!("  {} [{}]", step.id, step.plugin));
                if !step.needs.is_empty() {
                    out.push_str(&format!(" <- {}", step.needs.join(", ")));
                }
                if let Some(cond) = &step.condition {
                    out.push_str(&format!(" if {}", cond.source));
                }
                out.push('\n');
            }
        }
        GraphFormat::Dot => {
            out.push_str(&format!("digraph {:?} {{\n  rankdir=LR;\n", workflow.name));
            for step in workflow.steps.values() {
                let plugin = step.plugin.to_string().replace('"', "'");
                out.push_str(&format!(
                    "  {:?} [label=\"{}\\n{plugin}\"];\n",
                    step.id, step.id
                ));
                for need in &step.needs {
                    out.push_str(&format!("  {need:?} -> {:?};\n", step.id));
                }
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for step in workflow.steps.values() {
                out.push_str(&format!(
                    "  {}[\"{} ({})\"]\n",
                    step.id, step.id, step.plugin
                ));
                for need in &step.needs {
                    out.push_str(&format!("  {need} --> {}\n", step.id));
                }
            }
        }
    }
    out
}
