//! A step's outputs after `run`: real values for later expressions, masked ones for everything
//! shown or stored, a summary when too large to record, and `store_secret` into the host store.

use crate::capability::Masker;
use crate::capability::mask::MASK;
use crate::capability::secret_store::SecretStore;
use crate::runtime::Output;
use crate::workflow::Step;
use serde_json::{Map, Value as Json, json};

/// Outputs larger than this are recorded in the run store as a summary (they still flow to
/// the steps that read them): a 100k-record batch would otherwise be copied into every run row.
const MAX_STORED_OUTPUTS: usize = 1 << 20;

/// The outputs as recorded: as is, or a summary naming each output's size when too large.
pub(super) fn recordable_outputs(outputs: &Json) -> Json {
    let size = serde_json::to_vec(outputs).map_or(0, |v| v.len());
    if size <= MAX_STORED_OUTPUTS {
        return outputs.clone();
    }
    let sizes: Map<String, Json> = outputs
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                json!(serde_json::to_vec(v).map_or(0, |b| b.len())),
            )
        })
        .collect();
    json!({"_truncated": format!("{size} bytes of outputs not recorded (limit {MAX_STORED_OUTPUTS})"), "_sizes": sizes})
}

/// Write the outputs named by the step's `store_secret` into the host secret store; what was
/// stored, as log lines.
pub(super) fn store_secret_outputs(
    secret_store: Option<&SecretStore>,
    step: &Step,
    outputs: &Json,
    secret_names: &[String],
) -> Result<Vec<String>, String> {
    let mut stored = Vec::new();
    for keep in &step.store_secrets {
        let output = match (&keep.output, secret_names) {
            (Some(o), _) => o.clone(),
            (None, [only]) => only.clone(),
            (None, names) => {
                return Err(format!(
                    "store_secret = \"{}\" needs exactly one secret output, the plugin returned {}: name it, e.g. {{ {} = \"{}\" }}",
                    keep.name,
                    names.len(),
                    names.first().map_or("password", String::as_str),
                    keep.name
                ));
            }
        };
        let value = match outputs.get(&output) {
            Some(Json::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => {
                return Err(format!(
                    "store_secret: the step returned no output `{output}`"
                ));
            }
        };
        let store = secret_store.ok_or("store_secret: no secret store is configured")?;
        store
            .set(&keep.name, &value)
            .map_err(|e| format!("store_secret: {e}"))?;
        stored.push(format!(
            "stored output `{output}` as secret `{}`",
            keep.name
        ));
    }
    Ok(stored)
}

/// Shortest secret value masked (GitLab's rule): a shorter one would hide ordinary text
/// everywhere, and reveal itself doing so.
const MIN_SECRET: usize = 8;

/// Words of the host's own messages: a secret made only of them would let a plugin hide what
/// the host says about it.
const HOST_WORDS: &[&str] = &[
    "a",
    "add",
    "allow",
    "anything",
    "audit",
    "change",
    "connection",
    "denied",
    "during",
    "its",
    "log",
    "may",
    "must",
    "not",
    "open",
    "plan",
    "policy",
    "reach",
    "run",
    "step",
    "tcp",
    "to",
    "truncated",
    "http",
    "https",
    "lines",
    "dropped",
];

/// Outputs as (real values for expressions, masked values for everything shown or stored).
/// A secret output's strings and numbers are registered with the masker first (as outputs of
/// `step`), so they are masked from now on wherever they show up, and its whole value is
/// masked in the shown copy, whatever its JSON type. A secret that cannot be masked safely
/// (too short, or made of the host's own words) is refused.
pub(super) fn collect_outputs(
    masker: &Masker,
    step: &str,
    outputs: Vec<Output>,
) -> Result<(Json, Json), String> {
    let mut real = Map::new();
    let mut secret = Vec::new();
    for o in outputs {
        let value = serde_json::from_str(&o.value).unwrap_or(Json::String(o.value));
        if o.secret {
            let scalar = match &value {
                Json::String(s) => Some(s.clone()),
                Json::Number(n) => Some(n.to_string()),
                _ => None,
            };
            if let Some(text) = scalar {
                unmaskable(&text).map_err(|why| {
                    format!(
                        "output `{}` is marked secret but {why}: return a longer value, or do not mark it secret",
                        o.name
                    )
                })?;
            }
            register_leaves(masker, step, &value);
            secret.push(o.name.clone());
        }
        real.insert(o.name, value);
    }
    let real = Json::Object(real);
    let mut masked = masker.mask_json(&real);
    if let Json::Object(shown) = &mut masked {
        for name in secret {
            shown.insert(masker.mask(&name), Json::String(MASK.into()));
        }
    }
    Ok((real, masked))
}

/// Why `value` cannot be a masked secret, if it cannot.
fn unmaskable(value: &str) -> Result<(), String> {
    let chars = value.chars().count();
    if chars < MIN_SECRET {
        return Err(format!(
            "its value has {chars} characters (a secret needs at least {MIN_SECRET}, or masking it would hide ordinary text)"
        ));
    }
    let words = value
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty());
    if words
        .clone()
        .all(|w| HOST_WORDS.contains(&w.to_lowercase().as_str()))
    {
        return Err("its value is made of the words of orch's own messages".into());
    }
    Ok(())
}

/// Register the strings and numbers inside a secret value (booleans and null say nothing);
/// leaves too short to mask safely are masked only inside the value itself.
fn register_leaves(masker: &Masker, step: &str, value: &Json) {
    match value {
        Json::String(s) if unmaskable(s).is_ok() => masker.register_output(step, s),
        Json::Number(n) if unmaskable(&n.to_string()).is_ok() => {
            masker.register_output(step, &n.to_string())
        }
        Json::Array(items) => items.iter().for_each(|v| register_leaves(masker, step, v)),
        Json::Object(map) => map.values().for_each(|v| register_leaves(masker, step, v)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_outputs_are_recorded_as_a_summary_and_small_ones_as_is() {
        let small = json!({"n": 1});
        assert_eq!(recordable_outputs(&small), small);
        let big = json!({"rows": "x".repeat(MAX_STORED_OUTPUTS + 1), "n": 1});
        let stored = recordable_outputs(&big);
        assert!(
            stored["_truncated"]
                .as_str()
                .unwrap()
                .contains("not recorded")
        );
        assert_eq!(stored["_sizes"]["n"], 1);
        assert_eq!(stored["_sizes"]["rows"], MAX_STORED_OUTPUTS + 3);
    }

    #[test]
    fn secret_outputs_are_masked_from_the_moment_they_are_returned() {
        let masker = Masker::default();
        let outputs = vec![
            Output {
                name: "password".into(),
                value: "\"s3cret-value\"".into(),
                secret: true,
            },
            Output {
                name: "echo".into(),
                value: "\"it was s3cret-value\"".into(),
                secret: false,
            },
        ];
        let (real, masked) = collect_outputs(&masker, "gen", outputs).unwrap();
        assert_eq!(real["password"], "s3cret-value");
        assert_ne!(masked["password"], "s3cret-value");
        assert!(!masked["echo"].as_str().unwrap().contains("s3cret-value"));
    }

    #[test]
    fn secret_numbers_objects_and_arrays_are_masked_whole_and_their_leaves_everywhere() {
        let masker = Masker::default();
        let output = |name: &str, value: Json, secret| Output {
            name: name.into(),
            value: value.to_string(),
            secret,
        };
        let outputs = vec![
            output("pin", json!(48213977), true),
            output(
                "creds",
                json!({"password": "hunter2-Zq", "port": 5432}),
                true,
            ),
            output("keys", json!(["k-1-secret", 77123]), true),
            output(
                "note",
                json!("pin 48213977, pw hunter2-Zq, key k-1-secret, port 5432"),
                false,
            ),
        ];
        let (real, masked) = collect_outputs(&masker, "gen", outputs).unwrap();
        assert_eq!(real["pin"], 48213977);
        assert_eq!(real["creds"]["password"], "hunter2-Zq");
        for name in ["pin", "creds", "keys"] {
            assert_eq!(masked[name], MASK, "{name}: {masked}");
        }
        let shown = masked.to_string();
        for leak in ["48213977", "hunter2", "k-1-secret", "77123"] {
            assert!(!shown.contains(leak), "{leak} in {shown}");
        }
        assert!(
            shown.contains("port 5432"),
            "a short leaf is masked only inside its value: {shown}"
        );
        assert_ne!(recordable_outputs(&masked), real, "never resumable");
    }

    #[test]
    fn secrets_that_cannot_be_masked_safely_are_refused() {
        let output = |value: Json| Output {
            name: "token".into(),
            value: value.to_string(),
            secret: true,
        };
        for (value, why) in [
            (json!("may not"), "has 7 characters"),
            (json!(1234), "has 4 characters"),
            (json!("step may not reach"), "words of orch's own messages"),
        ] {
            let refused =
                collect_outputs(&Masker::default(), "s", vec![output(value)]).unwrap_err();
            assert!(
                refused.starts_with("output `token` is marked secret but"),
                "{refused}"
            );
            assert!(refused.contains(why), "{refused}");
        }
        assert!(collect_outputs(&Masker::default(), "s", vec![output(json!("127.0.0.1"))]).is_ok());
    }
}
