//! The `engine` resource of `orch:plugin/docker`: one method per WIT function, each checked
//! against the connection's policy, then sent with bollard (`?` classifies the engine's error).

use super::DockerEngine;
use super::OWNER_LABEL;
use super::errors::{classify, settled};
use super::job::{self, LogStream};
use super::policy::{self, Refused, Site, VolumeFacts, tagged};
use super::spec::{self, create_body, label_filters};
use crate::capability::bindings::orch::plugin::docker::{
    ContainerSpec, ContainerState, ContainerSummary, Error, HostEngine, ImageInfo, Mount,
    MountKind, NamedObject, Pair, PullPolicy,
};
use crate::capability::connections::ConnectionView;
use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerInspectResponse, EndpointSettings, ExecConfig, MountType, NetworkConnectRequest,
    NetworkCreateRequest, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListImagesOptions,
    ListNetworksOptions, ListVolumesOptions, LogsOptions, RemoveContainerOptions,
    RemoveVolumeOptions, StopContainerOptions,
};
use futures::StreamExt;
use std::collections::HashMap;
use wasmtime::component::Resource;

impl ConnectionView<'_> {
    /// Run `call` on the engine behind `handle`: a stale handle traps, anything `call` returns
    /// is the guest's answer.
    pub(super) async fn with_engine<T>(
        &mut self,
        handle: Resource<DockerEngine>,
        call: impl AsyncFnOnce(&DockerEngine) -> Result<T, Error>,
    ) -> wasmtime::Result<Result<T, Error>> {
        let engine = self.table.get(&handle)?;
        Ok(call(engine).await)
    }
}

impl DockerEngine {
    /// Refusals of the policy, reported and audited.
    fn check(&self, verdict: Result<(), Refused>) -> Result<(), Error> {
        verdict.map_err(|refused| self.gate.refuse(refused))
    }

    /// Check `spec` against the policy, told what it needs of the engine: the driver options
    /// of the volumes it mounts (a local volume can be a bind in disguise).
    pub(super) async fn vet(&self, spec: &mut ContainerSpec) -> Result<(), Error> {
        let mut site = self.site();
        let named = |m: &&Mount| m.kind == MountKind::Volume && !m.source.is_empty();
        for m in spec.mounts.iter().filter(named) {
            // Only "no such volume" means absent: any other failure fails closed.
            match self.docker.inspect_volume(&m.source).await {
                Ok(mut volume) => {
                    let facts = VolumeFacts {
                        owner: volume.labels.remove(OWNER_LABEL),
                        options: volume.options,
                    };
                    site.volumes.insert(m.source.clone(), facts);
                }
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let joined = spec.network_mode.iter();
        for network in joined.chain(spec.networks.iter().map(|n| &n.network)) {
            match self.docker.inspect_network(network, None).await {
                Ok(found) => {
                    let owner = found.labels.and_then(|mut l| l.remove(OWNER_LABEL));
                    site.networks.insert(network.clone(), owner);
                }
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.check(self.policy.vet(spec, &site))
    }

    /// What the policy knows of this engine before asking it anything.
    fn site(&self) -> Site<'_> {
        Site {
            granter: &self.gate.granter,
            owner: &self.owner,
            volumes: HashMap::new(),
            networks: HashMap::new(),
            resolve: self.local.then_some(|path| std::fs::canonicalize(path)),
        }
    }

    fn owned(&self, labels: Option<&HashMap<String, String>>, what: String) -> Result<(), Error> {
        self.check(policy::owned(labels, &self.owner, what))
    }

    /// The container, if this connection created it.
    pub(super) async fn owned_container(
        &self,
        id: &str,
        verb: &str,
    ) -> Result<ContainerInspectResponse, Error> {
        let found = settled(|| self.docker.inspect_container(id, None)).await?;
        let labels = found.config.as_ref().and_then(|c| c.labels.as_ref());
        let name = found.name.as_deref().unwrap_or(id).trim_start_matches('/');
        self.owned(labels, format!("{verb} container `{name}`"))?;
        Ok(found)
    }

    /// Creating a `kind` called `name` that exists already (owned by `owner`): done if it is
    /// ours; refused, naming whose it is, if not (an engine would make a second network of
    /// that name, or hand back the other project's volume).
    fn exists(&self, kind: &str, name: &str, owner: Option<String>) -> Result<(), Error> {
        let (whose, how) = match owner {
            Some(owner) if owner == self.owner => return Ok(()),
            Some(owner) => (
                format!("through `{owner}`"),
                format!("remove it, or manage it from this connection with `owner = \"{owner}\"`"),
            ),
            None => (
                "by hand (no orch label)".to_string(),
                format!("remove it, or name it in the connection's `{kind}s` to use it"),
            ),
        };
        Err(self.gate.refuse(Refused::Never {
            what: format!("create {kind} `{name}`: one of that name exists, made {whose}"),
            how,
        }))
    }

    fn owner_labels(&self, labels: &[Pair]) -> HashMap<String, String> {
        spec::owner_labels(labels, &self.owner)
    }

    fn filters(&self, labels: &[Pair]) -> HashMap<String, Vec<String>> {
        label_filters(labels, &self.owner)
    }
}

impl HostEngine for ConnectionView<'_> {
    async fn inspect_image(
        &mut self,
        engine: Resource<DockerEngine>,
        image: String,
    ) -> wasmtime::Result<Result<Option<ImageInfo>, Error>> {
        self.with_engine(engine, async |engine| {
            let what = format!("inspect image `{image}`");
            engine.check(engine.policy.check_image(&image, what))?;
            match engine.docker.inspect_image(&image).await {
                Ok(found) => Ok(Some(spec::inspected_image(found))),
                Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn list_images(
        &mut self,
        engine: Resource<DockerEngine>,
        reference: String,
    ) -> wasmtime::Result<Result<Vec<ImageInfo>, Error>> {
        self.with_engine(engine, async |engine| {
            let filters = (!reference.is_empty())
                .then(|| HashMap::from([("reference".to_string(), vec![reference])]));
            let options = ListImagesOptions {
                filters,
                ..Default::default()
            };
            let list = engine.docker.list_images(Some(options)).await?;
            Ok(list
                .into_iter()
                .filter(|i| i.repo_tags.iter().any(|t| engine.policy.image_allowed(t)))
                .map(spec::listed_image)
                .collect())
        })
        .await
    }

    async fn ensure_image(
        &mut self,
        engine: Resource<DockerEngine>,
        image: String,
        policy: PullPolicy,
    ) -> wasmtime::Result<Result<String, Error>> {
        self.with_engine(engine, async |engine| {
            engine.gate.write(|| format!("pull image `{image}`"))?;
            if !engine.policy.image_allowed(&image) {
                // Worded without `set … under [connections.NAME]`, unlike `check_image`.
                return Err(engine.gate.refuse(Refused::Never {
                    what: format!("use image `{image}`"),
                    how: format!("`images = [\"{image}\"]` (or a pattern matching it)"),
                }));
            }
            let present = match engine.docker.inspect_image(&image).await {
                Ok(found) => Some(found.id.unwrap_or_default()),
                Err(BollardError::DockerResponseServerError {
                    status_code: 404, ..
                }) => None,
                Err(e) => return Err(e.into()),
            };
            match (policy, present) {
                (PullPolicy::Missing, Some(id)) => return Ok(id),
                (PullPolicy::Never, Some(id)) => return Ok(id),
                (PullPolicy::Never, None) => {
                    return Err(Error::NotFound(format!(
                        "image `{image}` is not on the engine and the pull policy is `never`"
                    )));
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
                    return Err(match classify(e) {
                        Error::Engine(m) | Error::Unavailable(m) => {
                            Error::Engine(format!("pull of `{image}` failed: {m}"))
                        }
                        other => other,
                    });
                }
            }
            let found = engine.docker.inspect_image(&image).await?;
            Ok(found.id.unwrap_or_default())
        })
        .await
    }

    async fn list_networks(
        &mut self,
        engine: Resource<DockerEngine>,
        labels: Vec<Pair>,
    ) -> wasmtime::Result<Result<Vec<NamedObject>, Error>> {
        self.with_engine(engine, async |engine| {
            let options = ListNetworksOptions {
                filters: Some(engine.filters(&labels)),
            };
            let mut list: Vec<NamedObject> = engine
                .docker
                .list_networks(Some(options))
                .await?
                .into_iter()
                .map(spec::network)
                .collect();
            // Networks the policy lists (`networks = [...]`) are visible though not ours.
            for name in engine.policy.listed_networks() {
                if let Ok(found) = engine.docker.inspect_network(name, None).await {
                    list.push(NamedObject {
                        name: found.name.unwrap_or_default(),
                        labels: spec::pairs(found.labels),
                    });
                }
            }
            Ok(spec::matching(list, &labels))
        })
        .await
    }

    async fn create_network(
        &mut self,
        engine: Resource<DockerEngine>,
        name: String,
        labels: Vec<Pair>,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.with_engine(engine, async |engine| {
            engine.gate.write(|| format!("create network `{name}`"))?;
            if let Ok(found) = engine.docker.inspect_network(&name, None).await {
                let owner = found.labels.and_then(|mut l| l.remove(OWNER_LABEL));
                return engine.exists("network", &name, owner);
            }
            let request = NetworkCreateRequest {
                name,
                labels: Some(engine.owner_labels(&labels)),
                ..Default::default()
            };
            engine.docker.create_network(request).await?;
            Ok(())
        })
        .await
    }

    async fn remove_network(
        &mut self,
        engine: Resource<DockerEngine>,
        name: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.with_engine(engine, async |engine| {
            engine.gate.write(|| format!("remove network `{name}`"))?;
            let network = engine.docker.inspect_network(&name, None).await?;
            engine.owned(network.labels.as_ref(), format!("remove network `{name}`"))?;
            Ok(engine.docker.remove_network(&name).await?)
        })
        .await
    }

    async fn list_volumes(
        &mut self,
        engine: Resource<DockerEngine>,
        labels: Vec<Pair>,
    ) -> wasmtime::Result<Result<Vec<NamedObject>, Error>> {
        self.with_engine(engine, async |engine| {
            let options = ListVolumesOptions {
                filters: Some(engine.filters(&labels)),
            };
            let list = engine.docker.list_volumes(Some(options)).await?;
            let mut volumes: Vec<NamedObject> = list
                .volumes
                .unwrap_or_default()
                .into_iter()
                .map(spec::volume)
                .collect();
            for name in engine.policy.listed_volumes() {
                if let Ok(found) = engine.docker.inspect_volume(name).await {
                    volumes.push(spec::volume(found));
                }
            }
            Ok(spec::matching(volumes, &labels))
        })
        .await
    }

    async fn create_volume(
        &mut self,
        engine: Resource<DockerEngine>,
        name: String,
        labels: Vec<Pair>,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.with_engine(engine, async |engine| {
            engine.gate.write(|| format!("create volume `{name}`"))?;
            if let Ok(mut found) = engine.docker.inspect_volume(&name).await {
                return engine.exists("volume", &name, found.labels.remove(OWNER_LABEL));
            }
            let request = VolumeCreateRequest {
                name: Some(name),
                labels: Some(engine.owner_labels(&labels)),
                ..Default::default()
            };
            engine.docker.create_volume(request).await?;
            Ok(())
        })
        .await
    }

    async fn remove_volume(
        &mut self,
        engine: Resource<DockerEngine>,
        name: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.with_engine(engine, async |engine| {
            engine.gate.write(|| format!("remove volume `{name}`"))?;
            let volume = engine.docker.inspect_volume(&name).await?;
            engine.owned(Some(&volume.labels), format!("remove volume `{name}`"))?;
            let options = None::<RemoveVolumeOptions>;
            Ok(engine.docker.remove_volume(&name, options).await?)
        })
        .await
    }

    async fn list_containers(
        &mut self,
        engine: Resource<DockerEngine>,
        labels: Vec<Pair>,
    ) -> wasmtime::Result<Result<Vec<ContainerSummary>, Error>> {
        self.with_engine(engine, async |engine| {
            let options = ListContainersOptions {
                all: true,
                filters: Some(engine.filters(&labels)),
                ..Default::default()
            };
            let list = settled(|| engine.docker.list_containers(Some(options.clone()))).await?;
            Ok(list.into_iter().map(spec::listed_container).collect())
        })
        .await
    }

    async fn check_container(
        &mut self,
        engine: Resource<DockerEngine>,
        mut spec: ContainerSpec,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.with_engine(engine, async |engine| engine.vet(&mut spec).await)
            .await
    }

    async fn create_container(
        &mut self,
        engine: Resource<DockerEngine>,
        mut spec: ContainerSpec,
    ) -> wasmtime::Result<Result<String, Error>> {
        self.with_engine(engine, async |engine| {
            engine
                .gate
                .write(|| format!("create container `{}`", spec.name))?;
            job::refuse_host_labels(&spec.labels)?;
            engine.vet(&mut spec).await?;
            let options = CreateContainerOptions {
                name: Some(spec.name.clone()),
                ..Default::default()
            };
            let body = create_body(&spec, &engine.owner);
            let created = engine.docker.create_container(Some(options), body).await?;
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
                    return Err(e.into());
                }
            }
            Ok(created.id)
        })
        .await
    }

    async fn start_container(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.with_engine(engine, async |engine| {
            engine.gate.write(|| format!("start container `{id}`"))?;
            let found = engine.owned_container(&id, "start").await?;
            let name = found.name.as_deref().unwrap_or(&id).trim_start_matches('/');
            let binds: Vec<String> = found
                .host_config
                .and_then(|h| h.mounts)
                .unwrap_or_default()
                .into_iter()
                .filter(|m| m.typ == Some(MountType::BIND))
                .filter_map(|m| m.source)
                .collect();
            engine.check(engine.policy.vet_start(name, &binds, &engine.site()))?;
            Ok(engine.docker.start_container(&id, None).await?)
        })
        .await
    }

    async fn stop_container(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
        timeout_secs: u32,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.with_engine(engine, async |engine| {
            engine.gate.write(|| format!("stop container `{id}`"))?;
            engine.owned_container(&id, "stop").await?;
            let options = StopContainerOptions {
                t: Some(timeout_secs.try_into().unwrap_or(i32::MAX)),
                signal: None,
            };
            match engine.docker.stop_container(&id, Some(options)).await {
                // 304: already stopped.
                Ok(())
                | Err(BollardError::DockerResponseServerError {
                    status_code: 304, ..
                }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn remove_container(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
        force: bool,
    ) -> wasmtime::Result<Result<(), Error>> {
        self.with_engine(engine, async |engine| {
            engine.gate.write(|| format!("remove container `{id}`"))?;
            let found = engine.owned_container(&id, "remove").await?;
            let name = found.name.as_deref().unwrap_or(&id).trim_start_matches('/');
            // A job goes with its anonymous volumes, as when the host removes it.
            let job = engine.is_job(name);
            let options = RemoveContainerOptions {
                force,
                v: job,
                link: false,
            };
            engine.docker.remove_container(&id, Some(options)).await?;
            if job {
                engine.forget_job(name);
            }
            Ok(())
        })
        .await
    }

    async fn inspect_container(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
    ) -> wasmtime::Result<Result<ContainerState, Error>> {
        self.with_engine(engine, async |engine| {
            let found = engine.owned_container(&id, "inspect").await?;
            Ok(spec::inspected_container(found))
        })
        .await
    }

    async fn wait_container(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
    ) -> wasmtime::Result<Result<i64, Error>> {
        self.with_engine(engine, async |engine| {
            engine.owned_container(&id, "wait for").await?;
            job::exit_code(&engine.docker, &id).await
        })
        .await
    }

    async fn logs(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
        tail: u32,
    ) -> wasmtime::Result<Result<String, Error>> {
        self.with_engine(engine, async |engine| {
            engine.owned_container(&id, "read the logs of").await?;
            let options = LogsOptions {
                stdout: true,
                stderr: true,
                tail: tail.to_string(),
                ..Default::default()
            };
            let mut out = Bounded::default();
            let mut stream = engine.docker.logs(&id, Some(options));
            while let Some(chunk) = stream.next().await {
                if !out.push(&chunk?.into_bytes()) {
                    break; // the rest is not read at all
                }
            }
            Ok(out.finish())
        })
        .await
    }

    async fn exec(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
        cmd: Vec<String>,
    ) -> wasmtime::Result<Result<(i64, String), Error>> {
        self.with_engine(engine, async |engine| {
            engine.gate.write(|| format!("exec in container `{id}`"))?;
            engine.owned_container(&id, "exec into").await?;
            let config = ExecConfig {
                cmd: Some(cmd),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            };
            let created = engine.docker.create_exec(&id, config).await?;
            let options = StartExecOptions {
                detach: false,
                ..Default::default()
            };
            let mut out = Bounded::default();
            let started = engine.docker.start_exec(&created.id, Some(options)).await?;
            if let StartExecResults::Attached { mut output, .. } = started {
                // Read to the end (the exit code comes after), keeping only the first bytes.
                while let Some(chunk) = output.next().await {
                    out.push(&chunk?.into_bytes());
                }
            }
            let inspected = engine.docker.inspect_exec(&created.id).await?;
            Ok((inspected.exit_code.unwrap_or(-1), out.finish()))
        })
        .await
    }

    async fn create_job(
        &mut self,
        engine: Resource<DockerEngine>,
        spec: ContainerSpec,
    ) -> wasmtime::Result<Result<String, Error>> {
        ConnectionView::create_job(self, engine, spec).await
    }

    async fn follow_logs(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
    ) -> wasmtime::Result<Result<Resource<LogStream>, Error>> {
        ConnectionView::follow_logs(self, engine, id).await
    }

    async fn wait_for(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
        timeout_ms: u64,
    ) -> wasmtime::Result<Result<Option<i64>, Error>> {
        ConnectionView::wait_for(self, engine, id, timeout_ms).await
    }

    async fn read_file(
        &mut self,
        engine: Resource<DockerEngine>,
        id: String,
        path: String,
        max_bytes: u32,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        ConnectionView::read_file(self, engine, id, path, max_bytes).await
    }

    async fn drop(&mut self, engine: Resource<DockerEngine>) -> wasmtime::Result<()> {
        self.table.delete(engine)?;
        Ok(())
    }
}

/// Output of `logs` or `exec` kept for the guest: what the host holds is bounded whatever the
/// container writes.
#[derive(Default)]
struct Bounded {
    text: Vec<u8>,
    dropped: usize,
}

/// Bytes of `logs`/`exec` output handed to a plugin.
const MAX_OUTPUT: usize = 4 << 20;

impl Bounded {
    /// Keep what fits; `false` once the limit is reached.
    fn push(&mut self, bytes: &[u8]) -> bool {
        let room = MAX_OUTPUT - self.text.len();
        let kept = bytes.len().min(room);
        self.text.extend_from_slice(&bytes[..kept]);
        self.dropped += bytes.len() - kept;
        self.dropped == 0
    }

    fn finish(self) -> String {
        let mut out = String::from_utf8_lossy(&self.text).into_owned();
        if self.dropped > 0 {
            out.push_str(&format!(
                "\n[output truncated: {} more bytes over the {} MiB limit]",
                self.dropped,
                MAX_OUTPUT >> 20
            ));
        }
        out
    }
}

/// The engine's "no such object" answer.
fn not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_output_is_kept_up_to_the_limit_then_counted() {
        let mut out = Bounded::default();
        assert!(out.push(&vec![b'a'; MAX_OUTPUT - 1]));
        assert!(!out.push(b"bcd"));
        assert!(!out.push(b"ef"));
        let text = out.finish();
        assert!(text.starts_with(&"a".repeat(MAX_OUTPUT - 1)));
        assert!(
            text.ends_with("[output truncated: 4 more bytes over the 4 MiB limit]"),
            "{}",
            &text[text.len() - 80..]
        );
        assert_eq!(
            text.len(),
            MAX_OUTPUT + "\n[output truncated: 4 more bytes over the 4 MiB limit]".len()
        );
    }
}
