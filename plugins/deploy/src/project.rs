//! From a compose file to what the engine should have: the active services in dependency
//! order, each with the exact container it should run, its config hash, and the networks and
//! volumes they use. Everything here is plain data and file reads, so an invalid project is
//! reported before any engine call.

use crate::compose::{self, Condition, KeyValues, MountKind, PortSpec, RawCompose, RawService};
use crate::interpolate::{self, Vars};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

pub const PROJECT: &str = "com.docker.compose.project";
pub const SERVICE: &str = "com.docker.compose.service";
pub const NUMBER: &str = "com.docker.compose.container-number";
pub const ONEOFF: &str = "com.docker.compose.oneoff";
pub const HASH: &str = "com.docker.compose.config-hash";
pub const DEPENDS_ON: &str = "com.docker.compose.depends_on";
pub const NETWORK: &str = "com.docker.compose.network";
pub const VOLUME: &str = "com.docker.compose.volume";
/// The image id the container was created from, as compose records it; compared after a pull
/// so that a moved tag recreates the container.
pub const IMAGE: &str = "com.docker.compose.image";
/// Short per-part hashes, so that `plan` can say which part of a service changed.
pub const PARTS: &str = "orch.deploy.config-parts";

/// What the step asks for, besides the engine connection.
pub struct Request<'a> {
    pub project: &'a str,
    pub file: &'a str,
    pub profiles: &'a [String],
    pub env: &'a BTreeMap<String, String>,
}

/// A converged project, as the engine should have it.
#[derive(Debug)]
pub struct Project {
    pub name: String,
    /// Networks used by active services.
    pub networks: Vec<Shared>,
    /// Named volumes used by active services.
    pub volumes: Vec<Shared>,
    /// Active services, every one after the services it depends on.
    pub services: Vec<Service>,
}

/// A network or volume.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The compose key, e.g. `default` or `pgdata`.
    pub key: String,
    /// The engine name, e.g. `datalab_default`.
    pub name: String,
    /// Created elsewhere: used by name, never created or removed.
    pub external: bool,
}

#[derive(Debug)]
pub struct Service {
    pub name: String,
    pub spec: Spec,
    /// Active dependencies with their conditions.
    pub depends_on: Vec<(String, Condition)>,
    /// An init service: explicitly `restart: "no"`, and named `*-init` or awaited by a
    /// dependant with `service_completed_successfully`. Its exit 0 is done, not down.
    pub one_shot: bool,
    /// Hex sha256 of the canonical JSON of `spec`.
    pub hash: String,
    /// Per-part short hashes, keyed by compose field name.
    pub parts: BTreeMap<String, String>,
}

/// Everything that goes into creating the container except the hash labels. Fields are named
/// and ordered like compose so that the JSON is canonical and a changed part reads naturally.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Spec {
    pub container_name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// Sorted "KEY=value".
    pub environment: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    pub volumes: Vec<MountSpec>,
    /// Sorted by network name.
    pub networks: Vec<Attachment>,
    pub restart: String,
    pub healthcheck: Option<Health>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub privileged: bool,
    pub network_mode: Option<String>,
    pub pid: Option<String>,
    pub cap_add: Vec<String>,
    pub devices: Vec<Device>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: MountKind,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub network: String,
    pub aliases: Vec<String>,
}

/// Durations in milliseconds; 0 lets the engine use its default.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub driver: String,
    pub count: i64,
    pub device_ids: Vec<String>,
    pub capabilities: Vec<String>,
}

/// Compose project names: lowercase letters, digits, `_` and `-`, starting with a letter or
/// digit; they become part of container, network and volume names.
pub fn check_project_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid project name `{}`: use [a-z0-9][a-z0-9_-]*",
            name.escape_debug()
        ))
    }
}

/// Read, interpolate, parse and resolve a compose project. `read` reads a file as the guest
/// sees it (std::fs in the plugin, a map in tests). Returns warnings to log.
pub fn load(
    req: &Request,
    read: &dyn Fn(&Path) -> io::Result<String>,
) -> Result<(Project, Vec<String>), String> {
    check_project_name(req.project)?;
    let file = Path::new(req.file);
    let dir = file.parent().unwrap_or(Path::new(""));
    let text = read(file).map_err(|e| {
        format!(
            "cannot read the compose file `{}`: {e} (is its directory granted in the step's `allow`?)",
            req.file
        )
    })?;
    let dotenv_path = dir.join(".env");
    let mut vars = match read(&dotenv_path) {
        Ok(text) => interpolate::parse_dotenv(&text)
            .map_err(|e| format!("{}: {e}", dotenv_path.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vars::new(),
        Err(e) => return Err(format!("cannot read `{}`: {e}", dotenv_path.display())),
    };
    vars.extend(req.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let (raw, report) = compose::parse(&text, req.file, &vars)?;
    let mut warnings: Vec<String> = report
        .unset
        .iter()
        .map(|v| format!("the `{v}` variable is not set: defaulting to a blank string"))
        .collect();
    if raw.version.is_some() {
        warnings.push(format!("{}: `version` is obsolete and ignored", req.file));
    }
    if let Some(name) = raw.name.as_ref().filter(|n| n.0 != req.project) {
        warnings.push(format!(
            "{}: `name: {}` is ignored: the project is `{}`",
            req.file, name.0, req.project
        ));
    }
    let ctx = Context {
        project: req.project,
        file: req.file,
        dir,
        vars: &vars,
        read,
    };
    let project = resolve(&ctx, raw, req.profiles, &mut warnings)?;
    Ok((project, warnings))
}

struct Context<'a> {
    project: &'a str,
    file: &'a str,
    dir: &'a Path,
    vars: &'a Vars,
    read: &'a dyn Fn(&Path) -> io::Result<String>,
}

impl Context<'_> {
    fn err(&self, path: &str, message: impl std::fmt::Display) -> String {
        format!("{}: {path}: {message}", self.file)
    }
}

/// Order services so that each comes after everything it depends on; a cycle is an error
/// that shows it (`a -> b -> a`). Ties are broken by name, so the order is stable.
pub fn toposort(graph: &BTreeMap<String, Vec<String>>) -> Result<Vec<String>, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, Vec<String>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        order: &mut Vec<String>,
    ) -> Result<(), String> {
        match marks.get(node) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle: Vec<&str> = stack[start..].to_vec();
                cycle.push(node);
                return Err(format!("depends_on cycle: {}", cycle.join(" -> ")));
            }
            None => {}
        }
        let Some(deps) = graph.get(node) else {
            return Ok(());
        };
        marks.insert(node, Mark::Visiting);
        stack.push(node);
        for dep in deps {
            visit(dep, graph, marks, stack, order)?;
        }
        stack.pop();
        marks.insert(node, Mark::Done);
        order.push(node.to_string());
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut stack = Vec::new();
    let mut order = Vec::new();
    for node in graph.keys() {
        visit(node, graph, &mut marks, &mut stack, &mut order)?;
    }
    Ok(order)
}

fn resolve(
    ctx: &Context,
    raw: RawCompose,
    profiles: &[String],
    warnings: &mut Vec<String>,
) -> Result<Project, String> {
    let RawCompose {
        services,
        networks,
        volumes,
        ..
    } = raw;

    // Top-level networks and volumes: engine names, drivers we can honour.
    let mut net_defs = shared_defs(ctx, "networks", &networks, "bridge")?;
    if !net_defs.contains_key("default") {
        net_defs.insert(
            "default".into(),
            Shared {
                key: "default".into(),
                name: format!("{}_default", ctx.project),
                external: false,
            },
        );
    }
    let vol_defs = shared_defs(ctx, "volumes", &volumes, "local")?;

    // Profiles, dependencies, order.
    let active: BTreeSet<&str> = services
        .iter()
        .filter(|(_, s)| {
            s.profiles.is_empty() || s.profiles.iter().any(|p| profiles.contains(&p.0))
        })
        .map(|(name, _)| name.as_str())
        .collect();
    for p in profiles {
        if !services
            .values()
            .any(|s| s.profiles.iter().any(|sp| sp.0 == *p))
        {
            warnings.push(format!("no service has the profile `{p}`"));
        }
    }
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, svc) in &services {
        let deps = svc.depends_on.as_ref().map(|d| &d.0);
        for dep in deps.into_iter().flat_map(|d| d.keys()) {
            if !services.contains_key(dep) {
                return Err(ctx.err(
                    &format!("services.{name}.depends_on"),
                    format!("service `{dep}` is not defined"),
                ));
            }
        }
        graph.insert(
            name.clone(),
            deps.into_iter().flat_map(|d| d.keys().cloned()).collect(),
        );
    }
    let order = toposort(&graph).map_err(|e| ctx.err("services", e))?;

    let mut out = Vec::new();
    for name in order.iter().filter(|n| active.contains(n.as_str())) {
        let Some(svc) = services.get(name) else {
            continue;
        };
        let mut depends_on = Vec::new();
        for (dep, d) in svc.depends_on.iter().flat_map(|d| &d.0) {
            if active.contains(dep.as_str()) {
                depends_on.push((dep.clone(), d.condition));
            } else if d.required {
                let dep_profiles: Vec<&str> = services
                    .get(dep)
                    .map(|s| s.profiles.iter().map(|p| p.0.as_str()).collect())
                    .unwrap_or_default();
                return Err(ctx.err(
                    &format!("services.{name}.depends_on"),
                    format!(
                        "service `{name}` depends on `{dep}`, which is not active: add one of its profiles ({}) to `profiles`, or mark the dependency `required: false`",
                        dep_profiles.join(", ")
                    ),
                ));
            }
        }
        let depends_label = svc
            .depends_on
            .iter()
            .flat_map(|d| &d.0)
            .filter(|(dep, _)| active.contains(dep.as_str()))
            .map(|(dep, d)| format!("{dep}:{}:{}", d.condition.as_str(), d.restart))
            .collect::<Vec<_>>()
            .join(",");
        let spec = service_spec(
            ctx,
            name,
            svc,
            &net_defs,
            &vol_defs,
            &depends_label,
            warnings,
        )?;
        let (hash, parts) = hashes(&spec)?;
        out.push(Service {
            name: name.clone(),
            one_shot: svc.restart.as_ref().is_some_and(|r| r.0 == "no"),
            spec,
            depends_on,
            hash,
            parts,
        });
    }

    // An init service is one something waits on to finish (or named so); any other
    // `restart: "no"` service is expected to keep running.
    let awaited: BTreeSet<String> = out
        .iter()
        .flat_map(|s| &s.depends_on)
        .filter(|(_, c)| *c == Condition::CompletedSuccessfully)
        .map(|(dep, _)| dep.clone())
        .collect();
    for svc in &mut out {
        svc.one_shot &= svc.name.ends_with("-init") || awaited.contains(&svc.name);
    }

    // Only what active services use is created.
    let mut used_nets = BTreeSet::new();
    let mut used_vols = BTreeSet::new();
    for svc in &out {
        for a in &svc.spec.networks {
            used_nets.insert(a.network.clone());
        }
        for m in &svc.spec.volumes {
            if m.kind == MountKind::Volume && !m.source.is_empty() {
                used_vols.insert(m.source.clone());
            }
        }
    }
    Ok(Project {
        name: ctx.project.to_string(),
        networks: net_defs
            .into_values()
            .filter(|n| used_nets.contains(&n.name))
            .collect(),
        volumes: vol_defs
            .into_values()
            .filter(|v| used_vols.contains(&v.name))
            .collect(),
        services: out,
    })
}

/// Engine names of the top-level `section` (networks or volumes); only `driver` (or none) is
/// supported unless the object is external.
fn shared_defs(
    ctx: &Context,
    section: &str,
    defs: &BTreeMap<String, Option<compose::RawShared>>,
    driver: &str,
) -> Result<BTreeMap<String, Shared>, String> {
    let mut out = BTreeMap::new();
    for (key, def) in defs {
        let def = def.as_ref();
        let external = is_external(def.and_then(|d| d.external));
        let wanted = def.and_then(|d| d.driver.as_ref()).map(|d| d.0.as_str());
        if wanted.is_some_and(|w| w != driver) && !external {
            return Err(ctx.err(
                &format!("{section}.{key}.driver"),
                format!("only the `{driver}` driver is supported"),
            ));
        }
        let name = shared_name(
            ctx.project,
            key,
            def.and_then(|d| d.name.as_ref()),
            external,
        );
        out.insert(
            key.clone(),
            Shared {
                key: key.clone(),
                name,
                external,
            },
        );
    }
    Ok(out)
}

fn is_external(flag: Option<compose::Bool>) -> bool {
    flag.is_some_and(|b| b.0)
}

fn shared_name(project: &str, key: &str, name: Option<&compose::Str>, external: bool) -> String {
    match name {
        Some(n) => n.0.clone(),
        None if external => key.to_string(),
        None => format!("{project}_{key}"),
    }
}

/// `dir/rel` with `.` and `..` removed lexically; the host maps the guest path to the host's.
pub fn join_path(dir: &Path, rel: &str) -> String {
    let joined = dir.join(rel);
    let mut parts: Vec<String> = Vec::new();
    let mut absolute = false;
    for c in joined.components() {
        match c {
            std::path::Component::RootDir => absolute = true,
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => match parts.last() {
                Some(last) if last != ".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push("..".into()),
            },
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            std::path::Component::Prefix(p) => {
                parts.push(p.as_os_str().to_string_lossy().into_owned())
            }
        }
    }
    let body = parts.join("/");
    match (absolute, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

fn key_values(kv: Option<&KeyValues>) -> impl Iterator<Item = &(String, Option<String>)> {
    kv.into_iter().flat_map(|kv| kv.0.iter())
}

fn service_spec(
    ctx: &Context,
    name: &str,
    svc: &RawService,
    nets: &BTreeMap<String, Shared>,
    vols: &BTreeMap<String, Shared>,
    depends_label: &str,
    warnings: &mut Vec<String>,
) -> Result<Spec, String> {
    let at = |field: &str| format!("services.{name}.{field}");
    let image = svc.image.0.trim().to_string();
    if image.is_empty() {
        return Err(ctx.err(&at("image"), "the image is empty"));
    }

    // Environment: env files in order, then `environment`; a bare KEY takes the variable.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (i, f) in svc.env_file.iter().flat_map(|f| &f.0).enumerate() {
        let path = ctx.dir.join(&f.path);
        match (ctx.read)(&path) {
            Ok(text) => {
                let vars = interpolate::parse_dotenv(&text).map_err(|e| {
                    ctx.err(
                        &format!("{}[{i}]", at("env_file")),
                        format!("{}: {e}", path.display()),
                    )
                })?;
                env.extend(vars);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && !f.required => {}
            Err(e) => {
                return Err(ctx.err(
                    &format!("{}[{i}]", at("env_file")),
                    format!("cannot read `{}`: {e}", path.display()),
                ));
            }
        }
    }
    for (k, v) in key_values(svc.environment.as_ref()) {
        match v.clone().or_else(|| ctx.vars.get(k).cloned()) {
            Some(v) => {
                env.insert(k.clone(), v);
            }
            None => {
                env.remove(k);
            }
        }
    }

    // Labels: the service's own, then the compose ones (which win).
    let mut labels: BTreeMap<String, String> = key_values(svc.labels.as_ref())
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect();
    for (k, v) in [
        (PROJECT, ctx.project),
        (SERVICE, name),
        (NUMBER, "1"),
        (ONEOFF, "False"),
        (DEPENDS_ON, depends_label),
    ] {
        labels.insert(k.into(), v.into());
    }

    // Volumes: named ones must be declared; relative binds resolve against the compose dir.
    let mut mounts = Vec::new();
    for (i, item) in svc.volumes.iter().enumerate() {
        let m = &item.0;
        let source = match m.kind {
            MountKind::Volume if m.source.is_empty() => String::new(),
            MountKind::Volume => match vols.get(&m.source) {
                Some(v) => v.name.clone(),
                None => {
                    return Err(ctx.err(
                        &format!("{}[{i}]", at("volumes")),
                        format!(
                            "volume `{}` is not declared in the top-level `volumes` (a bind mount starts with `/` or `.`)",
                            m.source
                        ),
                    ));
                }
            },
            MountKind::Bind if m.source.starts_with('/') => join_path(Path::new("/"), &m.source),
            MountKind::Bind => join_path(ctx.dir, &m.source),
            MountKind::Tmpfs => String::new(),
        };
        mounts.push(MountSpec {
            kind: m.kind,
            source,
            target: m.target.clone(),
            read_only: m.read_only,
        });
    }

    // Networks: declared ones (or `default`), each with the service name as an alias.
    let network_mode = svc.network_mode.as_ref().map(|m| m.0.clone());
    let mut attachments = Vec::new();
    match &network_mode {
        Some(mode) => {
            if svc.networks.is_some() {
                return Err(ctx.err(
                    &at("network_mode"),
                    "`network_mode` and `networks` cannot be combined",
                ));
            }
            if mode.starts_with("service:") || mode.starts_with("container:") {
                return Err(ctx.err(
                    &at("network_mode"),
                    format!("`{mode}` is not supported: use host, none, bridge or a network name"),
                ));
            }
        }
        None => {
            let default = BTreeMap::from([("default".to_string(), Vec::new())]);
            let listed = svc.networks.as_ref().map_or(&default, |n| &n.0);
            for (key, aliases) in listed {
                let Some(net) = nets.get(key) else {
                    return Err(ctx.err(
                        &at("networks"),
                        format!("network `{key}` is not declared in the top-level `networks`"),
                    ));
                };
                let mut all: BTreeSet<String> = aliases.iter().cloned().collect();
                all.insert(name.to_string());
                attachments.push(Attachment {
                    network: net.name.clone(),
                    aliases: all.into_iter().collect(),
                });
            }
            attachments.sort_by(|a, b| a.network.cmp(&b.network));
        }
    }

    let restart = match svc.restart.as_ref().map(|r| r.0.as_str()) {
        None => "no".to_string(),
        Some(r @ ("no" | "always" | "unless-stopped" | "on-failure")) => r.to_string(),
        // The host interface has no retry count: keep the policy, say what is dropped.
        Some(r)
            if r.strip_prefix("on-failure:")
                .is_some_and(|n| n.parse::<u32>().is_ok()) =>
        {
            warnings.push(ctx.err(
                &at("restart"),
                format!(
                    "`{r}`: the retry count is not supported, using `on-failure` without a limit"
                ),
            ));
            "on-failure".to_string()
        }
        Some(r) => {
            return Err(ctx.err(
                &at("restart"),
                format!("`{r}` is not a restart policy: use \"no\", always, on-failure[:N] or unless-stopped"),
            ));
        }
    };

    let healthcheck = svc.healthcheck.as_ref().map(|h| {
        let disabled = h.disable.is_some_and(|d| d.0);
        Health {
            test: if disabled {
                vec!["NONE".to_string()]
            } else {
                h.test.as_ref().map(|t| t.0.clone()).unwrap_or_default()
            },
            interval_ms: h.interval.map_or(0, |d| d.0),
            timeout_ms: h.timeout.map_or(0, |d| d.0),
            retries: h.retries.map_or(0, |r| r.0),
            start_period_ms: h.start_period.map_or(0, |d| d.0),
        }
    });

    let pid = svc.pid.as_ref().map(|p| p.0.clone());
    if let Some(p) = pid.as_deref().filter(|p| *p != "host") {
        return Err(ctx.err(&at("pid"), format!("`{p}` is not supported: only `host`")));
    }

    let mut devices = Vec::new();
    let reservations = svc
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.reservations.as_ref());
    for (i, d) in reservations.iter().flat_map(|r| &r.devices).enumerate() {
        let path = format!("{}[{i}]", at("deploy.resources.reservations.devices"));
        if d.capabilities.is_empty() {
            return Err(ctx.err(&path, "`capabilities` is required, e.g. [gpu]"));
        }
        if d.count.is_some() && !d.device_ids.is_empty() {
            return Err(ctx.err(&path, "`count` and `device_ids` cannot be combined"));
        }
        devices.push(Device {
            driver: d.driver.as_ref().map(|s| s.0.clone()).unwrap_or_default(),
            // Compose: with neither count nor device_ids, all devices.
            count: match d.count {
                Some(c) => c.0,
                None if d.device_ids.is_empty() => -1,
                None => 0,
            },
            device_ids: d.device_ids.iter().map(|s| s.0.clone()).collect(),
            capabilities: d.capabilities.iter().map(|s| s.0.clone()).collect(),
        });
    }

    Ok(Spec {
        container_name: svc
            .container_name
            .as_ref()
            .map_or_else(|| format!("{}-{name}-1", ctx.project), |n| n.0.clone()),
        image,
        command: svc.command.as_ref().map(|w| w.0.clone()),
        entrypoint: svc.entrypoint.as_ref().map(|w| w.0.clone()),
        environment: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        labels,
        ports: svc.ports.iter().flat_map(|p| p.0.iter().cloned()).collect(),
        volumes: mounts,
        networks: attachments,
        restart,
        healthcheck,
        user: svc.user.as_ref().map(|s| s.0.clone()),
        working_dir: svc.working_dir.as_ref().map(|s| s.0.clone()),
        hostname: svc.hostname.as_ref().map(|s| s.0.clone()),
        privileged: svc.privileged.is_some_and(|b| b.0),
        network_mode,
        pid,
        cap_add: svc.cap_add.iter().map(|s| s.0.clone()).collect(),
        devices,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The config hash of a spec and the short hash of each of its parts.
pub fn hashes(spec: &Spec) -> Result<(String, BTreeMap<String, String>), String> {
    let json = serde_json::to_string(spec).map_err(|e| format!("hashing the config: {e}"))?;
    let hash = hex(&Sha256::digest(json.as_bytes()));
    let value = serde_json::to_value(spec).map_err(|e| format!("hashing the config: {e}"))?;
    let mut parts = BTreeMap::new();
    if let serde_json::Value::Object(fields) = value {
        for (k, v) in fields {
            let digest = Sha256::digest(v.to_string().as_bytes());
            parts.insert(k, hex(&digest[..4]));
        }
    }
    Ok((hash, parts))
}

/// The value of the [`PARTS`] label.
pub fn parts_label(parts: &BTreeMap<String, String>) -> String {
    parts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Which parts differ between a container's [`PARTS`] label and a new spec; empty when the
/// label is missing (a container made by another tool) or unreadable.
pub fn changed_parts(old_label: Option<&str>, new: &BTreeMap<String, String>) -> Vec<String> {
    let Some(old) = old_label else {
        return Vec::new();
    };
    let old: BTreeMap<&str, &str> = old.split(',').filter_map(|p| p.split_once('=')).collect();
    if old.is_empty() {
        return Vec::new();
    }
    let keys: BTreeSet<&str> = old
        .keys()
        .copied()
        .chain(new.keys().map(String::as_str))
        .collect();
    keys.into_iter()
        .filter(|k| old.get(k).copied() != new.get(*k).map(String::as_str))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn topo() {
        let order = toposort(&graph(&[
            ("web", &["db", "init"]),
            ("init", &["db"]),
            ("db", &[]),
        ]))
        .unwrap();
        assert_eq!(order, vec!["db", "init", "web"]);
        let err = toposort(&graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])])).unwrap_err();
        assert_eq!(err, "depends_on cycle: a -> b -> c -> a");
        let err = toposort(&graph(&[("a", &["a"])])).unwrap_err();
        assert_eq!(err, "depends_on cycle: a -> a");
    }

    #[test]
    fn paths() {
        assert_eq!(join_path(Path::new("deploy"), "./data"), "deploy/data");
        assert_eq!(join_path(Path::new("deploy"), "../shared/x"), "shared/x");
        assert_eq!(join_path(Path::new(""), "./data"), "data");
        assert_eq!(join_path(Path::new(""), "."), ".");
        assert_eq!(join_path(Path::new(""), "../up"), "../up");
        assert_eq!(join_path(Path::new("/"), "/a/./b/../c"), "/a/c");
    }

    fn files(map: &'static [(&'static str, &'static str)]) -> impl Fn(&Path) -> io::Result<String> {
        move |p: &Path| {
            map.iter()
                .find(|(k, _)| Path::new(k) == p)
                .map(|(_, v)| v.to_string())
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
        }
    }

    const COMPOSE: &str = r#"
services:
  db:
    image: postgres:${PG:-16}
    restart: unless-stopped
    environment:
      POSTGRES_PASSWORD: ${PASSWORD:?set PASSWORD in .env}
    volumes: [pgdata:/var/lib/postgresql/data, ./init:/init:ro]
    healthcheck:
      test: ["CMD", "pg_isready"]
      interval: 1s
  init:
    image: alpine
    restart: "no"
    command: ["true"]
    depends_on:
      db: {condition: service_healthy}
  web:
    image: nginx
    ports: ["8080:80"]
    env_file: web.env
    environment: [FROM_DOTENV, MISSING]
    networks:
      default:
      front: {aliases: [www]}
    depends_on:
      init: {condition: service_completed_successfully}
  debug:
    image: busybox
    profiles: [debug]
networks:
  front:
volumes:
  pgdata:
"#;

    fn request<'a>(profiles: &'a [String], env: &'a BTreeMap<String, String>) -> Request<'a> {
        Request {
            project: "datalab",
            file: "deploy/compose.yml",
            profiles,
            env,
        }
    }

    #[test]
    fn resolves_a_project() {
        let read = files(&[
            ("deploy/compose.yml", COMPOSE),
            ("deploy/.env", "PASSWORD=pw\nFROM_DOTENV=yes\n"),
            ("deploy/web.env", "A=1\nFROM_DOTENV=file\n"),
        ]);
        let env = BTreeMap::from([("PG".to_string(), "15".to_string())]);
        let (p, warnings) = load(&request(&[], &env), &read).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let names: Vec<&str> = p.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["db", "init", "web"]);
        let db = &p.services[0];
        assert_eq!(db.spec.image, "postgres:15");
        assert_eq!(db.spec.container_name, "datalab-db-1");
        assert_eq!(db.spec.environment, vec!["POSTGRES_PASSWORD=pw"]);
        assert_eq!(db.spec.volumes[0].source, "datalab_pgdata");
        assert_eq!(db.spec.volumes[1].source, "deploy/init");
        assert!(db.spec.volumes[1].read_only);
        assert_eq!(db.spec.networks[0].network, "datalab_default");
        assert_eq!(db.spec.networks[0].aliases, vec!["db"]);
        assert!(!db.one_shot);
        let init = &p.services[1];
        assert!(init.one_shot);
        assert_eq!(init.spec.labels[DEPENDS_ON], "db:service_healthy:false");
        let web = &p.services[2];
        assert_eq!(web.spec.environment, vec!["A=1", "FROM_DOTENV=yes"]);
        assert_eq!(web.spec.networks.len(), 2);
        assert_eq!(web.spec.networks[1].network, "datalab_front");
        assert_eq!(web.spec.networks[1].aliases, vec!["web", "www"]);
        assert_eq!(web.spec.labels[PROJECT], "datalab");
        assert_eq!(web.spec.labels[SERVICE], "web");
        let nets: Vec<&str> = p.networks.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(nets, vec!["datalab_default", "datalab_front"]);
        assert_eq!(p.volumes.len(), 1);
        assert_eq!(db.hash.len(), 64);

        // Same input, same hash; a changed variable changes only the image part.
        let (again, _) = load(&request(&[], &BTreeMap::new()), &read).unwrap();
        assert_eq!(again.services[1].hash, p.services[1].hash);
        assert_ne!(again.services[0].hash, db.hash);
        let label = parts_label(&db.parts);
        assert_eq!(
            changed_parts(Some(&label), &again.services[0].parts),
            vec!["image"]
        );
        assert!(changed_parts(None, &db.parts).is_empty());

        let profiles = vec!["debug".to_string()];
        let (with_debug, _) = load(&request(&profiles, &env), &read).unwrap();
        assert_eq!(with_debug.services.len(), 4);
    }

    #[test]
    fn errors_before_the_engine() {
        let read = files(&[("deploy/compose.yml", COMPOSE)]);
        let err = load(&request(&[], &BTreeMap::new()), &read).unwrap_err();
        assert!(
            err.contains("services.db.environment.POSTGRES_PASSWORD: required variable `PASSWORD` is not set: set PASSWORD in .env"),
            "{err}"
        );
        let read = files(&[(
            "deploy/compose.yml",
            "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n",
        )]);
        let err = load(&request(&[], &BTreeMap::new()), &read).unwrap_err();
        assert_eq!(
            err,
            "deploy/compose.yml: services: depends_on cycle: a -> b -> a"
        );
        let read = files(&[(
            "deploy/compose.yml",
            "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, profiles: [p]}\n",
        )]);
        let err = load(&request(&[], &BTreeMap::new()), &read).unwrap_err();
        assert!(
            err.contains("`a` depends on `b`, which is not active"),
            "{err}"
        );
        let read = files(&[(
            "deploy/compose.yml",
            "services:\n  a: {image: x, volumes: [\"data:/d\"]}\n",
        )]);
        let err = load(&request(&[], &BTreeMap::new()), &read).unwrap_err();
        assert!(
            err.contains("services.a.volumes[0]: volume `data` is not declared"),
            "{err}"
        );
        let read = files(&[(
            "deploy/compose.yml",
            "services:\n  a: {image: x, networks: [back]}\n",
        )]);
        let err = load(&request(&[], &BTreeMap::new()), &read).unwrap_err();
        assert!(err.contains("network `back` is not declared"), "{err}");
        assert!(check_project_name("Bad").is_err());
        assert!(check_project_name("ok_1-x").is_ok());
    }
}
