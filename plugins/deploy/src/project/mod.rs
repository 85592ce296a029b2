//! From a compose file to what the engine should have: the active services in dependency
//! order, each with its exact container spec and config hash, and the networks and volumes.
//!
//! Everything here is plain data and file reads, so an invalid project is reported before any
//! engine call. The order is in [`order`], one service's spec in [`spec`], and the labels and
//! hashes a container carries in [`labels`].

mod labels;
mod order;
mod spec;

pub use labels::{
    HASH, IMAGE, NETWORK, NUMBER, ONEOFF, PARTS, PROJECT, SERVICE, VOLUME, changed_parts,
    parts_label,
};

use crate::compose::{self, Condition, MountKind, PortSpec, RawCompose};
use crate::interpolate::{self, Vars};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

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
    let order = order::toposort(&graph).map_err(|e| ctx.err("services", e))?;

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
        let spec = spec::service_spec(
            ctx,
            name,
            svc,
            &net_defs,
            &vol_defs,
            &depends_label,
            warnings,
        )?;
        let (hash, parts) = labels::hashes(&spec)?;
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

#[cfg(test)]
mod tests {
    use super::labels::DEPENDS_ON;
    use super::*;

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
    fn resolves_a_project_into_ordered_container_specs() {
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
    fn rejects_invalid_projects_before_any_engine_call() {
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
