//! Cross-field checks that turn a [`WorkflowToml`] into a [`Workflow`], collecting every
//! problem with its span instead of stopping at the first.

use super::authored::ConnectionKind;
use super::authored::{InputToml, RetryToml, ScheduleToml, StepToml, WebhookToml, WorkflowToml};
use super::diagnostic::{Diagnostic, Source};
use super::did_you_mean;
use super::expr::{Expr, RUN_FIELDS, Reference, Template};
use super::inputs::{InputSpec, toml_to_json};
use super::model::*;
use crate::dag::Dag;
use indexmap::IndexMap;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use toml::Spanned;

/// Validate `raw`; on failure every diagnostic found is returned.
pub fn validate(
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
    let inputs = v.inputs(raw.inputs);
    let connections = v.connections(raw.connections);
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

    fn inputs(&mut self, raw: IndexMap<Spanned<String>, InputToml>) -> IndexMap<String, InputSpec> {
        let mut out = IndexMap::new();
        for (name, input) in raw {
            if !self.identifier(&name, "input") {
                continue;
            }
            let regex = input
                .regex
                .as_ref()
                .and_then(|r| match regex::Regex::new(r.get_ref()) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        self.error(Diagnostic::at(
                            r.span(),
                            format!("input `{}`: invalid regex: {e}", name.get_ref()),
                        ));
                        None
                    }
                });
            let mut spec = InputSpec {
                name: name.get_ref().clone(),
                description: input.description,
                kind: input.kind,
                default: input.default.as_ref().map(|d| toml_to_json(d.get_ref())),
                required: input.required.unwrap_or(input.default.is_none()),
                options: input
                    .options
                    .as_ref()
                    .map(|o| o.get_ref().iter().map(toml_to_json).collect()),
                regex,
            };
            if let Some(options) = &input.options {
                let unchecked = InputSpec {
                    options: None,
                    regex: None,
                    ..spec.clone()
                };
                for option in spec.options.iter().flatten() {
                    if let Err(e) = unchecked.check(option) {
                        self.error(Diagnostic::at(
                            options.span(),
                            format!("input `{}`: option {e}", spec.name),
                        ));
                    }
                }
            }
            if let (Some(default), Some(value)) = (&input.default, &spec.default)
                && let Err(e) = spec.check(value)
            {
                self.error(
                    Diagnostic::at(
                        default.span(),
                        format!("input `{}`: default {e}", spec.name),
                    )
                    .help("make the default match the input's type, options and regex"),
                );
            }
            spec.name = name.get_ref().clone();
            out.insert(spec.name.clone(), spec);
        }
        out
    }

    fn connections(
        &mut self,
        raw: IndexMap<Spanned<String>, super::authored::ConnectionToml>,
    ) -> IndexMap<String, Connection> {
        let mut out = IndexMap::new();
        for (name, c) in raw {
            let span = name.span();
            let name = name.into_inner();
            let kind = *c.kind.get_ref();
            let (required, known, example): (&str, &[&str], &str) = match kind {
                ConnectionKind::Postgres => (
                    "url",
                    &["url", "database"],
                    "url = \"${{ secrets.POSTGRES_ADMIN_URL }}\" (keep passwords in secrets)",
                ),
                ConnectionKind::Kafka => (
                    "bootstrap",
                    &[
                        "bootstrap",
                        "security_protocol",
                        "sasl_mechanism",
                        "sasl_username",
                        "sasl_password",
                        "ssl_ca_location",
                    ],
                    "bootstrap = \"${{ env.KAFKA_BOOTSTRAP }}\"",
                ),
                ConnectionKind::Docker => (
                    "host",
                    &[
                        "host",
                        "images",
                        "bind_paths",
                        "privileged",
                        "host_network",
                        "host_pid",
                        "gpus",
                        "cap_add",
                    ],
                    "host = \"unix:///var/run/docker.sock\"",
                ),
                ConnectionKind::Http => (
                    "url",
                    &["url", "headers", "max_response_bytes", "timeout_secs"],
                    "url = \"http://ollama:11434\"",
                ),
            };
            if !required.is_empty() && !c.settings.contains_key(required) {
                self.error(
                    Diagnostic::at(
                        span.clone(),
                        format!("connection `{name}` has no `{required}`"),
                    )
                    .help(format!("e.g. {example}")),
                );
            }
            for key in c
                .settings
                .keys()
                .filter(|k| !known.is_empty() && !known.contains(&k.as_str()))
            {
                let help = match did_you_mean(key, known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known settings: {}", known.join(", ")),
                };
                self.error(
                    Diagnostic::at(
                        span.clone(),
                        format!("connection `{name}` has an unknown setting `{key}`"),
                    )
                    .help(help),
                );
            }
            let json = serde_json::Value::Object(
                c.settings
                    .iter()
                    .map(|(k, v)| (k.clone(), toml_to_json(v)))
                    .collect(),
            );
            let settings = match Template::parse(&json) {
                Ok(t) => t,
                Err((_, e)) => {
                    self.error(
                        Diagnostic::at(
                            span.clone(),
                            format!("connection `{name}`: invalid template: {e}"),
                        )
                        .help(EXPR_HELP),
                    );
                    Template::Literal(json)
                }
            };
            for expr in settings.exprs() {
                for reference in &expr.references {
                    if matches!(reference, Reference::Step(_) | Reference::Unknown(_)) {
                        self.error(
                            Diagnostic::at(
                                span.clone(),
                                format!("connection `{name}` reads `{}`", expr.source),
                            )
                            .help("connections can read inputs, secrets, env and run, not steps"),
                        );
                    }
                }
            }
            out.insert(
                name.clone(),
                Connection {
                    name,
                    kind,
                    settings,
                },
            );
        }
        out
    }

    fn webhook(
        &mut self,
        raw: toml::Spanned<WebhookToml>,
        inputs: &IndexMap<String, InputSpec>,
    ) -> Option<Webhook> {
        let raw = raw.into_inner();
        let secret = raw.secret.get_ref().trim().to_string();
        if !is_identifier(&secret) {
            self.error(
                Diagnostic::at(raw.secret.span(), format!("webhook `secret` must name a secret, got `{secret}`"))
                    .help("write the secret's name, e.g. secret = \"GITEA_WEBHOOK_SECRET\" (set with `orch secret set` or the environment)"),
            );
            return None;
        }
        let mut mapped = IndexMap::new();
        for (name, path) in raw.inputs {
            if !inputs.contains_key(name.get_ref()) {
                let known: Vec<&str> = inputs.keys().map(String::as_str).collect();
                let help = match did_you_mean(name.get_ref(), &known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "declare it under [inputs]".into(),
                };
                self.error(
                    Diagnostic::at(
                        name.span(),
                        format!("webhook maps undeclared input `{}`", name.get_ref()),
                    )
                    .help(help),
                );
                continue;
            }
            let segments: Vec<String> = path.get_ref().split('.').map(str::to_string).collect();
            if segments.iter().any(String::is_empty) {
                self.error(
                    Diagnostic::at(
                        path.span(),
                        format!("invalid payload path `{}`", path.get_ref()),
                    )
                    .help(
                        "use dotted field names, e.g. \"repository.full_name\" or \"commits.0.id\"",
                    ),
                );
                continue;
            }
            mapped.insert(name.into_inner(), segments);
        }
        Some(Webhook {
            secret,
            inputs: mapped,
        })
    }

    fn schedule(
        &mut self,
        raw: ScheduleToml,
        inputs: &IndexMap<String, InputSpec>,
    ) -> Option<Schedule> {
        let expr = raw.cron.get_ref().trim().to_string();
        let parsed = match croner::Cron::from_str(&expr) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(
                    Diagnostic::at(raw.cron.span(), format!("invalid cron `{expr}`: {}", cron_problem(&expr, &e)))
                        .help("fields are minute (0-59) hour (0-23) day (1-31) month (1-12) weekday (0-6, SUN-SAT), optionally seconds first; e.g. \"0 3 * * *\""),
                );
                None
            }
        };
        let timezone = match &raw.timezone {
            None => Some(chrono_tz::UTC),
            Some(tz) => match chrono_tz::Tz::from_str(tz.get_ref()) {
                Ok(tz) => Some(tz),
                Err(_) => {
                    let names: Vec<&str> =
                        chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()).collect();
                    let help = match did_you_mean(tz.get_ref(), &names) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "use an IANA name like \"Europe/Lisbon\" or \"UTC\"".into(),
                    };
                    self.error(
                        Diagnostic::at(tz.span(), format!("unknown timezone `{}`", tz.get_ref()))
                            .help(help),
                    );
                    None
                }
            },
        };
        let mut values = IndexMap::new();
        if let Some(table) = &raw.inputs {
            for (name, value) in table.get_ref() {
                let value = toml_to_json(value);
                match inputs.get(name) {
                    None => self.error(Diagnostic::at(
                        table.span(),
                        format!("schedule sets undeclared input `{name}`"),
                    )),
                    Some(spec) => {
                        if let Err(e) = spec.check(&value) {
                            self.error(Diagnostic::at(
                                table.span(),
                                format!("schedule input `{name}`: {e}"),
                            ));
                        }
                    }
                }
                values.insert(name.clone(), value);
            }
        }
        Some(Schedule {
            cron: expr,
            parsed: parsed?,
            timezone: timezone?,
            overlap: raw.overlap,
            catchup: raw.catchup,
            inputs: values,
        })
    }

    fn steps(
        &mut self,
        raw: IndexMap<Spanned<String>, Spanned<StepToml>>,
        inputs: &IndexMap<String, InputSpec>,
        connections: &IndexMap<String, Connection>,
        dir: &std::path::Path,
    ) -> (IndexMap<String, Step>, Dag) {
        if raw.is_empty() {
            self.error(
                Diagnostic::global("workflow has no steps")
                    .help("add a [steps.NAME] table with a `plugin`"),
            );
        }
        let ids: Vec<String> = raw.keys().map(|k| k.get_ref().clone()).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        // needs first: expression checks need the ancestors.
        let mut needs: IndexMap<String, Vec<Spanned<String>>> = IndexMap::new();
        for (id, step) in &raw {
            self.identifier(id, "step");
            let mut seen = BTreeSet::new();
            for need in &step.get_ref().needs {
                let name = need.get_ref();
                if name == id.get_ref() {
                    self.error(
                        Diagnostic::at(need.span(), format!("step `{name}` needs itself"))
                            .help("remove it from `needs`"),
                    );
                } else if !self.step_set.contains(name) {
                    let help = match did_you_mean(name, &id_refs) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("steps in this workflow: {}", ids.join(", ")),
                    };
                    self.error(
                        Diagnostic::at(
                            need.span(),
                            format!("step `{}` needs unknown step `{name}`", id.get_ref()),
                        )
                        .help(help),
                    );
                } else if !seen.insert(name.clone()) {
                    self.error(Diagnostic::at(
                        need.span(),
                        format!("step `{}` lists `{name}` twice in `needs`", id.get_ref()),
                    ));
                }
            }
            needs.insert(id.get_ref().clone(), step.get_ref().needs.clone());
        }
        let dag = Dag::build(
            needs
                .iter()
                .map(|(id, n)| (id.as_str(), n.iter().map(|x| x.get_ref().as_str()))),
        );
        let dag = match dag {
            Ok(dag) => Some(dag),
            Err(cycle) => {
                let (step, at) = &cycle.closing;
                if let Some(need) = needs.get(step).and_then(|n| n.get(*at)) {
                    self.error(
                        Diagnostic::at(
                            need.span(),
                            format!("cycle in `needs`: {}", cycle.path.join(" -> ")),
                        )
                        .help("remove one of these `needs` so the steps can be ordered"),
                    );
                }
                // Keep checking the steps; any step may be read.
                None
            }
        };

        let mut steps: HashMap<String, Step> = HashMap::new();
        for (id, step) in raw {
            let step_span = step.span();
            let id = id.into_inner();
            if let Some(built) = self.step(
                &id,
                step.into_inner(),
                step_span,
                inputs,
                connections,
                dir,
                dag.as_ref(),
            ) {
                steps.insert(id, built);
            }
        }
        let dag = dag.unwrap_or_default();
        let ordered = dag
            .order()
            .filter_map(|id| steps.remove(id).map(|s| (id.to_string(), s)))
            .collect();
        (ordered, dag)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one call site; the arguments are the workflow context"
    )]
    fn step(
        &mut self,
        id: &str,
        raw: StepToml,
        span: Range<usize>,
        inputs: &IndexMap<String, InputSpec>,
        connections: &IndexMap<String, Connection>,
        dir: &std::path::Path,
        dag: Option<&Dag>,
    ) -> Option<Step> {
        let errors_before = self.errors.len();
        let plugin = self.plugin_ref(id, &raw.plugin, dir);
        let condition = raw
            .condition
            .as_ref()
            .and_then(|c| match Expr::compile(c.get_ref()) {
                Ok(e) => {
                    self.references(id, &e, c.span(), inputs, dag);
                    Some(e)
                }
                Err(e) => {
                    self.error(
                        Diagnostic::at(c.span(), format!("step `{id}`: invalid `if`: {e}"))
                            .help(EXPR_HELP),
                    );
                    None
                }
            });
        let with_json = raw
            .with
            .as_ref()
            .map(|w| toml_to_json(&toml::Value::Table(w.get_ref().clone())))
            .unwrap_or_else(|| serde_json::json!({}));
        let with_span = raw.with.as_ref().map(|w| w.span());
        let with = match Template::parse(&with_json) {
            Ok(t) => {
                for e in t.exprs() {
                    let at = self.narrow(with_span.clone().unwrap_or(span.clone()), &e.source);
                    self.references(id, e, at, inputs, dag);
                }
                t
            }
            Err((text, e)) => {
                let at = self.narrow(with_span.clone().unwrap_or(span.clone()), &text);
                self.error(
                    Diagnostic::at(at, format!("step `{id}`: invalid template in `with`: {e}"))
                        .help(EXPR_HELP),
                );
                Template::Literal(with_json)
            }
        };
        let allow = raw
            .allow
            .iter()
            .filter_map(|g| self.grant(id, g, connections, dir))
            .collect();
        let timeout = match &raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => self
                .duration(id, "timeout", t.get_ref(), t.span())
                .unwrap_or(DEFAULT_TIMEOUT),
        };
        let retry = raw
            .retry
            .as_ref()
            .map_or(RetryPolicy::NONE, |r| self.retry(id, r.get_ref(), r.span()));
        let memory = match &raw.memory {
            None => DEFAULT_MEMORY,
            Some(m) => match m.get_ref().parse::<bytesize::ByteSize>() {
                Ok(size) if size.as_u64() >= 1 << 20 => size.as_u64(),
                _ => {
                    self.error(
                        Diagnostic::at(
                            m.span(),
                            format!("step `{id}`: invalid memory limit `{}`", m.get_ref()),
                        )
                        .help("write a size of at least 1 MiB, e.g. \"256MiB\""),
                    );
                    DEFAULT_MEMORY
                }
            },
        };
        let store_secrets = raw
            .store_secret
            .as_ref()
            .map(|s| self.store_secret(id, s))
            .unwrap_or_default();
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Step {
            id: id.to_string(),
            description: raw.description,
            plugin: plugin?,
            needs: raw.needs.into_iter().map(Spanned::into_inner).collect(),
            condition,
            with,
            allow,
            timeout,
            retry,
            limits: Limits {
                memory,
                fuel: raw.fuel,
            },
            store_secrets,
            spans: StepSpans {
                step: span,
                plugin: raw.plugin.span(),
                with: with_span,
            },
        })
    }

    fn store_secret(&mut self, id: &str, raw: &Spanned<toml::Value>) -> Vec<StoreSecret> {
        let pairs: Vec<(Option<String>, Option<&str>)> = match raw.get_ref() {
            toml::Value::String(name) => vec![(None, Some(name.as_str()))],
            toml::Value::Table(t) => t
                .iter()
                .map(|(k, v)| (Some(k.clone()), v.as_str()))
                .collect(),
            _ => vec![(None, None)],
        };
        let mut out = Vec::new();
        for (output, name) in pairs {
            match name {
                Some(name) if is_identifier(name) => out.push(StoreSecret { output, name: name.to_string() }),
                _ => self.error(
                    Diagnostic::at(raw.span(), format!("step `{id}`: invalid `store_secret`"))
                        .help("write store_secret = \"APP_DB_PASSWORD\" or { password = \"APP_DB_PASSWORD\" } (names: letters, digits, `_`)"),
                ),
            }
        }
        out
    }

    fn plugin_ref(
        &mut self,
        id: &str,
        raw: &Spanned<toml::Value>,
        dir: &std::path::Path,
    ) -> Option<PluginRef> {
        let file = |path: &str| {
            let p = PathBuf::from(path.strip_prefix("./").unwrap_or(path));
            if p.is_absolute() { p } else { dir.join(p) }
        };
        match raw.get_ref() {
            toml::Value::String(s) if s.contains('/') || s.ends_with(".wasm") => {
                Some(PluginRef::File {
                    path: file(s),
                    sha256: None,
                })
            }
            toml::Value::String(s) if !s.is_empty() => Some(PluginRef::Builtin(s.clone())),
            toml::Value::Table(t) => {
                let path = t.get("path").and_then(toml::Value::as_str);
                let sha = t.get("sha256").and_then(toml::Value::as_str);
                let extra: Vec<&String> = t
                    .keys()
                    .filter(|k| *k != "path" && *k != "sha256")
                    .collect();
                match (path, extra.is_empty()) {
                    (Some(path), true) => {
                        if let Some(sha) = sha
                            && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
                        {
                            self.error(Diagnostic::at(
                                raw.span(),
                                format!("step `{id}`: `sha256` must be 64 hex digits"),
                            ));
                            return None;
                        }
                        Some(PluginRef::File {
                            path: file(path),
                            sha256: sha.map(str::to_lowercase),
                        })
                    }
                    _ => {
                        self.error(
                            Diagnostic::at(
                                raw.span(),
                                format!("step `{id}`: invalid plugin table"),
                            )
                            .help("write plugin = { path = \"./x.wasm\", sha256 = \"...\" }"),
                        );
                        None
                    }
                }
            }
            _ => {
                self.error(
                    Diagnostic::at(raw.span(), format!("step `{id}`: `plugin` must be a name or a path"))
                        .help("a built-in name like \"echo\", a file like \"./plugins/x.wasm\", or { path, sha256 }"),
                );
                None
            }
        }
    }

    fn references(
        &mut self,
        id: &str,
        expr: &Expr,
        at: Range<usize>,
        inputs: &IndexMap<String, InputSpec>,
        dag: Option<&Dag>,
    ) {
        for reference in &expr.references {
            let problem = match reference {
                Reference::Input(Some(name)) if !inputs.contains_key(name) => {
                    let names: Vec<&str> = inputs.keys().map(String::as_str).collect();
                    Some((
                        format!("step `{id}` reads unknown input `{name}`"),
                        match did_you_mean(name, &names) {
                            Some(s) => format!("did you mean `inputs.{s}`?"),
                            None => format!("declare it under [inputs.{name}]"),
                        },
                    ))
                }
                Reference::Step(Some(other)) if other == id => Some((
                    format!("step `{id}` reads its own outputs"),
                    "a step can read only the steps it needs".to_string(),
                )),
                Reference::Step(Some(other)) if !self.step_set.contains(other) => Some((
                    format!("step `{id}` reads unknown step `{other}`"),
                    match did_you_mean(
                        other,
                        &self.step_ids.iter().map(String::as_str).collect::<Vec<_>>(),
                    ) {
                        Some(s) => format!("did you mean `steps.{s}`?"),
                        None => format!("steps in this workflow: {}", self.step_ids.join(", ")),
                    },
                )),
                Reference::Step(Some(other))
                    if dag.is_some_and(|dag| !dag.is_ancestor(other, id)) =>
                {
                    Some((
                        format!("step `{id}` reads `steps.{other}` but does not need it"),
                        format!("add \"{other}\" to the `needs` of `{id}` (or fix the step name)"),
                    ))
                }
                Reference::Run(Some(field)) if !RUN_FIELDS.contains(&field.as_str()) => Some((
                    format!("`run.{field}` does not exist"),
                    format!("run has: {}", RUN_FIELDS.join(", ")),
                )),
                Reference::Secret(None) | Reference::Env(None) => Some((
                    format!("step `{id}` reads a whole map in `{}`", expr.source),
                    "name one value, like secrets.API_TOKEN or env.HOME".to_string(),
                )),
                Reference::Unknown(name) => Some((
                    format!("unknown name `{name}` in `{}`", expr.source),
                    match did_you_mean(name, super::expr::ROOTS) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("expressions can read {}", super::expr::ROOTS.join(", ")),
                    },
                )),
                _ => None,
            };
            if let Some((message, help)) = problem {
                self.error(Diagnostic::at(at.clone(), message).help(help));
            }
        }
    }

    fn grant(
        &mut self,
        id: &str,
        raw: &Spanned<String>,
        connections: &IndexMap<String, Connection>,
        dir: &std::path::Path,
    ) -> Option<Grant> {
        let text = raw.get_ref();
        match parse_grant(text) {
            Ok(Grant::Dir { guest, host }) => {
                // Canonical, so the sandbox sees exactly this directory whatever the links.
                let resolved = dir.join(&host).canonicalize().ok().filter(|h| h.is_dir());
                let below = |h: &std::path::Path| {
                    host.is_absolute() || dir.canonicalize().is_ok_and(|d| h.starts_with(d))
                };
                if let Some(resolved) = resolved {
                    if below(&resolved) {
                        return Some(Grant::Dir {
                            guest,
                            host: resolved,
                        });
                    }
                    self.error(
                        Diagnostic::at(
                            raw.span(),
                            format!(
                                "step `{id}` is granted directory `{text}`, which leads outside the workflow's directory (to {})",
                                resolved.display()
                            ),
                        )
                        .help("grant the absolute path instead, so the workflow says what it exposes"),
                    );
                    None
                } else {
                    self.error(
                        Diagnostic::at(
                            raw.span(),
                            format!("step `{id}` is granted directory `{text}`, which does not exist"),
                        )
                        .help(format!(
                            "paths are relative to the workflow file's directory ({}); create it or fix the path",
                            dir.display()
                        )),
                    );
                    None
                }
            }
            Ok(Grant::Connection(name)) if !connections.contains_key(&name) => {
                let names: Vec<&str> = connections.keys().map(String::as_str).collect();
                let help = match did_you_mean(&name, &names) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "define it under [connections.{name}], or grant a destination like \"https://api.example.com\""
                    ),
                };
                self.error(
                    Diagnostic::at(
                        raw.span(),
                        format!("step `{id}` is granted undefined connection `{name}`"),
                    )
                    .help(help),
                );
                None
            }
            Ok(grant) => Some(grant),
            Err(message) => {
                self.error(Diagnostic::at(raw.span(), format!("step `{id}`: invalid grant `{text}`: {message}")).help(
                    "grant a connection name, \"https://host[:port]\", \"https://*.domain\", \"tcp://host:port\" or a directory \"./path\"",
                ));
                None
            }
        }
    }

    fn duration(
        &mut self,
        id: &str,
        what: &str,
        text: &str,
        span: Range<usize>,
    ) -> Option<Duration> {
        match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Some(d),
            _ => {
                self.error(
                    Diagnostic::at(span, format!("step `{id}`: invalid {what} `{text}`"))
                        .help("write a duration like \"30s\", \"2m\" or \"1h 30m\""),
                );
                None
            }
        }
    }

    fn retry(&mut self, id: &str, raw: &RetryToml, span: Range<usize>) -> RetryPolicy {
        let backoff = raw
            .backoff
            .as_ref()
            .and_then(|b| self.duration(id, "retry backoff", b, span.clone()))
            .unwrap_or(Duration::from_secs(1));
        let max_backoff = raw
            .max_backoff
            .as_ref()
            .and_then(|b| self.duration(id, "retry max_backoff", b, span.clone()))
            .unwrap_or(Duration::from_secs(60));
        RetryPolicy {
            max: raw.max,
            backoff,
            max_backoff,
        }
    }
}

const EXPR_HELP: &str = "expressions are CEL, e.g. inputs.db_user != '' or steps.make.outputs.id; templates are ${{ expr }}";

/// Say which field of a cron expression is wrong: croner's component errors do not name it.
fn cron_problem(expr: &str, error: &croner::errors::CronError) -> String {
    const FIVE: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
    const SIX: [&str; 6] = [
        "second",
        "minute",
        "hour",
        "day-of-month",
        "month",
        "day-of-week",
    ];
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let names: &[&str] = match fields.len() {
        5 => &FIVE,
        6 => &SIX,
        n => {
            return format!(
                "{n} fields; write 5 (minute hour day month weekday) or 6 with seconds first"
            );
        }
    };
    for (i, field) in fields.iter().enumerate() {
        let mut probe = vec!["*"; fields.len()];
        probe[i] = field;
        if let Err(e) = croner::Cron::from_str(&probe.join(" ")) {
            return format!("the {} field `{field}` is invalid ({e})", names[i]);
        }
    }
    error.to_string()
}

/// Parse one `allow` entry: a connection name, a destination, or a directory (`./x`, `/x`).
pub fn parse_grant(text: &str) -> Result<Grant, String> {
    if text.starts_with("./") || text.starts_with("../") || text.starts_with('/') {
        if text.split('/').any(|part| part == "..") {
            return Err("`..` is not allowed: grant a directory at or below the workflow's, or an absolute path".into());
        }
        let trimmed = text.trim_end_matches('/');
        let guest = match trimmed.strip_prefix("./").unwrap_or(trimmed) {
            "" if text.starts_with('/') => "/",
            "" | "." => ".",
            g => g,
        };
        return Ok(Grant::Dir {
            guest: guest.to_string(),
            host: PathBuf::from(if trimmed.is_empty() { "/" } else { trimmed }),
        });
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return if is_identifier(&text.replace('-', "_")) {
            Ok(Grant::Connection(text.to_string()))
        } else {
            Err("not a connection name or a URL".into())
        };
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') {
        return Err("grants are per host: remove the path".into());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => match p.parse::<u16>() {
            Ok(p) => (h, Some(p)),
            Err(_) => return Err(format!("invalid port `{p}`")),
        },
        _ => (rest, None),
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() || host[host.starts_with("*.") as usize * 2..].contains('*') {
        return Err("invalid host (a wildcard is allowed only as a leading `*.`)".into());
    }
    match scheme {
        "http" | "https" => Ok(Grant::Http {
            port: port.unwrap_or(if scheme == "http" { 80 } else { 443 }),
            scheme: scheme.to_string(),
            host,
        }),
        "tcp" => match port {
            Some(port) => Ok(Grant::Tcp { host, port }),
            None => Err("a tcp grant needs a port".into()),
        },
        other => Err(format!("unsupported scheme `{other}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_connections_origins_and_tcp() {
        assert_eq!(
            parse_grant("pg_admin"),
            Ok(Grant::Connection("pg_admin".into()))
        );
        assert_eq!(
            parse_grant("https://API.example.com/"),
            Ok(Grant::Http {
                scheme: "https".into(),
                host: "api.example.com".into(),
                port: 443
            })
        );
        assert_eq!(
            parse_grant("http://10.0.0.5:11434"),
            Ok(Grant::Http {
                scheme: "http".into(),
                host: "10.0.0.5".into(),
                port: 11434
            })
        );
        assert_eq!(
            parse_grant("tcp://db:5432"),
            Ok(Grant::Tcp {
                host: "db".into(),
                port: 5432
            })
        );
    }

    #[test]
    fn grants_reject_paths_bad_wildcards_and_missing_tcp_ports() {
        assert!(
            parse_grant("https://api.example.com/v1")
                .unwrap_err()
                .contains("remove the path")
        );
        assert!(
            parse_grant("https://api.*.com")
                .unwrap_err()
                .contains("wildcard")
        );
        assert!(
            parse_grant("tcp://db")
                .unwrap_err()
                .contains("needs a port")
        );
        assert!(
            parse_grant("ftp://x")
                .unwrap_err()
                .contains("unsupported scheme")
        );
        assert!(parse_grant("not a name").is_err());
    }

    #[test]
    fn retry_backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            max: 5,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(5),
        };
        assert_eq!(policy.delay_before(2), Duration::from_secs(2));
        assert_eq!(policy.delay_before(3), Duration::from_secs(4));
        assert_eq!(policy.delay_before(4), Duration::from_secs(5));
    }

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
