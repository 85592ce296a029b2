//! A `.gitlab-ci.yml` and its local includes as one pipeline: `spec:inputs` headers, `include:
//! local` with `inputs:` threaded through (`$[[ inputs.x ]]` interpolated), anchors and `<<`
//! merges, `default:`, hidden jobs and `extends` resolved, so each job is one flat mapping.

use super::super::{ImportError, Note};
use indexmap::IndexMap;
use regex::Regex;
use serde::Deserialize;
use serde_norway::{Mapping, Value};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// How deep includes and `extends` may nest (GitLab's own limits are 150 and 11).
const MAX_DEPTH: usize = 16;

/// Top-level keys that are not jobs.
const GLOBAL_KEYS: &[&str] = &[
    "stages",
    "variables",
    "default",
    "include",
    "workflow",
    "spec",
    "image",
    "services",
    "before_script",
    "after_script",
    "cache",
];

/// `default:` keys a job inherits when it does not set them.
const DEFAULTED: &[&str] = &[
    "image",
    "before_script",
    "after_script",
    "tags",
    "timeout",
    "retry",
    "interruptible",
    "cache",
    "services",
    "artifacts",
    "hooks",
    "id_tokens",
];

/// One `spec:inputs` entry of the root file.
#[derive(Debug, Clone)]
pub(crate) struct SpecInput {
    pub name: String,
    pub kind: String,
    pub default: Option<Value>,
    pub description: Option<String>,
    pub options: Vec<Value>,
    pub regex: Option<String>,
}

impl SpecInput {
    /// The name of the workflow input: GitLab allows `-` in names, CEL does not.
    pub(crate) fn orch_name(&self) -> String {
        self.name.replace('-', "_")
    }
}

/// A job as it will run: every `extends`, `default:` and merge applied.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub name: String,
    /// The file that defines it, relative to the pipeline's directory.
    pub file: String,
    pub body: Mapping,
}

/// The whole pipeline.
#[derive(Debug, Default)]
pub(crate) struct Pipeline {
    /// The directory of the root file: `include: local` and relative paths start there.
    pub root: PathBuf,
    pub inputs: Vec<SpecInput>,
    pub stages: Vec<String>,
    pub variables: IndexMap<String, String>,
    pub jobs: Vec<Job>,
    /// Every file read, root first, relative to `root`.
    pub files: Vec<String>,
    pub notes: Vec<Note>,
}

/// `$[[ inputs.NAME ]]`, optionally with `| function` calls.
static INPUT_REF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$\[\[\s*inputs\.([A-Za-z0-9_-]+)\s*((?:\|[^\]]*)?)\]\]").expect("valid regex")
});

/// Read the pipeline at `path`.
pub(crate) fn load(path: &Path) -> Result<Pipeline, ImportError> {
    let root = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut loader = Loader {
        pipeline: Pipeline {
            root,
            ..Pipeline::default()
        },
        jobs: IndexMap::new(),
        globals: Mapping::new(),
    };
    let (header, body) = loader.read(&name)?;
    let inputs = spec_inputs(&name, header.as_ref())?;
    // The root's own inputs stay symbolic: they become the workflow's inputs.
    let values: IndexMap<String, String> = inputs
        .iter()
        .map(|i| (i.name.clone(), format!("${{{{inputs.{}}}}}", i.orch_name())))
        .collect();
    loader.pipeline.inputs = inputs;
    loader.file(&name, body, &values, 0)?;
    loader.finish()
}

struct Loader {
    pipeline: Pipeline,
    /// Jobs (hidden ones too) by name, with the file that defined them last.
    jobs: IndexMap<String, (String, Mapping)>,
    globals: Mapping,
}

impl Loader {
    /// The file's `spec` header (if any) and its body.
    fn read(&mut self, file: &str) -> Result<(Option<Value>, Value), ImportError> {
        let path = self.pipeline.root.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| ImportError::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        self.pipeline.files.push(file.to_string());
        let mut docs = Vec::new();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let mut value = Value::deserialize(doc).map_err(|e| yaml_error(file, &e))?;
            value.apply_merge().map_err(|e| yaml_error(file, &e))?;
            docs.push(value);
        }
        match docs.len() {
            0 => Ok((None, Value::Mapping(Mapping::new()))),
            1 if docs[0].get("spec").is_some()
                && docs[0].as_mapping().is_some_and(|m| m.len() == 1) =>
            {
                Ok((docs.pop(), Value::Mapping(Mapping::new())))
            }
            1 => Ok((None, docs.remove(0))),
            2 => {
                let body = docs.pop().unwrap_or_default();
                let header = docs.pop().unwrap_or_default();
                if header.get("spec").is_none() {
                    return Err(invalid(
                        file,
                        "two YAML documents, and the first is not a `spec:` header",
                    ));
                }
                Ok((Some(header), body))
            }
            n => Err(invalid(
                file,
                format!("{n} YAML documents; a CI file has at most a `spec:` header and a body"),
            )),
        }
    }

    /// Merge `body` of `file`, interpolated with `values`, and its includes.
    fn file(
        &mut self,
        file: &str,
        body: Value,
        values: &IndexMap<String, String>,
        depth: usize,
    ) -> Result<(), ImportError> {
        let mut body = body;
        interpolate(&mut body, file, values)?;
        let Value::Mapping(mut body) = body else {
            return Err(invalid(
                file,
                "the file is not a mapping of keywords and jobs",
            ));
        };
        // What a file includes comes first; its own keys merge on top (the includer wins, and
        // a later include over an earlier one), as GitLab merges them.
        if let Some(include) = body.remove("include") {
            self.includes(file, &include, depth)?;
        }
        for (key, value) in body {
            let Some(key) = key.as_str().map(str::to_string) else {
                return Err(invalid(file, "a top-level key is not a string"));
            };
            if GLOBAL_KEYS.contains(&key.as_str()) {
                match (self.globals.get_mut(key.as_str()), value) {
                    (Some(Value::Mapping(have)), Value::Mapping(more)) => deep_merge(have, more),
                    (_, value) => {
                        self.globals.insert(Value::String(key), value);
                    }
                }
                continue;
            }
            let Value::Mapping(job) = value else {
                self.pipeline.notes.push(Note::at(
                    file,
                    &key,
                    "not a job (its value is not a mapping); ignored",
                ));
                continue;
            };
            match self.jobs.get_mut(&key) {
                Some((defined_in, existing)) => {
                    deep_merge(existing, job);
                    *defined_in = file.to_string();
                }
                None => {
                    self.jobs.insert(key, (file.to_string(), job));
                }
            }
        }
        Ok(())
    }

    fn includes(&mut self, from: &str, value: &Value, depth: usize) -> Result<(), ImportError> {
        if depth >= MAX_DEPTH {
            return Err(invalid(
                from,
                format!("includes nest deeper than {MAX_DEPTH}"),
            ));
        }
        let items: Vec<Value> = match value {
            Value::Sequence(items) => items.clone(),
            other => vec![other.clone()],
        };
        for item in items {
            let (local, inputs) = match &item {
                Value::String(path) if !path.contains("://") => (path.clone(), Mapping::new()),
                Value::Mapping(m) if m.get("local").is_some() => (
                    m.get("local")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    m.get("inputs")
                        .and_then(Value::as_mapping)
                        .cloned()
                        .unwrap_or_default(),
                ),
                other => {
                    let kind = other
                        .as_mapping()
                        .and_then(|m| m.keys().next())
                        .and_then(Value::as_str)
                        .unwrap_or("remote");
                    self.pipeline.notes.push(Note::at(
                        from,
                        "include",
                        format!(
                            "`include: {kind}` ({}) is not read: only local files are imported; import that file too, or copy its jobs here",
                            one_line(other)
                        ),
                    ));
                    continue;
                }
            };
            if local.contains('*') {
                self.pipeline.notes.push(Note::at(
                    from,
                    "include",
                    format!("`{local}`: wildcard includes are not read; list the files"),
                ));
                continue;
            }
            let file = local.trim_start_matches('/').to_string();
            if self.pipeline.files.contains(&file) {
                return Err(invalid(
                    from,
                    format!("`{file}` is included twice (or includes itself)"),
                ));
            }
            let (header, body) = self.read(&file)?;
            let spec = spec_inputs(&file, header.as_ref())?;
            let mut values = IndexMap::new();
            for input in &spec {
                let given = inputs.get(input.name.as_str()).map(scalar);
                let value = match (given, &input.default) {
                    (Some(v), _) => v,
                    (None, Some(default)) => scalar(default),
                    (None, None) => {
                        return Err(invalid(
                            from,
                            format!(
                                "`include: local: {local}` does not give input `{}`, which has no default there",
                                input.name
                            ),
                        ));
                    }
                };
                values.insert(input.name.clone(), value);
            }
            for name in inputs.keys().filter_map(Value::as_str) {
                if !spec.iter().any(|i| i.name == name) {
                    return Err(invalid(
                        from,
                        format!(
                            "`include: local: {local}` gives input `{name}`, which its `spec:inputs` does not declare"
                        ),
                    ));
                }
            }
            self.file(&file, body, &values, depth + 1)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Pipeline, ImportError> {
        let root_file = self.pipeline.files.first().cloned().unwrap_or_default();
        let snapshot = self.jobs.clone();
        for (file, body) in self.jobs.values_mut() {
            for (_, value) in body.iter_mut() {
                resolve_references(value, &snapshot, file, 0)?;
            }
        }
        let globals = std::mem::take(&mut self.globals);
        self.pipeline.stages = match globals.get("stages") {
            Some(v) => lines(v),
            None => ["build", "test", "deploy"].map(String::from).to_vec(),
        };
        if let Some(Value::Mapping(vars)) = globals.get("variables") {
            for (k, v) in vars {
                if let Some(k) = k.as_str() {
                    self.pipeline.variables.insert(k.to_string(), variable(v));
                }
            }
        }
        let mut default = globals
            .get("default")
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        // Deprecated top-level forms of `default:`.
        for key in [
            "image",
            "services",
            "before_script",
            "after_script",
            "cache",
        ] {
            if let Some(v) = globals.get(key)
                && !default.contains_key(key)
            {
                default.insert(Value::String(key.into()), v.clone());
            }
        }
        for key in default.keys().filter_map(Value::as_str) {
            if !DEFAULTED.contains(&key) {
                self.pipeline.notes.push(Note::at(
                    &root_file,
                    "default",
                    format!("`default: {key}` is not a default GitLab applies; ignored"),
                ));
            }
        }
        if let Some(workflow) = globals.get("workflow") {
            self.pipeline.notes.push(Note::at(
                &root_file,
                "workflow",
                format!(
                    "`workflow:` ({}) decides whether a pipeline is created for a push, tag or merge request; an orch run starts when it is asked to (CLI, schedule, API, webhook), so it was not translated",
                    one_line(workflow)
                ),
            ));
        }
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        for name in names {
            if name.starts_with('.') {
                continue;
            }
            let (file, _) = self.jobs[&name].clone();
            let mut body = self.extended(&name, 0)?;
            body.remove("extends");
            for key in DEFAULTED {
                if let Some(v) = default.get(*key)
                    && !body.contains_key(*key)
                    && inherits(&body, key)
                {
                    body.insert(Value::String((*key).into()), v.clone());
                }
            }
            self.pipeline.jobs.push(Job { name, file, body });
        }
        Ok(self.pipeline)
    }

    /// Job `name` with its `extends` chain merged in (the job's own keys win).
    fn extended(&self, name: &str, depth: usize) -> Result<Mapping, ImportError> {
        let (file, body) = &self.jobs[name];
        if depth > MAX_DEPTH {
            return Err(invalid(
                file,
                format!("job `{name}`: `extends` nests deeper than {MAX_DEPTH} (a cycle?)"),
            ));
        }
        let parents = body.get("extends").map(lines).unwrap_or_default();
        let mut merged = Mapping::new();
        for parent in &parents {
            if !self.jobs.contains_key(parent) {
                return Err(invalid(
                    file,
                    format!("job `{name}` extends `{parent}`, which no imported file defines"),
                ));
            }
            let base = self.extended(parent, depth + 1)?;
            deep_merge(&mut merged, base);
        }
        deep_merge(&mut merged, body.clone());
        Ok(merged)
    }
}

/// Replace each `!reference [job, key, ...]` with what it points at; lists that held
/// references are flattened one level (a script or rules list of lists is one list).
fn resolve_references(
    value: &mut Value,
    jobs: &IndexMap<String, (String, Mapping)>,
    file: &str,
    depth: usize,
) -> Result<(), ImportError> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "reference" => {
            let path = lines(&tagged.value);
            let mut found = path
                .first()
                .and_then(|job| jobs.get(job))
                .map(|(_, body)| Value::Mapping(body.clone()));
            for key in path.iter().skip(1) {
                found = found.and_then(|v| v.get(key.as_str()).cloned());
            }
            let Some(mut found) = found else {
                return Err(invalid(
                    file,
                    format!(
                        "`!reference [{}]` points at nothing an imported file defines",
                        path.join(", ")
                    ),
                ));
            };
            if depth >= MAX_DEPTH {
                return Err(invalid(
                    file,
                    format!("`!reference` nests deeper than {MAX_DEPTH}"),
                ));
            }
            resolve_references(&mut found, jobs, file, depth + 1)?;
            *value = found;
        }
        Value::Sequence(items) => {
            let mut had_reference = false;
            for item in items.iter_mut() {
                had_reference |= matches!(item, Value::Tagged(t) if t.tag == "reference");
                resolve_references(item, jobs, file, depth)?;
            }
            if had_reference {
                let flat: Vec<Value> = std::mem::take(items)
                    .into_iter()
                    .flat_map(|item| match item {
                        Value::Sequence(inner) => inner,
                        other => vec![other],
                    })
                    .collect();
                *items = flat;
            }
        }
        Value::Mapping(map) => {
            for (_, v) in map.iter_mut() {
                resolve_references(v, jobs, file, depth)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `inherit: default: false` (or a list without `key`) turns defaults off.
fn inherits(body: &Mapping, key: &str) -> bool {
    match body.get("inherit").and_then(|i| i.get("default")) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Sequence(keys)) => keys.iter().any(|k| k.as_str() == Some(key)),
        _ => true,
    }
}

/// GitLab's `extends` merge: mappings merge key by key, anything else is replaced.
fn deep_merge(into: &mut Mapping, from: Mapping) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Mapping(a)), Value::Mapping(b)) => deep_merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// The `spec:inputs` of a header.
fn spec_inputs(file: &str, header: Option<&Value>) -> Result<Vec<SpecInput>, ImportError> {
    let Some(inputs) = header
        .and_then(|h| h.get("spec"))
        .and_then(|s| s.get("inputs"))
    else {
        return Ok(Vec::new());
    };
    let Some(inputs) = inputs.as_mapping() else {
        return Err(invalid(file, "`spec:inputs` is not a mapping"));
    };
    let mut out = Vec::new();
    for (name, spec) in inputs {
        let Some(name) = name.as_str() else {
            return Err(invalid(file, "an input name is not a string"));
        };
        let text = |key: &str| spec.get(key).and_then(Value::as_str).map(str::to_string);
        let kind = text("type").unwrap_or_else(|| "string".into());
        if !["string", "number", "boolean", "array"].contains(&kind.as_str()) {
            return Err(invalid(
                file,
                format!(
                    "input `{name}` has type `{kind}`; GitLab's types are string, number, boolean and array"
                ),
            ));
        }
        out.push(SpecInput {
            name: name.to_string(),
            kind,
            default: spec.get("default").cloned(),
            description: text("description"),
            options: spec
                .get("options")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default(),
            regex: text("regex"),
        });
    }
    Ok(out)
}

/// Replace every `$[[ inputs.NAME ]]` in the strings (and keys) of `value`.
fn interpolate(
    value: &mut Value,
    file: &str,
    values: &IndexMap<String, String>,
) -> Result<(), ImportError> {
    match value {
        Value::String(text) if text.contains("$[[") => {
            let mut failed = None;
            let replaced =
                INPUT_REF.replace_all(text, |c: &regex::Captures<'_>| match values.get(&c[1]) {
                    Some(v) => v.clone(),
                    None => {
                        failed.get_or_insert_with(|| c[1].to_string());
                        String::new()
                    }
                });
            if let Some(name) = failed {
                return Err(invalid(
                    file,
                    format!(
                        "`$[[ inputs.{name} ]]`: the file's `spec:inputs` declares no `{name}`"
                    ),
                ));
            }
            *text = replaced.into_owned();
        }
        Value::Sequence(items) => {
            for item in items {
                interpolate(item, file, values)?;
            }
        }
        Value::Mapping(map) => {
            let old = std::mem::take(map);
            for (mut k, mut v) in old {
                interpolate(&mut k, file, values)?;
                interpolate(&mut v, file, values)?;
                map.insert(k, v);
            }
        }
        Value::Tagged(tagged) => interpolate(&mut tagged.value, file, values)?,
        _ => {}
    }
    Ok(())
}

/// A scalar as the text GitLab would interpolate.
pub(crate) fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => one_line(other),
    }
}

/// A variable's value: a scalar, or `{ value: ... }`.
pub(crate) fn variable(value: &Value) -> String {
    match value.get("value") {
        Some(v) => scalar(v),
        None => scalar(value),
    }
}

/// A string or a list of strings (nested lists flattened, as GitLab does for `!reference` and
/// anchors in `script`).
pub(crate) fn lines(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().flat_map(lines).collect(),
        Value::Null => Vec::new(),
        other => vec![scalar(other)],
    }
}

/// A value as one line of YAML flow text, for notes.
pub(crate) fn one_line(value: &Value) -> String {
    let text = serde_norway::to_string(value).unwrap_or_default();
    let text = text.trim().replace('\n', " ");
    if text.chars().count() > 100 {
        format!("{}…", text.chars().take(100).collect::<String>())
    } else {
        text
    }
}

fn invalid(file: &str, message: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        file: file.to_string(),
        message: message.into(),
    }
}

fn yaml_error(file: &str, e: &serde_norway::Error) -> ImportError {
    let file = match e.location() {
        Some(at) => format!("{file}:{}:{}", at.line(), at.column()),
        None => file.to_string(),
    };
    ImportError::Invalid {
        file,
        message: e.to_string(),
    }
}
