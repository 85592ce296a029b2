//! Typed workflow inputs: declaration checks and the values given to one run.

use super::authored::InputKind;
use indexmap::IndexMap;
use serde_json::Value as Json;

/// A validated `[inputs.X]`.
#[derive(Debug, Clone)]
pub struct InputSpec {
    pub name: String,
    pub description: Option<String>,
    pub kind: InputKind,
    pub default: Option<Json>,
    pub required: bool,
    pub options: Option<Vec<Json>>,
    pub regex: Option<regex::Regex>,
    /// A connection whose settings read this input: its values must not be able to redirect
    /// the connection (another host, port, user or query), so they are plain words.
    pub feeds_connection: Option<String>,
}

impl InputSpec {
    /// The declaration as JSON, for the API and forms generated from it.
    pub fn to_json(&self) -> Json {
        serde_json::json!({
            "type": self.kind,
            "description": self.description,
            "default": self.default,
            "required": self.required,
            "options": self.options,
            "regex": self.regex.as_ref().map(regex::Regex::as_str),
        })
    }

    /// Check a value against type, options and regex; the error says what is wrong.
    pub fn check(&self, value: &Json) -> Result<(), String> {
        let type_ok = match self.kind {
            InputKind::String => value.is_string(),
            InputKind::Number => value.is_number(),
            InputKind::Boolean => value.is_boolean(),
            InputKind::Array => value.is_array(),
        };
        if !type_ok {
            return Err(format!("expected a {}, got {value}", self.kind));
        }
        if let Some(options) = &self.options
            && !options.contains(value)
        {
            let list: Vec<String> = options.iter().map(Json::to_string).collect();
            return Err(format!(
                "{value} is not one of the options [{}]",
                list.join(", ")
            ));
        }
        if let (Some(re), Some(s)) = (&self.regex, value.as_str())
            && !re.is_match(s)
        {
            return Err(format!(
                "\"{s}\" does not match the regex `{}`",
                re.as_str()
            ));
        }
        if let Some(connection) = &self.feeds_connection {
            let plain = |s: &str| {
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            };
            let safe = match value {
                Json::String(s) => plain(s),
                Json::Number(_) | Json::Bool(_) => true,
                _ => false,
            };
            if !safe {
                return Err(format!(
                    "{value} is used in the settings of connection `{connection}`: it may hold only letters, digits, `_`, `-` and `.` (no host, port, user or query can be slipped in)"
                ));
            }
        }
        Ok(())
    }

    /// Parse a command-line value (`--input name=value`) into this input's type.
    pub fn parse_cli(&self, raw: &str) -> Result<Json, String> {
        match self.kind {
            InputKind::String => Ok(Json::String(raw.to_string())),
            InputKind::Number => raw
                .parse::<i64>()
                .map(Json::from)
                .or_else(|_| raw.parse::<f64>().map(Json::from))
                .map_err(|_| format!("expected a number, got `{raw}`")),
            InputKind::Boolean => match raw {
                "true" => Ok(Json::Bool(true)),
                "false" => Ok(Json::Bool(false)),
                _ => Err(format!("expected true or false, got `{raw}`")),
            },
            InputKind::Array => match serde_json::from_str::<Json>(raw) {
                Ok(v @ Json::Array(_)) => Ok(v),
                _ => Err(format!(
                    "expected a JSON array like [\"a\",\"b\"], got `{raw}`"
                )),
            },
        }
    }

    /// The value used when none is given: the default, or the type's empty value.
    fn fallback(&self) -> Json {
        self.default.clone().unwrap_or(match self.kind {
            InputKind::String => Json::String(String::new()),
            InputKind::Number => Json::from(0),
            InputKind::Boolean => Json::Bool(false),
            InputKind::Array => Json::Array(vec![]),
        })
    }
}

/// A problem with the inputs given to a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("input `{name}`: {message}")]
pub struct InputError {
    pub name: String,
    pub message: String,
}

/// Resolve the inputs of one run: given values (already typed JSON) plus defaults.
/// Reports every problem at once.
pub fn resolve(
    specs: &IndexMap<String, InputSpec>,
    given: &IndexMap<String, Json>,
) -> Result<serde_json::Map<String, Json>, Vec<InputError>> {
    let mut errors = Vec::new();
    for name in given.keys() {
        if !specs.contains_key(name) {
            let known: Vec<&str> = specs.keys().map(String::as_str).collect();
            let hint = match super::did_you_mean(name, &known) {
                Some(s) => format!("; did you mean `{s}`?"),
                None if known.is_empty() => "; this workflow declares no inputs".into(),
                None => format!("; declared inputs: {}", known.join(", ")),
            };
            errors.push(InputError {
                name: name.clone(),
                message: format!("not declared by the workflow{hint}"),
            });
        }
    }
    let mut values = serde_json::Map::new();
    for (name, spec) in specs {
        let value = match given.get(name) {
            Some(v) => v.clone(),
            None if spec.required => {
                errors.push(InputError {
                    name: name.clone(),
                    message: format!(
                        "required {} input is missing: pass --input {name}=VALUE",
                        spec.kind
                    ),
                });
                continue;
            }
            None => spec.fallback(),
        };
        if let Err(message) = spec.check(&value) {
            errors.push(InputError {
                name: name.clone(),
                message,
            });
        }
        values.insert(name.clone(), value);
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// Parse `name=value` command-line pairs against the declared types.
pub fn parse_cli_pairs(
    specs: &IndexMap<String, InputSpec>,
    pairs: &[String],
) -> Result<IndexMap<String, Json>, Vec<InputError>> {
    let mut values = IndexMap::new();
    let mut errors = Vec::new();
    for pair in pairs {
        let Some((name, raw)) = pair.split_once('=') else {
            errors.push(InputError {
                name: pair.clone(),
                message: "expected NAME=VALUE".into(),
            });
            continue;
        };
        let parsed = match specs.get(name) {
            Some(spec) => spec.parse_cli(raw),
            None => Ok(Json::String(raw.to_string())), // reported as undeclared by `resolve`
        };
        match parsed {
            Ok(v) => {
                values.insert(name.to_string(), v);
            }
            Err(message) => errors.push(InputError {
                name: name.to_string(),
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// TOML to JSON; datetimes become RFC 3339 strings.
pub fn toml_to_json(value: &toml::Value) -> Json {
    match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => Json::from(*f),
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => Json::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Json::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(kind: InputKind) -> InputSpec {
        InputSpec {
            feeds_connection: None,
            name: "x".into(),
            description: None,
            kind,
            default: None,
            required: true,
            options: None,
            regex: None,
        }
    }

    #[test]
    fn missing_required_input_is_reported() {
        let specs = IndexMap::from([("x".to_string(), spec(InputKind::String))]);
        let err = resolve(&specs, &IndexMap::new()).unwrap_err();
        assert!(err[0].message.contains("required string input is missing"));
    }

    #[test]
    fn wrong_type_options_and_regex_are_reported() {
        let mut s = spec(InputKind::Number);
        assert!(
            s.parse_cli("abc")
                .unwrap_err()
                .contains("expected a number")
        );
        s.kind = InputKind::String;
        s.options = Some(vec![json!("a"), json!("b")]);
        assert!(
            s.check(&json!("c"))
                .unwrap_err()
                .contains("not one of the options")
        );
        s.options = None;
        s.regex = Some(regex::Regex::new("^[a-z]+$").unwrap());
        assert!(
            s.check(&json!("A1"))
                .unwrap_err()
                .contains("does not match")
        );
        assert!(s.check(&json!("ok")).is_ok());
    }

    #[test]
    fn undeclared_input_suggests_the_closest_name() {
        let specs = IndexMap::from([("db_user".to_string(), spec(InputKind::String))]);
        let given = IndexMap::from([
            ("db_usr".to_string(), json!("a")),
            ("db_user".to_string(), json!("b")),
        ]);
        let err = resolve(&specs, &given).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err[0].message.contains("did you mean `db_user`"));
    }
}
