//! The engine side: read what the project has, then say what would change (`plan`) or converge
//! it (`run`); the decision per service is in [`decide`], the waits in [`wait`].
//!
//! The engine is read once up front (networks, volumes, the project's containers); `plan`
//! stops there, `run` then pulls every image before changing anything, so that a bad image
//! reference fails with the project untouched.

mod decide;
mod wait;

pub use decide::{Action, Existing, decide};

use crate::compose::MountKind;
use crate::project::{self, Project, Service, Spec};
use decide::{orphan_change, orphans, service_change, shared_changes};
use orch_sdk::docker::{self, ContainerSummary, Engine, Pair, PullPolicy};
use orch_sdk::{Change, ChangeKind, Cx, StepError};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use wait::{Waiter, health, is_exited};

/// How to converge, from the step's config.
pub struct Options {
    pub pull: PullPolicy,
    pub remove_orphans: bool,
    /// How long one wait (health, init exit) may take.
    pub timeout: Duration,
}

/// Grace period for `docker stop` before the engine kills a container.
const STOP_SECS: u32 = 10;

fn pair(key: &str, value: &str) -> Pair {
    Pair {
        key: key.to_string(),
        value: value.to_string(),
    }
}

fn label<'a>(labels: &'a [Pair], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.as_str())
}

/// What the engine has that matters to the project, read once.
struct World {
    networks: BTreeSet<String>,
    volumes: BTreeSet<String>,
    /// The project's containers by service label; one-off (`docker compose run`) ones left out.
    containers: BTreeMap<String, Vec<ContainerSummary>>,
}

fn observe(engine: &Engine, project: &str) -> Result<World, StepError> {
    let networks = engine
        .list_networks(&[])?
        .into_iter()
        .map(|n| n.name)
        .collect();
    let volumes = engine
        .list_volumes(&[])?
        .into_iter()
        .map(|v| v.name)
        .collect();
    let mut containers: BTreeMap<String, Vec<ContainerSummary>> = BTreeMap::new();
    for c in engine.list_containers(&[pair(project::PROJECT, project)])? {
        if label(&c.labels, project::ONEOFF) == Some("True") {
            continue;
        }
        if let Some(service) = label(&c.labels, project::SERVICE) {
            containers.entry(service.to_string()).or_default().push(c);
        }
    }
    Ok(World {
        networks,
        volumes,
        containers,
    })
}

/// External networks and volumes must exist: compose refuses to start without them too.
fn check_external(p: &Project, world: &World) -> Result<(), StepError> {
    for (what, shared, have) in [
        ("network", &p.networks, &world.networks),
        ("volume", &p.volumes, &world.volumes),
    ] {
        for s in shared.iter().filter(|s| s.external) {
            if !have.contains(&s.name) {
                // The host lists only what the connection created or names.
                return Err(StepError::Failed(format!(
                    "external {what} `{}` (`{}` in the compose file) does not exist or was not created through this connection: create it first, or name it in the connection (`{what}s = [\"{}\"]`)",
                    s.name, s.key, s.name
                )));
            }
        }
    }
    Ok(())
}

/// The container standing for a service: number 1 if several (a scaled compose project).
fn current<'a>(world: &'a World, service: &str) -> Option<&'a ContainerSummary> {
    let list = world.containers.get(service)?;
    if list.len() > 1 {
        orch_sdk::log::warn(format!(
            "service {service}: {} containers found; only container number 1 is managed",
            list.len()
        ));
    }
    list.iter()
        .find(|c| label(&c.labels, project::NUMBER) == Some("1"))
        .or_else(|| list.first())
}

fn existing(engine: &Engine, svc: &Service, c: &ContainerSummary) -> Result<Existing, StepError> {
    let exit_code = if svc.one_shot && c.state == "exited" {
        Some(engine.inspect_container(&c.id)?.exit_code)
    } else {
        None
    };
    Ok(Existing {
        state: c.state.clone(),
        hash: label(&c.labels, project::HASH).map(str::to_string),
        parts: label(&c.labels, project::PARTS).map(str::to_string),
        image: label(&c.labels, project::IMAGE).map(str::to_string),
        exit_code,
    })
}

/// Say what `run` would do; reads only.
pub fn plan(engine: &Engine, p: &Project, o: &Options) -> Result<Vec<Change>, StepError> {
    let world = observe(engine, &p.name)?;
    check_external(p, &world)?;
    let mut changes = shared_changes("network", &p.networks, &world.networks);
    changes.extend(shared_changes("volume", &p.volumes, &world.volumes));
    for (service, c) in orphans(p, &world) {
        changes.push(orphan_change(service, c, o.remove_orphans));
    }
    // Image ids the engine already has (plan never pulls): a retagged image shows here too.
    let mut images: BTreeMap<&str, String> = BTreeMap::new();
    for svc in &p.services {
        let image = svc.spec.image.as_str();
        if !images.contains_key(image)
            && let Some(found) = engine
                .inspect_image(image)
                .map_err(|e| prefix(e.into(), &format!("service `{}`: image {image}", svc.name)))?
        {
            images.insert(image, found.id);
        }
    }
    preflight(engine, p, &images)?;
    for svc in &p.services {
        let e = match current(&world, &svc.name) {
            Some(c) => Some(existing(engine, svc, c)?),
            None => None,
        };
        let image_id = images.get(svc.spec.image.as_str()).map(String::as_str);
        changes.push(service_change(svc, &decide(svc, e.as_ref(), image_id)));
    }
    Ok(changes)
}

/// Ask the host whether every container may be created before anything is changed, so a
/// refused service leaves the project as it was (and `plan` shows the refusal).
fn preflight(
    engine: &Engine,
    p: &Project,
    images: &BTreeMap<&str, String>,
) -> Result<(), StepError> {
    for svc in &p.services {
        let image_id = images
            .get(svc.spec.image.as_str())
            .map_or("", String::as_str);
        engine
            .check_container(&container_spec(&svc.spec, svc, image_id))
            .map_err(|e| prefix(e.into(), &format!("service `{}`", svc.name)))?;
    }
    Ok(())
}

fn container_spec(spec: &Spec, svc: &Service, image_id: &str) -> docker::ContainerSpec {
    let mut labels = spec.labels.clone();
    labels.insert(project::HASH.into(), svc.hash.clone());
    labels.insert(project::PARTS.into(), project::parts_label(&svc.parts));
    labels.insert(project::IMAGE.into(), image_id.to_string());
    docker::ContainerSpec {
        name: spec.container_name.clone(),
        image: spec.image.clone(),
        command: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: spec.environment.clone(),
        labels: labels.iter().map(|(k, v)| pair(k, v)).collect(),
        ports: spec
            .ports
            .iter()
            .map(|p| docker::Port {
                container_port: p.container_port,
                protocol: p.protocol.clone(),
                host_ip: p.host_ip.clone(),
                host_port: p.host_port,
            })
            .collect(),
        mounts: spec
            .volumes
            .iter()
            .map(|m| docker::Mount {
                kind: match m.kind {
                    MountKind::Bind => docker::MountKind::Bind,
                    MountKind::Volume => docker::MountKind::Volume,
                    MountKind::Tmpfs => docker::MountKind::Tmpfs,
                },
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
            })
            .collect(),
        networks: spec
            .networks
            .iter()
            .map(|a| docker::NetworkAttachment {
                network: a.network.clone(),
                aliases: a.aliases.clone(),
            })
            .collect(),
        restart: spec.restart.clone(),
        healthcheck: spec.healthcheck.as_ref().map(|h| docker::Healthcheck {
            test: h.test.clone(),
            interval_ms: h.interval_ms,
            timeout_ms: h.timeout_ms,
            retries: h.retries,
            start_period_ms: h.start_period_ms,
        }),
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        hostname: spec.hostname.clone(),
        privileged: spec.privileged,
        network_mode: spec.network_mode.clone(),
        pid_mode: spec.pid.clone(),
        cap_add: spec.cap_add.clone(),
        device_requests: spec
            .devices
            .iter()
            .map(|d| docker::DeviceRequest {
                driver: d.driver.clone(),
                count: d.count,
                device_ids: d.device_ids.clone(),
                capabilities: d.capabilities.clone(),
            })
            .collect(),
    }
}

/// Service names by what happened to them, for the step's outputs.
#[derive(Default)]
struct Tally {
    created: Vec<String>,
    recreated: Vec<String>,
    started: Vec<String>,
    unchanged: Vec<String>,
    removed: Vec<String>,
}

/// Converge the project, then wait until it is up; declares each change as it is made and
/// publishes what happened to each service.
pub fn run(engine: &Engine, p: &Project, o: &Options, cx: &mut Cx) -> Result<(), StepError> {
    let world = observe(engine, &p.name)?;
    check_external(p, &world)?;

    let mut images: BTreeMap<&str, String> = BTreeMap::new();
    for svc in &p.services {
        let image = svc.spec.image.as_str();
        if !images.contains_key(image) {
            let id = engine.ensure_image(image, o.pull).map_err(|e| {
                prefix(
                    StepError::from(e),
                    &format!("service `{}`: image {image}", svc.name),
                )
            })?;
            orch_sdk::log::debug(format!("image {image}: {id}"));
            images.insert(image, id);
        }
    }

    preflight(engine, p, &images)?;

    let mut tally = Tally::default();
    for s in p.networks.iter().filter(|s| !s.external) {
        if !world.networks.contains(&s.name) {
            let labels = [
                pair(project::PROJECT, &p.name),
                pair(project::NETWORK, &s.key),
            ];
            engine.create_network(&s.name, &labels)?;
            cx.change(ChangeKind::Create, format!("network {}", s.name), "create");
        }
    }
    for s in p.volumes.iter().filter(|s| !s.external) {
        if !world.volumes.contains(&s.name) {
            let labels = [
                pair(project::PROJECT, &p.name),
                pair(project::VOLUME, &s.key),
            ];
            engine.create_volume(&s.name, &labels)?;
            cx.change(ChangeKind::Create, format!("volume {}", s.name), "create");
        }
    }

    for (service, c) in orphans(p, &world) {
        if o.remove_orphans {
            if c.state == "running" {
                engine.stop_container(&c.id, STOP_SECS)?;
            }
            engine.remove_container(&c.id, true)?;
            cx.declare(orphan_change(service, c, true));
            if !tally.removed.iter().any(|r| r == service) {
                tally.removed.push(service.to_string());
            }
        } else {
            let change = orphan_change(service, c, false);
            orch_sdk::log::warn(format!("{}: {}", change.resource, change.detail));
            cx.declare(change);
        }
    }

    let mut waiter = Waiter::new(engine, o.timeout);
    let mut ids: BTreeMap<&str, String> = BTreeMap::new();
    for svc in &p.services {
        for (dep, condition) in &svc.depends_on {
            let (Some(dep_svc), Some(id)) = (
                p.services.iter().find(|s| s.name == *dep),
                ids.get(dep.as_str()),
            ) else {
                continue;
            };
            waiter.wait(dep_svc, id, *condition, &svc.name)?;
        }
        let image_id = images
            .get(svc.spec.image.as_str())
            .cloned()
            .unwrap_or_default();
        let found = current(&world, &svc.name);
        let e = match found {
            Some(c) => Some(existing(engine, svc, c)?),
            None => None,
        };
        let action = decide(svc, e.as_ref(), Some(&image_id));
        let create = |engine: &Engine| -> Result<String, StepError> {
            let id = engine
                .create_container(&container_spec(&svc.spec, svc, &image_id))
                .map_err(|e| prefix(e.into(), &format!("service `{}`: create", svc.name)))?;
            engine
                .start_container(&id)
                .map_err(|e| prefix(e.into(), &format!("service `{}`: start", svc.name)))?;
            Ok(id)
        };
        let id = match (&action, found) {
            (Action::Create, _) | (_, None) => {
                let id = create(engine)?;
                tally.created.push(svc.name.clone());
                id
            }
            (Action::Recreate(_), Some(c)) => {
                if c.state == "running" || c.state == "restarting" {
                    engine.stop_container(&c.id, STOP_SECS)?;
                }
                engine.remove_container(&c.id, true)?;
                let id = create(engine)?;
                tally.recreated.push(svc.name.clone());
                id
            }
            (Action::Start(_), Some(c)) => {
                engine
                    .start_container(&c.id)
                    .map_err(|e| prefix(e.into(), &format!("service `{}`: start", svc.name)))?;
                tally.started.push(svc.name.clone());
                c.id.clone()
            }
            (Action::Unchanged, Some(c)) => {
                tally.unchanged.push(svc.name.clone());
                c.id.clone()
            }
        };
        cx.declare(service_change(svc, &action));
        ids.insert(svc.name.as_str(), id);
    }

    // The project is up when every service with a healthcheck is healthy and nothing has
    // already failed.
    let mut services = serde_json::Map::new();
    for svc in &p.services {
        let Some(id) = ids.get(svc.name.as_str()) else {
            continue;
        };
        if svc.one_shot {
            waiter.completed(svc, id)?;
        }
        let mut state = engine.inspect_container(id)?;
        if health(&state).is_some_and(|h| h != "healthy") {
            state = waiter.healthy(svc, id)?;
        }
        if !state.running && is_exited(&state) && state.exit_code != 0 {
            return Err(waiter.exited(svc, &state, ""));
        }
        services.insert(
            svc.name.clone(),
            json!({
                "container": state.name.trim_start_matches('/'),
                "id": id,
                "state": state.status,
                "health": health(&state).map_or(Json::Null, |h| Json::String(h.to_string())),
            }),
        );
    }

    cx.output("services", Json::Object(services));
    cx.output("created", &tally.created);
    cx.output("recreated", &tally.recreated);
    cx.output("started", &tally.started);
    cx.output("unchanged", &tally.unchanged);
    cx.output("removed", &tally.removed);
    Ok(())
}

/// Add context to an engine error without changing whether it is retried.
fn prefix(e: StepError, context: &str) -> StepError {
    match e {
        StepError::InvalidConfig(m) => StepError::InvalidConfig(format!("{context}: {m}")),
        StepError::Denied(m) => StepError::Denied(format!("{context}: {m}")),
        StepError::Retryable(m) => StepError::Retryable(format!("{context}: {m}")),
        StepError::Failed(m) => StepError::Failed(format!("{context}: {m}")),
    }
}
