//! The engine side: read what the project has, say what would change, converge, and wait for
//! the conditions compose users rely on (started, healthy, completed successfully).
//!
//! The engine is read once up front (networks, volumes, the project's containers); `plan`
//! stops there, `run` then pulls every image before changing anything, so that a bad image
//! reference fails with the project untouched.

use crate::compose::{Condition, MountKind};
use crate::project::{self, Project, Service, Shared, Spec};
use orch_sdk::docker::{self, ContainerState, ContainerSummary, Engine, Pair, PullPolicy};
use orch_sdk::{Change, ChangeKind, Output, StepError};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How to converge, from the step's config.
pub struct Options {
    pub pull: PullPolicy,
    pub remove_orphans: bool,
    /// How long one wait (health, init exit) may take.
    pub timeout: Duration,
}

/// Grace period for `docker stop` before the engine kills a container.
const STOP_SECS: u32 = 10;
const POLL: Duration = Duration::from_millis(500);
const LOG_TAIL: u32 = 50;

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
                return Err(StepError::Failed(format!(
                    "external {what} `{}` (`{}` in the compose file) does not exist: create it first",
                    s.name, s.key
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

/// An existing container, as much as the decision needs.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    pub state: String,
    pub hash: Option<String>,
    pub parts: Option<String>,
    pub image: Option<String>,
    /// Known only for exited one-shots, the only case where it matters.
    pub exit_code: Option<i64>,
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

/// What happens to one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    /// Remove and create again, and why.
    Recreate(String),
    /// Same config but stopped: start it; the state it was in.
    Start(String),
    Unchanged,
}

/// Decide from the container the engine has, the wanted config, and (in `run`, after the
/// pull) the image id the tag now points to.
pub fn decide(svc: &Service, existing: Option<&Existing>, image_id: Option<&str>) -> Action {
    let Some(e) = existing else {
        return Action::Create;
    };
    if e.hash.as_deref() != Some(svc.hash.as_str()) {
        let parts = project::changed_parts(e.parts.as_deref(), &svc.parts);
        return Action::Recreate(if parts.is_empty() {
            "config changed".to_string()
        } else {
            format!("config changed ({})", parts.join(", "))
        });
    }
    if let (Some(new), Some(old)) = (image_id, e.image.as_deref())
        && new != old
    {
        return Action::Recreate(format!("image {} changed", svc.spec.image));
    }
    match e.state.as_str() {
        "running" | "restarting" => Action::Unchanged,
        "exited" if svc.one_shot && e.exit_code == Some(0) => Action::Unchanged,
        state => Action::Start(state.to_string()),
    }
}

fn service_change(svc: &Service, action: &Action) -> Change {
    let resource = format!("service {}", svc.name);
    match action {
        Action::Create => orch_sdk::change(
            ChangeKind::Create,
            resource,
            format!(
                "create container {} from {}",
                svc.spec.container_name, svc.spec.image
            ),
        ),
        Action::Recreate(why) => {
            orch_sdk::change(ChangeKind::Replace, resource, format!("recreate: {why}"))
        }
        Action::Start(state) => {
            orch_sdk::change(ChangeKind::Update, resource, format!("start: was {state}"))
        }
        Action::Unchanged => orch_sdk::change(ChangeKind::None, resource, "unchanged"),
    }
}

fn shared_changes(kind: &str, shared: &[Shared], have: &BTreeSet<String>) -> Vec<Change> {
    shared
        .iter()
        .map(|s| {
            let resource = format!("{kind} {}", s.name);
            if s.external {
                orch_sdk::change(ChangeKind::None, resource, "external")
            } else if have.contains(&s.name) {
                orch_sdk::change(ChangeKind::None, resource, "exists")
            } else {
                orch_sdk::change(ChangeKind::Create, resource, "create")
            }
        })
        .collect()
}

/// Containers of services that are no longer active (removed from the file or profile-off).
fn orphans<'a>(p: &Project, world: &'a World) -> Vec<(&'a str, &'a ContainerSummary)> {
    let active: BTreeSet<&str> = p.services.iter().map(|s| s.name.as_str()).collect();
    world
        .containers
        .iter()
        .filter(|(service, _)| !active.contains(service.as_str()))
        .flat_map(|(service, list)| list.iter().map(move |c| (service.as_str(), c)))
        .collect()
}

fn orphan_change(service: &str, c: &ContainerSummary, remove: bool) -> Change {
    let resource = format!("service {service}");
    if remove {
        orch_sdk::change(
            ChangeKind::Delete,
            resource,
            format!("remove (orphan container {})", c.name),
        )
    } else {
        orch_sdk::change(
            ChangeKind::None,
            resource,
            format!(
                "orphan container {} kept: set remove_orphans = true to remove it",
                c.name
            ),
        )
    }
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

fn note(changes: &mut Vec<Change>, change: Change) {
    orch_sdk::log::info(format!("{}: {}", change.resource, change.detail));
    changes.push(change);
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

/// Converge the project, then wait until it is up; returns the changes made and the outputs.
pub fn run(
    engine: &Engine,
    p: &Project,
    o: &Options,
) -> Result<(Vec<Change>, Vec<Output>), StepError> {
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

    let mut changes = Vec::new();
    let mut tally = Tally::default();
    for s in p.networks.iter().filter(|s| !s.external) {
        if !world.networks.contains(&s.name) {
            let labels = [
                pair(project::PROJECT, &p.name),
                pair(project::NETWORK, &s.key),
            ];
            engine.create_network(&s.name, &labels)?;
            note(
                &mut changes,
                orch_sdk::change(ChangeKind::Create, format!("network {}", s.name), "create"),
            );
        }
    }
    for s in p.volumes.iter().filter(|s| !s.external) {
        if !world.volumes.contains(&s.name) {
            let labels = [
                pair(project::PROJECT, &p.name),
                pair(project::VOLUME, &s.key),
            ];
            engine.create_volume(&s.name, &labels)?;
            note(
                &mut changes,
                orch_sdk::change(ChangeKind::Create, format!("volume {}", s.name), "create"),
            );
        }
    }

    for (service, c) in orphans(p, &world) {
        if o.remove_orphans {
            if c.state == "running" {
                engine.stop_container(&c.id, STOP_SECS)?;
            }
            engine.remove_container(&c.id, true)?;
            note(&mut changes, orphan_change(service, c, true));
            if !tally.removed.iter().any(|r| r == service) {
                tally.removed.push(service.to_string());
            }
        } else {
            let change = orphan_change(service, c, false);
            orch_sdk::log::warn(format!("{}: {}", change.resource, change.detail));
            changes.push(change);
        }
    }

    let mut waiter = Waiter {
        engine,
        timeout: o.timeout,
        met: BTreeSet::new(),
    };
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
        note(&mut changes, service_change(svc, &action));
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

    let outputs = vec![
        orch_sdk::output("services", Json::Object(services)),
        orch_sdk::output("created", &tally.created),
        orch_sdk::output("recreated", &tally.recreated),
        orch_sdk::output("started", &tally.started),
        orch_sdk::output("unchanged", &tally.unchanged),
        orch_sdk::output("removed", &tally.removed),
    ];
    Ok((changes, outputs))
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

/// The health status, `None` without a healthcheck (whether the host says so with `none` or
/// with an empty status).
fn health(state: &ContainerState) -> Option<&str> {
    state
        .health
        .as_deref()
        .filter(|h| !h.is_empty() && *h != "none")
}

fn is_exited(state: &ContainerState) -> bool {
    matches!(state.status.as_str(), "exited" | "dead")
}

/// Waits on dependency conditions, remembering which are already met.
struct Waiter<'a> {
    engine: &'a Engine,
    timeout: Duration,
    met: BTreeSet<(String, &'static str)>,
}

impl Waiter<'_> {
    fn wait(
        &mut self,
        dep: &Service,
        id: &str,
        condition: Condition,
        dependant: &str,
    ) -> Result<(), StepError> {
        let key = (dep.name.clone(), condition.as_str());
        if self.met.contains(&key) {
            return Ok(());
        }
        let what = match condition {
            Condition::Started => "started",
            Condition::Healthy => "healthy",
            Condition::CompletedSuccessfully => "completed successfully",
        };
        orch_sdk::log::info(format!(
            "service {dependant}: waiting for {} to be {what}",
            dep.name
        ));
        match condition {
            Condition::Started => self.started(dep, id)?,
            Condition::Healthy => drop(self.healthy(dep, id)?),
            Condition::CompletedSuccessfully => self.completed(dep, id)?,
        }
        self.met.insert(key);
        Ok(())
    }

    fn started(&self, svc: &Service, id: &str) -> Result<(), StepError> {
        let state = self.engine.inspect_container(id)?;
        if state.running || state.status == "restarting" || (svc.one_shot && is_exited(&state)) {
            Ok(())
        } else {
            Err(self.exited(svc, &state, "is not running: "))
        }
    }

    /// Poll until healthy; fail at once on "unhealthy" or exit, or at the timeout.
    fn healthy(&self, svc: &Service, id: &str) -> Result<ContainerState, StepError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let state = self.engine.inspect_container(id)?;
            match health(&state) {
                Some("healthy") => return Ok(state),
                Some("unhealthy") => {
                    return Err(StepError::Failed(format!(
                        "service `{}` is unhealthy{}",
                        svc.name,
                        health_log(&state)
                    )));
                }
                None => {
                    return Err(StepError::Failed(format!(
                        "service `{}` has no healthcheck, so it can never be healthy: add one or depend on it with `service_started`",
                        svc.name
                    )));
                }
                Some(_) => {}
            }
            if !state.running && is_exited(&state) {
                return Err(self.exited(svc, &state, "stopped before it was healthy: "));
            }
            if Instant::now() >= deadline {
                return Err(StepError::Failed(format!(
                    "service `{}` is not healthy after {}s (state {}, health {}){}",
                    svc.name,
                    self.timeout.as_secs(),
                    state.status,
                    health(&state).unwrap_or("none"),
                    health_log(&state)
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Poll until the container exits; its exit code must be 0.
    fn completed(&self, svc: &Service, id: &str) -> Result<(), StepError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let state = self.engine.inspect_container(id)?;
            if !state.running && is_exited(&state) {
                return if state.exit_code == 0 {
                    Ok(())
                } else {
                    Err(self.exited(svc, &state, ""))
                };
            }
            if Instant::now() >= deadline {
                let logs = self.engine.logs(id, LOG_TAIL).unwrap_or_default();
                return Err(StepError::Failed(format!(
                    "service `{}` has not exited after {}s (state {}){}",
                    svc.name,
                    self.timeout.as_secs(),
                    state.status,
                    log_section(&logs)
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// "service `x` exited with code N" and its last log lines.
    fn exited(&self, svc: &Service, state: &ContainerState, how: &str) -> StepError {
        let logs = self.engine.logs(&state.id, LOG_TAIL).unwrap_or_default();
        let status = if is_exited(state) {
            format!("exited with code {}", state.exit_code)
        } else {
            format!("is {}", state.status)
        };
        StepError::Failed(format!(
            "service `{}` {how}{status}{}",
            svc.name,
            log_section(&logs)
        ))
    }
}

fn log_section(logs: &str) -> String {
    let logs = logs.trim_end();
    if logs.trim().is_empty() {
        String::new()
    } else {
        format!("\nlast {LOG_TAIL} log lines:\n{logs}")
    }
}

fn health_log(state: &ContainerState) -> String {
    let lines: Vec<&str> = state
        .health_log
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("\nlast health checks:\n  {}", lines.join("\n  "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::{Request, load};
    use std::path::Path;

    fn services() -> Vec<Service> {
        // `init` is an init service: `restart: "no"` and awaited by `web`.
        let text = "services:\n  web: {image: nginx, restart: always, depends_on: {init: {condition: service_completed_successfully}}}\n  init: {image: alpine, restart: \"no\"}\n";
        let read = move |p: &Path| {
            if p == Path::new("compose.yml") {
                Ok(text.to_string())
            } else {
                Err(std::io::Error::new(std::io::ErrorKind::NotFound, "none"))
            }
        };
        let env = BTreeMap::new();
        let request = Request {
            project: "p",
            file: "compose.yml",
            profiles: &[],
            env: &env,
        };
        load(&request, &read).unwrap().0.services
    }

    fn existing(svc: &Service, state: &str) -> Existing {
        Existing {
            state: state.into(),
            hash: Some(svc.hash.clone()),
            parts: Some(project::parts_label(&svc.parts)),
            image: Some("sha256:a".into()),
            exit_code: None,
        }
    }

    #[test]
    fn decisions() {
        let all = services();
        let (init, web) = (&all[0], &all[1]);
        assert_eq!(decide(web, None, None), Action::Create);
        assert_eq!(
            decide(web, Some(&existing(web, "running")), None),
            Action::Unchanged
        );
        assert_eq!(
            decide(web, Some(&existing(web, "running")), Some("sha256:b")),
            Action::Recreate("image nginx changed".into())
        );
        assert_eq!(
            decide(web, Some(&existing(web, "exited")), Some("sha256:a")),
            Action::Start("exited".into())
        );
        let mut changed = existing(web, "running");
        changed.hash = Some("other".into());
        let mut parts = web.parts.clone();
        parts.insert("environment".into(), "0000".into());
        changed.parts = Some(project::parts_label(&parts));
        assert_eq!(
            decide(web, Some(&changed), None),
            Action::Recreate("config changed (environment)".into())
        );
        changed.parts = None;
        assert_eq!(
            decide(web, Some(&changed), None),
            Action::Recreate("config changed".into())
        );
        let mut done = existing(init, "exited");
        done.exit_code = Some(0);
        assert_eq!(decide(init, Some(&done), None), Action::Unchanged);
        done.exit_code = Some(1);
        assert_eq!(
            decide(init, Some(&done), None),
            Action::Start("exited".into())
        );
    }
}
