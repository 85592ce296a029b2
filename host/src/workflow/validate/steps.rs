//! `[steps.X]`: needs (and the DAG built from them), plugin, `if` and `with` expressions and
//! what they read, limits, retries, `store_secret`.

use super::{EXPR_HELP, Validator, is_identifier};
use crate::dag::Dag;
use crate::workflow::authored::{RetryToml, StepToml};
use crate::workflow::diagnostic::Diagnostic;
use crate::workflow::expr::{Expr, RUN_FIELDS, Reference, Template};
use crate::workflow::hint;
use crate::workflow::inputs::{InputSpec, toml_to_json};
use crate::workflow::model::*;
use indexmap::IndexMap;
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

impl Validator<'_> {
    pub(super) fn steps(
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
                    let help = hint(name, &id_refs, "", || {
                        format!("steps in this workflow: {}", ids.join(", "))
                    });
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
    pub(super) fn step(
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
        let runs_on = self.runs_on(id, &raw.runs_on);
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Step {
            runs_on,
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

    /// `runs_on` labels: short words of letters, digits, `-`, `_` and `.`, sorted, no repeats.
    fn runs_on(&mut self, id: &str, raw: &[Spanned<String>]) -> Vec<String> {
        let mut labels = Vec::new();
        for label in raw {
            let text = label.get_ref();
            let fine = !text.is_empty()
                && text.len() <= 63
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if fine {
                labels.push(text.clone());
            } else {
                self.error(
                    Diagnostic::at(
                        label.span(),
                        format!("step `{id}`: `{text}` is not a worker label"),
                    )
                    .help("a label is 1-63 letters, digits, `-`, `_` or `.`, e.g. runs_on = [\"gpu\"]"),
                );
            }
        }
        labels.sort();
        labels.dedup();
        labels
    }

    pub(super) fn store_secret(
        &mut self,
        id: &str,
        raw: &Spanned<toml::Value>,
    ) -> Vec<StoreSecret> {
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

    pub(super) fn plugin_ref(
        &mut self,
        id: &str,
        raw: &Spanned<toml::Value>,
        dir: &std::path::Path,
    ) -> Option<PluginRef> {
        let file = |path: &str| {
            let p = PathBuf::from(path.strip_prefix("./").unwrap_or(path));
            if p.is_absolute() { p } else { dir.join(p) }
        };
        let digest_ok = |d: &str| {
            d.strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
        };
        match raw.get_ref() {
            toml::Value::String(s) if s.starts_with("oci://") => {
                let reference = &s["oci://".len()..];
                let (reference, digest) = match reference.split_once('@') {
                    Some((r, d)) => (r, Some(d)),
                    None => (reference, None),
                };
                if reference.split('/').count() < 2 || digest.is_some_and(|d| !digest_ok(d)) {
                    self.error(
                        Diagnostic::at(
                            raw.span(),
                            format!("step `{id}`: `{s}` is not an OCI reference"),
                        )
                        .help("write \"oci://HOST[:PORT]/REPOSITORY:TAG\" (or ...@sha256:DIGEST)"),
                    );
                    return None;
                }
                Some(PluginRef::Oci {
                    reference: reference.to_string(),
                    digest: digest.map(str::to_lowercase),
                })
            }
            toml::Value::Table(t) if t.contains_key("oci") => {
                let reference = t.get("oci").and_then(toml::Value::as_str);
                let digest = t.get("digest").and_then(toml::Value::as_str);
                let extra = t.keys().any(|k| k != "oci" && k != "digest");
                match reference {
                    Some(r)
                        if !extra
                            && r.split('/').count() >= 2
                            && !r.contains('@')
                            && digest.is_none_or(digest_ok) =>
                    {
                        Some(PluginRef::Oci {
                            reference: r.strip_prefix("oci://").unwrap_or(r).to_string(),
                            digest: digest.map(str::to_lowercase),
                        })
                    }
                    _ => {
                        self.error(
                            Diagnostic::at(raw.span(), format!("step `{id}`: invalid OCI plugin table"))
                                .help("write plugin = { oci = \"HOST/REPOSITORY:TAG\", digest = \"sha256:...\" }"),
                        );
                        None
                    }
                }
            }
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
                        .help("a built-in name like \"echo\", a file like \"./plugins/x.wasm\", { path, sha256 }, \"oci://HOST/REPO:TAG\" or { oci, digest }"),
                );
                None
            }
        }
    }

    pub(super) fn references(
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
                        hint(name, &names, "inputs.", || {
                            format!("declare it under [inputs.{name}]")
                        }),
                    ))
                }
                Reference::Step(Some(other)) if other == id => Some((
                    format!("step `{id}` reads its own outputs"),
                    "a step can read only the steps it needs".to_string(),
                )),
                Reference::Step(Some(other)) if !self.step_set.contains(other) => Some((
                    format!("step `{id}` reads unknown step `{other}`"),
                    hint(
                        other,
                        &self.step_ids.iter().map(String::as_str).collect::<Vec<_>>(),
                        "steps.",
                        || format!("steps in this workflow: {}", self.step_ids.join(", ")),
                    ),
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
                    hint(name, crate::workflow::expr::ROOTS, "", || {
                        format!(
                            "expressions can read {}",
                            crate::workflow::expr::ROOTS.join(", ")
                        )
                    }),
                )),
                _ => None,
            };
            if let Some((message, help)) = problem {
                self.error(Diagnostic::at(at.clone(), message).help(help));
            }
        }
    }

    pub(super) fn duration(
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

    pub(super) fn retry(&mut self, id: &str, raw: &RetryToml, span: Range<usize>) -> RetryPolicy {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn retry_backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            max: 5,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(5),
        };
        assert_eq!(policy.delay_before(2), Duration::from_secs(2));
        assert_eq!(policy.delay_before(3), Duration::from_secs(4));
        assert_eq!(policy.delay_before(4), Duration::from_secs(5));
    }
}
