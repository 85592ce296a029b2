//! `[[schedule]]` and `[webhook]`: cron, timezone, policies and the inputs they give.

use super::{Validator, is_identifier};
use crate::workflow::authored::{ScheduleToml, WebhookToml};
use crate::workflow::diagnostic::Diagnostic;
use crate::workflow::hint;
use crate::workflow::inputs::{InputSpec, toml_to_json};
use crate::workflow::model::*;
use indexmap::IndexMap;
use std::str::FromStr;

impl Validator<'_> {
    pub(super) fn webhook(
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
                let help = hint(name.get_ref(), &known, "", || {
                    "declare it under [inputs]".into()
                });
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
            require_timestamp: raw.require_timestamp,
        })
    }

    pub(super) fn schedule(
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
                    let help = hint(tz.get_ref(), &names, "", || {
                        "use an IANA name like \"Europe/Lisbon\" or \"UTC\"".into()
                    });
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
}

/// Say which field of a cron expression is wrong: croner's component errors do not name it.
pub(super) fn cron_problem(expr: &str, error: &croner::errors::CronError) -> String {
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
