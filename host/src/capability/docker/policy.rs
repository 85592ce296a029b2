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
    /// `volumes`: volumes not created through this connection that containers may mount
    /// (another project's data is off limits otherwise).
    volumes: Vec<String>,
    /// `networks`: networks not created through this connection that containers may join.
    networks: Vec<String>,
    /// `ports`: where containers may publish ports; loopback only unless set.
    ports: Vec<PortRule>,
    /// `remote_binds`: let a remote (`tcp://`) engine bind-mount paths of its own host, which
    /// orch can neither see nor resolve.
    remote_binds: bool,
}

/// One `ports` entry: `IP:PORT`, `[IPv6]:PORT` or `PORT` (any interface); `*` for any IP or
/// port, `N-M` for a range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortRule {
    /// `None`: any interface.
    ip: Option<String>,
    /// `None`: any port, including one the engine picks.
    ports: Option<(u16, u16)>,
}

/// Where ports may be published when a connection says nothing: this machine only.
const DEFAULT_PORTS: [&str; 2] = ["127.0.0.1:*", "[::1]:*"];

impl PortRule {
    fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`ports` entry `{text}`: expected IP:PORT, [IPv6]:PORT or PORT (`*` for any, N-M for a range)"
            )
        };
        let (ip, port) = if let Some(rest) = text.strip_prefix('[') {
            let (ip, port) = rest.split_once("]:").ok_or_else(bad)?;
            (Some(ip), port)
        } else {
            match text.rsplit_once(':') {
                Some((ip, port)) => (Some(ip), port),
                None => (None, text),
            }
        };
        let ip = match ip {
            None | Some("*") => None,
            Some(ip) => Some(
                ip.parse::<std::net::IpAddr>()
                    .map_err(|_| bad())?
                    .to_string(),
            ),
        };
        let number = |p: &str| p.parse::<u16>().map_err(|_| bad());
        let ports = match port {
            "*" => None,
            range => match range.split_once('-') {
                Some((lo, hi)) => Some((number(lo)?, number(hi)?)),
                None => Some((number(range)?, number(range)?)),
            },
        };
        Ok(Self { ip, ports })
    }

    /// Does publishing on `ip` (empty: every interface) and `port` (none: engine's choice) fit?
    fn allows(&self, ip: &str, port: Option<u16>) -> bool {
        let ip_fits = match &self.ip {
            None => true,
            Some(rule) => {
                let ip = if ip.is_empty() { "0.0.0.0" } else { ip };
                ip.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.to_string() == *rule)
            }
        };
        let port_fits = match (self.ports, port) {
            (None, _) => true,
            (Some((lo, hi)), Some(p)) => (lo..=hi).contains(&p),
            (Some(_), None) => false,
        };
        ip_fits && port_fits
    }
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
    /// The owner label value this connection stamps (`WORKFLOW/CONNECTION`, or `owner`).
    pub owner: &'a str,
    /// The volumes the spec mounts that exist, by name.
    pub volumes: HashMap<String, VolumeFacts>,
    /// The owner label of each network the spec joins that exists, by name.
    pub networks: HashMap<String, Option<String>>,
    /// On a local engine, how a bind source's symlinks are resolved, so that the path checked
    /// is the path mounted; `None` on a remote engine (paths are checked as written).
    pub resolve: Option<fn(&Path) -> std::io::Result<PathBuf>>,
}

/// What the engine says of an existing volume.
pub(super) struct VolumeFacts {
    /// Driver options (`device` makes a local volume a bind of a host path).
    pub options: HashMap<String, String>,
    /// Its owner label, if any.
    pub owner: Option<String>,
}

/// Networks every engine has, that belong to no project.
const ENGINE_NETWORKS: [&str; 3] = ["bridge", "none", "default"];

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
            volumes: strings("volumes")?,
            networks: strings("networks")?,
            ports: match settings.get("ports") {
                None => DEFAULT_PORTS.map(String::from).to_vec(),
                Some(_) => strings("ports")?,
            }
            .iter()
            .map(|p| PortRule::parse(p))
            .collect::<Result<_, _>>()?,
            remote_binds: flag("remote_binds")?,
        })
    }

    /// Networks not created through the connection that it may use anyway.
    pub(super) fn listed_networks(&self) -> &[String] {
        &self.networks
    }

    /// Volumes not created through the connection that it may use anyway.
    pub(super) fn listed_volumes(&self) -> &[String] {
        &self.volumes
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
            // Absent: the engine will say it does not exist.
            let foreign = site
                .networks
                .get(mode)
                .filter(|owner| owner.as_deref() != Some(site.owner));
            let listed = self.networks.iter().any(|n| n == mode);
            if let Some(owner) = foreign
                && !listed
                && mode != "host"
                && !ENGINE_NETWORKS.contains(&mode.as_str())
            {
                return Err(Refused::setting(
                    format!(
                        "attach container `{who}` to network `{mode}`, which this connection did not create"
                    ),
                    or_owner(format!("`networks = [\"{mode}\"]`"), owner.as_deref()),
                ));
            }
        }
        for port in &spec.ports {
            let ip = port.host_ip.as_deref().unwrap_or_default();
            if !self.ports.iter().any(|r| r.allows(ip, port.host_port)) {
                let on = if ip.is_empty() { "0.0.0.0" } else { ip };
                let at = port.host_port.map_or("*".to_string(), |p| p.to_string());
                let setting = if on.contains(':') {
                    format!("`ports = [\"[{on}]:{at}\"]`")
                } else {
                    format!("`ports = [\"{on}:{at}\"]`")
                };
                return Err(Refused::setting(
                    format!(
                        "publish port {} of container `{who}` on {on}:{at} (only loopback by default)",
                        port.container_port
                    ),
                    setting,
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
                    if site.resolve.is_none() && !self.remote_binds {
                        return Err(Refused::setting(
                            format!(
                                "bind-mount `{}` of a remote engine's host into container `{who}` (orch cannot check paths there)",
                                m.source
                            ),
                            "`remote_binds = true`",
                        ));
                    }
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
                // Anonymous: a new, empty volume of this container's own.
                MountKind::Volume if m.source.is_empty() => {}
                MountKind::Volume => {
                    if m.source.contains('/') {
                        return Err(Refused::never(
                            format!("mount volume `{}` into container `{who}`", m.source),
                            "a volume name has no `/`; use a bind mount for a host path",
                        ));
                    }
                    // Absent: the engine creates it, empty (and unowned: refused next time;
                    // create volumes through the connection to keep them).
                    let Some(volume) = site.volumes.get(&m.source) else {
                        continue;
                    };
                    let listed = self.volumes.contains(&m.source);
                    if volume.owner.as_deref() != Some(site.owner) && !listed {
                        return Err(Refused::setting(
                            format!(
                                "mount volume `{}` into container `{who}`, which this connection did not create",
                                m.source
                            ),
                            or_owner(
                                format!("`volumes = [\"{}\"]`", m.source),
                                volume.owner.as_deref(),
                            ),
                        ));
                    }
                    // A local volume can be a bind of any host path in disguise.
                    if let Some(device) = volume.options.get("device") {
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

impl Policy {
    /// Before a start: bind sources are resolved again, so a symlink planted in a bind path
    /// between create and start (through another container) is refused, not followed.
    pub(super) fn vet_start(
        &self,
        who: &str,
        binds: &[String],
        site: &Site<'_>,
    ) -> Result<(), Refused> {
        for source in binds {
            let Some(resolve) = site.resolve else {
                if self.remote_binds {
                    continue;
                }
                return Err(Refused::setting(
                    format!(
                        "start container `{who}`, which bind-mounts `{source}` of a remote engine's host"
                    ),
                    "`remote_binds = true`",
                ));
            };
            let now = resolve(Path::new(source)).map_err(|e| {
                Refused::Unusable(format!(
                    "bind source `{source}` of container `{who}` cannot be used: {e}"
                ))
            })?;
            if now != Path::new(source) {
                return Err(Refused::never(
                    format!(
                        "start container `{who}`: its bind source `{source}` now leads to `{}`",
                        now.display()
                    ),
                    "a symlink replaced part of the path after the container was created; remove it",
                ));
            }
            self.check_bind(
                &now,
                format!("bind-mount host path `{source}` into container `{who}`"),
            )?;
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

/// Only what was created through this connection (labelled `owner`) may be changed or read
/// through it: refuse otherwise (another project's containers, or a privileged one made by hand).
pub(super) fn owned(
    labels: Option<&HashMap<String, String>>,
    owner: &str,
    what: String,
) -> Result<(), Refused> {
    if labels.and_then(|l| l.get(OWNER_LABEL)).map(String::as_str) == Some(owner) {
        return Ok(());
    }
    Err(Refused::never(
        what,
        format!(
            "orch touches only what this connection created (label {OWNER_LABEL}={owner}); connections of several workflows share with the same `owner` setting"
        ),
    ))
}

/// The setting that allows using another's object, and, when orch made it through another
/// owner, the `owner` that would make it this connection's own.
fn or_owner(setting: String, owner: Option<&str>) -> String {
    match owner {
        Some(owner) => format!("{setting} (or `owner = \"{owner}\"` to manage it as its maker)"),
        None => setting,
    }
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
    /// `what` changes the engine: refused (and audited) during a `plan`.
    /// Writes that go through are noted by kind (`docker NAME: create network`).
    pub(super) fn write(&self, what: impl FnOnce() -> String) -> Result<(), Error> {
        let what = what();
        self.granter.write(|| what.clone()).map_err(|denial| {
            self.sink.denied(&denial);
            Error::Denied(denial.to_string())
        })?;
        let kind: Vec<&str> = what.split_whitespace().take(2).collect();
        self.granter
            .note_call(format!("docker {}: {}", self.connection, kind.join(" ")));
        Ok(())
    }

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
