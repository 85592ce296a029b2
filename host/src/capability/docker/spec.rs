//! WIT records ↔ bollard models: the create body of a [`ContainerSpec`], label pairs and
//! filters, and the engine's answers as the records the guest reads.

use super::OWNER_LABEL;
use crate::capability::bindings::orch::plugin::docker::{
    ContainerSpec, ContainerState, ContainerSummary, ImageInfo, MountKind, NamedObject, Pair,
};
use bollard::models::{
    self, ContainerCreateBody, ContainerInspectResponse, DeviceRequest, EndpointSettings,
    HealthConfig, HostConfig, ImageInspect, ImageSummary, Mount, MountType, Network,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum, Volume,
};
use std::collections::HashMap;

/// The `label` filter of a list call: every pair must match, and the owner label is `owner`
/// (a list shows only what this connection created).
pub(super) fn label_filters(labels: &[Pair], owner: &str) -> HashMap<String, Vec<String>> {
    let values = labels
        .iter()
        .filter(|p| p.key != OWNER_LABEL)
        .map(|p| format!("{}={}", p.key, p.value))
        .chain([format!("{OWNER_LABEL}={owner}")])
        .collect();
    HashMap::from([("label".to_string(), values)])
}

/// Labels as pairs, sorted by key.
pub(super) fn pairs(map: Option<HashMap<String, String>>) -> Vec<Pair> {
    let mut out: Vec<Pair> = map
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| Pair { key, value })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// `pairs` as labels, stamped as created by `owner`.
pub(super) fn owner_labels(pairs: &[Pair], owner: &str) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = pairs
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect();
    out.insert(OWNER_LABEL.into(), owner.to_string());
    out
}

/// The body of `POST /containers/create` for `spec`, owned by `owner`; the first network
/// is attached here, the rest by the caller right after.
pub(super) fn create_body(spec: &ContainerSpec, owner: &str) -> ContainerCreateBody {
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed = Vec::new();
    for port in &spec.ports {
        let key = format!("{}/{}", port.container_port, port.protocol);
        exposed.push(key.clone());
        port_bindings
            .entry(key)
            .or_insert_with(|| Some(vec![]))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: port.host_ip.clone(),
                host_port: Some(port.host_port.map(|p| p.to_string()).unwrap_or_default()),
            });
    }
    let mounts = spec
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: (m.kind != MountKind::Tmpfs).then(|| m.source.clone()),
            typ: Some(match m.kind {
                MountKind::Bind => MountType::BIND,
                MountKind::Volume => MountType::VOLUME,
                MountKind::Tmpfs => MountType::TMPFS,
            }),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect();
    let restart = match spec.restart.as_str() {
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => RestartPolicyNameEnum::NO,
    };
    let ms = |v: u64| (v > 0).then(|| (v as i64).saturating_mul(1_000_000));
    let healthcheck = spec.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: ms(h.interval_ms),
        timeout: ms(h.timeout_ms),
        retries: (h.retries > 0).then_some(h.retries.into()),
        start_period: ms(h.start_period_ms),
        start_interval: None,
    });
    let device_requests = spec
        .device_requests
        .iter()
        .map(|d| DeviceRequest {
            driver: Some(d.driver.clone()),
            count: Some(d.count),
            device_ids: (!d.device_ids.is_empty()).then(|| d.device_ids.clone()),
            capabilities: Some(vec![d.capabilities.clone()]),
            options: None,
        })
        .collect::<Vec<_>>();
    let networking_config = spec.networks.first().map(|n| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            n.network.clone(),
            EndpointSettings {
                aliases: Some(n.aliases.clone()),
                ..Default::default()
            },
        )])),
    });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: Some(spec.env.clone()),
        labels: Some(owner_labels(&spec.labels, owner)),
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        hostname: spec.hostname.clone(),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        host_config: Some(HostConfig {
            port_bindings: Some(port_bindings),
            mounts: Some(mounts),
            restart_policy: Some(RestartPolicy {
                name: Some(restart),
                maximum_retry_count: None,
            }),
            privileged: Some(spec.privileged),
            network_mode: spec
                .network_mode
                .clone()
                .or_else(|| spec.networks.first().map(|n| n.network.clone())),
            pid_mode: spec.pid_mode.clone(),
            cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
            device_requests: (!device_requests.is_empty()).then_some(device_requests),
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    }
}

/// An inspected image.
pub(super) fn inspected_image(found: ImageInspect) -> ImageInfo {
    ImageInfo {
        id: found.id.unwrap_or_default(),
        tags: found.repo_tags.unwrap_or_default(),
        size_bytes: found.size.unwrap_or(0).max(0) as u64,
        created: found
            .created
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map_or(0, |c| c.timestamp()),
    }
}

/// A listed image.
pub(super) fn listed_image(i: ImageSummary) -> ImageInfo {
    ImageInfo {
        id: i.id,
        tags: i.repo_tags,
        size_bytes: i.size.max(0) as u64,
        created: i.created,
    }
}

pub(super) fn network(n: Network) -> NamedObject {
    NamedObject {
        name: n.name.unwrap_or_default(),
        labels: pairs(n.labels),
    }
}

/// `objects` that carry every label of `wanted`, each name once.
pub(super) fn matching(objects: Vec<NamedObject>, wanted: &[Pair]) -> Vec<NamedObject> {
    let mut seen = std::collections::HashSet::new();
    objects
        .into_iter()
        .filter(|o| {
            wanted.iter().all(|w| {
                o.labels
                    .iter()
                    .any(|l| l.key == w.key && l.value == w.value)
            })
        })
        .filter(|o| seen.insert(o.name.clone()))
        .collect()
}

pub(super) fn volume(v: Volume) -> NamedObject {
    NamedObject {
        name: v.name,
        labels: pairs(Some(v.labels)),
    }
}

/// A listed container; its name without the leading `/`.
pub(super) fn listed_container(c: models::ContainerSummary) -> ContainerSummary {
    ContainerSummary {
        id: c.id.unwrap_or_default(),
        name: c
            .names
            .and_then(|n| n.into_iter().next())
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: c.image.unwrap_or_default(),
        state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        labels: pairs(c.labels),
    }
}

/// An inspected container: state, health (none without a healthcheck) and its last outputs.
pub(super) fn inspected_container(found: ContainerInspectResponse) -> ContainerState {
    let state = found.state.unwrap_or_default();
    let health = state.health.unwrap_or_default();
    ContainerState {
        id: found.id.unwrap_or_default(),
        name: found
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        status: state.status.map(|s| s.to_string()).unwrap_or_default(),
        running: state.running.unwrap_or(false),
        exit_code: state.exit_code.unwrap_or(0),
        health: health
            .status
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none"),
        health_log: health
            .log
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                format!(
                    "exit {}: {}",
                    r.exit_code.unwrap_or(-1),
                    r.output.unwrap_or_default().trim_end()
                )
            })
            .collect(),
        labels: pairs(found.config.and_then(|c| c.labels)),
    }
}
