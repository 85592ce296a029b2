//! The value types of the compose model that accept more than one YAML shape: scalars that may
//! be text after interpolation (`retries: "3"`), and values with a short and a long form.
//!
//! `shapes!` writes each type's serde visitor from the shapes it lists; a shape it leaves out
//! is refused with serde's own "invalid type" error.

use super::syntax::{check_target, nonzero_port, parse_duration, parse_port, parse_volume};
use super::syntax::{port_number, protocol, split_words};
use super::{Condition, Dependency, MountKind, PortSpec, RawMount};
use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

/// `impl Deserialize for $ty` with a visitor that takes only the YAML shapes listed, as
/// `shape(binding) => body`; any other shape is refused ("invalid type: …, expected …").
/// Scalar shapes (`text`, `bool`, `u64`, `i64`, `f64`) bind the value and their body returns
/// `Result<$ty, E>` with `E: de::Error`; `seq` and `map` bind the access, and return
/// `Result<$ty, A::Error>`. Shapes may share a body: `u64 | i64 (v) => …`.
macro_rules! shapes {
    ($ty:ty, $expecting:expr, $($($shape:ident)|+ ($v:ident) => $body:expr),+ $(,)?) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    $($(shapes!(@visit $shape $v $body);)+)+
                }
                d.deserialize_any(V)
            }
        }
    };
    (@visit text $v:ident $body:expr) => {
        fn visit_str<E: de::Error>(self, $v: &str) -> Result<Self::Value, E> { $body }
    };
    (@visit bool $v:ident $body:expr) => {
        fn visit_bool<E: de::Error>(self, $v: bool) -> Result<Self::Value, E> { $body }
    };
    (@visit u64 $v:ident $body:expr) => {
        fn visit_u64<E: de::Error>(self, $v: u64) -> Result<Self::Value, E> { $body }
    };
    (@visit i64 $v:ident $body:expr) => {
        fn visit_i64<E: de::Error>(self, $v: i64) -> Result<Self::Value, E> { $body }
    };
    (@visit f64 $v:ident $body:expr) => {
        fn visit_f64<E: de::Error>(self, $v: f64) -> Result<Self::Value, E> { $body }
    };
    (@visit seq $v:ident $body:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, $v: A) -> Result<Self::Value, A::Error> { $body }
    };
    (@visit map $v:ident $body:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, $v: A) -> Result<Self::Value, A::Error> { $body }
    };
}

/// A sequence read as a list of `T`.
fn list<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(seq: A) -> Result<Vec<T>, A::Error> {
    Vec::deserialize(SeqAccessDeserializer::new(seq))
}

/// A sequence of scalars read as text.
fn texts<'de, A: SeqAccess<'de>>(seq: A) -> Result<Vec<String>, A::Error> {
    list(seq).map(strings)
}

fn strings(list: Vec<Str>) -> Vec<String> {
    list.into_iter().map(|Str(s)| s).collect()
}

/// A mapping read as its entries in order, the keys as text.
fn entries<'de, V: Deserialize<'de>, A: MapAccess<'de>>(
    mut map: A,
) -> Result<Vec<(String, V)>, A::Error> {
    let mut out = Vec::new();
    while let Some((Str(key), value)) = map.next_entry()? {
        out.push((key, value));
    }
    Ok(out)
}

/// Entries by name, a later one replacing an earlier one. Inserted one by one: `collect`
/// would sort them first, and that sort costs ~10 KB of wasm for each value type.
fn by_name<V>(entries: impl Iterator<Item = (String, V)>) -> BTreeMap<String, V> {
    let mut map = BTreeMap::new();
    map.extend(entries);
    map
}

/// A mapping read as the long form `T` (which rejects unknown keys).
fn long<'de, T: Deserialize<'de>, A: MapAccess<'de>>(map: A) -> Result<T, A::Error> {
    T::deserialize(MapAccessDeserializer::new(map))
}

// ---------------------------------------------------------------------------------------------
// Scalars

/// A scalar read as text: `user: 1000` means "1000".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str(pub String);

shapes!(Str, "a string", text | bool | u64 | i64 | f64 (v) => Ok(Str(v.to_string())));

/// A boolean that may have come out of interpolation as "true" / "false".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bool(pub bool);

const TRUE_OR_FALSE: &str = "true or false";

shapes!(Bool, TRUE_OR_FALSE,
    bool(v) => Ok(Bool(v)),
    text(v) => match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(Bool(true)),
        "false" | "0" => Ok(Bool(false)),
        _ => Err(E::invalid_value(Unexpected::Str(v), &TRUE_OR_FALSE)),
    },
);

/// An unsigned number that may have come out of interpolation as text. Generic, so its
/// visitor is written out (`shapes!` takes concrete types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Num<T>(pub T);

impl<'de, T: TryFrom<u64> + FromStr> Deserialize<'de> for Num<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T: TryFrom<u64> + FromStr> Visitor<'_> for V<T> {
            type Value = Num<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num<T>, E> {
                let bad = || E::invalid_value(Unexpected::Unsigned(v), &self);
                T::try_from(v).map(Num).map_err(|_| bad())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num<T>, E> {
                let n =
                    u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))?;
                self.visit_u64(n)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num<T>, E> {
                let bad = || E::invalid_value(Unexpected::Str(v), &self);
                v.trim().parse().map(Num).map_err(|_| bad())
            }
        }
        d.deserialize_any(V(PhantomData))
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
        match text.trim() {
            "all" => Ok(Count(-1)),
            n => match n.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(Count(n)),
                _ => Err(de::Error::custom(format!(
                    "count must be a non-negative number or `all`, got `{text}`"
                ))),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values with a short and a long form

/// `command` / `entrypoint`: a list, or a string split like a shell would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Words(pub Vec<String>);

shapes!(Words, "a string or a list of strings",
    text(v) => split_words(v).map(Words).map_err(E::custom),
    seq(seq) => texts(seq).map(Words),
);

/// `environment` / `labels`: a mapping, or a list of `KEY=VALUE`. A value of `None` (a bare
/// `KEY` or `KEY: null`) means "take it from the environment" in compose.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValues(pub Vec<(String, Option<String>)>);

shapes!(KeyValues, "a mapping or a list of KEY=VALUE strings",
    map(map) => {
        let listed = entries::<Option<Str>, _>(map)?.into_iter();
        Ok(KeyValues(listed.map(|(k, v)| (k, v.map(|Str(v)| v))).collect()))
    },
    seq(seq) => Ok(KeyValues(texts(seq)?.into_iter().map(key_value).collect())),
);

/// `KEY=VALUE`, or a bare `KEY` (no value).
fn key_value(item: String) -> (String, Option<String>) {
    match item.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (item, None),
    }
}

/// One `env_file`: a path, and whether a missing file is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    pub path: String,
    pub required: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongEnvFile {
    path: Str,
    required: Option<Bool>,
}

shapes!(EnvFile, "a path or a mapping with `path` and `required`",
    text(v) => Ok(EnvFile { path: v.to_string(), required: true }),
    map(map) => {
        let LongEnvFile { path, required } = long(map)?;
        Ok(EnvFile { path: path.0, required: required.is_none_or(|b| b.0) })
    },
);

/// `env_file`: a path, or a list of paths or `{path, required}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFiles(pub Vec<EnvFile>);

shapes!(EnvFiles, "a path or a list of paths",
    text(v) => Ok(EnvFiles(vec![EnvFile { path: v.to_string(), required: true }])),
    seq(seq) => list(seq).map(EnvFiles),
);

/// One entry of `ports`; a short-syntax range expands to several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortItem(pub Vec<PortSpec>);

shapes!(PortItem, "a port like \"8080:80\" or a mapping with `target`",
    text(v) => parse_port(v).map(PortItem).map_err(E::custom),
    u64 | i64 (v) => parse_port(&v.to_string()).map(PortItem).map_err(E::custom),
    map(map) => long::<LongPort, _>(map)?.try_into().map_err(de::Error::custom),
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongPort {
    target: Num<u16>,
    published: Option<Str>,
    host_ip: Option<Str>,
    protocol: Option<Str>,
}

impl TryFrom<LongPort> for PortItem {
    type Error = String;
    fn try_from(long: LongPort) -> Result<Self, String> {
        let protocol = protocol(long.protocol.as_ref().map_or("tcp", |p| p.0.as_str()))?;
        let container_port = nonzero_port(long.target.0)?;
        let host_port = match long.published.as_ref().map(|p| p.0.trim()) {
            None | Some("") => None,
            Some(p) => Some(port_number(p)?),
        };
        Ok(PortItem(vec![PortSpec {
            container_port,
            protocol,
            host_ip: long.host_ip.map(|ip| ip.0).filter(|ip| !ip.is_empty()),
            host_port,
        }]))
    }
}

/// One entry of a service's `volumes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeItem(pub RawMount);

shapes!(VolumeItem,
    "a volume like \"data:/var/lib/data\" or a mapping with `type`, `source` and `target`",
    text(v) => parse_volume(v).map(VolumeItem).map_err(E::custom),
    map(map) => long::<LongVolume, _>(map)?.try_into().map_err(de::Error::custom),
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongVolume {
    #[serde(rename = "type")]
    kind: Str,
    source: Option<Str>,
    target: Str,
    read_only: Option<Bool>,
}

impl TryFrom<LongVolume> for VolumeItem {
    type Error = String;
    fn try_from(long: LongVolume) -> Result<Self, String> {
        let kind = match long.kind.0.as_str() {
            "bind" => MountKind::Bind,
            "volume" => MountKind::Volume,
            "tmpfs" => MountKind::Tmpfs,
            other => {
                return Err(format!(
                    "volume type `{other}` is not supported: use bind, volume or tmpfs"
                ));
            }
        };
        let source = long.source.map(|s| s.0).unwrap_or_default();
        if kind == MountKind::Bind && source.is_empty() {
            return Err("a bind mount needs a `source`".to_string());
        }
        check_target(&long.target.0)?;
        Ok(VolumeItem(RawMount {
            kind,
            source,
            target: long.target.0,
            read_only: long.read_only.is_some_and(|b| b.0),
        }))
    }
}

/// A service's `networks`: a list of names, or a mapping name → `{aliases}` (or null).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceNetworks(pub BTreeMap<String, Vec<String>>);

shapes!(ServiceNetworks, "a list of network names or a mapping of network → {aliases}",
    seq(seq) => Ok(ServiceNetworks(by_name(texts(seq)?.into_iter().map(|n| (n, Vec::new()))))),
    map(map) => {
        let listed = entries::<Option<Attachment>, _>(map)?.into_iter();
        let aliases = |a: Option<Attachment>| a.map(|a| strings(a.aliases)).unwrap_or_default();
        Ok(ServiceNetworks(by_name(listed.map(|(name, a)| (name, aliases(a))))))
    },
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Attachment {
    #[serde(default)]
    aliases: Vec<Str>,
}

/// `depends_on`: a list of names (condition `service_started`), or a mapping name →
/// `{condition, required, restart}`.
#[derive(Debug, Clone, Default)]
pub struct DependsOn(pub BTreeMap<String, Dependency>);

shapes!(DependsOn, "a list of services or a mapping of service → {condition}",
    seq(seq) => {
        let started = |name| (name, LongDependency::default().into());
        Ok(DependsOn(by_name(texts(seq)?.into_iter().map(started))))
    },
    map(map) => {
        let listed = entries::<LongDependency, _>(map)?.into_iter();
        Ok(DependsOn(by_name(listed.map(|(name, d)| (name, d.into())))))
    },
);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LongDependency {
    #[serde(default)]
    condition: Condition,
    required: Option<Bool>,
    restart: Option<Bool>,
}

impl From<LongDependency> for Dependency {
    fn from(long: LongDependency) -> Self {
        Dependency {
            condition: long.condition,
            required: long.required.is_none_or(|b| b.0),
            restart: long.restart.is_some_and(|b| b.0),
        }
    }
}

/// `healthcheck.test`: a string runs in a shell (`CMD-SHELL`); a list is passed as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTest(pub Vec<String>);

shapes!(HealthTest, "a shell command string or a list starting with CMD, CMD-SHELL or NONE",
    text(v) => Ok(HealthTest(vec!["CMD-SHELL".to_string(), v.to_string()])),
    seq(seq) => {
        let test = texts(seq)?;
        match test.first().map(String::as_str) {
            Some("CMD" | "CMD-SHELL" | "NONE") => Ok(HealthTest(test)),
            _ => Err(de::Error::custom(
                "a healthcheck test list must start with \"CMD\", \"CMD-SHELL\" or \"NONE\"",
            )),
        }
    },
);

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: for<'de> Deserialize<'de>>(yaml: &str) -> Result<T, String> {
        serde_norway::from_str(yaml).map_err(|e| e.to_string())
    }

    /// `yaml` is refused as a `T` with an error starting `message`.
    fn refused<T: for<'de> Deserialize<'de> + fmt::Debug>(yaml: &str, message: &str) {
        let err = read::<T>(yaml).unwrap_err();
        assert!(err.starts_with(message), "{yaml}: {err}");
    }

    #[test]
    fn scalars_may_be_text_but_other_shapes_are_refused() {
        assert_eq!(read::<Str>("1000").unwrap(), Str("1000".into()));
        assert_eq!(read::<Str>("true").unwrap(), Str("true".into()));
        assert_eq!(read::<Bool>("\"TRUE\"").unwrap(), Bool(true));
        assert_eq!(read::<Bool>("\"0\"").unwrap(), Bool(false));
        assert_eq!(read::<Num<u32>>("\" 3 \"").unwrap(), Num(3));
        refused::<Bool>("1", "invalid type: integer `1`, expected true or false");
        refused::<Bool>(
            "yes",
            "invalid value: string \"yes\", expected true or false",
        );
        refused::<Num<u16>>(
            "70000",
            "invalid value: integer `70000`, expected a non-negative integer",
        );
        refused::<Str>("[a]", "invalid type: sequence, expected a string");
    }

    #[test]
    fn short_and_long_forms_read_alike() {
        let short: DependsOn = read("[db]").unwrap();
        let long: DependsOn = read("{db: {condition: service_started}}").unwrap();
        assert_eq!(short.0["db"].condition, long.0["db"].condition);
        assert_eq!(short.0["db"].required, long.0["db"].required);
        let files: EnvFiles = read("[a.env, {path: b.env, required: false}]").unwrap();
        let required = EnvFile {
            path: "a.env".into(),
            required: true,
        };
        assert_eq!(files.0[0], required);
        assert!(!files.0[1].required);
        refused::<Words>(
            "5",
            "invalid type: integer `5`, expected a string or a list of strings",
        );
        refused::<HealthTest>("[curl]", "a healthcheck test list must start with \"CMD\"");
    }
}
