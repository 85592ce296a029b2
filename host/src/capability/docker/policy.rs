//! What a docker connection allows, decided without an engine: its settings ([`Policy`]), specs
//! vetted against them, ownership; a [`Refused`] value, that [`PolicyGate`] reports and audits.

use super::OWNER_LABEL;
use crate::capability::bindings::orch::plugin::docker::{ContainerSpec, Error, MountKind};
use crate::capability::{Granter, StepSink};
use regex::Regex;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// What a docker connection allows beyond plain containers: every escalation is off unless the
/// connection's settings turn it on.
#[derive(Debug, Default)]
pub(super) struct Policy {
    /// `images`: patterns (`*` matches anything) an image must match; none allows no image.
    images: Vec<(String, Regex)>,
    /// `bind_paths`: host directories bind mounts may come from (the path or below it).
    bind_paths: Vec<PathBuf>,
    privileged: bool,
    host_network: bool,
    host_pid: bool,
    gpus: bool,
    /// `cap_add`: capabilities a container may add (`ALL` allows any).
    cap_add: Vec<String>,
}

/// Why the policy refuses a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refused {
    /// `what` would be allowed by `setting` of the connection (`` `privileged = true` ``).
    Setting { what: String, setting: String },
    /// No setting allows `what`; `how` says what to do instead.
    Never { what: String, how: String },
    /// A bind source that cannot be used on the engine's host: an error, not a denial.
    Unusable(String),
}

impl Refused {
    fn setting(what: String, setting: impl Into<String>) -> Self {
        Refused::Setting {
            what,
            setting: setting.into(),
        }
    }

    fn never(what: String, how: impl Into<String>) -> Self {
        Refused::Never {
            what,
            how: how.into(),
        }
    }
}

/// What [`Policy::vet`] needs to know beyond the spec; the engine gathers it first.
pub(super) struct Site<'a> {
    /// The step's grants: relative bind sources name a directory granted to it.
    pub granter: &'a Granter,
    /// Driver options of the volumes the spec mounts, by name (absent: no such volume yet).
    pub volumes: HashMap<String, HashMap<String, String>>,
    /// On a local engine, how a bind source's symlinks are resolved, so that the path checked
    /// is the path mounted; `None` on a remote engine (paths are checked as written).
    pub resolve: Option<fn(&Path) -> std::io::Result<PathBuf>>,
}

impl Policy {
    /// The policy a connection's settings describe; a setting of the wrong type is named.
    pub(super) fn from_settings(settings: &serde_json::Map<String, Json>) -> Result<Self, String> {
        let strings = |key: &str| -> Result<Vec<String>, String> {
            match settings.get(key) {
                None => Ok(vec![]),
                Some(Json::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(String::from)
                            .ok_or_else(|| format!("`{key}` must be a list of strings"))
                    })
                    .collect(),
                Some(_) => Err(format!("`{key}` must be a list of strings")),
            }
        };
        let flag = |key: &str| -> Result<bool, String> {
            match settings.get(key) {
                None => Ok(false),
                Some(Json::Bool(b)) => Ok(*b),
                Some(_) => Err(format!("`{key}` must be true or false")),
            }
        };
        let images = strings("images")?
            .into_iter()
            .map(|p| {
                // `*` stays within one path segment: `redis*` allows `redis:7`, never
                // `redis.attacker.tld/x` (another registry) or `library/redis/x`.
                let re = format!("^{}$", regex::escape(&p).replace(r"\*", "[^/]*"));
                Regex::new(&re)
                    .map(|r| (p.clone(), r))
                    .map_err(|e| format!("image pattern `{p}`: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            images,
            bind_paths: strings("bind_paths")?
                .iter()
                .map(|p| normalize(Path::new(p)))
                .collect(),
            privileged: flag("privileged")?,
            host_network: flag("host_network")?,
            host_pid: flag("host_pid")?,
            gpus: flag("gpus")?,
            cap_add: strings("cap_add")?,
        })
    }

    pub(super) fn image_allowed(&self, image: &str) -> bool {
        let tagged = tagged(image);
        self.images
            .iter()
            .any(|(_, re)| re.is_match(image) || re.is_match(&tagged))
    }

    /// Refuse `what` unless `image` matches one of the `images` patterns.
    pub(super) fn check_image(&self, image: &str, what: String) -> Result<(), Refused> {
        if self.image_allowed(image) {
            return Ok(());
        }
        Err(Refused::setting(
            what,
            format!("`images = [\"{image}\"]` (or a pattern matching it)"),
        ))
    }

    fn check_bind(&self, host: &Path, what: String) -> Result<(), Refused> {
        if self.bind_paths.iter().any(|a| host.starts_with(a)) {
            return Ok(());
        }
        Err(Refused::setting(
            what,
            format!("`bind_paths = [\"{}\"]` (or a parent)", host.display()),
        ))
    }

    /// Refuse `spec` unless this policy allows everything it asks for; bind sources are
    /// rewritten to the host paths that were checked.
    pub(super) fn vet(&self, spec: &mut ContainerSpec, site: &Site<'_>) -> Result<(), Refused> {
        let who = spec.name.clone();
        self.check_image(
            &spec.image,
            format!("run image `{}` (container `{who}`)", spec.image),
        )?;
        if spec.privileged && !self.privileged {
            return Err(Refused::setting(
                format!("run privileged container `{who}`"),
                "`privileged = true`",
            ));
        }
        let modes = spec
            .network_mode
            .iter()
            .chain(spec.networks.iter().map(|n| &n.network));
        for mode in modes {
            if mode == "host" && !self.host_network {
                return Err(Refused::setting(
                    format!("put container `{who}` on the host network"),
                    "`host_network = true`",
                ));
            }
            if mode.contains(':') {
                return Err(Refused::never(
                    format!("use network mode `{mode}` for container `{who}`"),
                    "no setting allows joining another namespace; use a network name",
                ));
            }
        }
        match spec.pid_mode.as_deref() {
            None | Some("") => {}
            Some("host") if self.host_pid => {}
            Some("host") => {
                return Err(Refused::setting(
                    format!("share the host PID namespace with container `{who}`"),
                    "`host_pid = true`",
                ));
            }
            Some(other) => {
                return Err(Refused::never(
                    format!("use PID mode `{other}` for container `{who}`"),
                    "only `host` (with `host_pid = true`) is supported",
                ));
            }
        }
        for cap in &spec.cap_add {
            let cap_name = cap.trim_start_matches("CAP_").to_ascii_uppercase();
            let allowed = self.cap_add.iter().any(|c| {
                c == "ALL" || c.trim_start_matches("CAP_").eq_ignore_ascii_case(&cap_name)
            });
            if !allowed {
                return Err(Refused::setting(
                    format!("add capability `{cap}` to container `{who}`"),
                    format!("`cap_add = [\"{cap_name}\"]`"),
                ));
            }
        }
        if !spec.device_requests.is_empty() && !self.gpus {
            return Err(Refused::setting(
                format!("request GPU devices for container `{who}`"),
                "`gpus = true`",
            ));
        }
        for m in spec.mounts.iter_mut() {
            match m.kind {
                MountKind::Bind => {
                    let host = site.bind_source(&m.source, &who)?;
                    self.check_bind(
                        &host,
                        format!(
                            "bind-mount host path `{}` into container `{who}`",
                            host.display()
                        ),
                    )?;
                    m.source = host.to_string_lossy().into_owned();
                }
                MountKind::Volume => {
                    // A local volume can be a bind of any host path in disguise.
                    if let Some(device) = site.volumes.get(&m.source).and_then(|o| o.get("device"))
                    {
                        self.check_bind(
                            &normalize(Path::new(device)),
                            format!(
                                "mount volume `{}` (a bind of host path `{device}`) into container `{who}`",
                                m.source
                            ),
                        )?;
                    }
                }
                MountKind::Tmpfs => {}
            }
        }
        Ok(())
    }
}

impl Site<'_> {
    /// A bind source as the engine will mount it: relative sources name a directory the step
    /// is granted (`deploy/data` for a step granted `./deploy`); on a local engine symlinks
    /// are resolved, so the path checked is the path mounted.
    fn bind_source(&self, source: &str, who: &str) -> Result<PathBuf, Refused> {
        let path = Path::new(source);
        let host = if path.is_absolute() {
            normalize(path)
        } else {
            let granted = self.granter.dirs().find_map(|(host, guest)| {
                let rest = if guest == "." {
                    Some(path)
                } else {
                    path.strip_prefix(guest).ok()
                };
                let root = normalize(host);
                rest.map(|rest| normalize(&root.join(rest)))
                    .filter(|p| p.starts_with(&root))
            });
            match granted {
                Some(p) => p,
                None => {
                    return Err(Refused::never(
                        format!("bind-mount `{source}` into container `{who}`"),
                        "grant the directory holding it to the step (`allow = [\"./dir\"]`), or use an absolute path",
                    ));
                }
            }
        };
        let Some(resolve) = self.resolve else {
            return Ok(host);
        };
        resolve(&host).map_err(|e| {
            Refused::Unusable(format!(
                "bind source `{}` of container `{who}` cannot be used: {e}",
                host.display()
            ))
        })
    }
}

/// Only what was created through `connection` may be changed through it: refuse otherwise
/// (another project's containers, or a privileged one made by hand).
pub(super) fn owned(
    labels: Option<&HashMap<String, String>>,
    connection: &str,
    what: String,
) -> Result<(), Refused> {
    if labels.and_then(|l| l.get(OWNER_LABEL)).map(String::as_str) == Some(connection) {
        return Ok(());
    }
    Err(Refused::never(
        what,
        format!(
            "orch changes only what it created through connection `{connection}` (label {OWNER_LABEL})"
        ),
    ))
}

/// `busybox` → `busybox:latest`; references with a tag or digest stay as they are.
pub(super) fn tagged(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || last.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// `a/./b/../c` → `a/c`, lexically (the path may not exist on this host).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Reports the refusals of one step on one connection: audited, and returned as the WIT error.
pub(super) struct PolicyGate {
    pub connection: String,
    pub granter: Arc<Granter>,
    pub sink: Arc<dyn StepSink>,
}

impl PolicyGate {
    /// A denial names what would allow it: a setting under the connection's table, or `how`.
    pub(super) fn refuse(&self, refused: Refused) -> Error {
        let (what, how) = match refused {
            Refused::Setting { what, setting } => (
                what,
                format!("set {setting} under [connections.{}]", self.connection),
            ),
            Refused::Never { what, how } => (what, how),
            Refused::Unusable(message) => return Error::Engine(message),
        };
        let denial = self.granter.deny_by_policy(what, how);
        self.sink.denied(&denial);
        Error::Denied(denial.to_string())
    }
}

#[cfg(test)]
mod tests;
