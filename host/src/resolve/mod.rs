//! The resolved stage: a validated [`Workflow`] whose every step's plugin is loaded, described
//! and checked (the file exists and is a component, `with` matches its config schema). A
//! [`ResolvedWorkflow`] is what the executor, the server and the benches take.

use crate::capability::{Denial, LogLevel, StepSink};
use crate::dag::Dag;
use crate::runtime::{Plugin, PluginInfo, Runtime, builtin};
use crate::workflow::expr::{Rendered, Template};
use crate::workflow::{Diagnostic, Diagnostics, PluginRef, Workflow, did_you_mean, hint};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

pub mod lock;
mod rendered;
mod untrusted;

use lock::Lock;
use rendered::{RenderedJson, RenderedNode};

/// Where plugins come from besides the binary and the filesystem, and what pins them.
#[derive(Clone, Default)]
pub struct Sources {
    /// For `oci://` references; `None`: they cannot be resolved.
    pub registry: Option<Arc<crate::oci::Registry>>,
    /// The workflows' `orch.lock`: pins `oci://` tags to the digests it records.
    pub lock: Option<Arc<Lock>>,
    /// Where the lock lives (file references are written relative to it).
    pub lock_dir: std::path::PathBuf,
    /// `--locked`: a reference missing from the lock, or whose digest or imports differ from
    /// it, is refused.
    pub locked: bool,
    /// A missing lock is an error (`--locked` given), not "nothing pinned".
    pub strict: bool,
}

/// A step's plugin: loaded, described, with its config schema compiled.
pub struct ResolvedPlugin {
    pub plugin: Arc<Plugin>,
    pub info: PluginInfo,
    /// Where it came from: digests and size, as the lock records them.
    pub origin: Origin,
    /// Checks a rendered `with` where it lies, borrowed parts and all.
    schema: Option<jsonschema::Validator<RenderedJson>>,
}

/// The facts of a loaded component that pin it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `sha256:...` of the component.
    pub component: String,
    /// The manifest digest of an `oci://` reference.
    pub manifest: Option<String>,
    pub size: u64,
}

impl Sources {
    /// These sources with the lock re-read from `lock_dir` (it may have changed since they
    /// were made). With `strict`, a missing lock is an error; otherwise a lock that exists
    /// is enforced (`locked`) and none means nothing is pinned.
    pub fn reload(&self, strict: bool) -> Result<Sources, String> {
        let lock = Lock::read(&self.lock_dir)?;
        if strict && lock.is_none() {
            return Err(format!(
                "no {} in {}: run `orch lock` there first",
                lock::LOCK_FILE,
                self.lock_dir.display()
            ));
        }
        Ok(Sources {
            locked: self.locked && (lock.is_some() || strict),
            lock: lock.map(Arc::new),
            ..self.clone()
        })
    }
}

impl ResolvedPlugin {
    /// The lock entry of this plugin under `source`.
    pub fn locked(&self, source: String) -> lock::LockedPlugin {
        lock::LockedPlugin {
            source,
            digest: self
                .origin
                .manifest
                .clone()
                .unwrap_or_else(|| self.origin.component.clone()),
            component: self.origin.component.clone(),
            size: self.origin.size,
            world: format!("orch:plugin/step@{}", crate::runtime::WORLD_VERSION),
            imports: {
                let mut imports = self.plugin.imports.clone();
                imports.sort();
                imports
            },
            name: self.info.name.clone(),
            version: self.info.version.clone(),
            description: self.info.description.clone(),
            schema: format!(
                "sha256:{}",
                hex::encode(Sha256::digest(self.info.config_schema.as_bytes()))
            ),
            fields: schema_properties(&self.info.config_schema, ""),
        }
    }
}

impl ResolvedPlugin {
    /// Check a rendered config against the plugin's schema; the error lists every problem.
    pub fn check_config(&self, config: &Rendered<'_>) -> Result<(), String> {
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        let config = RenderedNode::of(config);
        // The fast path: describing problems costs more than finding none.
        if schema.is_valid(config) {
            return Ok(());
        }
        let problems: Vec<String> = schema
            .iter_errors(config)
            .map(|e| describe_error(&e))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

fn describe_error(e: &jsonschema::ValidationError<'_>) -> String {
    let path = e.instance_path().to_string();
    if path.is_empty() {
        e.to_string()
    } else {
        format!("at `{path}`: {e}")
    }
}

/// A workflow with its DAG and the plugin of every step: ready to plan or run.
#[derive(Clone)]
pub struct ResolvedWorkflow {
    workflow: Arc<Workflow>,
    plugins: HashMap<String, Arc<ResolvedPlugin>>,
}

impl ResolvedWorkflow {
    /// The workflow.
    pub fn workflow(&self) -> &Arc<Workflow> {
        &self.workflow
    }

    /// Who needs whom.
    pub fn dag(&self) -> &Dag {
        &self.workflow.dag
    }

    /// The plugin of step `id` (every step of the workflow has one).
    pub fn plugin(&self, id: &str) -> Option<&Arc<ResolvedPlugin>> {
        self.plugins.get(id)
    }
}

impl std::ops::Deref for ResolvedWorkflow {
    type Target = Workflow;

    fn deref(&self) -> &Workflow {
        &self.workflow
    }
}

/// Discards describe-time log lines (describe must not have side effects worth keeping).
struct Quiet;

impl StepSink for Quiet {
    fn log(&self, _: LogLevel, message: &str) {
        tracing::debug!(message, "plugin describe");
    }
    fn progress(&self, _: u64, _: Option<u64>, _: &str) {}
    fn denied(&self, denial: &Denial) {
        tracing::warn!("{denial}");
    }
}

/// Load and describe every step's plugin and check each `with` against its schema.
pub async fn resolve(
    runtime: &Runtime,
    sources: &Sources,
    workflow: impl Into<Arc<Workflow>>,
) -> Result<ResolvedWorkflow, Diagnostics> {
    let workflow: Arc<Workflow> = workflow.into();
    let mut problems = Vec::new();
    let mut by_ref: HashMap<PluginRef, Arc<ResolvedPlugin>> = HashMap::new();
    let mut resolved = HashMap::new();
    for step in workflow.steps.values() {
        let plugin_span = step.spans.plugin.clone();
        let entry = match by_ref.get(&step.plugin) {
            Some(p) => p.clone(),
            None => match load(runtime, sources, &step.plugin).await {
                Ok(p) => {
                    by_ref.insert(step.plugin.clone(), p.clone());
                    p
                }
                Err((message, help)) => {
                    problems.push(
                        Diagnostic::at(plugin_span, format!("step `{}`: {message}", step.id))
                            .help(help),
                    );
                    continue;
                }
            },
        };
        let skeleton = step.with.skeleton();
        let templated = template_paths(&step.with, String::new());
        if let Some(schema) = &entry.schema {
            for error in schema.iter_errors(RenderedNode::Value(&skeleton)) {
                let path = error.instance_path().to_string();
                // Known only at run time (checked again after rendering): errors at a templated
                // value, and "no variant matches" errors above one.
                let combinator = matches!(
                    error.kind(),
                    jsonschema::error::ValidationErrorKind::OneOfNotValid { .. }
                        | jsonschema::error::ValidationErrorKind::AnyOf { .. }
                );
                if templated
                    .iter()
                    .any(|t| path.starts_with(t.as_str()) || (combinator && t.starts_with(&path)))
                {
                    continue;
                }
                let with_span = step.spans.with.clone().unwrap_or(step.spans.step.clone());
                let (key, help) = match error.kind() {
                    jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                        let first = unexpected.first().cloned();
                        let known = schema_properties(&entry.info.config_schema, &path);
                        let known: Vec<&str> = known.iter().map(String::as_str).collect();
                        let help = match first.as_deref().and_then(|u| did_you_mean(u, &known)) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("allowed keys: {}", known.join(", ")),
                        };
                        (first, help)
                    }
                    _ => (
                        path.rsplit('/')
                            .next()
                            .filter(|k| !k.is_empty())
                            .map(str::to_string),
                        format!(
                            "see the config schema with `orch plugin inspect {}`",
                            step.plugin
                        ),
                    ),
                };
                let at = key
                    .as_deref()
                    .and_then(|k| find_in(&workflow.source.text, with_span.clone(), k))
                    .unwrap_or(with_span);
                let message = format!(
                    "step `{}`: `with` does not match plugin `{}`: {}",
                    step.id,
                    entry.info.name,
                    describe_error(&error)
                );
                problems.push(Diagnostic::at(at, message).help(help));
            }
        }
        resolved.insert(step.id.clone(), entry);
    }
    if problems.is_empty() {
        Ok(ResolvedWorkflow {
            workflow,
            plugins: resolved,
        })
    } else {
        Err(Diagnostics {
            file: workflow.source.clone(),
            items: problems,
        })
    }
}

/// Load one plugin reference (pinned by the lock when there is one, checked against it when
/// `locked`); the error is (message, help).
pub async fn load(
    runtime: &Runtime,
    sources: &Sources,
    plugin: &PluginRef,
) -> Result<Arc<ResolvedPlugin>, (String, String)> {
    let source = lock::source_key(plugin, &sources.lock_dir);
    let locked = sources.lock.as_ref().and_then(|l| l.plugin(&source));
    if sources.locked && locked.is_none() {
        return Err((
            format!("`{source}` is not in {}", lock::LOCK_FILE),
            "run `orch lock` to pin it, and review the new entry".into(),
        ));
    }
    let mut manifest = None;
    let mut declared_imports = None;
    let (name, bytes) = match plugin {
        PluginRef::Builtin(name) => match builtin::get(name) {
            Some(bytes) => (name.clone(), bytes.to_vec()),
            None => {
                let names = builtin::names();
                let help = hint(name, &names, "", || {
                    format!(
                        "built-in plugins: {}; or give a path like \"./x.wasm\"",
                        names.join(", ")
                    )
                });
                return Err((format!("unknown plugin `{name}`"), help));
            }
        },
        PluginRef::File { path, sha256 } => {
            let bytes = std::fs::read(path).map_err(|e| {
                (
                    format!("cannot read plugin file `{}`: {e}", path.display()),
                    "fix the path (relative paths start at the workflow file's directory)"
                        .to_string(),
                )
            })?;
            if let Some(expected) = sha256 {
                let actual = hex::encode(Sha256::digest(&bytes));
                if &actual != expected {
                    return Err((
                        format!(
                            "plugin file `{}` has sha256 {actual}, expected {expected}",
                            path.display()
                        ),
                        "the file changed: rebuild or update `sha256`".to_string(),
                    ));
                }
            }
            (path.display().to_string(), bytes)
        }
        PluginRef::Oci { reference, digest } => {
            let registry = sources.registry.as_ref().ok_or_else(|| {
                (
                    format!("`oci://{reference}` needs a registry client"),
                    "OCI references are resolved by the orch command line and server".to_string(),
                )
            })?;
            let help =
                || format!("`orch plugin inspect oci://{reference}` shows what the registry has");
            let parsed = crate::oci::parse(reference).map_err(|e| (e.to_string(), help()))?;
            // Under --locked, a tag that moved since it was locked is refused (when the
            // registry can be asked; offline, the pinned digest runs).
            if sources.locked
                && digest.is_none()
                && let Some(entry) = locked
                && let Ok(now) = registry.resolve(&parsed).await
                && now != entry.digest
            {
                return Err((
                    format!(
                        "`oci://{reference}` now points to {now}, but {} pins {}",
                        lock::LOCK_FILE,
                        entry.digest
                    ),
                    format!(
                        "the tag moved: review the new version with `orch lock --upgrade oci://{reference}`"
                    ),
                ));
            }
            // The workflow's digest, else the lock's: a tag does not move under a locked run.
            let pin = digest.clone().or_else(|| locked.map(|l| l.digest.clone()));
            let parsed = match pin {
                Some(d) => parsed.clone_with_digest(d),
                None => parsed,
            };
            let (artifact, bytes) = registry
                .pull(&parsed)
                .await
                .map_err(|e| (e.to_string(), help()))?;
            declared_imports = artifact.config.component.map(|c| c.imports);
            manifest = Some(artifact.manifest_digest);
            (format!("oci://{reference}"), bytes)
        }
    };
    let size = bytes.len() as u64;
    let compiled = runtime
        .load_async(&name, bytes)
        .await
        .map_err(|e| (e.to_string(), "check how the plugin was built".to_string()))?;
    // The runtime already hashed the bytes (its cache key): the component's digest.
    let origin = Origin {
        component: format!("sha256:{}", compiled.hash),
        manifest,
        size,
    };
    let info = runtime
        .describe(&compiled, Arc::new(Quiet))
        .await
        .map_err(|e| {
            (
                format!("plugin `{name}` failed to describe itself: {e}"),
                "fix the plugin's `describe`".to_string(),
            )
        })?;
    untrusted::check_info(&info).map_err(|e| {
        (
            format!("plugin `{name}`: {e}"),
            "fix the plugin's `describe`".into(),
        )
    })?;
    let schema = if info.config_schema.trim().is_empty() {
        None
    } else {
        let json: Json = serde_json::from_str(&info.config_schema).map_err(|e| {
            (
                format!("plugin `{name}` published an invalid config schema: {e}"),
                "fix the plugin".to_string(),
            )
        })?;
        untrusted::check_schema(&json).map_err(|e| {
            (
                format!("plugin `{name}` published a config schema orch will not compile: {e}"),
                "fix the plugin".to_string(),
            )
        })?;
        Some(
            jsonschema::options_for::<RenderedJson>()
                .build(&json)
                .map_err(|e| {
                    (
                        format!("plugin `{name}` published an invalid config schema: {e}"),
                        "fix the plugin".to_string(),
                    )
                })?,
        )
    };
    // What the artifact's config told a reviewer before download must be what it imports.
    if let Some(mut declared) = declared_imports {
        let mut actual = compiled.imports.clone();
        declared.sort();
        actual.sort();
        if declared != actual {
            return Err((
                format!(
                    "`{name}`: its artifact config lists other imports than the component has: a wrong or tampered config"
                ),
                "push it again with `orch plugin push`, which reads the imports from the binary"
                    .into(),
            ));
        }
    }
    if sources.locked
        && let Some(entry) = locked
    {
        check_locked(entry, &origin, &compiled.imports)?;
    }
    Ok(Arc::new(ResolvedPlugin {
        plugin: compiled,
        info,
        origin,
        schema,
    }))
}

/// Under `--locked`: the component and its imports are the ones the lock recorded.
fn check_locked(
    entry: &lock::LockedPlugin,
    origin: &Origin,
    imports: &[String],
) -> Result<(), (String, String)> {
    let added: Vec<&String> = imports
        .iter()
        .filter(|i| !entry.imports.contains(i))
        .collect();
    let help = format!(
        "review the change with `orch lock --upgrade {}` (it lists what the new version may reach), then accept it or pin the old one",
        entry.source
    );
    if !added.is_empty() {
        return Err((
            format!(
                "`{}` now imports {} not in {}: it could reach more than when it was locked",
                entry.source,
                added
                    .iter()
                    .map(|i| format!("`{i}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                lock::LOCK_FILE
            ),
            help,
        ));
    }
    if origin.component != entry.component {
        return Err((
            format!(
                "`{}` is {} but {} pins {}",
                entry.source,
                origin.component,
                lock::LOCK_FILE,
                entry.component
            ),
            help,
        ));
    }
    Ok(())
}

/// Property names the schema allows at `pointer` (only plain nested `properties` are followed).
fn schema_properties(schema: &str, pointer: &str) -> Vec<String> {
    let Ok(mut node) = serde_json::from_str::<Json>(schema) else {
        return vec![];
    };
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        node = node["properties"][segment].clone();
    }
    node["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// JSON pointers of every templated value in `with`.
fn template_paths(t: &Template, prefix: String) -> Vec<String> {
    match t {
        Template::Literal(_) => vec![],
        Template::String(_) => vec![prefix],
        Template::Array(items) => items
            .iter()
            .enumerate()
            .flat_map(|(i, t)| template_paths(t, format!("{prefix}/{i}")))
            .collect(),
        Template::Object(fields) => fields
            .iter()
            .flat_map(|(k, t)| {
                template_paths(
                    t,
                    format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                )
            })
            .collect(),
    }
}

fn find_in(
    text: &str,
    span: std::ops::Range<usize>,
    needle: &str,
) -> Option<std::ops::Range<usize>> {
    text.get(span.clone())?
        .find(needle)
        .map(|i| span.start + i..span.start + i + needle.len())
}
