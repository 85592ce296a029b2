//! `[inputs.X]`: types, defaults, options and patterns checked against each other.

use super::Validator;
use crate::workflow::authored::InputToml;
use crate::workflow::diagnostic::Diagnostic;
use crate::workflow::inputs::{InputSpec, toml_to_json};
use indexmap::IndexMap;
use toml::Spanned;

impl Validator<'_> {
    pub(super) fn inputs(
        &mut self,
        raw: IndexMap<Spanned<String>, InputToml>,
    ) -> IndexMap<String, InputSpec> {
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
                feeds_connection: None,
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
}
