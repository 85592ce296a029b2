//! Host side of `orch:plugin/docker`: a Docker Engine API (bollard) on connections the step is
//! granted, with every call checked against the connection's policy before it is sent. The
//! engine address never crosses into the sandbox.

use super::connections::{
    ConnectionData, ConnectionGate, ConnectionView, OpenError, connection_view,
};
use crate::capability::bindings::orch::plugin::docker::{
    ContainerSpec, ContainerState, ContainerSummary, Error, Host, HostEngine, ImageInfo, MountKind,
    NamedObject, Pair, PullPolicy,
};
use crate::workflow::ConnectionKind;
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, DeviceRequest, EndpointSettings, ExecConfig, HealthConfig, HostConfig,
    Mount, MountType, NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListImagesOptions,
    ListNetworksOptions, ListVolumesOptions, LogsOptions, RemoveContainerOptions,
    RemoveVolumeOptions, StopContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use regex::Regex;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Linker, Resource};

/// Stamped on every container, network and volume created through a connection; only those
/// may be started, stopped, removed, exec'd into or read through it.
pub const OWNER_LABEL: &str = "orch.connection";

/// How long one engine request may take (pulls and waits excepted).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An open engine, owned by the guest through a resource handle.
pub struct DockerEngine {
    docker: Docker,
    /// On this machine (unix socket): bind sources can be resolved here.
    local: bool,
    policy: Policy,
    /// Where denials are reported, and the name the policy is read from.
    gate: Arc<PolicyGate>,
}

/// What a docker connection allows beyond plain containers: every escalation is off unless the
/// connection's settings turn it on.
#[derive(Debug, Default)]
struct Policy {
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

/// Reports policy refusals for one step and connection.
struct PolicyGate {
    connection: String,
    granter: Arc<super::Granter>,
    sink: Arc<dyn super::StepSink>,
}

impl PolicyGate {
    fn deny(&self, what: String, setting: String) -> Error {
        let denial = self.granter.deny_by_policy(what, setting);
        self.sink.denied(&denial);
        Error::Denied(denial.to_string())
    }
}

impl Policy {
    fn from_settings(settings: &serde_json::Map<String, Json>) -> Result<Self, String> {
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
                let re = format!("^{}$", regex::escape(&p).replace(r"\*", ".*"));
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

    fn image_allowed(&self, image: &str) -> bool {
        let tagged = tagged(image);
        self.images
            .iter()
            .any(|(_, re)| re.is_match(image) || re.is_match(&tagged))
    }
}

/// `busybox` → `busybox:latest`; references with a tag or digest stay as they are.
fn tagged(image: &str) -> String {
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

/// Engine unreachable or timed out: retryable; the engine's own answers are not.
fn classify(e: BollardError) -> Error {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => Error::NotFound(message),
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => Error::Engine(format!("{status_code}: {message}")),
        BollardError::DockerContainerWaitError { error, code } => {
            Error::Engine(format!("wait failed ({code}): {error}"))
        }
        BollardError::RequestTimeoutError
        | BollardError::IOError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::HyperLegacyError { .. } => Error::Unavailable(e.to_string()),
        other => Error::Engine(other.to_string()),
    }
}

/// Podman reports a container that has just exited as `stopped` until its cleanup runs, a
/// state the Docker API (and bollard) does not know; it settles to `exited` within moments.
fn transient_podman_state(e: &BollardError) -> bool {
    matches!(e, BollardError::JsonDataError { message, .. } if message.contains("`stopped`"))
}

/// Call `f`, retrying for up to 5 s while the engine reports podman's transient state.
async fn settled<T, Fut>(mut f: impl FnMut() -> Fut) -> Result<T, BollardError>
where
    Fut: Future<Output = Result<T, BollardError>>,
{
    for _ in 0..50 {
        match f().await {
            Err(e) if transient_podman_state(&e) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => return other,
        }
    }
    f().await
}

/// A connection that is not granted is denied; one not defined, or not a docker connection,
/// is the engine's refusal.
impl OpenError for Error {
    fn denied(message: String) -> Self {
        Error::Denied(message)
    }
    fn invalid(message: String) -> Self {
        Error::Engine(message)
    }
}

fn label_filters(labels: &[Pair]) -> HashMap<String, Vec<String>> {
    if labels.is_empty() {
        return HashMap::new();
    }
    let values = labels
        .iter()
        .map(|p| format!("{}={}", p.key, p.value))
        .collect();
    HashMap::from([("label".to_string(), values)])
}

fn pairs(map: Option<HashMap<String, String>>) -> Vec<Pair> {
    let mut out: Vec<Pair> = map
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| Pair { key, value })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

fn labels(pairs: &[Pair]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|p| (p.key.clone(), p.value.clone()))
        .collect()
}

async fn open_engine(gate: &ConnectionGate, name: &str) -> Result<DockerEngine, Error> {
    let connection = gate.open::<Error>(name, ConnectionKind::Docker)?;
    let Some(host) = connection.setting("host") else {
        return Err(Error::Engine(format!(
            "connection `{name}` has no `host` (unix:///var/run/docker.sock or tcp://host:2375)"
        )));
    };
    let policy = Policy::from_settings(&connection.settings)
        .map_err(|e| Error::Engine(format!("connection `{name}`: {e}")))?;
    let docker = match Docker::connect_with_host(host) {
        Ok(docker) => docker.with_timeout(REQUEST_TIMEOUT),
        Err(e @ BollardError::SocketNotFoundError(_)) => {
            return Err(Error::Unavailable(format!(
                "docker engine of connection `{name}` is unreachable: {e}"
            )));
        }
        Err(e) => return Err(Error::Engine(format!("connection `{name}`: {e}"))),
    };
    match tokio::time::timeout(Duration::from_secs(5), docker.ping()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(Error::Unavailable(format!(
                "docker engine of connection `{name}` is unreachable: {e}"
            )));
        }
        Err(_) => {
            return Err(Error::Unavailable(format!(
                "docker engine of connection `{name}` did not answer within 5s"
            )));
        }
    }
    Ok(DockerEngine {
        docker,
        local: host.starts_with("unix://"),
        policy,
        gate: Arc::new(PolicyGate {
            connection: name.to_string(),
            granter: gate.granter.clone(),
            sink: gate.sink.clone(),
        }),
    })
}

impl Host for ConnectionView<'_> {
    async fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<DockerEngine>, Error>> {
        match open_engine(self.gate, &name).await {
            Ok(engine) => Ok(Ok(self.table.push(engine)?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl DockerEngine {
    fn deny(&self, what: String, setting: &str) -> Error {
        self.gate.deny(
            what,
            format!("set {setting} under [connections.{}]", self.gate.connection),
        )
    }

    /// A bind source as the engine will mount it: relative sources name a directory the step
    /// is granted (`deploy/data` for a step granted `./deploy`); on a local engine symlinks
    /// are resolved, so the path checked is the path mounted.
    fn bind_source(&self, source: &str, who: &str) -> Result<PathBuf, Error> {
        let path = Path::new(source);
        let host = if path.is_absolute() {
            normalize(path)
        } else {
            let granted = self.gate.granter.dirs().find_map(|(host, guest)| {
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
                    return Err(self.gate.deny(
                        format!("bind-mount `{source}` into container `{who}`"),
                        "grant the directory holding it to the step (`allow = [\"./dir\"]`), or use an absolute path".into(),
                    ));
                }
            }
        };
        if !self.local {
            return Ok(host);
        }
        std::fs::canonicalize(&host).map_err(|e| {
            Error::Engine(format!(
                "bind source `{}` of container `{who}` cannot be used: {e}",
                host.display()
            ))
        })
    }

    fn check_bind(&self, host: &Path, what: String) -> Result<(), Error> {
        if self.policy.bind_paths.iter().any(|a| host.starts_with(a)) {
            return Ok(());
        }
        Err(self.deny(
            what,
            &format!("`bind_paths = [\"{}\"]` (or a parent)", host.display()),
        ))
    }

    /// Refuse `spec` unless the connection's policy allows everything it asks for; bind
    /// sources are rewritten to the host paths that were checked.
    async fn vet(&self, spec: &mut ContainerSpec) -> Result<(), Error> {
        let p = &self.policy;
        let who = spec.name.clone();
        if !p.image_allowed(&spec.image) {
            return Err(self.deny(
                format!("run image `{}` (container `{who}`)", spec.image),
                &format!("`images = [\"{}\"]` (or a pattern matching it)", spec.image),
            ));
        }
        if spec.privileged && !p.privileged {
            return Err(self.deny(
                format!("run privileged container `{who}`"),
                "`privileged = true`",
            ));
        }
        let modes = spec
            .network_mode
            .iter()
            .chain(spec.networks.iter().map(|n| &n.network));
        for mode in modes {
            if mode == "host" && !p.host_network {
                return Err(self.deny(
                    format!("put container `{who}` on the host network"),
                    "`host_network = true`",
                ));
            }
            if mode.contains(':') {
                return Err(self.gate.deny(
                    format!("use network mode `{mode}` for container `{who}`"),
                    "no setting allows joining another namespace; use a network name".into(),
                ));
            }
        }
        match spec.pid_mode.as_deref() {
            None | Some("") => {}
            Some("host") if p.host_pid => {}
            Some("host") => {
                return Err(self.deny(
                    format!("share the host PID namespace with container `{who}`"),
                    "`host_pid = true`",
                ));
            }
            Some(other) => {
                return Err(self.gate.deny(
                    format!("use PID mode `{other}` for container `{who}`"),
                    "only `host` (with `host_pid = true`) is supported".into(),
                ));
            }
        }
        for cap in &spec.cap_add {
            let cap_name = cap.trim_start_matches("CAP_").to_ascii_uppercase();
            let allowed = p.cap_add.iter().any(|c| {
                c == "ALL" || c.trim_start_matches("CAP_").eq_ignore_ascii_case(&cap_name)
            });
            if !allowed {
                return Err(self.deny(
                    format!("add capability `{cap}` to container `{who}`"),
                    &format!("`cap_add = [\"{cap_name}\"]`"),
                ));
            }
        }
        if !spec.device_requests.is_empty() && !p.gpus {
            return Err(self.deny(
                format!("request GPU devices for container `{who}`"),
                "`gpus = true`",
            ));
        }
        for m in spec.mounts.iter_mut() {
            match m.kind {
                MountKind::Bind => {
                    let host = self.bind_source(&m.source, &who)?;
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
                    if let Ok(volume) = self.docker.inspect_volume(&m.source).await
                        && let Some(device) = volume.options.get("device")
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

    /// Only what was created through this connection may be changed through it: refuse
    /// otherwise (another project's containers, or a privileged one made by hand).
    fn owned(&self, labels: Option<&HashMap<String, String>>, what: String) -> Result<(), Error> {
        if labels.and_then(|l| l.get(OWNER_LABEL)) == Some(&self.gate.connection) {
            return Ok(());
        }
        Err(self.gate.deny(
            what,
            format!(
                "orch changes only what it created through connection `{}` (label {OWNER_LABEL})",
                self.gate.connection
            ),
        ))
    }

    async fn owned_container(&self, id: &str, verb: &str) -> Result<(), Error> {
        let found = settled(|| self.docker.inspect_container(id, None))
            .await
            .map_err(classify)?;
        let labels = found.config.as_ref().and_then(|c| c.labels.as_ref());
        let name = found.name.as_deref().unwrap_or(id).trim_start_matches('/');
        self.owned(labels, format!("{verb} container `{name}`"))
    }

    fn owner_labels(&self, pairs: &[Pair]) -> HashMap<String, String> {
        let mut out = labels(pairs);
        out.insert(OWNER_LABEL.into(), self.gate.connection.clone());
        out
    }

    fn create_body(&self, spec: &ContainerSpec) -> ContainerCreateBody {
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
            labels: Some(self.owner_labels(&spec.labels)),
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
}

impl HostEngine for ConnectionView<'_> {
    async fn inspect_image(
        &mut self,
        engine: Resource<DockerEngine>,
        image: String,
    ) -> wasmtime::Result<Result<Option<ImageInfo>, Error>> {
        let engine = self.table.get(&engine)?;
        if !engine.policy.image_allowed(&image) {
            return Ok(Err(engine.deny(
                format!("inspect image `{image}`"),
                &format!("`images = [\"{image}\"]` (or a pattern matching it)"),
            )));
        }
        Ok(match engine.docker.inspect_image(&image).await {
            Ok(found) => Ok(Some(ImageInfo {
                id: found.id.unwrap_or_default(),
                tags: found.repo_tags.unwrap_or_default(),
                size_bytes: found.size.unwrap_or(0).max(0) as u64,
                created: found
                    .created
                    .as_deref()
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .map_or(0, |c| c.timestamp()),
            })),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(classify(e)),
        })
    }

    async fn list_images(
        &mut self,
        engine: Resource<DockerEngine>,
        reference: String,
    ) -> wasmtime::Result<Result<Vec<ImageInfo>, Error>> {
        let engine = self.table.get(&engine)?;
        let filters = (!reference.is_empty())
            .then(|| HashMap::from([("reference".to_string(), vec![reference])]));
        let options = ListImagesOptions {
            filters,
            ..Default::default()
        };
        Ok(match engine.docker.list_images(Some(options)).await {
            Ok(list) => Ok(list
                .into_iter()
                .filter(|i| i.repo_tags.iter().any(|t| engine.policy.image_allowed(t)))
                .map(|i| ImageInfo {
                    id: i.id,
                    tags: i.repo_tags,
                    size_bytes: i.size.max(0) as u64,
                    created: i.created,
                })
                .collect()),
            Err(e) => Err(classify(e)),
        })
    }

    async fn ensure_image(
        &mut self,
        engine: Resource<DockerEngine>,
        image: String,
        policy: PullPolicy,
    ) -> wasmtime::Result<Result<String, Error>> {
        let engine = self.table.get(&engine)?;
        if !engine.policy.image_allowed(&image) {
            return Ok(Err(engine.gate.deny(
                format!("use image `{image}`"),
                format!("`images = [\"{image}\"]` (or a pattern matching it)"),
            )));
        }
        let present = match engine.docker.inspect_image(&image).await {
            Ok(found) => Some(found.id.unwrap_or_default()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => None,
            Err(e) => return Ok(Err(classify(e))),
        };
        match (policy, present) {
            (PullPolicy::Missing, Some(id)) => return Ok(Ok(id)),
            (PullPolicy::Never, Some(id)) => return Ok(Ok(id)),
            (PullPolicy::Never, None) => {
                return Ok(Err(Error::NotFound(format!(
                    "image `{image}` is not on the engine and the pull policy is `never`"
                ))));
            }
            _ => {}
        }
        // Untagged, the API would pull every tag of the repository.
        let options = CreateImageOptions {
            from_image: Some(tagged(&image)),
            ..Default::default()
        };
        let mut pull = engine.docker.create_image(Some(options), None, None);
        while let Some(progress) = pull.next().await {
            if let Err(e) = progress {
                return Ok(Err(match classify(e) {
                    Error::Engine(m) | Error::Unavailable(m) => {
                        Error::Engine(format!("pull of `{image}` failed: {m}"))
                    }
                    other => other,
                }));
            }
        }
        Ok(match engine.docker.inspect_image(&image).await {
            Ok(found) => Ok(found.id.unwrap_or_default()),
            Err(e) => Err(classify(e)),
        })
    }

    async fn list_networks(
        &mut self,
        engine: Resource<DockerEngine>,
        labels: Vec<Pair>,
    ) -> wasmtime::Result<Result<Vec<NamedObject>, Error>> {
        let engine = self.table.get(&engine)?;
        let options = ListNetworksOptions {
            filters: Some(label_filters(&labels)),
        };
        Ok(match engine.docker.list_networks(Some(options)).await {
            Ok(list) => Ok(list
                .into_iter()
                .map(|n| NamedObject {
                    name: n.name.unwrap_or_default(),
                    labels: pairs(n.labels),
                })
                .collect()),
            Err(e) => Err(classify(e)),
        })
    }

    async fn create_network(
        &mut self,
        engine: Resource<DockerEngine>,
        name: String,
        labels: Vec<Pair>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let engine = self.table.get(&engine)?;
        let request = NetworkCreateRequest {
            name,
            labels: Some(engine.owner_labels(&labels)),
            ..Default::default()
        };
        Ok(engine
            .docker
            .create_network(request)
            .await
            .map(drop)
            .map_err(classify))
    }

    async fn remove_network(
        &mut self,
        engine: Resource<DockerEngine>,
        name: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let engine = self.table.get(&engine)?;
        let labels = match engine.docker.inspect_network(&name, None).await {
            Ok(network) => network.labels,
            Err(e) => return Ok(Err(classify(e))),
        };
        if let Err(e) = engine.owned(labels.as_ref(), format!("remove network `{name}`")) {
            return Ok(Err(e));
        }
        Ok(engine.docker.remove_network(&name).await.map_err(classify))
    }

    async fn list_volumes(
        &mut self,
        engine: Resource<DockerEngine>,
        labels: Vec<Pair>,
    ) -> wasmtime::Result<Result<Vec<NamedObject>, Error>> {
        let engine = self.table.get(&engine)?;
        let options = ListVolumesOptions {
            filters: Some(label_filters(&labels)),
        };
        Ok(match engine.docker.list_volumes(Some(options)).await {
            Ok(list) => Ok(list
                .volumes
                .unwrap_or_default()
                .into_iter()
                .map(|v| NamedObject {
                    name: v.name,
                    labels: pairs(Some(v.labels)),
                })
                .collect()),
            Err(e) => Err(classify(e)),
        })
    }

    async fn create_volume(
        &mut self,
        engine: Resource<DockerEngine>,
        name: String,
        labels: Vec<Pair>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let engine = self.table.get(&engine)?;
        let request = VolumeCreateRequest {
            name: Some(name),
            labels: Some(engine.owner_labels(&labels)),
            ..Default::default()
        };
        Ok(engine
            .docker
            .create_volume(request)
            .await
            .map(drop)
            .map_err(classify))
    }

    async fn remove_volume(
        &mut self,
        engine: Resource<DockerEngine>,
        name: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let engine = self.table.get(&engine)?;
        let labels = match engine.docker.inspect_volume(&name).await {
            Ok(volume) => volume.labels,
            Err(e) => return Ok(Err(classify(e))),
        };
        if let Err(e) = engine.owned(Some(&labels), format!("remove volume `{name}`")) {
            return Ok(Err(e));
        }
        Ok(engine
            .docker
            .remove_volume(&name, None::<RemoveVolumeOptions>)
            .await
            .map_err(classify))
    }

    async fn list_containers(
        &mut self,
        engine: Resource<DockerEngine>,
        labels: Vec<Pair>,
    ) -> wasmtime::Result<Result<Vec<ContainerSummary>, Error>> {
        let engine = self.table.get(&engine)?;
        let options = ListContainersOptions {
            all: true,
            filters: Some(label_filters(&labels)),
            ..Default::default()
        };
        let listed = settled(|| engine.docker.list_containers(Some(options.clone()))).await;
        Ok(match listed {
            Ok(list) => Ok(list
                .into_iter()
                .map(|c| ContainerSummary {
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
                })
                .collect()),
            Err(e) => Err(classify(e)),
        })
    }

    async fn check_container(
        &mut self,
        engine: Resource<DockerEngine>,
        mut spec: ContainerSpec,
    ) -> wasmtime::Result<Result<(), Error>> {
        let engine = self.table.get(&engine)?;
        Ok(engine.vet(&mut spec).await)
    }

    async fn create_container(
        &mut self,
        engine: Resource<DockerEngine>,
        mut spec: ContainerSpec,
    ) -> wasmtime::Result<Result<String, Error>> {
        let engine = self.table.get(&engine)?;
        if let Err(e) = engine.vet(&mut spec).await {
            return Ok(Err(e));
        }
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = match engine
            .docker
            .create_container(Some(options), engine.create_body(&spec))
            .await
        {
            Ok(created) => created,
            Err(e) => return Ok(Err(classify(e))),
        };
        for n in spec.networks.iter().skip(1) {
            let request = NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: Some(EndpointSettings {
                    aliases: Some(n.aliases.clone()),
                    ..Default::default()
                }),
            };
            if let Err(e) = engine.docker.connect_network(&n.network, request).await {
                // Leave nothing that looks converged but is not attached.
                let force = RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                };
                let _ = engine
                    .docker
                    .remove_container(&created.id, Some(force))
                    .await;
                return Ok(Err(classify(e)));
            }
        }
        Ok(Ok(created.id))
    }

    async fn start_container(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let engine = self.table.get(&engine)?;
        if let Err(e) = engine.owned_container(&id, "start").await {
            return Ok(Err(e));
        }
        Ok(engine
            .docker
            .start_container(&id, None)
            .await
            .map_err(classify))
    }

    async fn stop_container(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
        timeout_secs: u32,
    ) -> wasmtime::Result<Result<(), Error>> {
        let engine = self.table.get(&engine)?;
        if let Err(e) = engine.owned_container(&id, "stop").await {
            return Ok(Err(e));
        }
        let options = StopContainerOptions {
            t: Some(timeout_secs.try_into().unwrap_or(i32::MAX)),
            signal: None,
        };
        Ok(
            match engine.docker.stop_container(&id, Some(options)).await {
                // 304: already stopped.
                Ok(())
                | Err(BollardError::DockerResponseServerError {
                    status_code: 304, ..
                }) => Ok(()),
                Err(e) => Err(classify(e)),
            },
        )
    }

    async fn remove_container(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
        force: bool,
    ) -> wasmtime::Result<Result<(), Error>> {
        let engine = self.table.get(&engine)?;
        if let Err(e) = engine.owned_container(&id, "remove").await {
            return Ok(Err(e));
        }
        let options = RemoveContainerOptions {
            force,
            v: false,
            link: false,
        };
        Ok(engine
            .docker
            .remove_container(&id, Some(options))
            .await
            .map_err(classify))
    }

    async fn inspect_container(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
    ) -> wasmtime::Result<Result<ContainerState, Error>> {
        let engine = self.table.get(&engine)?;
        let found = match settled(|| engine.docker.inspect_container(&id, None)).await {
            Ok(found) => found,
            Err(e) => return Ok(Err(classify(e))),
        };
        let state = found.state.unwrap_or_default();
        let health = state.health.unwrap_or_default();
        Ok(Ok(ContainerState {
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
        }))
    }

    async fn wait_container(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
    ) -> wasmtime::Result<Result<i64, Error>> {
        let engine = self.table.get(&engine)?;
        let options = WaitContainerOptions {
            condition: "not-running".into(),
        };
        let mut wait = engine.docker.wait_container(&id, Some(options));
        Ok(match wait.next().await {
            Some(Ok(exit)) => Ok(exit.status_code),
            // A non-zero exit comes back as this error; it is an answer, not a failure.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(classify(e)),
            None => Err(Error::Engine(format!("wait on `{id}` returned nothing"))),
        })
    }

    async fn logs(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
        tail: u32,
    ) -> wasmtime::Result<Result<String, Error>> {
        let engine = self.table.get(&engine)?;
        if let Err(e) = engine.owned_container(&id, "read the logs of").await {
            return Ok(Err(e));
        }
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: tail.to_string(),
            ..Default::default()
        };
        let mut out = String::new();
        let mut stream = engine.docker.logs(&id, Some(options));
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => out.push_str(&String::from_utf8_lossy(&chunk.into_bytes())),
                Err(e) => return Ok(Err(classify(e))),
            }
        }
        Ok(Ok(out))
    }

    async fn exec(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
        cmd: Vec<String>,
    ) -> wasmtime::Result<Result<(i64, String), Error>> {
        let engine = self.table.get(&engine)?;
        if let Err(e) = engine.owned_container(&id, "exec into").await {
            return Ok(Err(e));
        }
        let config = ExecConfig {
            cmd: Some(cmd),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = match engine.docker.create_exec(&id, config).await {
            Ok(created) => created,
            Err(e) => return Ok(Err(classify(e))),
        };
        let options = StartExecOptions {
            detach: false,
            ..Default::default()
        };
        let mut out = String::new();
        match engine.docker.start_exec(&created.id, Some(options)).await {
            Ok(StartExecResults::Attached { mut output, .. }) => {
                while let Some(chunk) = output.next().await {
                    match chunk {
                        Ok(chunk) => out.push_str(&String::from_utf8_lossy(&chunk.into_bytes())),
                        Err(e) => return Ok(Err(classify(e))),
                    }
                }
            }
            Ok(StartExecResults::Detached) => {}
            Err(e) => return Ok(Err(classify(e))),
        }
        Ok(match engine.docker.inspect_exec(&created.id).await {
            Ok(inspected) => Ok((inspected.exit_code.unwrap_or(-1), out)),
            Err(e) => Err(classify(e)),
        })
    }

    async fn drop(&mut self, engine: Resource<DockerEngine>) -> wasmtime::Result<()> {
        self.table.delete(engine)?;
        Ok(())
    }
}

/// Link `orch:plugin/docker` into the plugin linker.
pub(crate) fn add_to_linker(linker: &mut Linker<super::StepState>) -> wasmtime::Result<()> {
    crate::capability::bindings::orch::plugin::docker::add_to_linker::<_, ConnectionData>(
        linker,
        connection_view,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(settings: Json) -> Policy {
        let Json::Object(map) = settings else {
            panic!("an object")
        };
        Policy::from_settings(&map).unwrap()
    }

    #[test]
    fn image_patterns_match_with_and_without_the_implied_tag() {
        let p = policy(serde_json::json!({ "images": ["localhost/*", "postgres:16*"] }));
        assert!(p.image_allowed("localhost/busybox"));
        assert!(p.image_allowed("localhost/busybox:1.36"));
        assert!(p.image_allowed("postgres:16.4"));
        assert!(!p.image_allowed("postgres"), "means postgres:latest");
        assert!(!p.image_allowed("docker.io/localhost/busybox"));
        assert!(
            !policy(serde_json::json!({})).image_allowed("busybox"),
            "none by default"
        );
    }

    #[test]
    fn references_get_latest_only_without_tag_or_digest() {
        assert_eq!(tagged("busybox"), "busybox:latest");
        assert_eq!(
            tagged("localhost:5000/busybox"),
            "localhost:5000/busybox:latest"
        );
        assert_eq!(tagged("busybox:1"), "busybox:1");
        assert_eq!(tagged("busybox@sha256:ab"), "busybox@sha256:ab");
    }

    #[test]
    fn paths_normalise_lexically() {
        assert_eq!(
            normalize(Path::new("/srv/./a/../b")),
            PathBuf::from("/srv/b")
        );
        assert_eq!(normalize(Path::new("/../..")), PathBuf::from("/"));
    }

    #[test]
    fn settings_of_the_wrong_type_are_named() {
        let Json::Object(map) = serde_json::json!({ "privileged": "yes" }) else {
            unreachable!()
        };
        let e = Policy::from_settings(&map).unwrap_err();
        assert_eq!(e, "`privileged` must be true or false");
    }
}
