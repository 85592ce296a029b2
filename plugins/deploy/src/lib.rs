//! Built-in `deploy`: converge a Docker compose project through a granted `docker`
//! connection, the way `docker compose up --wait` would, but idempotent and with a plan.
//!
//! The compose file is read, interpolated, validated and resolved into exact container specs
//! before the engine is touched ([`project`]); the engine is then read and, in `run`,
//! converged in dependency order ([`converge`]). Containers carry the compose labels, so
//! `docker compose -p PROJECT ps` sees them, plus a hash of their config: an unchanged service
//! is left running, a changed one is recreated.

mod compose;
mod converge;
mod interpolate;
mod project;

/// Entry points for the fuzz targets (`fuzz/`): a compose file and its `.env` as the plugin
/// reads them. Not an API.
#[doc(hidden)]
pub mod fuzz {
    use std::collections::BTreeMap;
    use std::path::Path;

    /// Load `compose` (with `dotenv` as its `.env`) the way `run` does; errors are fine, panics
    /// and hangs are bugs.
    pub fn load(compose: &str, dotenv: &str) {
        let read = |path: &Path| -> std::io::Result<String> {
            match path.file_name().and_then(|n| n.to_str()) {
                Some(".env") => Ok(dotenv.to_string()),
                Some("compose.yml") => Ok(compose.to_string()),
                _ => Err(std::io::ErrorKind::NotFound.into()),
            }
        };
        let env = BTreeMap::new();
        let request = super::project::Request {
            project: "fuzz",
            file: "stack/compose.yml",
            profiles: &["dev".to_string()],
            env: &env,
        };
        let _ = super::project::load(&request, &read);
    }
}

use orch_sdk::docker;
use orch_sdk::{Cx, Pull, Step, StepError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// `with` of a `deploy` step.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// A docker connection granted in the step's `allow`; its policy decides which images,
    /// bind paths and privileges are allowed.
    connection: String,
    /// The compose project name ([a-z0-9][a-z0-9_-]*): prefixes container, network and
    /// volume names and labels everything, like `docker compose -p`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]*$"))]
    project: String,
    /// Path of the compose file as the step sees it: its directory must be granted in
    /// `allow` (e.g. "./deploy" to read "deploy/compose.yml"). A `.env` next to it is read
    /// for interpolation, and relative paths in the file are resolved against its directory.
    file: String,
    /// Compose profiles to enable; services without `profiles` always run.
    #[serde(default)]
    profiles: Vec<String>,
    /// Remove containers of services no longer in the file (or whose profile is off);
    /// otherwise they are left running with a warning.
    #[serde(default)]
    remove_orphans: bool,
    /// When to pull images: "missing" (default), "always" (a moved tag recreates the
    /// service) or "never".
    #[serde(default)]
    pull: Pull,
    /// Interpolation variables; they override the `.env` file.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// How long to wait for a service to become healthy or an init service to exit, per
    /// wait, in seconds.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1))]
    timeout_secs: u32,
}

fn default_timeout() -> u32 {
    120
}

struct Deploy;

impl Step for Deploy {
    type Config<'a> = Config;
    const DESCRIPTION: &'static str =
        "Converge a Docker compose project: networks, volumes, services, health";

    /// Load and validate the project (no engine call), then plan or converge it.
    fn step(cx: &mut Cx, config: Config) -> Result<(), StepError> {
        if config.connection.trim().is_empty() {
            return Err(StepError::InvalidConfig("`connection` is empty".into()));
        }
        if config.timeout_secs == 0 {
            return Err(StepError::InvalidConfig(
                "`timeout_secs` must be at least 1".into(),
            ));
        }
        let request = project::Request {
            project: &config.project,
            file: &config.file,
            profiles: &config.profiles,
            env: &config.env,
        };
        let read = |path: &std::path::Path| std::fs::read_to_string(path);
        let (project, warnings) =
            project::load(&request, &read).map_err(StepError::InvalidConfig)?;
        for w in warnings {
            orch_sdk::log::warn(w);
        }
        if project.services.is_empty() {
            orch_sdk::log::warn(format!(
                "{}: no active service (check `profiles`)",
                config.file
            ));
        }
        let options = converge::Options {
            pull: config.pull.into(),
            remove_orphans: config.remove_orphans,
            timeout: Duration::from_secs(u64::from(config.timeout_secs)),
        };
        let engine = docker::open(&config.connection)?;
        if cx.applying() {
            converge::run(&engine, &project, &options, cx)
        } else {
            for change in converge::plan(&engine, &project, &options)? {
                cx.declare(change);
            }
            Ok(())
        }
    }
}

orch_sdk::export!(Deploy);
