//! Jobs to steps: each job's lines recognised ([`shell`]) into built-in steps, or kept as a
//! `container` step with the job's image; `rules` folded into `if` ([`rules`]); `needs` kept and
//! `stages` turned into needs; variables into env, secrets and connections.

use super::load::{self, Job, Pipeline, lines, one_line, scalar, variable};
use super::rules::{self, Var};
use super::shell::{self, Action, GrantOn, Sql};
use super::{template_to_cel, templates_in};
use crate::import::model::{Connection, EnvEntry, Input, Step, Workflow};
use crate::import::{Imported, JobRow, Note, Options};
use indexmap::{IndexMap, IndexSet};
use regex::Regex;
use serde_norway::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::LazyLock;
use toml::Value as Toml;

/// Variable names whose values are credentials: never copied into a workflow.
static SECRET_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(pass|secret|token|key|pwd|credential|auth|cert|private)")
        .expect("valid regex")
});
/// `$NAME` or `${NAME}` in a script line.
static SHELL_VAR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))").expect("valid regex")
});
/// An orch input template (as interpolated from `$[[ inputs.x ]]`).
static INPUT_TEMPLATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{\{inputs\.([A-Za-z0-9_]+)\}\}").expect("valid regex"));

/// Where the repository is mounted in `container` steps (GitLab's `CI_PROJECT_DIR`).
const REPO_IN_JOB: &str = "/work";

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
pub(crate) fn translate(pipeline: Pipeline, options: &Options) -> Imported {
    let mut t = Translator {
        options,
        root: pipeline.root.clone(),
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

struct Translator<'a> {
    options: &'a Options,
    root: std::path::PathBuf,
    pipeline: Pipeline,
    notes: Vec<Note>,
    rows: Vec<JobRow>,
    env: IndexMap<String, EnvEntry>,
    manual_inputs: Vec<Input>,
    jobs: IndexMap<String, Translated>,
    /// The variables of the job being translated (global ones included).
    job_variables: IndexMap<String, String>,
    /// Credentials already reported as not copied.
    withheld: BTreeSet<String>,
}

impl Translator<'_> {
    fn note(&mut self, file: &str, at: impl Into<String>, text: impl Into<String>) {
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
        let stage = match self.pipeline.stages.iter().position(|s| *s == stage_name) {
            Some(i) => i,
            None if stage_name == ".pre" => 0,
            None if stage_name == ".post" => self.pipeline.stages.len(),
            None => {
                self.note(
                    &file,
                    format!("{name}.stage: {stage_name}"),
                    "not in `stages`; placed last",
                );
                self.pipeline.stages.len()
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
            Some(w @ ("on_failure" | "always" | "delayed")) => {
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
                format!("{name}: `{line}`"),
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
                            Some(job) => Some(scalar(job)),
                            None => {
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
            Some(value) => Some(value.clone()),
            None if name.starts_with("CI_") || name.starts_with("GITLAB_") || name == "CI" => None,
            None if SECRET_NAME.is_match(name) => Some(format!("${{{{secrets.{name}}}}}")),
            None => Some(format!("${{{{env.{name}}}}}")),
        }
    }

    /// Record what `.env` must define for a template in the output.
    fn need_env(&mut self, text: &str, why: &str) {
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

    fn docker_connection(
        &mut self,
        connections: &mut IndexMap<String, Connection>,
        image: Option<&str>,
    ) {
        let host = self.job_variables.get("DOCKER_HOST").cloned();
        let conn = connections
            .entry("docker".into())
            .or_insert_with(|| Connection {
                kind: "docker",
                settings: vec![("host".into(), Toml::String("${{ env.DOCKER_HOST }}".into()))],
                images: Vec::new(),
                bind_paths: Vec::new(),
            });
        if let Some(image) = image
            && !conn.images.iter().any(|i| i == image)
        {
            conn.images.push(image.to_string());
        }
        self.env
            .entry("DOCKER_HOST".into())
            .or_insert_with(|| EnvEntry {
                name: "DOCKER_HOST".into(),
                secret: false,
                example: host.unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
                why: "the Docker engine the jobs used (their `DOCKER_HOST`)".into(),
            });
    }

    #[allow(clippy::too_many_arguments, reason = "one job's context")]
    fn container_step(
        &mut self,
        file: &str,
        job: &str,
        script: &[String],
        image: Option<&str>,
        entrypoint: Option<Vec<String>>,
        variables: &IndexMap<String, String>,
        connections: &mut IndexMap<String, Connection>,
    ) -> Step {
        let image = match image {
            Some(image) => image.to_string(),
            None => {
                self.note(file, format!("{job}.image"), "no image (GitLab's runner default applies there); `alpine:3` was put in: set the image the job needs");
                "alpine:3".into()
            }
        };
        self.docker_connection(connections, Some(&image));
        if let Some(c) = connections.get_mut("docker") {
            let repo = self
                .root
                .canonicalize()
                .unwrap_or_else(|_| self.root.clone());
            let repo = repo.display().to_string();
            if !c.bind_paths.contains(&repo) {
                c.bind_paths.push(repo);
            }
        }
        let mut env: IndexMap<String, String> = IndexMap::new();
        let mut lines = Vec::new();
        for line in script {
            if line.contains("docker ")
                && (line.contains("docker exec") || line.contains("docker run"))
            {
                self.note(file, format!("{job}: `{line}`"), "drives a Docker engine from inside the job: that reaches the engine outside orch's docker policy");
            }
            // Inputs reach the shell as variables, never spliced into its text.
            let line = INPUT_TEMPLATE
                .replace_all(line, |c: &regex::Captures<'_>| {
                    let var = format!("INPUT_{}", c[1].to_uppercase());
                    env.insert(var.clone(), format!("${{{{ inputs.{} }}}}", &c[1]));
                    format!("${{{var}}}")
                })
                .into_owned();
            for c in SHELL_VAR.captures_iter(&line) {
                let var = c
                    .get(1)
                    .or(c.get(2))
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default();
                if env.contains_key(&var) || variables.contains_key(&var) {
                    continue;
                }
                let value = match var.as_str() {
                    "CI" => Some("true".to_string()),
                    "CI_PROJECT_DIR" | "CI_BUILDS_DIR" => Some(REPO_IN_JOB.to_string()),
                    "CI_JOB_NAME" => Some(job.to_string()),
                    "CI_PIPELINE_ID" | "CI_PIPELINE_IID" | "CI_JOB_ID" => {
                        Some("${{ run.id }}".to_string())
                    }
                    "CI_PROJECT_NAME" => Some(dir_name(&self.root)),
                    "ORCH_OUTPUT" | "HOME" | "PATH" | "PWD" | "USER" => None,
                    v if v.starts_with("CI_") || v.starts_with("GITLAB_") => {
                        self.note(
                            file,
                            format!("{job}: `${v}`"),
                            "GitLab's own variable; empty in orch",
                        );
                        None
                    }
                    v if SECRET_NAME.is_match(v) => Some(format!("${{{{ secrets.{v} }}}}")),
                    v => Some(format!("${{{{ env.{v} }}}}")),
                };
                if let Some(value) = value {
                    env.insert(var, value);
                }
            }
            lines.push(line);
        }
        for (k, v) in variables {
            let value = if is_secret(k, v) {
                format!("${{{{ secrets.{k} }}}}")
            } else {
                INPUT_TEMPLATE
                    .replace_all(v, "$${{ inputs.$1 }}")
                    .into_owned()
            };
            env.insert(k.clone(), value);
        }
        for value in env.values().cloned().collect::<Vec<_>>() {
            self.need_env(&value, &format!("used by job `{job}`"));
        }
        let mut with: Vec<(String, Toml)> = vec![
            ("connection".into(), Toml::String("docker".into())),
            ("image".into(), Toml::String(image)),
        ];
        if let Some(entrypoint) = entrypoint {
            with.push(("entrypoint".into(), strings(&entrypoint)));
        }
        with.push(("mount".into(), Toml::String(self.guest(".").0)));
        with.push(("mount_at".into(), Toml::String(REPO_IN_JOB.into())));
        if !env.is_empty() {
            let table: toml::map::Map<String, Toml> =
                env.into_iter().map(|(k, v)| (k, Toml::String(v))).collect();
            with.push(("env".into(), Toml::Table(table)));
        }
        with.push(("script".into(), strings(&lines)));
        Step {
            plugin: "container",
            allow: vec!["docker".into(), self.guest(".").1],
            with,
            ..Step::default()
        }
    }

    /// A path of the repository as the workflow sees it: (guest path, `allow` grant).
    fn guest(&self, repo_relative: &str) -> (String, String) {
        let repo = self
            .root
            .canonicalize()
            .unwrap_or_else(|_| self.root.clone());
        let target = normalize(&repo.join(repo_relative));
        let out = self
            .options
            .out
            .canonicalize()
            .unwrap_or_else(|_| self.options.out.clone());
        match target.strip_prefix(&out) {
            Ok(rel) if rel.as_os_str().is_empty() => (".".into(), "./".into()),
            Ok(rel) => (rel.display().to_string(), format!("./{}", rel.display())),
            Err(_) => (target.display().to_string(), target.display().to_string()),
        }
    }

    fn builtin(
        &mut self,
        file: &str,
        job: &str,
        line: &str,
        action: Action,
        connections: &mut IndexMap<String, Connection>,
    ) -> Vec<(Step, String)> {
        let s = |v: &str| Toml::String(pretty(v));
        let step = |plugin: &'static str, allow: Vec<String>, with: Vec<(String, Toml)>| Step {
            plugin,
            allow,
            with,
            ..Step::default()
        };
        let mut out = Vec::new();
        match action {
            Action::Deploy {
                project,
                file: compose,
                profiles,
                remove_orphans,
                pull,
                services,
            } => {
                let compose = compose.unwrap_or_else(|| {
                    [
                        "compose.yaml",
                        "compose.yml",
                        "docker-compose.yml",
                        "docker-compose.yaml",
                    ]
                    .into_iter()
                    .find(|f| self.root.join(f).is_file())
                    .unwrap_or("compose.yaml")
                    .to_string()
                });
                let compose_path = self.root.join(&compose);
                let (images, name) = compose_facts(&compose_path);
                let project = project
                    .or(name)
                    .unwrap_or_else(|| dir_name(compose_path.parent().unwrap_or(&self.root)));
                if !services.is_empty() {
                    self.note(
                        file,
                        format!("{job}: `{line}`"),
                        format!(
                            "`deploy` converges the whole project, not only {}",
                            services.join(", ")
                        ),
                    );
                }
                self.docker_connection(connections, None);
                if let Some(c) = connections.get_mut("docker") {
                    for image in &images {
                        if !c.images.contains(image) {
                            c.images.push(image.clone());
                        }
                    }
                }
                let dir = Path::new(&compose)
                    .parent()
                    .map(|p| p.display().to_string())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| ".".into());
                let (guest_file, _) = self.guest(&compose);
                let (_, grant) = self.guest(&dir);
                let mut with = vec![
                    ("connection".into(), Toml::String("docker".into())),
                    ("project".into(), s(&project)),
                    ("file".into(), Toml::String(guest_file)),
                ];
                if !profiles.is_empty() {
                    with.push(("profiles".into(), strings(&profiles)));
                }
                if remove_orphans {
                    with.push(("remove_orphans".into(), Toml::Boolean(true)));
                }
                match pull.as_deref() {
                    Some(p @ ("always" | "missing" | "never")) => {
                        with.push(("pull".into(), Toml::String(p.into())))
                    }
                    Some(other) => self.note(
                        file,
                        format!("{job}: `--pull {other}`"),
                        "not a pull policy `deploy` has; the default (missing) applies",
                    ),
                    None => {}
                }
                out.push((
                    step("deploy", vec!["docker".into(), grant], with),
                    "`deploy`".into(),
                ));
            }
            Action::Psql {
                via,
                user,
                database,
                host,
                port,
                statements,
            } => {
                let conn = self.postgres_connection(
                    connections,
                    &via,
                    user.as_deref(),
                    database.as_deref(),
                    host.as_deref(),
                    port.as_deref(),
                );
                for sql in statements {
                    let mut with = vec![("connection".into(), Toml::String(conn.clone()))];
                    let what = match sql {
                        Sql::CreateUser { user, password } => {
                            with.insert(0, ("action".into(), Toml::String("create-user".into())));
                            with.push(("user".into(), s(&user)));
                            if let Some(pw) = password {
                                let pw = if pw.contains("${{") {
                                    pw
                                } else {
                                    let name = format!("{}_PASSWORD", env_name(&user));
                                    self.note(file, format!("{job}: `{line}`"), format!("a literal password was not copied; set `{name}` in .env"));
                                    format!("${{{{secrets.{name}}}}}")
                                };
                                self.need_env(&pw, &format!("the password `{job}` sets"));
                                with.push(("password".into(), s(&pw)));
                            }
                            "`postgres` create-user"
                        }
                        Sql::CreateDb {
                            name,
                            owner,
                            encoding,
                            template,
                        } => {
                            with.insert(0, ("action".into(), Toml::String("create-db".into())));
                            with.push(("name".into(), s(&name)));
                            if let Some(o) = owner {
                                with.push(("owner".into(), s(&o)));
                            }
                            if let Some(e) = encoding {
                                with.push(("encoding".into(), s(&e)));
                            }
                            if let Some(t) = template {
                                with.push(("template".into(), s(&t)));
                            }
                            "`postgres` create-db"
                        }
                        Sql::Grant {
                            privileges,
                            role,
                            on,
                        } => {
                            with.insert(0, ("action".into(), Toml::String("grant".into())));
                            with.push(("role".into(), s(&role)));
                            with.push(("privileges".into(), strings(&privileges)));
                            match on {
                                GrantOn::Database(d) => with.push(("database".into(), s(&d))),
                                GrantOn::Schema(sc) => with.push(("schema".into(), s(&sc))),
                                GrantOn::TablesIn(sc) => {
                                    with.push(("schema".into(), s(&sc)));
                                    with.push(("tables".into(), Toml::Boolean(true)));
                                }
                            }
                            "`postgres` grant"
                        }
                        Sql::Other(sql) => {
                            with.insert(0, ("action".into(), Toml::String("sql".into())));
                            with.push(("sql".into(), s(&sql)));
                            self.note(file, format!("{job}: `{sql}`"), "runs as SQL through the connection, as written: make it idempotent (IF NOT EXISTS, ON CONFLICT) so a second run changes nothing");
                            "`postgres` sql"
                        }
                    };
                    out.push((step("postgres", vec![conn.clone()], with), what.into()));
                }
            }
            Action::CreateTopic {
                via,
                bootstrap,
                topic,
                partitions,
                replication,
                configs,
            } => {
                self.kafka_connection(connections, &via, bootstrap.as_deref());
                let mut with = vec![
                    ("action".into(), Toml::String("create-topic".into())),
                    ("connection".into(), Toml::String("kafka".into())),
                    ("topic".into(), s(&topic)),
                ];
                if let Some(p) = partitions {
                    with.push(("partitions".into(), number(&p)));
                }
                if let Some(r) = replication {
                    with.push(("replication_factor".into(), number(&r)));
                }
                if !configs.is_empty() {
                    let table = configs
                        .into_iter()
                        .map(|(k, v)| (k, Toml::String(v)))
                        .collect();
                    with.push(("configs".into(), Toml::Table(table)));
                }
                out.push((
                    step("kafka", vec!["kafka".into()], with),
                    "`kafka` create-topic".into(),
                ));
            }
            Action::InitConsumer {
                via,
                bootstrap,
                topic,
                group,
                start,
            } => {
                self.kafka_connection(connections, &via, bootstrap.as_deref());
                self.note(file, format!("{job}: `--reset-offsets --to-{start}`"), format!("`init-consumer` commits `{start}` offsets only on partitions the group has none for; a reset also moves offsets already committed"));
                let with = vec![
                    ("action".into(), Toml::String("init-consumer".into())),
                    ("connection".into(), Toml::String("kafka".into())),
                    ("topic".into(), s(&topic)),
                    ("group".into(), s(&group)),
                    ("start".into(), Toml::String(start.into())),
                ];
                out.push((
                    step("kafka", vec!["kafka".into()], with),
                    "`kafka` init-consumer".into(),
                ));
            }
            Action::OllamaPull { via, model } => {
                connections
                    .entry("ollama".into())
                    .or_insert_with(|| Connection {
                        kind: "http",
                        settings: vec![(
                            "url".into(),
                            Toml::String("${{ env.OLLAMA_URL }}".into()),
                        )],
                        ..Connection::default()
                    });
                let host = via.container.unwrap_or_else(|| "localhost".into());
                self.env
                    .entry("OLLAMA_URL".into())
                    .or_insert_with(|| EnvEntry {
                        name: "OLLAMA_URL".into(),
                        secret: false,
                        example: format!("http://{host}:11434"),
                        why: format!("the Ollama server (`ollama pull` ran in `{host}`)"),
                    });
                let with = vec![
                    ("action".into(), Toml::String("pull".into())),
                    ("connection".into(), Toml::String("ollama".into())),
                    ("model".into(), s(&model)),
                ];
                out.push((
                    step("ollama", vec!["ollama".into()], with),
                    "`ollama` pull".into(),
                ));
            }
            Action::Noise(_) => {}
        }
        out
    }

    fn postgres_connection(
        &mut self,
        connections: &mut IndexMap<String, Connection>,
        via: &shell::Via,
        user: Option<&str>,
        database: Option<&str>,
        host: Option<&str>,
        port: Option<&str>,
    ) -> String {
        let base = match user {
            Some(u) if !u.contains('$') => format!("pg_{}", env_name(u).to_lowercase()),
            _ => "pg".to_string(),
        };
        let server = host
            .map(str::to_string)
            .or_else(|| via.container.clone())
            .unwrap_or_else(|| "localhost".into());
        let secret = format!("{}_URL", base.to_uppercase());
        let example = format!(
            "postgres://{}:PASSWORD@{server}:{}/{}",
            user.unwrap_or("postgres"),
            port.unwrap_or("5432"),
            database.unwrap_or("postgres")
        );
        let mut name = base.clone();
        let mut n = 2;
        while let Some(existing) = self.env.get(&format!("{}_URL", name.to_uppercase())) {
            if existing.example == example {
                break;
            }
            name = format!("{base}_{n}");
            n += 1;
        }
        let secret = if name == base {
            secret
        } else {
            format!("{}_URL", name.to_uppercase())
        };
        connections
            .entry(name.clone())
            .or_insert_with(|| Connection {
                kind: "postgres",
                settings: vec![(
                    "url".into(),
                    Toml::String(format!("${{{{ secrets.{secret} }}}}")),
                )],
                ..Connection::default()
            });
        let via_text = match &via.container {
            Some(c) => format!(" in container `{c}`"),
            None => String::new(),
        };
        self.env.entry(secret.clone()).or_insert_with(|| EnvEntry {
            name: secret,
            secret: true,
            example,
            why: format!(
                "the server `psql` reached{via_text}, as a URL orch can reach (with the password)"
            ),
        });
        name
    }

    fn kafka_connection(
        &mut self,
        connections: &mut IndexMap<String, Connection>,
        via: &shell::Via,
        bootstrap: Option<&str>,
    ) {
        connections
            .entry("kafka".into())
            .or_insert_with(|| Connection {
                kind: "kafka",
                settings: vec![(
                    "bootstrap".into(),
                    Toml::String("${{ env.KAFKA_BOOTSTRAP }}".into()),
                )],
                ..Connection::default()
            });
        let example = match (&via.container, bootstrap) {
            (Some(c), Some(b)) => b.replace("localhost", c).replace("127.0.0.1", c),
            (_, Some(b)) => b.to_string(),
            (Some(c), None) => format!("{c}:9092"),
            (None, None) => "localhost:9092".into(),
        };
        let why = match &via.container {
            Some(c) => format!("the broker the Kafka tools reached in `{c}`"),
            None => "the broker the Kafka tools reached".into(),
        };
        self.env
            .entry("KAFKA_BOOTSTRAP".into())
            .or_insert_with(|| EnvEntry {
                name: "KAFKA_BOOTSTRAP".into(),
                secret: false,
                example,
                why,
            });
    }

    /// Needs, workflows, and the report.
    fn finish(mut self) -> Imported {
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
                .filter(|i| !self.options.split || used.contains(&i.name))
                .map(input)
                .collect();
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
        let env: Vec<EnvEntry> = self.env.into_values().collect();
        Imported {
            source: self.pipeline.files.first().cloned().unwrap_or_default(),
            files_read: self.pipeline.files,
            workflows,
            env,
            rows: self.rows,
            notes: self.notes,
        }
    }
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
        name: i.name.clone(),
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
fn is_secret(name: &str, value: &str) -> bool {
    static URL_PASSWORD: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"://[^/@\s:]+:[^/@\s]+@").expect("valid regex"));
    (SECRET_NAME.is_match(name) && name != "DOCKER_HOST") || URL_PASSWORD.is_match(value)
}

/// `${{inputs.x}}` as written in the workflow: `${{ inputs.x }}`.
pub(crate) fn pretty(text: &str) -> String {
    static TEMPLATE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\$\{\{\s*([^}]*?)\s*\}\}").expect("valid regex"));
    TEMPLATE.replace_all(text, "$${{ $1 }}").into_owned()
}

fn strings(items: &[String]) -> Toml {
    Toml::Array(items.iter().map(|i| Toml::String(pretty(i))).collect())
}

/// A count: a number if literal, else the template (an input).
fn number(text: &str) -> Toml {
    match text.parse::<i64>() {
        Ok(n) => Toml::Integer(n),
        Err(_) => Toml::String(pretty(text)),
    }
}

/// `name` as an environment variable name.
fn env_name(name: &str) -> String {
    let out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let out = out.trim_matches('_').to_string();
    if out.is_empty() { "DB".into() } else { out }
}

fn dir_name(path: &Path) -> String {
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

/// `.` and `..` removed without touching the disk.
fn normalize(path: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The images a compose file names (the default of `${VAR:-default}`), and its `name:`.
fn compose_facts(path: &Path) -> (Vec<String>, Option<String>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return (Vec::new(), None);
    };
    let Ok(doc) = serde_norway::from_str::<Value>(&text) else {
        return (Vec::new(), None);
    };
    static DEFAULT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}").expect("valid regex")
    });
    let mut images = Vec::new();
    if let Some(Value::Mapping(services)) = doc.get("services") {
        for (_, svc) in services {
            if let Some(image) = svc.get("image").and_then(Value::as_str) {
                let image = DEFAULT.replace_all(image, "$1").into_owned();
                let image = if image.contains('$') {
                    "*".to_string()
                } else {
                    image
                };
                if !images.contains(&image) {
                    images.push(image);
                }
            }
        }
    }
    let name = doc.get("name").and_then(Value::as_str).map(str::to_string);
    (images, name)
}
