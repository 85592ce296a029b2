//! Jobs to steps: each job's lines recognised ([`shell`]) into built-in steps, or kept as a
//! `container` step with the job's image; `rules` folded into `if` ([`rules`]); `needs` kept and
//! `stages` turned into needs; variables into env, secrets and connections.

use super::load::{self, Job, Pipeline, lines, one_line, scalar, variable};
use super::rules::{self, Var};
use super::shell::{self, Action};
use super::steps::scrub;
use super::{template_to_cel, templates_in};
use crate::import::model::{Connection, EnvEntry, Input, Step, Workflow};
use crate::import::{ImportError, Imported, JobRow, Note, Options};
use indexmap::{IndexMap, IndexSet};
use regex::Regex;
use serde_norway::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::LazyLock;
use toml::Value as Toml;

/// Variable names whose values are credentials: never copied into a workflow.
pub(super) static SECRET_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(pass|secret|token|key|pwd|credential|auth|cert|private)")
        .expect("valid regex")
});
/// `$NAME` or `${NAME}` in a script line.
pub(super) static SHELL_VAR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))").expect("valid regex")
});
/// An orch input template (as interpolated from `$[[ inputs.x ]]`).
pub(super) static INPUT_TEMPLATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{\{inputs\.([A-Za-z0-9_]+)\}\}").expect("valid regex"));

/// Where the repository is mounted in `container` steps (GitLab's `CI_PROJECT_DIR`).
pub(super) const REPO_IN_JOB: &str = "/work";

/// Job keys translated (or deliberately reported by the code that reads them).
const HANDLED: &[&str] = &[
    "stage",
    "image",
    "script",
    "before_script",
    "after_script",
    "needs",
    "rules",
    "variables",
    "tags",
    "timeout",
    "retry",
    "when",
    "allow_failure",
    "parallel",
    "artifacts",
    "cache",
    "services",
    "only",
    "except",
    "dependencies",
    "interruptible",
    "environment",
    "resource_group",
    "coverage",
    "trigger",
    "release",
    "inherit",
    "hooks",
    "id_tokens",
    "secrets",
    "pages",
    "start_in",
    "manual_confirmation",
];

/// Keywords with no equivalent: why, and what was done.
fn unsupported(key: &str) -> Option<&'static str> {
    Some(match key {
        "after_script" => {
            "orch has no after-script hook; the lines were not run (put cleanup in the script, or a step with `needs`)"
        }
        "artifacts" => {
            "steps pass data as outputs (`$ORCH_OUTPUT` in a container step), not files; not translated"
        }
        "cache" => "no cache between runs; not translated",
        "services" => "no sidecar services: deploy them with a `deploy` step first; not translated",
        "parallel" => "no job matrix: copy the step per value, or loop in the script; run once",
        "allow_failure" => {
            "a failed step fails the run (steps that need it do not run); not translated"
        }
        "only" | "except" => {
            "refs and pipeline sources do not apply to orch runs; the job always runs (use `rules` with inputs to gate it)"
        }
        "dependencies" => "artifacts are not passed; not translated",
        "environment" => "no deployment environments; not translated",
        "resource_group" => {
            "no resource groups (use `overlap` on a schedule for one-at-a-time runs); not translated"
        }
        "trigger" => {
            "no downstream pipelines: import that pipeline too and run it; the job was not translated"
        }
        "release" | "pages" => "GitLab-only feature; not translated",
        "coverage"
        | "interruptible"
        | "hooks"
        | "id_tokens"
        | "secrets"
        | "manual_confirmation"
        | "start_in" => "GitLab runner setting with no equivalent; not translated",
        _ => return None,
    })
}

/// Translate the pipeline into workflows.
pub(crate) fn translate(pipeline: Pipeline, options: &Options) -> Result<Imported, ImportError> {
    let variable_inputs = variable_inputs(&pipeline);
    let mut t = Translator {
        variable_inputs,
        options,
        // Resolved once: every path written is derived from these two.
        root: pipeline
            .root
            .canonicalize()
            .unwrap_or_else(|_| pipeline.root.clone()),
        out: options
            .out
            .canonicalize()
            .unwrap_or_else(|_| options.out.clone()),
        notes: pipeline.notes.clone(),
        rows: Vec::new(),
        env: IndexMap::new(),
        manual_inputs: Vec::new(),
        jobs: IndexMap::new(),
        job_variables: IndexMap::new(),
        withheld: BTreeSet::new(),
        pipeline,
    };
    t.all_jobs();
    t.finish()
}

/// A job as steps.
struct Translated {
    file: String,
    stage: usize,
    /// Its steps in order; the first carries the job's needs, the last is what others need.
    steps: Vec<Step>,
    /// Explicit `needs` (job names); `None`: from the stages.
    needs: Option<Vec<String>>,
    connections: IndexMap<String, Connection>,
}

pub(super) struct Translator<'a> {
    pub(super) options: &'a Options,
    /// The pipeline's directory, resolved.
    pub(super) root: std::path::PathBuf,
    /// The output directory, resolved if it exists already.
    pub(super) out: std::path::PathBuf,
    pub(super) pipeline: Pipeline,
    pub(super) notes: Vec<Note>,
    pub(super) rows: Vec<JobRow>,
    pub(super) env: IndexMap<String, EnvEntry>,
    pub(super) manual_inputs: Vec<Input>,
    jobs: IndexMap<String, Translated>,
    /// The variables of the job being translated (global ones included).
    pub(super) job_variables: IndexMap<String, String>,
    /// Pipeline variables a rule reads, as inputs (variable → input name), so that a run can
    /// set them as a pipeline run could.
    pub(super) variable_inputs: IndexMap<String, String>,
    /// Credentials already reported as not copied.
    pub(super) withheld: BTreeSet<String>,
}

impl Translator<'_> {
    pub(super) fn note(&mut self, file: &str, at: impl Into<String>, text: impl Into<String>) {
        self.notes.push(Note::at(file, at, text));
    }

    fn all_jobs(&mut self) {
        let jobs = std::mem::take(&mut self.pipeline.jobs);
        let mut ids = IndexSet::new();
        for job in &jobs {
            match self.job(job, &mut ids) {
                Some(done) => {
                    self.jobs.insert(job.name.clone(), done);
                }
                None => continue,
            }
        }
    }

    /// A step id made from `name`, unique among `ids`.
    fn step_id(name: &str, ids: &mut IndexSet<String>) -> String {
        let mut id: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        while id.contains("__") {
            id = id.replace("__", "_");
        }
        let mut id = id.trim_matches('_').to_string();
        if !id.starts_with(|c: char| c.is_ascii_alphabetic()) {
            id = format!("job_{id}");
        }
        let mut unique = id.clone();
        let mut n = 2;
        while ids.contains(&unique) {
            unique = format!("{id}_{n}");
            n += 1;
        }
        ids.insert(unique.clone());
        unique
    }

    fn job(&mut self, job: &Job, ids: &mut IndexSet<String>) -> Option<Translated> {
        let file = job.file.clone();
        let name = job.name.clone();
        let body = &job.body;
        let get = |k: &str| body.get(k);
        for key in body.keys().filter_map(Value::as_str) {
            if !HANDLED.contains(&key) {
                self.note(
                    &file,
                    format!("{name}.{key}"),
                    "unknown keyword; not translated",
                );
            } else if let Some(why) = unsupported(key) {
                let value = body.get(key).map(one_line).unwrap_or_default();
                self.note(&file, format!("{name}.{key}: {value}"), why);
            }
        }
        if get("trigger").is_some() {
            self.rows
                .push(JobRow::new(&name, &file, "not translated (a trigger job)"));
            return None;
        }
        let stage_name = get("stage").map(scalar).unwrap_or_else(|| "test".into());
        // `.pre` before every stage, `.post` after.
        let last = self.pipeline.stages.len() + 1;
        let stage = match self.pipeline.stages.iter().position(|s| *s == stage_name) {
            Some(i) => i + 1,
            None if stage_name == ".pre" => 0,
            None if stage_name == ".post" => last,
            None => {
                self.note(
                    &file,
                    format!("{name}.stage: {stage_name}"),
                    "not in `stages`; placed last",
                );
                last
            }
        };
        let variables = self.variables(&file, &name, get("variables"));
        self.job_variables = variables.clone();
        let manual_gate = format!("inputs.run_{}", Self::input_name(&name));
        let mut gate_used = false;
        let mut condition = None;
        match get("when").map(scalar).as_deref() {
            Some("never") => {
                self.rows
                    .push(JobRow::new(&name, &file, "not translated (`when: never`)"));
                return None;
            }
            Some("manual") => {
                condition = Some(manual_gate.clone());
                gate_used = true;
            }
            Some("on_failure") => {
                // Translated, it would run on every green run (a rollback, a page).
                self.rows.push(JobRow::new(
                    &name,
                    &file,
                    "not translated (`when: on_failure`: orch runs no step because another failed)",
                ));
                return None;
            }
            Some(w @ ("always" | "delayed")) => {
                self.note(
                    &file,
                    format!("{name}.when: {w}"),
                    "no equivalent; the job runs when its needs succeed or are skipped",
                );
            }
            _ => {}
        }
        if let Some(Value::Sequence(list)) = get("rules") {
            let var = |n: &str| self.rule_var(n, &variables);
            let folded = rules::fold(list, &var, &manual_gate);
            let used = folded
                .cel
                .as_deref()
                .is_some_and(|c| c.contains(&manual_gate));
            let notes = folded.notes;
            for (at, text) in notes {
                self.note(&file, format!("{name}.{at}"), text);
            }
            if folded.never {
                self.rows.push(JobRow::new(
                    &name,
                    &file,
                    "not translated (its rules never run it)",
                ));
                return None;
            }
            gate_used |= used;
            condition = match (condition, folded.cel) {
                (Some(a), Some(b)) => Some(format!("{a} && ({b})")),
                (a, b) => a.or(b),
            };
        }
        if gate_used {
            self.manual_inputs.push(Input {
                name: format!("run_{}", Self::input_name(&name)),
                kind: "boolean".into(),
                default: Some(Toml::Boolean(false)),
                description: Some(format!("Run `{name}`, a manual job in GitLab")),
                options: vec![],
                regex: None,
            });
        }
        let image = get("image");
        let (image_name, entrypoint) = match image {
            Some(Value::Mapping(m)) => (m.get("name").map(scalar), m.get("entrypoint").map(lines)),
            Some(v) => (Some(scalar(v)), None),
            None => (None, None),
        };
        let mut script: Vec<String> = get("before_script").map(lines).unwrap_or_default();
        script.extend(get("script").map(lines).unwrap_or_default());
        if script.is_empty() {
            self.rows
                .push(JobRow::new(&name, &file, "not translated (no `script`)"));
            return None;
        }
        let mut connections = IndexMap::new();
        let mut steps: Vec<Step> = Vec::new();
        let mut became = Vec::new();
        let mut dropped = Vec::new();
        let classified: Vec<(String, Option<Action>)> = script
            .iter()
            .map(|line| {
                let expand = |v: &str| self.shell_value(v, &variables);
                let action = shell::words(line, &expand).and_then(|w| shell::recognise(&w));
                (line.clone(), action)
            })
            .collect();
        let any_builtin = classified
            .iter()
            .any(|(_, a)| a.as_ref().is_some_and(|a| !matches!(a, Action::Noise(_))));
        let mut shell_lines: Vec<String> = Vec::new();
        for (line, action) in classified {
            match action {
                Some(Action::Noise(why)) if any_builtin => dropped.push((line, why)),
                Some(action) if !matches!(action, Action::Noise(_)) => {
                    if !shell_lines.is_empty() {
                        let lines = std::mem::take(&mut shell_lines);
                        steps.push(self.container_step(
                            &file,
                            &name,
                            &lines,
                            image_name.as_deref(),
                            entrypoint.clone(),
                            &variables,
                            &mut connections,
                        ));
                        became.push("`container`".to_string());
                    }
                    for (step, what) in self.builtin(&file, &name, &line, action, &mut connections)
                    {
                        steps.push(step);
                        became.push(what);
                    }
                }
                _ => shell_lines.push(line),
            }
        }
        if !shell_lines.is_empty() {
            steps.push(self.container_step(
                &file,
                &name,
                &shell_lines,
                image_name.as_deref(),
                entrypoint,
                &variables,
                &mut connections,
            ));
            became.push("`container`".to_string());
        }
        for (line, why) in dropped {
            self.note(
                &file,
                format!("{name}: `{}`", scrub(&line)),
                format!("dropped: it {why}"),
            );
        }
        // Ids, the job's chain, and its step settings.
        let count = steps.len();
        let mut previous: Option<String> = None;
        let timeout = get("timeout").map(scalar).and_then(|t| {
            let cleaned = t
                .replace(" minutes", "m")
                .replace(" minute", "m")
                .replace(" hours", "h")
                .replace(" hour", "h")
                .replace(" seconds", "s");
            match humantime::parse_duration(&cleaned) {
                Ok(_) => Some(cleaned),
                Err(_) => {
                    self.note(
                        &file,
                        format!("{name}.timeout: {t}"),
                        "not a duration orch reads; the default (10m) applies",
                    );
                    None
                }
            }
        });
        let retry = match get("retry") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::Mapping(m)) => m.get("max").and_then(Value::as_u64),
            _ => None,
        };
        if let Some(n) = retry {
            self.note(
                &file,
                format!("{name}.retry: {n}"),
                "orch retries `retryable` failures (an unreachable service, a timeout); a container job's exit codes are retried only when listed in `retry_on_exit`",
            );
        }
        let tags = get("tags").map(lines).unwrap_or_default();
        for (n, step) in steps.iter_mut().enumerate() {
            step.id = Self::step_id(
                &if count == 1 || n == 0 {
                    name.clone()
                } else {
                    format!("{name}_{}", n + 1)
                },
                ids,
            );
            step.comment = if count == 1 {
                format!("GitLab job `{name}` ({file})")
            } else {
                format!("GitLab job `{name}` ({file}), part {} of {count}", n + 1)
            };
            step.needs = previous.iter().cloned().collect();
            step.condition = condition.clone();
            step.timeout = timeout.clone();
            step.retry = retry.map(|n| n.min(10) as u32);
            step.runs_on = tags.clone();
            previous = Some(step.id.clone());
        }
        let needs = match get("needs") {
            None => None,
            Some(Value::Sequence(list)) => Some(
                list.iter()
                    .filter_map(|n| match n {
                        Value::String(s) => Some(s.clone()),
                        Value::Mapping(m) => match m.get("job") {
                            Some(job)
                                if m.get("project").is_none() && m.get("pipeline").is_none() =>
                            {
                                Some(scalar(job))
                            }
                            _ => {
                                self.note(
                                    &file,
                                    format!("{name}.needs: {}", one_line(n)),
                                    "needs on another pipeline or project are not translated",
                                );
                                None
                            }
                        },
                        _ => None,
                    })
                    .collect(),
            ),
            Some(other) => {
                self.note(
                    &file,
                    format!("{name}.needs: {}", one_line(other)),
                    "not a list; ignored",
                );
                None
            }
        };
        let ids_made: Vec<String> = steps.iter().map(|s| s.id.clone()).collect();
        self.rows.push(JobRow::new(
            &name,
            &file,
            &format!(
                "{} → {}",
                became.join(", "),
                ids_made
                    .iter()
                    .map(|i| format!("`{i}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
        Some(Translated {
            file,
            stage,
            steps,
            needs,
            connections,
        })
    }

    /// An input name for `job` (a gate for a manual job).
    fn input_name(job: &str) -> String {
        let mut ids = IndexSet::new();
        Self::step_id(job, &mut ids)
    }

    /// Global and job variables (the job's win), as their text.
    fn variables(
        &mut self,
        file: &str,
        job: &str,
        own: Option<&Value>,
    ) -> IndexMap<String, String> {
        let mut out = self.pipeline.variables.clone();
        if let Some(Value::Mapping(map)) = own {
            for (k, v) in map {
                if let Some(k) = k.as_str() {
                    out.insert(k.to_string(), variable(v));
                }
            }
        }
        for (k, v) in &out {
            if is_secret(k, v)
                && !v.is_empty()
                && !v.contains("${{")
                && self.withheld.insert(k.clone())
            {
                self.note(
                    file,
                    format!("{job}.variables.{k}"),
                    format!("looks like a credential: its value was not copied; set `{k}` in .env"),
                );
            }
        }
        out
    }

    /// `$NAME` in a rule: a variable's value, an input, or nothing orch has.
    fn rule_var(&self, name: &str, variables: &IndexMap<String, String>) -> Var {
        if let Some(value) = variables.get(name) {
            if is_secret(name, value) {
                return Var::Cel(format!("secrets.{name}"));
            }
            if let Some(input) = self.variable_input(name, value) {
                return Var::Cel(format!("inputs.{input}"));
            }
            return Var::Cel(template_to_cel(value));
        }
        match name {
            "CI_JOB_NAME" | "CI_PROJECT_DIR" | "CI_PIPELINE_ID" | "CI" => {
                Var::Unknown(format!("`${name}` is not known before the run"))
            }
            n if n.starts_with("CI_") || n.starts_with("GITLAB_") => {
                Var::Unknown(format!("`${n}` is GitLab's own; orch has no equivalent"))
            }
            n => Var::Unknown(format!(
                "`${n}` is a CI/CD variable of the project; add an input for it and compare `inputs.{}`",
                n.to_lowercase()
            )),
        }
    }

    /// What `$NAME` means in a line read for a built-in step; `None` if nothing orch has (the
    /// line then runs as shell).
    fn shell_value(&self, name: &str, variables: &IndexMap<String, String>) -> Option<String> {
        match variables.get(name) {
            Some(value) if is_secret(name, value) => Some(format!("${{{{secrets.{name}}}}}")),
            Some(value) if let Some(input) = self.variable_input(name, value) => {
                Some(format!("${{{{inputs.{input}}}}}"))
            }
            Some(value) => Some(value.clone()),
            None if name.starts_with("CI_") || name.starts_with("GITLAB_") || name == "CI" => None,
            None if SECRET_NAME.is_match(name) => Some(format!("${{{{secrets.{name}}}}}")),
            None => Some(format!("${{{{env.{name}}}}}")),
        }
    }

    /// The input standing for pipeline variable `name`, if a rule reads it and the job has not
    /// set it to `value` of its own.
    pub(super) fn variable_input(&self, name: &str, value: &str) -> Option<&str> {
        let input = self.variable_inputs.get(name)?;
        (self.pipeline.variables.get(name).map(String::as_str) == Some(value)).then_some(input)
    }

    /// Record what `.env` must define for a template in the output.
    pub(super) fn need_env(&mut self, text: &str, why: &str) {
        for (scope, name) in templates_in(text) {
            if scope == "secrets" || scope == "env" {
                self.env.entry(name.clone()).or_insert_with(|| EnvEntry {
                    name,
                    secret: scope == "secrets",
                    example: String::new(),
                    why: why.to_string(),
                });
            }
        }
    }

    /// Needs, workflows, and the report.
    fn finish(mut self) -> Result<Imported, ImportError> {
        // Stage order: a job without `needs` waits for every job of the earlier stages.
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        let last_step = |t: &Translated| t.steps.last().map(|s| s.id.clone());
        let mut needs_of: IndexMap<String, Vec<String>> = IndexMap::new();
        for name in &names {
            let t = &self.jobs[name];
            let needed: Vec<String> = match &t.needs {
                Some(explicit) => explicit.clone(),
                None => names
                    .iter()
                    .filter(|other| self.jobs[*other].stage < t.stage)
                    .cloned()
                    .collect(),
            };
            needs_of.insert(name.clone(), needed);
        }
        let mut missing = Vec::new();
        for (name, needed) in &mut needs_of {
            needed.retain(|n| {
                let known = self.jobs.contains_key(n);
                if !known {
                    missing.push((name.clone(), n.clone()));
                }
                known
            });
        }
        for (name, n) in missing {
            let file = self.jobs[&name].file.clone();
            self.note(
                &file,
                format!("{name}.needs: {n}"),
                "that job was not translated (see above); the need was dropped",
            );
        }
        if let Some(cycle) = needs_cycle(&needs_of) {
            return Err(ImportError::Invalid {
                file: self.pipeline.files.first().cloned().unwrap_or_default(),
                message: format!("the jobs' `needs` form a cycle: {cycle}; GitLab refuses it too"),
            });
        }
        let reduced = transitive_reduction(&needs_of);
        // Group into workflows.
        let groups: IndexMap<String, Vec<String>> = if self.options.split {
            let mut g: IndexMap<String, Vec<String>> = IndexMap::new();
            for name in &names {
                g.entry(self.jobs[name].file.clone())
                    .or_default()
                    .push(name.clone());
            }
            g
        } else {
            IndexMap::from([(String::new(), names.clone())])
        };
        let mut workflows = Vec::new();
        for (file, members) in groups {
            let wf_name = if self.options.split {
                workflow_name(&file)
            } else {
                self.options
                    .name
                    .clone()
                    .unwrap_or_else(|| sanitize(&dir_name(&self.root)))
            };
            let mut steps = Vec::new();
            let mut connections: IndexMap<String, Connection> = IndexMap::new();
            for name in &members {
                let t = &self.jobs[name];
                let mut first_needs = Vec::new();
                for n in &reduced[name] {
                    if !members.contains(n) {
                        let other = self.jobs[n].file.clone();
                        self.notes.push(Note::at(
                            &t.file,
                            format!("{name}.needs: {n}"),
                            format!(
                                "`{n}` is in another workflow (from {other}): run that one first"
                            ),
                        ));
                        continue;
                    }
                    if let Some(id) = last_step(&self.jobs[n]) {
                        first_needs.push(id);
                    }
                }
                let t = &self.jobs[name];
                for (k, c) in &t.connections {
                    let entry = connections.entry(k.clone()).or_insert_with(|| c.clone());
                    for i in &c.images {
                        if !entry.images.contains(i) {
                            entry.images.push(i.clone());
                        }
                    }
                    for b in &c.bind_paths {
                        if !entry.bind_paths.contains(b) {
                            entry.bind_paths.push(b.clone());
                        }
                    }
                }
                for (n, step) in t.steps.iter().enumerate() {
                    let mut step = step.clone();
                    if n == 0 {
                        step.needs = first_needs.clone();
                    }
                    steps.push(step);
                }
            }
            let used: BTreeSet<String> = steps
                .iter()
                .flat_map(|s| {
                    let mut texts: Vec<String> =
                        s.with.iter().map(|(_, v)| v.to_string()).collect();
                    texts.extend(s.condition.clone());
                    texts
                })
                .flat_map(|t| templates_in(&t).into_iter().chain(cel_inputs(&t)))
                .filter(|(scope, _)| scope == "inputs")
                .map(|(_, n)| n)
                .collect();
            let mut inputs: Vec<Input> = self
                .pipeline
                .inputs
                .iter()
                .filter(|i| !self.options.split || used.contains(&i.orch_name()))
                .map(input)
                .collect();
            inputs.extend(
                self.variable_inputs
                    .iter()
                    .filter(|(_, i)| used.contains(*i))
                    .map(|(var, name)| Input {
                        name: name.clone(),
                        kind: "string".into(),
                        default: self.pipeline.variables.get(var).cloned().map(Toml::String),
                        description: Some(format!(
                            "GitLab variable `{var}` (rules read it; a run may set it)"
                        )),
                        options: vec![],
                        regex: None,
                    }),
            );
            inputs.extend(
                self.manual_inputs
                    .iter()
                    .filter(|i| used.contains(&i.name))
                    .cloned(),
            );
            workflows.push(Workflow {
                name: wf_name,
                source: if file.is_empty() {
                    self.pipeline.files.first().cloned().unwrap_or_default()
                } else {
                    file
                },
                inputs,
                connections,
                steps,
            });
        }
        let root = self.pipeline.files.first().cloned().unwrap_or_default();
        for (var, input) in &self.variable_inputs {
            let value = self
                .pipeline
                .variables
                .get(var)
                .cloned()
                .unwrap_or_default();
            self.notes.push(Note::at(
                &root,
                format!("variables.{var}"),
                format!("a rule reads it: it became the input `{input}` (default `{value}`), which a run may set, as a pipeline run could"),
            ));
        }
        let env: Vec<EnvEntry> = self.env.into_values().collect();
        Ok(Imported {
            source: self.pipeline.files.first().cloned().unwrap_or_default(),
            files_read: self.pipeline.files,
            workflows,
            env,
            rows: self.rows,
            notes: self.notes,
        })
    }
}

/// Pipeline variables (not credentials, not templates) that some job's rules read: each an
/// input named like it (lower case), defaulting to its value.
fn variable_inputs(pipeline: &Pipeline) -> IndexMap<String, String> {
    let mut read = BTreeSet::new();
    for job in &pipeline.jobs {
        let rules = job.body.get("rules").and_then(Value::as_sequence);
        for rule in rules.into_iter().flatten() {
            if let Some(text) = rule.get("if").and_then(Value::as_str) {
                for c in SHELL_VAR.captures_iter(text) {
                    read.insert(c.get(1).or(c.get(2)).map_or("", |m| m.as_str()).to_string());
                }
            }
        }
    }
    let taken: BTreeSet<String> = pipeline.inputs.iter().map(|i| i.orch_name()).collect();
    pipeline
        .variables
        .iter()
        .filter(|(k, v)| read.contains(*k) && !is_secret(k, v) && !v.contains("${{"))
        .map(|(k, _)| {
            let lower = k.to_lowercase();
            let name = if taken.contains(&lower) {
                format!("var_{lower}")
            } else {
                lower
            };
            (k.clone(), name)
        })
        .collect()
}

/// A cycle in `needs`, as `a -> b -> a`, if there is one.
fn needs_cycle(needs: &IndexMap<String, Vec<String>>) -> Option<String> {
    fn visit(
        n: &str,
        needs: &IndexMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut cycle = path[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle.join(" -> "));
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in needs.get(n).into_iter().flatten() {
            if let Some(cycle) = visit(m, needs, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    needs
        .keys()
        .find_map(|n| visit(n, needs, &mut Vec::new(), &mut done))
}

/// Drop the needs implied by other needs.
fn transitive_reduction(needs: &IndexMap<String, Vec<String>>) -> IndexMap<String, Vec<String>> {
    let mut reach: IndexMap<String, BTreeSet<String>> = IndexMap::new();
    fn reachable(
        n: &str,
        needs: &IndexMap<String, Vec<String>>,
        memo: &mut IndexMap<String, BTreeSet<String>>,
        depth: usize,
    ) -> BTreeSet<String> {
        if let Some(r) = memo.get(n) {
            return r.clone();
        }
        let mut out = BTreeSet::new();
        if depth < 1000 {
            for m in needs.get(n).into_iter().flatten() {
                out.insert(m.clone());
                out.extend(reachable(m, needs, memo, depth + 1));
            }
        }
        memo.insert(n.to_string(), out.clone());
        out
    }
    let mut out = IndexMap::new();
    for (name, direct) in needs {
        let kept: Vec<String> = direct
            .iter()
            .filter(|d| {
                !direct
                    .iter()
                    .any(|other| other != *d && reachable(other, needs, &mut reach, 0).contains(*d))
            })
            .cloned()
            .collect();
        out.insert(name.clone(), kept);
    }
    out
}

fn input(i: &load::SpecInput) -> Input {
    let toml = |v: &Value| -> Option<Toml> {
        match v {
            Value::String(s) => Some(Toml::String(s.clone())),
            Value::Bool(b) => Some(Toml::Boolean(*b)),
            Value::Number(n) => n
                .as_i64()
                .map(Toml::Integer)
                .or_else(|| n.as_f64().map(Toml::Float)),
            Value::Sequence(items) => Some(Toml::Array(
                items.iter().map(|x| Toml::String(scalar(x))).collect(),
            )),
            _ => None,
        }
    };
    Input {
        name: i.orch_name(),
        kind: i.kind.clone(),
        default: i.default.as_ref().and_then(toml),
        description: i.description.clone(),
        options: i.options.iter().filter_map(toml).collect(),
        regex: i.regex.clone(),
    }
}

/// `inputs.NAME` read by a CEL condition.
fn cel_inputs(text: &str) -> Vec<(String, String)> {
    static CEL_INPUT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\binputs\.([A-Za-z0-9_]+)").expect("valid regex"));
    CEL_INPUT
        .captures_iter(text)
        .map(|c| ("inputs".to_string(), c[1].to_string()))
        .collect()
}

/// Whether a variable holds a credential: by its name, or a URL with a password.
pub(super) fn is_secret(name: &str, value: &str) -> bool {
    static URL_PASSWORD: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"://[^/@\s:]+:[^/@\s]+@").expect("valid regex"));
    (SECRET_NAME.is_match(name) && name != "DOCKER_HOST") || URL_PASSWORD.is_match(value)
}

pub(super) fn dir_name(path: &Path) -> String {
    path.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "pipeline".into())
}

/// A workflow name from a file: `ci/postgres.yml` → `postgres`.
fn workflow_name(file: &str) -> String {
    let stem = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    sanitize(stem.trim_start_matches('.'))
}

fn sanitize(name: &str) -> String {
    let out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let out = out.trim_matches('-').to_string();
    if out.is_empty() {
        "pipeline".into()
    } else {
        out
    }
}
