//! What an import makes, before it is written: workflows with their inputs, connections and
//! steps, and the variables `.env` must define.

use indexmap::IndexMap;
use toml::Value as Toml;

/// One workflow to write.
#[derive(Debug, Clone)]
pub(crate) struct Workflow {
    pub name: String,
    /// The CI file it came from.
    pub source: String,
    pub inputs: Vec<Input>,
    pub connections: IndexMap<String, Connection>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub name: String,
    pub kind: String,
    pub default: Option<Toml>,
    pub description: Option<String>,
    pub options: Vec<Toml>,
    pub regex: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Connection {
    pub kind: &'static str,
    pub settings: Vec<(String, Toml)>,
    /// Docker: images allowed.
    pub images: Vec<String>,
    /// Docker: host directories jobs may mount.
    pub bind_paths: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Step {
    pub id: String,
    /// Where it came from, written above it.
    pub comment: String,
    pub plugin: &'static str,
    pub needs: Vec<String>,
    pub condition: Option<String>,
    pub allow: Vec<String>,
    pub with: Vec<(String, Toml)>,
    pub timeout: Option<String>,
    pub retry: Option<u32>,
    pub runs_on: Vec<String>,
}

/// A variable the workflows read from the environment or `.env`.
#[derive(Debug, Clone)]
pub(crate) struct EnvEntry {
    pub name: String,
    /// Read as `secrets.NAME` (masked) rather than `env.NAME`.
    pub secret: bool,
    /// What to put there (never a real secret: the pipeline's own non-secret value, or a shape).
    pub example: String,
    pub why: String,
}
