//! A step's outputs after `run`: real values for later expressions, masked ones for everything
//! shown or stored, a summary when too large to record, and `store_secret` into the host store.

use crate::capability::Masker;
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

/// Outputs as (real values for expressions, masked values for everything shown or stored).
/// Secret outputs are registered with the masker first, so they are masked from now on.
pub(super) fn collect_outputs(masker: &Masker, outputs: Vec<Output>) -> (Json, Json) {
    for o in outputs.iter().filter(|o| o.secret) {
        match serde_json::from_str::<Json>(&o.value) {
            Ok(Json::String(s)) => masker.register(&s),
            _ => masker.register(&o.value),
        }
    }
    let mut real = Map::new();
    for o in outputs {
        let value = serde_json::from_str(&o.value).unwrap_or(Json::String(o.value));
        real.insert(o.name, value);
    }
    let real = Json::Object(real);
    let masked = masker.mask_json(&real);
    (real, masked)
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
        let (real, masked) = collect_outputs(&masker, outputs);
        assert_eq!(real["password"], "s3cret-value");
        assert_ne!(masked["password"], "s3cret-value");
        assert!(!masked["echo"].as_str().unwrap().contains("s3cret-value"));
    }
}
