//! `orch.lock`: the plugins a directory of workflows runs, pinned (source, digests, size,
//! world, every import, describe() metadata, config-schema digest), and what each step was
//! granted when it was locked. TOML, sorted, one entry per reference: a change to it is a diff
//! a reviewer can read.

use crate::workflow::{Grant, PluginRef, Workflow};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file name, beside the workflows.
pub const LOCK_FILE: &str = "orch.lock";

/// The whole lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub version: u32,
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<LockedPlugin>,
    #[serde(default, rename = "step")]
    pub steps: Vec<LockedStep>,
}

/// One plugin reference, pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedPlugin {
    /// As workflows write it: `echo`, `plugins/x.wasm` (relative to the lock), `oci://...`.
    pub source: String,
    /// What the source resolved to: the manifest digest of an OCI reference, else the
    /// component's.
    pub digest: String,
    /// `sha256:...` of the component itself.
    pub component: String,
    pub size: u64,
    pub world: String,
    pub imports: Vec<String>,
    pub name: String,
    pub version: String,
    pub description: String,
    /// `sha256:...` of the config schema text.
    pub schema: String,
    /// The config's top-level fields (from the schema), to show what an upgrade adds.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// What changes between two versions of a plugin: what a reviewer must see before accepting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginDiff {
    pub source: String,
    pub old_version: String,
    pub new_version: String,
    pub old_digest: String,
    pub new_digest: String,
    /// Interfaces the new version imports and the old did not (versions ignored).
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub fields_added: Vec<String>,
    pub fields_removed: Vec<String>,
    /// `(workflow/step, grants)` of every step that runs it.
    pub steps: Vec<(String, Vec<String>)>,
}

impl PluginDiff {
    /// Compare two lock entries of the same source; `steps` are the steps that use it.
    pub fn between(old: &LockedPlugin, new: &LockedPlugin, steps: &[LockedStep]) -> Self {
        let names = |imports: &[String]| -> Vec<String> {
            imports
                .iter()
                .map(|i| i.split('@').next().unwrap_or(i).to_string())
                .collect()
        };
        let (old_names, new_names) = (names(&old.imports), names(&new.imports));
        let minus = |a: &[String], b: &[String]| -> Vec<String> {
            let mut out: Vec<String> = a.iter().filter(|x| !b.contains(x)).cloned().collect();
            out.sort();
            out.dedup();
            out
        };
        PluginDiff {
            source: new.source.clone(),
            old_version: old.version.clone(),
            new_version: new.version.clone(),
            old_digest: old.digest.clone(),
            new_digest: new.digest.clone(),
            added: minus(&new_names, &old_names),
            removed: minus(&old_names, &new_names),
            fields_added: minus(&new.fields, &old.fields),
            fields_removed: minus(&old.fields, &new.fields),
            steps: steps
                .iter()
                .filter(|s| s.plugin == new.source)
                .map(|s| (format!("{}/{}", s.workflow, s.step), s.grants.clone()))
                .collect(),
        }
    }

    /// A new import is an escalation: the plugin can ask for something it could not before.
    pub fn escalates(&self) -> bool {
        !self.added.is_empty()
    }

    /// Nothing a reviewer would care about changed.
    pub fn is_empty(&self) -> bool {
        self.old_digest == self.new_digest
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.fields_added.is_empty()
            && self.fields_removed.is_empty()
    }
}

/// What one step was granted when it was locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedStep {
    pub workflow: String,
    pub step: String,
    pub plugin: String,
    /// The `allow` list: connections, origins, `tcp://` destinations, directories.
    pub grants: Vec<String>,
    /// For each granted docker connection, its policy settings (images, mounts, ports...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub docker: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

impl Lock {
    /// Read `dir/orch.lock`; `Ok(None)` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Lock>, String> {
        let path = dir.join(LOCK_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let lock: Lock = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let digest = |d: &str| {
            d.strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        };
        if let Some(bad) = lock
            .plugins
            .iter()
            .find(|p| !digest(&p.digest) || !digest(&p.component))
        {
            return Err(format!(
                "{}: `{}` has a malformed digest: run `orch lock` again",
                path.display(),
                bad.source
            ));
        }
        Ok(Some(lock))
    }

    /// Write `dir/orch.lock`, sorted, through a temporary file.
    pub fn write(&mut self, dir: &Path) -> std::io::Result<PathBuf> {
        self.version = 1;
        self.plugins.sort_by(|a, b| a.source.cmp(&b.source));
        self.plugins.dedup_by(|a, b| a.source == b.source);
        self.steps
            .sort_by(|a, b| (&a.workflow, &a.step).cmp(&(&b.workflow, &b.step)));
        let body = toml::to_string_pretty(self).map_err(std::io::Error::other)?;
        let text = format!(
            "# Written by `orch lock`: the plugins these workflows run, pinned, and what each step\n# was granted. Review changes like code; `orch lock --upgrade` explains a new version.\n{body}"
        );
        let path = dir.join(LOCK_FILE);
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        file.persist(&path).map_err(|e| e.error)?;
        Ok(path)
    }

    /// The entry of a reference (see [`source_key`]).
    pub fn plugin(&self, source: &str) -> Option<&LockedPlugin> {
        self.plugins.iter().find(|p| p.source == source)
    }
}

/// How a reference is written in the lock: built-in names and `oci://` references as they
/// are (without a digest), files relative to the lock's directory when below it.
pub fn source_key(plugin: &PluginRef, dir: &Path) -> String {
    match plugin {
        PluginRef::Builtin(name) => name.clone(),
        PluginRef::File { path, .. } => {
            // Both absolute: the same file is the same key however it was named.
            let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            let (path, dir) = (absolute(path), absolute(dir));
            path.strip_prefix(&dir)
                .unwrap_or(&path)
                .display()
                .to_string()
        }
        // A reference pinned in the workflow is its own entry: two pins of one tag differ.
        PluginRef::Oci {
            reference,
            digest: Some(digest),
        } => format!("oci://{reference}@{digest}"),
        PluginRef::Oci { reference, .. } => format!("oci://{reference}"),
    }
}

/// The grants of every step of `workflow`, for the lock.
pub fn steps_of(workflow: &Workflow, dir: &Path) -> Vec<LockedStep> {
    workflow
        .steps
        .values()
        .map(|step| {
            let mut docker = BTreeMap::new();
            for grant in &step.allow {
                if let Grant::Connection(name) = grant
                    && let Some(connection) = workflow.connections.get(name)
                    && connection.kind == crate::workflow::ConnectionKind::Docker
                {
                    // The policy, not the address (which may carry credentials); templates
                    // stay as written, never rendered.
                    let serde_json::Value::Object(settings) = connection.settings.skeleton() else {
                        continue;
                    };
                    let policy = settings
                        .into_iter()
                        .filter(|(k, v)| {
                            !matches!(k.as_str(), "host" | "url" | "tls") && !v.is_null()
                        })
                        .collect();
                    docker.insert(name.clone(), policy);
                }
            }
            LockedStep {
                workflow: workflow.name.clone(),
                step: step.id.clone(),
                plugin: source_key(&step.plugin, dir),
                grants: step.allow.iter().map(ToString::to_string).collect(),
                docker,
            }
        })
        .collect()
}
