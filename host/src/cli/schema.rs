//! `orch schema workflow` and `orch init`: the JSON Schema of workflow files, derived from the
//! types serde reads them with (so it cannot drift from the parser; `workflow.schema.json` in
//! the repository is checked against it by a test), and a starter project that uses it.

use crate::cli::CliError;
use crate::workflow::WorkflowToml;
use std::path::Path;

/// The schema, pretty-printed, ending in a newline.
pub(super) fn workflow_text() -> String {
    let mut schema = schemars::schema_for!(WorkflowToml);
    schema.insert(
        "$id".into(),
        "https://orch.dev/schemas/workflow.schema.json".into(),
    );
    schema.insert("title".into(), "orch workflow".into());
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

const STARTER: &str = r#"#:schema ./workflow.schema.json
# A starter workflow: `orch plan workflow.toml` shows what it would do, `orch run workflow.toml`
# runs it. Editors with taplo / Even Better TOML complete and check it through the line above.
name = "starter"
description = "Say hello, then pass a value on"

[inputs.who]
type = "string"
default = "world"
description = "Who to greet"

# Connections keep credentials in the host; steps name them in `allow`. Values come from the
# environment, `.env` (see .env.example) or the secret store, never from the workflow file.
# [connections.db]
# kind = "postgres"
# url = "${{ secrets.DATABASE_URL }}"

[steps.hello]
plugin = "echo"
with = { message = "hello, ${{ inputs.who }}", outputs = { greeted = "${{ inputs.who }}" } }

[steps.next]
plugin = "echo"
needs = ["hello"]
with = { message = "greeted ${{ steps.hello.outputs.greeted }}" }
"#;

const ENV_EXAMPLE: &str = "# Copy to .env (kept out of version control) and fill in.\n# DATABASE_URL=postgres://user:password@127.0.0.1:5432/app\n";

/// Write the starter files into `dir`, refusing to overwrite any.
pub(super) fn init(dir: &Path) -> Result<(), CliError> {
    let files = [
        ("workflow.toml", STARTER.to_string()),
        (".env.example", ENV_EXAMPLE.to_string()),
        ("workflow.schema.json", workflow_text()),
    ];
    if let Some((name, _)) = files.iter().find(|(name, _)| dir.join(name).exists()) {
        return Err(CliError::invalid(format!(
            "{} already exists: `orch init` does not overwrite files",
            dir.join(name).display()
        )));
    }
    std::fs::create_dir_all(dir)?;
    for (name, text) in &files {
        std::fs::write(dir.join(name), text)?;
        println!("wrote {}", dir.join(name).display());
    }
    println!("next: orch plan workflow.toml && orch run workflow.toml");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_schema_is_the_generated_one() {
        let published = include_str!("../../../workflow.schema.json");
        assert!(
            published == workflow_text(),
            "workflow.schema.json is stale: run `orch schema workflow > workflow.schema.json`"
        );
    }

    #[test]
    fn the_schema_knows_steps_and_their_fields() {
        let schema: serde_json::Value = serde_json::from_str(&workflow_text()).unwrap();
        let step = &schema["$defs"]["StepToml"]["properties"];
        for field in ["plugin", "needs", "if", "with", "allow", "timeout", "retry"] {
            assert!(step[field].is_object(), "no `{field}` in {step}");
        }
        assert_eq!(schema["required"], serde_json::json!(["name"]));
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn the_starter_workflow_is_valid_against_its_schema() {
        let schema: serde_json::Value = serde_json::from_str(&workflow_text()).unwrap();
        let starter: toml::Value = toml::from_str(STARTER).unwrap();
        let starter = serde_json::to_value(starter).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&starter)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        let workflows = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
        for entry in std::fs::read_dir(workflows).unwrap().filter_map(Result::ok) {
            if entry.path().extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(entry.path()).unwrap();
                let value = serde_json::to_value(toml::from_str::<toml::Value>(&text).unwrap());
                let errors: Vec<String> = validator
                    .iter_errors(&value.unwrap())
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "{}: {errors:?}", entry.path().display());
            }
        }
        let bad = serde_json::json!({"name": "x", "steps": {"a": {"plugin": "echo", "nedds": []}}});
        assert!(!validator.is_valid(&bad), "a misspelt field is caught");
    }
}
