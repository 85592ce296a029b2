//! `[connections.X]`: each kind's required and known settings, with "did you mean".

use super::{EXPR_HELP, Validator};
use crate::workflow::authored::ConnectionKind;
use crate::workflow::diagnostic::Diagnostic;
use crate::workflow::expr::{Reference, Template};
use crate::workflow::hint;
use crate::workflow::inputs::InputSpec;
use crate::workflow::inputs::toml_to_json;
use crate::workflow::model::*;
use indexmap::IndexMap;
use toml::Spanned;

impl Validator<'_> {
    pub(super) fn connections(
        &mut self,
        raw: IndexMap<Spanned<String>, crate::workflow::authored::ConnectionToml>,
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
                        "volumes",
                        "networks",
                        "ports",
                        "remote_binds",
                        "owner",
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
                let help = hint(key, known, "", || {
                    format!("known settings: {}", known.join(", "))
                });
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

    /// Mark the inputs that connection settings read (a trigger could otherwise point a
    /// connection, credentials included, at a host of its choosing) and check their defaults
    /// under that rule.
    pub(super) fn connection_inputs(
        &mut self,
        inputs: &mut IndexMap<String, InputSpec>,
        connections: &IndexMap<String, Connection>,
    ) {
        for (name, connection) in connections {
            for reference in connection
                .settings
                .exprs()
                .iter()
                .flat_map(|e| e.references.iter())
            {
                if let Reference::Input(Some(input)) = reference
                    && let Some(spec) = inputs.get_mut(input)
                    && spec.feeds_connection.is_none()
                {
                    spec.feeds_connection = Some(name.clone());
                    if let Some(Err(e)) = spec.default.as_ref().map(|d| spec.check(d)) {
                        self.error(Diagnostic::global(format!("input `{input}`: default {e}")));
                    }
                }
            }
        }
    }
}
