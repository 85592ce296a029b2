//! The compose file as written: the typed model (unknown keys rejected) and `parse`, which reads
//! YAML text into it; the lenient value types are in [`lenient`], value syntaxes in [`syntax`].
//!
//! Parsing goes YAML text → `serde_norway::Value` → merge keys applied, `x-*` extensions
//! dropped, variables interpolated → typed model through `serde_path_to_error`, so that every
//! error carries the YAML path of the value at fault. Scalars are read leniently (`user: 1000`
//! and `retries: "3"` both work) because interpolation always yields strings.

mod lenient;
mod syntax;

use crate::interpolate::{self, Report, Vars};
pub use lenient::{
    Bool, Count, DependsOn, Dur, EnvFiles, HealthTest, KeyValues, Num, PortItem, ServiceNetworks,
    Str, VolumeItem, Words,
};
use serde::Deserialize;
use serde_norway::Value;
use std::collections::BTreeMap;

/// The top level of a compose file. `configs`, `secrets`, `include` and `build` are not
/// supported, so they are rejected rather than silently ignored.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawCompose {
    /// Ignored: the step's `project` names the project.
    pub name: Option<Str>,
    /// Obsolete in compose; accepted with a warning.
    pub version: Option<Str>,
    #[serde(default)]
    pub services: BTreeMap<String, RawService>,
    #[serde(default)]
    pub networks: BTreeMap<String, Option<RawShared>>,
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<RawShared>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub image: Str,
    pub command: Option<Words>,
    pub entrypoint: Option<Words>,
    pub environment: Option<KeyValues>,
    pub env_file: Option<EnvFiles>,
    #[serde(default)]
    pub ports: Vec<PortItem>,
    #[serde(default)]
    pub volumes: Vec<VolumeItem>,
    pub networks: Option<ServiceNetworks>,
    pub labels: Option<KeyValues>,
    pub restart: Option<Str>,
    pub healthcheck: Option<RawHealthcheck>,
    #[serde(default)]
    pub profiles: Vec<Str>,
    pub depends_on: Option<DependsOn>,
    pub deploy: Option<RawDeploy>,
    pub container_name: Option<Str>,
    pub user: Option<Str>,
    pub working_dir: Option<Str>,
    pub hostname: Option<Str>,
    pub privileged: Option<Bool>,
    pub network_mode: Option<Str>,
    pub pid: Option<Str>,
    #[serde(default)]
    pub cap_add: Vec<Str>,
}

/// A top-level network or volume (the same keys). Only the default drivers are accepted
/// because the host creates both without a driver choice.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawShared {
    pub driver: Option<Str>,
    pub external: Option<Bool>,
    pub name: Option<Str>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawHealthcheck {
    pub test: Option<HealthTest>,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    pub retries: Option<Num<u32>>,
    pub start_period: Option<Dur>,
    pub disable: Option<Bool>,
}

/// `deploy`: only `resources.reservations.devices` (GPUs) has a meaning for a single engine;
/// limits, replicas and placement are rejected rather than ignored.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawDeploy {
    pub resources: Option<RawResources>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    pub reservations: Option<RawReservations>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawReservations {
    #[serde(default)]
    pub devices: Vec<RawDevice>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    pub driver: Option<Str>,
    pub count: Option<Count>,
    #[serde(default)]
    pub device_ids: Vec<Str>,
    #[serde(default)]
    pub capabilities: Vec<Str>,
}

/// A `depends_on` condition, named as in compose.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    #[default]
    #[serde(rename = "service_started")]
    Started,
    #[serde(rename = "service_healthy")]
    Healthy,
    #[serde(rename = "service_completed_successfully")]
    CompletedSuccessfully,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "service_started",
            Condition::Healthy => "service_healthy",
            Condition::CompletedSuccessfully => "service_completed_successfully",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Dependency {
    pub condition: Condition,
    /// False: an inactive (profile-disabled) dependency is skipped instead of an error.
    pub required: bool,
    /// Recorded in the `depends_on` label like compose does; not acted on.
    pub restart: bool,
}

/// What a port maps, one per container port (a short-syntax range gives several).
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: Option<String>,
    pub host_port: Option<u16>,
}

#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

/// A service volume as written: a bind source is still relative to the compose file and a
/// volume source is still the compose key, both resolved with the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMount {
    pub kind: MountKind,
    /// Empty for an anonymous volume or a tmpfs.
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// Parse and interpolate a compose file's text. `label` prefixes every error (the file path).
pub fn parse(text: &str, label: &str, vars: &Vars) -> Result<(RawCompose, Report), String> {
    let mut value: Value = serde_norway::from_str(text).map_err(|e| format!("{label}: {e}"))?;
    value
        .apply_merge()
        .map_err(|e| format!("{label}: merge keys (`<<`): {e}"))?;
    let Value::Mapping(root) = &mut value else {
        return Err(format!(
            "{label}: expected a mapping with `services` at the top level"
        ));
    };
    strip_extensions(root);
    for section in ["services", "networks", "volumes"] {
        if let Some(Value::Mapping(entries)) = root.get_mut(section) {
            for (key, entry) in entries.iter_mut() {
                if let Value::Mapping(fields) = entry {
                    strip_extensions(fields);
                    if section == "services" && fields.contains_key("build") {
                        return Err(format!(
                            "{label}: services.{}.build: building images is not supported: build and push the image, then set `image`",
                            interpolate::key_text(key)
                        ));
                    }
                }
            }
        }
    }
    let mut report = Report::default();
    interpolate::interpolate_tree(&mut value, "", vars, &mut report)
        .map_err(|e| format!("{label}: {e}"))?;
    let raw: RawCompose = serde_path_to_error::deserialize(value)
        .map_err(|e| format!("{label}: {}", typed_error(&e)))?;
    Ok((raw, report))
}

/// "PATH: message", where an unknown key is reported at the mapping that has it
/// (`services.web: unknown field `imagee``) rather than at the key itself.
fn typed_error(e: &serde_path_to_error::Error<serde_norway::Error>) -> String {
    let path = e.path().to_string();
    let message = e.inner().to_string();
    let field = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field);
    let path = match field {
        Some(field) if path == field => ".",
        Some(field) => path
            .strip_suffix(&format!(".{field}"))
            .unwrap_or(path.as_str()),
        None => path.as_str(),
    };
    if path == "." {
        message
    } else {
        format!("{path}: {message}")
    }
}

/// Drop `x-*` keys: compose extensions, usually anchors for `<<` merges.
fn strip_extensions(map: &mut serde_norway::Mapping) {
    map.retain(|key, _| !matches!(key, Value::String(k) if k.starts_with("x-")));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [("TAG".to_string(), "7".to_string())].into_iter().collect()
    }

    #[test]
    fn reports_an_unknown_key_at_the_mapping_that_has_it() {
        let err = parse(
            "services:\n  web:\n    imagee: nginx\n",
            "compose.yml",
            &vars(),
        )
        .unwrap_err();
        assert!(
            err.starts_with("compose.yml: services.web: unknown field `imagee`"),
            "{err}"
        );
        let err = parse(
            "services:\n  web:\n    image: nginx\n    ports:\n      - target: 80\n        publishd: 8080\n",
            "compose.yml",
            &vars(),
        )
        .unwrap_err();
        assert!(
            err.starts_with("compose.yml: services.web.ports[0]: unknown field `publishd`"),
            "{err}"
        );
        let err = parse(
            "services:\n  web:\n    image: nginx\n    ports: [\"99999:80\"]\n",
            "compose.yml",
            &vars(),
        )
        .unwrap_err();
        assert!(
            err.starts_with("compose.yml: services.web.ports[0]: "),
            "{err}"
        );
    }

    #[test]
    fn reads_a_full_service_with_anchors_extensions_and_lenient_values() {
        let text = r#"
x-common: &common
  restart: unless-stopped
version: "3.8"
services:
  db:
    <<: *common
    x-note: hi
    image: "postgres:${TAG}"
    environment:
      POSTGRES_PASSWORD: secret
      N: 5
      FROM_ENV:
    healthcheck:
      test: pg_isready
      interval: 1s
      retries: "${RETRIES:-5}"
    volumes:
      - pgdata:/var/lib/postgresql/data
      - type: bind
        source: ./init
        target: /docker-entrypoint-initdb.d
        read_only: true
    ports: ["5432:5432", {target: 9000, published: "9001"}]
    networks:
      back:
        aliases: [database]
    deploy:
      resources:
        reservations:
          devices:
            - driver: nvidia
              count: all
              capabilities: [gpu]
  init:
    image: alpine
    command: sh -c 'echo done'
    restart: "no"
    depends_on:
      db:
        condition: service_healthy
    labels: ["a=b", "c"]
  web:
    image: nginx
    depends_on: [init]
    env_file: [.env.web, {path: .env.opt, required: false}]
networks:
  back:
volumes:
  pgdata:
    external: true
"#;
        let (raw, _) = parse(text, "compose.yml", &vars()).unwrap();
        let db = &raw.services["db"];
        assert_eq!(db.image.0, "postgres:7");
        assert_eq!(db.restart.as_ref().unwrap().0, "unless-stopped");
        let env = &db.environment.as_ref().unwrap().0;
        assert_eq!(env[1], ("N".to_string(), Some("5".to_string())));
        assert_eq!(env[2], ("FROM_ENV".to_string(), None));
        let hc = db.healthcheck.as_ref().unwrap();
        assert_eq!(hc.retries, Some(Num(5)));
        assert_eq!(hc.interval, Some(Dur(1000)));
        assert_eq!(db.volumes[1].0.kind, MountKind::Bind);
        assert_eq!(db.ports.len(), 2);
        assert_eq!(db.ports[1].0[0].host_port, Some(9001));
        let dev = &db.deploy.as_ref().unwrap().resources.as_ref().unwrap();
        let dev = &dev.reservations.as_ref().unwrap().devices[0];
        assert_eq!(dev.count, Some(Count(-1)));
        let init = &raw.services["init"];
        assert_eq!(
            init.command.as_ref().unwrap().0,
            vec!["sh", "-c", "echo done"]
        );
        let deps = &init.depends_on.as_ref().unwrap().0;
        assert_eq!(deps["db"].condition, Condition::Healthy);
        let web = &raw.services["web"];
        let files = &web.env_file.as_ref().unwrap().0;
        assert!(files[0].required && !files[1].required);
        assert!(raw.volumes["pgdata"].as_ref().unwrap().external.unwrap().0);
    }

    #[test]
    fn reports_yaml_syntax_errors_with_line_and_column() {
        let err = parse("services: [1", "compose.yml", &vars()).unwrap_err();
        assert_eq!(
            err,
            "compose.yml: did not find expected ',' or ']' at line 2 column 1, while parsing a flow sequence at line 1 column 11"
        );
        let err = parse("services:\n  a: &x\n  b: *y\n", "compose.yml", &vars()).unwrap_err();
        assert_eq!(err, "compose.yml: unknown anchor at line 3 column 6");
    }

    #[test]
    fn rejects_build_naming_the_service() {
        let err = parse("services:\n  a:\n    build: .\n", "c.yml", &vars()).unwrap_err();
        assert!(err.contains("services.a.build"), "{err}");
    }
}
