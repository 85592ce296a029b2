//! The compose file as written: a typed model that rejects unknown keys, and the small
//! syntaxes inside values (short port and volume forms, durations, shell words).
//!
//! Parsing goes YAML text → `serde_yaml::Value` → merge keys applied, `x-*` extensions
//! dropped, variables interpolated → typed model through `serde_path_to_error`, so that every
//! error carries the YAML path of the value at fault. Scalars are read leniently (`user: 1000`
//! and `retries: "3"` both work) because interpolation always yields strings.

use crate::interpolate::{self, Report, Vars};
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::fmt;

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
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongDependency {
    #[serde(default = "started")]
    condition: Condition,
    required: Option<Bool>,
    restart: Option<Bool>,
}

fn started() -> Condition {
    Condition::Started
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
    let mut value: Value = serde_yaml::from_str(text).map_err(|e| format!("{label}: {e}"))?;
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
fn typed_error(e: &serde_path_to_error::Error<serde_yaml::Error>) -> String {
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
fn strip_extensions(map: &mut serde_yaml::Mapping) {
    map.retain(|key, _| !matches!(key, Value::String(k) if k.starts_with("x-")));
}

// ---------------------------------------------------------------------------------------------
// Lenient scalars

/// A scalar read as text: `user: 1000` means "1000".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str(pub String);

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Str;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str, E> {
                Ok(Str(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Str, E> {
                Ok(Str(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Str, E> {
                Ok(Str(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Str, E> {
                Ok(Str(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Str, E> {
                Ok(Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A boolean that may have come out of interpolation as "true" / "false".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bool(pub bool);

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Bool, E> {
                Ok(Bool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bool, E> {
                match v.to_ascii_lowercase().as_str() {
                    "true" | "1" => Ok(Bool(true)),
                    "false" | "0" => Ok(Bool(false)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// An unsigned number that may have come out of interpolation as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Num<T>(pub T);

impl<'de, T> Deserialize<'de> for Num<T>
where
    T: TryFrom<u64> + std::str::FromStr,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T: TryFrom<u64> + std::str::FromStr> Visitor<'_> for V<T> {
            type Value = Num<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num<T>, E> {
                T::try_from(v)
                    .map(Num)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num<T>, E> {
                let n = u64::try_from(v)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))?;
                self.visit_u64(n)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num<T>, E> {
                v.trim()
                    .parse()
                    .map(Num)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A duration like `10s`, `1m30s` or `500ms`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub u64);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Str(text) = Str::deserialize(d)?;
        parse_duration(&text).map(Dur).map_err(de::Error::custom)
    }
}

/// A device `count`: a number, or `all` (-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub i64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Str(text) = Str::deserialize(d)?;
        if text.trim() == "all" {
            return Ok(Count(-1));
        }
        match text.trim().parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Count(n)),
            _ => Err(de::Error::custom(format!(
                "count must be a non-negative number or `all`, got `{text}`"
            ))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values with a short and a long form

/// `command` / `entrypoint`: a list, or a string split like a shell would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Words(pub Vec<String>);

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Words;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Words, E> {
                split_words(v).map(Words).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Words, A::Error> {
                let mut words = Vec::new();
                while let Some(Str(w)) = seq.next_element()? {
                    words.push(w);
                }
                Ok(Words(words))
            }
        }
        d.deserialize_any(V)
    }
}

/// `environment` / `labels`: a mapping, or a list of `KEY=VALUE`. A value of `None` (a bare
/// `KEY` or `KEY: null`) means "take it from the environment" in compose.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValues(pub Vec<(String, Option<String>)>);

impl<'de> Deserialize<'de> for KeyValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyValues;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping or a list of KEY=VALUE strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyValues, A::Error> {
                let mut out = Vec::new();
                while let Some((Str(k), v)) = map.next_entry::<Str, Option<Str>>()? {
                    out.push((k, v.map(|Str(v)| v)));
                }
                Ok(KeyValues(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyValues, A::Error> {
                let mut out = Vec::new();
                while let Some(Str(item)) = seq.next_element()? {
                    match item.split_once('=') {
                        Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
                        None => out.push((item, None)),
                    }
                }
                Ok(KeyValues(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One `env_file`: a path, and whether a missing file is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    pub path: String,
    pub required: bool,
}

/// `env_file`: a path, or a list of paths or `{path, required}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFiles(pub Vec<EnvFile>);

impl<'de> Deserialize<'de> for EnvFiles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvFiles;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path or a list of paths")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvFiles, E> {
                Ok(EnvFiles(vec![EnvFile {
                    path: v.to_string(),
                    required: true,
                }]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EnvFiles, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<EnvFileItem>()? {
                    out.push(item.0);
                }
                Ok(EnvFiles(out))
            }
        }
        d.deserialize_any(V)
    }
}

struct EnvFileItem(EnvFile);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongEnvFile {
    path: Str,
    required: Option<Bool>,
}

impl<'de> Deserialize<'de> for EnvFileItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvFileItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path or a mapping with `path` and `required`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvFileItem, E> {
                Ok(EnvFileItem(EnvFile {
                    path: v.to_string(),
                    required: true,
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EnvFileItem, A::Error> {
                let long = LongEnvFile::deserialize(MapAccessDeserializer::new(map))?;
                Ok(EnvFileItem(EnvFile {
                    path: long.path.0,
                    required: long.required.is_none_or(|b| b.0),
                }))
            }
        }
        d.deserialize_any(V)
    }
}

/// One entry of `ports`; a short-syntax range expands to several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortItem(pub Vec<PortSpec>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongPort {
    target: Num<u16>,
    published: Option<Str>,
    host_ip: Option<Str>,
    protocol: Option<Str>,
}

impl<'de> Deserialize<'de> for PortItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PortItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port like \"8080:80\" or a mapping with `target`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortItem, E> {
                parse_port(v).map(PortItem).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortItem, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortItem, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PortItem, A::Error> {
                let long = LongPort::deserialize(MapAccessDeserializer::new(map))?;
                let protocol = protocol(long.protocol.as_ref().map_or("tcp", |p| p.0.as_str()))
                    .map_err(de::Error::custom)?;
                let target = nonzero_port(long.target.0).map_err(de::Error::custom)?;
                let host_port = match long.published.as_ref().map(|p| p.0.trim()) {
                    None | Some("") => None,
                    Some(p) => Some(port_number(p).map_err(de::Error::custom)?),
                };
                Ok(PortItem(vec![PortSpec {
                    container_port: target,
                    protocol,
                    host_ip: long.host_ip.map(|ip| ip.0).filter(|ip| !ip.is_empty()),
                    host_port,
                }]))
            }
        }
        d.deserialize_any(V)
    }
}

/// One entry of a service's `volumes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeItem(pub RawMount);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongVolume {
    #[serde(rename = "type")]
    kind: Str,
    source: Option<Str>,
    target: Str,
    read_only: Option<Bool>,
}

impl<'de> Deserialize<'de> for VolumeItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VolumeItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a volume like \"data:/var/lib/data\" or a mapping with `type`, `source` and `target`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VolumeItem, E> {
                parse_volume(v).map(VolumeItem).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<VolumeItem, A::Error> {
                let long = LongVolume::deserialize(MapAccessDeserializer::new(map))?;
                let kind = match long.kind.0.as_str() {
                    "bind" => MountKind::Bind,
                    "volume" => MountKind::Volume,
                    "tmpfs" => MountKind::Tmpfs,
                    other => {
                        return Err(de::Error::custom(format!(
                            "volume type `{other}` is not supported: use bind, volume or tmpfs"
                        )));
                    }
                };
                let source = long.source.map(|s| s.0).unwrap_or_default();
                if kind == MountKind::Bind && source.is_empty() {
                    return Err(de::Error::custom("a bind mount needs a `source`"));
                }
                let target = long.target.0;
                check_target(&target).map_err(de::Error::custom)?;
                Ok(VolumeItem(RawMount {
                    kind,
                    source,
                    target,
                    read_only: long.read_only.is_some_and(|b| b.0),
                }))
            }
        }
        d.deserialize_any(V)
    }
}

/// A service's `networks`: a list of names, or a mapping name → `{aliases}` (or null).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceNetworks(pub BTreeMap<String, Vec<String>>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Attachment {
    #[serde(default)]
    aliases: Vec<Str>,
}

impl<'de> Deserialize<'de> for ServiceNetworks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ServiceNetworks;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of network names or a mapping of network → {aliases}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ServiceNetworks, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(Str(name)) = seq.next_element()? {
                    out.insert(name, Vec::new());
                }
                Ok(ServiceNetworks(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ServiceNetworks, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((Str(name), a)) = map.next_entry::<Str, Option<Attachment>>()? {
                    let aliases = a.map(|a| a.aliases.into_iter().map(|s| s.0).collect());
                    out.insert(name, aliases.unwrap_or_default());
                }
                Ok(ServiceNetworks(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `depends_on`: a list of names (condition `service_started`), or a mapping name →
/// `{condition, required, restart}`.
#[derive(Debug, Clone, Default)]
pub struct DependsOn(pub BTreeMap<String, Dependency>);

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DependsOn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of services or a mapping of service → {condition}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DependsOn, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(Str(name)) = seq.next_element()? {
                    let dep = Dependency {
                        condition: Condition::Started,
                        required: true,
                        restart: false,
                    };
                    out.insert(name, dep);
                }
                Ok(DependsOn(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DependsOn, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((Str(name), long)) = map.next_entry::<Str, LongDependency>()? {
                    let dep = Dependency {
                        condition: long.condition,
                        required: long.required.is_none_or(|b| b.0),
                        restart: long.restart.is_some_and(|b| b.0),
                    };
                    out.insert(name, dep);
                }
                Ok(DependsOn(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `healthcheck.test`: a string runs in a shell (`CMD-SHELL`); a list is passed as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTest(pub Vec<String>);

impl<'de> Deserialize<'de> for HealthTest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HealthTest;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a shell command string or a list starting with CMD, CMD-SHELL or NONE")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HealthTest, E> {
                Ok(HealthTest(vec!["CMD-SHELL".to_string(), v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HealthTest, A::Error> {
                let mut out = Vec::new();
                while let Some(Str(w)) = seq.next_element()? {
                    out.push(w);
                }
                match out.first().map(String::as_str) {
                    Some("CMD" | "CMD-SHELL" | "NONE") => Ok(HealthTest(out)),
                    _ => Err(de::Error::custom(
                        "a healthcheck test list must start with \"CMD\", \"CMD-SHELL\" or \"NONE\"",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Small syntaxes

/// Split a command string into words like a POSIX shell (quotes and backslashes; no
/// expansion), as compose does for string `command` / `entrypoint`.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated ' in `{s}`")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => {
                                return Err(format!("unterminated \" in `{s}`"));
                            }
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated \" in `{s}`")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => word.push('\\'),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A Go-style duration (`1h2m3.5s`, `500ms`, `0`) in milliseconds, rounded up so that a
/// sub-millisecond value does not become 0 (which the engine reads as "default").
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let bad =
        || format!("invalid duration `{text}`: use a number with a unit, like 10s, 1m30s or 500ms");
    if text == "0" {
        return Ok(0);
    }
    if text.is_empty() {
        return Err(bad());
    }
    let mut total_ns: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let frac = &frac[..frac.len().min(18)];
        let frac_ns = if frac.is_empty() {
            0
        } else {
            let digits: u128 = frac.parse().map_err(|_| bad())?;
            digits * unit_ns / 10u128.pow(frac.len() as u32)
        };
        total_ns = int
            .checked_mul(unit_ns)
            .and_then(|n| n.checked_add(frac_ns))
            .and_then(|n| n.checked_add(total_ns))
            .ok_or_else(bad)?;
        rest = after;
    }
    u64::try_from(total_ns.div_ceil(1_000_000)).map_err(|_| bad())
}

fn protocol(p: &str) -> Result<String, String> {
    match p.to_ascii_lowercase().as_str() {
        p @ ("tcp" | "udp") => Ok(p.to_string()),
        _ => Err(format!(
            "port protocol `{p}` is not supported: use tcp or udp"
        )),
    }
}

fn nonzero_port(p: u16) -> Result<u16, String> {
    if p == 0 {
        Err("port 0 is not a valid container port".to_string())
    } else {
        Ok(p)
    }
}

fn port_number(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("`{s}` is not a port number (1-65535)")),
    }
}

/// `80` or `8000-8010`, as an inclusive range.
fn port_range(s: &str) -> Result<(u16, u16), String> {
    match s.split_once('-') {
        None => port_number(s).map(|p| (p, p)),
        Some((a, b)) => {
            let (a, b) = (port_number(a)?, port_number(b)?);
            if a > b {
                return Err(format!("port range `{s}` is reversed"));
            }
            Ok((a, b))
        }
    }
}

/// Short port syntax: `[[HOST_IP:][HOST_PORT]:]CONTAINER_PORT[/PROTOCOL]`, ports or ranges.
pub fn parse_port(s: &str) -> Result<Vec<PortSpec>, String> {
    let (body, proto) = s.rsplit_once('/').unwrap_or((s, "tcp"));
    let proto = protocol(proto)?;
    let (ip, host, container) = if let Some(rest) = body.strip_prefix('[') {
        let (ip, rest) = rest
            .split_once("]:")
            .ok_or_else(|| format!("invalid port `{s}`: expected [IPv6]:HOST:CONTAINER"))?;
        let (host, container) = rest
            .split_once(':')
            .ok_or_else(|| format!("invalid port `{s}`: expected [IPv6]:HOST:CONTAINER"))?;
        (Some(ip), Some(host), container)
    } else {
        let mut parts = body.rsplitn(3, ':');
        let container = parts.next().unwrap_or_default();
        let host = parts.next();
        let ip = parts.next();
        (ip, host, container)
    };
    let (c_lo, c_hi) = port_range(container).map_err(|e| format!("invalid port `{s}`: {e}"))?;
    let host_ip = ip.filter(|ip| !ip.is_empty()).map(str::to_string);
    let host = match host.filter(|h| !h.is_empty()) {
        None => None,
        Some(h) => Some(port_range(h).map_err(|e| format!("invalid port `{s}`: {e}"))?),
    };
    if let Some((h_lo, h_hi)) = host
        && h_hi - h_lo != c_hi - c_lo
    {
        return Err(format!(
            "invalid port `{s}`: the host and container ranges must have the same length"
        ));
    }
    Ok((c_lo..=c_hi)
        .enumerate()
        .map(|(i, port)| PortSpec {
            container_port: port,
            protocol: proto.clone(),
            host_ip: host_ip.clone(),
            // `i` is within the range checked above, so this stays a u16.
            host_port: host.map(|(lo, _)| lo.saturating_add(i as u16)),
        })
        .collect())
}

fn check_target(target: &str) -> Result<(), String> {
    if target.starts_with('/') {
        Ok(())
    } else {
        Err(format!("the container path `{target}` must be absolute"))
    }
}

/// Short volume syntax: `TARGET` (anonymous volume), `SOURCE:TARGET[:MODE]`. A source
/// starting with `/` or `.` is a bind mount, anything else a named volume.
pub fn parse_volume(s: &str) -> Result<RawMount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => (*source, *target, ""),
        [source, target, mode] => (*source, *target, *mode),
        _ => {
            return Err(format!(
                "invalid volume `{s}`: expected SOURCE:TARGET[:MODE]"
            ));
        }
    };
    check_target(target).map_err(|e| format!("invalid volume `{s}`: {e}"))?;
    let mut read_only = false;
    for option in mode.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => read_only = true,
            "rw" | "z" | "Z" | "cached" | "delegated" | "consistent" | "nocopy" => {}
            other => {
                return Err(format!(
                    "invalid volume `{s}`: unknown mode `{other}` (use ro or rw)"
                ));
            }
        }
    }
    let kind = if source.starts_with('/') || source.starts_with('.') {
        MountKind::Bind
    } else if source.starts_with('~') {
        return Err(format!(
            "invalid volume `{s}`: `~` cannot be expanded here; use a path relative to the compose file"
        ));
    } else {
        MountKind::Volume
    };
    Ok(RawMount {
        kind,
        source: source.to_string(),
        target: target.to_string(),
        read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(
            split_words(r#"sh -c 'echo "hi there"' "a\"b" c\ d"#).unwrap(),
            vec!["sh", "-c", "echo \"hi there\"", "a\"b", "c d"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert_eq!(split_words("''").unwrap(), vec![""]);
        assert!(split_words("'open").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s").unwrap(), 1000);
        assert_eq!(parse_duration("500ms").unwrap(), 500);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000);
        assert_eq!(parse_duration("1.5s").unwrap(), 1500);
        assert_eq!(parse_duration("10us").unwrap(), 1);
        assert_eq!(parse_duration("0").unwrap(), 0);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn ports() {
        let p = parse_port("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            p,
            vec![PortSpec {
                container_port: 80,
                protocol: "udp".into(),
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(8080)
            }]
        );
        let p = parse_port("80").unwrap();
        assert_eq!(p[0].host_port, None);
        let p = parse_port("8000-8001:80-81").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].host_port, Some(8001));
        assert_eq!(p[1].container_port, 81);
        let p = parse_port("[::1]:5432:5432").unwrap();
        assert_eq!(p[0].host_ip.as_deref(), Some("::1"));
        assert_eq!(parse_port("127.0.0.1::80").unwrap()[0].host_port, None);
        assert!(parse_port("8000-8002:80-81").is_err());
        assert!(parse_port("80/sctp").is_err());
        assert!(parse_port("x:80").is_err());
    }

    #[test]
    fn volumes() {
        let v = parse_volume("data:/var/lib/data:ro").unwrap();
        assert_eq!(v.kind, MountKind::Volume);
        assert!(v.read_only);
        assert_eq!(parse_volume("./x:/x").unwrap().kind, MountKind::Bind);
        assert_eq!(parse_volume("/abs:/x:rw,z").unwrap().kind, MountKind::Bind);
        assert_eq!(parse_volume("/cache").unwrap().source, "");
        assert!(parse_volume("data:rel").is_err());
        assert!(parse_volume("~/x:/x").is_err());
        assert!(parse_volume("a:/b:bogus").is_err());
    }

    fn vars() -> Vars {
        [("TAG".to_string(), "7".to_string())].into_iter().collect()
    }

    #[test]
    fn unknown_key_has_path() {
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
    fn full_service() {
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
    fn build_is_rejected() {
        let err = parse("services:\n  a:\n    build: .\n", "c.yml", &vars()).unwrap_err();
        assert!(err.contains("services.a.build"), "{err}");
    }
}
