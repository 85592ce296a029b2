//! Secrets and environment values for expressions: from the process environment, then from a
//! `.env` file beside the workflow, then (secrets only) from the host [`SecretStore`]. Every
//! secret value is registered with the [`Masker`].

use super::Masker;
use super::secret_store::{SecretStore, SecretStoreError};
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::path::Path;

/// A named value an expression reads that cannot be found.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(
        "secret `{name}` is not set: export {name}=..., add it to {env_file}, or `orch secret set {name}`"
    )]
    MissingSecret { name: String, env_file: String },
    #[error("environment variable `{name}` is not set: export {name}=... or add it to {env_file}")]
    MissingEnv { name: String, env_file: String },
    #[error(transparent)]
    Store(#[from] SecretStoreError),
    #[error("cannot read {path}: {message}")]
    DotEnv { path: String, message: String },
}

/// Values for `secrets.NAME` and `env.NAME`, resolved once per run.
pub(crate) struct Lookup {
    pub secrets: Map<String, Json>,
    pub env: Map<String, Json>,
}

/// Resolve the names a workflow reads. `process_env` is the caller's environment (passed in,
/// not read here, so tests and the server control it).
pub(crate) fn resolve(
    secret_names: &[String],
    env_names: &[String],
    workflow_dir: &Path,
    process_env: &HashMap<String, String>,
    store: Option<&SecretStore>,
    masker: &Masker,
) -> Result<Lookup, LookupError> {
    let env_file = workflow_dir.join(".env");
    let dotenv = read_dotenv(&env_file)?;
    let find = |name: &str| process_env.get(name).or_else(|| dotenv.get(name)).cloned();
    let shown = env_file.display().to_string();
    let mut secrets = Map::new();
    for name in secret_names {
        let stored = || match store {
            Some(store) => store.get(name).map_err(LookupError::Store),
            None => Ok(None),
        };
        let value = match find(name) {
            Some(v) => v,
            None => stored()?.ok_or_else(|| LookupError::MissingSecret {
                name: name.clone(),
                env_file: shown.clone(),
            })?,
        };
        masker.register(&value);
        secrets.insert(name.clone(), Json::String(value));
    }
    let mut env = Map::new();
    for name in env_names {
        let value = find(name).ok_or_else(|| LookupError::MissingEnv {
            name: name.clone(),
            env_file: shown.clone(),
        })?;
        env.insert(name.clone(), Json::String(value));
    }
    Ok(Lookup { secrets, env })
}

fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, LookupError> {
    if !path.is_file() {
        return Ok(HashMap::new());
    }
    let fail = |message: String| LookupError::DotEnv {
        path: path.display().to_string(),
        message,
    };
    dotenvy::from_path_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .map(|item| item.map_err(|e| fail(dotenv_problem(path, &e))))
        .collect()
}

/// What is wrong with a `.env` file, never quoting it: a malformed line may hold a secret.
fn dotenv_problem(path: &Path, error: &dotenvy::Error) -> String {
    match error {
        dotenvy::Error::LineParse(line, at) => {
            let number = std::fs::read_to_string(path).ok().and_then(|text| {
                text.lines()
                    .position(|l| l.contains(line.lines().next().unwrap_or_default()))
            });
            match number {
                Some(n) => format!(
                    "line {} cannot be parsed (at character {at}); check its quotes and `=`",
                    n + 1
                ),
                None => format!("a line cannot be parsed (at character {at})"),
            }
        }
        dotenvy::Error::Io(e) => format!("cannot read it: {e}"),
        dotenvy::Error::EnvVar(e) => e.to_string(),
        _ => "it cannot be parsed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_env_line_is_reported_by_number_without_its_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "A=1\n# note\nDB_PASSWORD=\"s3cr3t-value\nB=2\n").unwrap();
        let error = read_dotenv(&path).unwrap_err().to_string();
        assert!(error.contains("line 3"), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
    }
}
