//! Job containers (`create-job`): one-off containers a step runs to completion. The host names
//! and labels them, follows their output for the guest a bounded read at a time, and removes
//! them when the step's engine handle goes away (end, timeout or cancel alike). A process that
//! dies with jobs running leaves them labelled with its identity, and the next process on the
//! same host that opens the connection removes them ([`sweep`]).

use super::errors::settled;
use super::policy::Refused;
use super::spec::create_body;
use super::{DockerEngine, OWNER_LABEL};
use crate::capability::LogLevel;
use crate::capability::bindings::orch::plugin::docker::{
    ContainerSpec, Error, HostLogStream, LogRead, Pair,
};
use crate::capability::connections::ConnectionView;
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, WaitContainerOptions,
};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use wasmtime::component::Resource;

/// Marks a job container; the value names the process that runs it (see [`holder`]).
pub(super) const JOB_LABEL: &str = "orch.job";

/// Most bytes one `log-stream.read` hands the guest.
const MAX_READ: u32 = 1 << 20;
/// Longest one `log-stream.read` waits for output.
const MAX_WAIT: Duration = Duration::from_secs(10);
/// Largest file `read-file` returns.
const MAX_FILE: u32 = 4 << 20;
/// Output chunks buffered between the engine and the guest; the engine waits beyond that.
const CHUNKS: usize = 32;
/// Requests that last as long as the job: following its output, waiting for its exit (the
/// engine client's own timeout would cut them at [`super::REQUEST_TIMEOUT`]).
const JOB_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Log streams one engine handle may hold open at once.
const MAX_STREAMS: usize = 8;
/// How often one process looks for jobs left by dead ones, per connection owner.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Removals of jobs whose engine handle went away; [`settle`] waits for them before exit.
static REAPER: LazyLock<TaskTracker> = LazyLock::new(TaskTracker::new);

/// Wait (a bounded time) for job removals still under way: the CLI calls it before exiting, so
/// that `orch run` never leaves a timed-out job behind.
pub(crate) async fn settle() {
    REAPER.close();
    let _ = tokio::time::timeout(Duration::from_secs(30), REAPER.wait()).await;
}

/// This process as a job holder: `HOSTNAME/BOOT-ID/PID-NAMESPACE/PID/START-TIME`. Processes
/// that share all three of the first share a process table, so one can tell whether the other
/// still runs (containers share the boot id, and may share the hostname, but not the pid
/// namespace).
fn holder() -> &'static str {
    static HOLDER: OnceLock<String> = OnceLock::new();
    HOLDER.get_or_init(|| {
        let pid = std::process::id().to_string();
        let start = process_start(&pid).unwrap_or_default();
        format!("{}/{pid}/{start}", machine())
    })
}

/// `HOSTNAME/BOOT-ID/PID-NAMESPACE` as the kernel gives them; empty parts where it does not.
fn machine() -> &'static str {
    static MACHINE: OnceLock<String> = OnceLock::new();
    MACHINE.get_or_init(|| {
        let read = |path| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let namespace = std::fs::read_link("/proc/self/ns/pid")
            .map(|l| l.to_string_lossy().replace(['/', ':', '[', ']'], ""))
            .unwrap_or_default();
        format!(
            "{}/{}/{namespace}",
            read("/proc/sys/kernel/hostname").replace('/', "_"),
            read("/proc/sys/kernel/random/boot_id"),
        )
    })
}

/// When process `pid` started (clock ticks since boot), if it exists: with the pid, it names
/// one process even after the pid is reused.
fn process_start(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22; the command name (field 2) may hold spaces and parentheses, so count after it.
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(19).map(str::to_string)
}

/// Whether the job's holder is a process of this machine that no longer runs. A holder on
/// another machine (or in another container) is never judged from here.
fn holder_is_gone(holder: &str) -> bool {
    let mut parts = holder.rsplitn(3, '/');
    let (Some(start), Some(pid), Some(place)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    // Without /proc nothing can be told apart: judge nothing.
    let known = machine().split('/').all(|p| !p.is_empty());
    if !known || place != machine() || start.is_empty() || pid.is_empty() {
        return false;
    }
    process_start(pid).as_deref() != Some(start)
}

/// Remove this connection owner's jobs left by dead processes of this machine (the next run of
/// the workflow, or a resumed one, cleans up after the one that died); at most once a minute
/// per owner and process. Best effort: a failure is logged, never the step's.
pub(super) async fn sweep(engine: &DockerEngine) {
    static SWEPT: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Default::default);
    {
        let mut swept = SWEPT.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match swept.get(&engine.owner) {
            Some(at) if now.duration_since(*at) < SWEEP_EVERY => return,
            _ => swept.insert(engine.owner.clone(), now),
        };
    }
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![
                JOB_LABEL.to_string(),
                format!("{OWNER_LABEL}={}", engine.owner),
            ],
        )])),
        ..Default::default()
    };
    let list = match settled(|| engine.docker.list_containers(Some(options.clone()))).await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(owner = %engine.owner, "cannot list leftover job containers: {e:?}");
            return;
        }
    };
    for job in list {
        let labels = job.labels.unwrap_or_default();
        let Some(holder) = labels.get(JOB_LABEL).filter(|h| holder_is_gone(h)) else {
            continue;
        };
        let name = job.names.and_then(|n| n.into_iter().next());
        let name = name.as_deref().unwrap_or_default().trim_start_matches('/');
        let Some(id) = job.id else { continue };
        match remove(&engine.docker, &id).await {
            Ok(()) => engine.gate.sink.log(
                LogLevel::Warn,
                &format!(
                    "removed job container `{name}` left by orch process {} (it stopped while the job ran)",
                    holder.rsplit('/').nth(1).unwrap_or("?")
                ),
            ),
            Err(e) => tracing::warn!(%name, "cannot remove leftover job container: {e}"),
        }
    }
}

/// Force-remove a job with its anonymous volumes; already gone is fine.
async fn remove(docker: &Docker, id: &str) -> Result<(), BollardError> {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        link: false,
    };
    match docker.remove_container(id, Some(options)).await {
        Err(BollardError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        other => other,
    }
}

impl DockerEngine {
    fn track_job(&self, name: &str) {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.push(name.to_string());
    }

    /// Whether `name` is a job created through this handle and not yet removed.
    pub(super) fn is_job(&self, name: &str) -> bool {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.iter().any(|j| j == name)
    }

    /// Stop tracking a job the guest removed itself.
    pub(super) fn forget_job(&self, name: &str) {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.retain(|j| j != name);
    }

    /// A client whose requests may last as long as a job.
    fn patient(&self) -> Docker {
        self.docker.clone().with_timeout(JOB_TIMEOUT)
    }
}

/// The guest's handle gone (or the whole step dropped): remove its jobs in the background.
impl Drop for DockerEngine {
    fn drop(&mut self) {
        let jobs = std::mem::take(self.jobs.get_mut().unwrap_or_else(PoisonError::into_inner));
        if jobs.is_empty() {
            return;
        }
        let docker = self.docker.clone();
        let work = async move {
            for name in jobs {
                if let Err(e) = remove(&docker, &name).await {
                    tracing::warn!(%name, "cannot remove job container: {e}");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(REAPER.spawn_on(work, &handle)),
            // Dropped outside the runtime: finish on a thread of its own.
            Err(_) => drop(std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(work);
                }
            })),
        }
    }
}

/// Labels only the host sets.
pub(super) fn refuse_host_labels(labels: &[Pair]) -> Result<(), Error> {
    match labels
        .iter()
        .find(|l| l.key == JOB_LABEL || l.key == OWNER_LABEL)
    {
        Some(l) => Err(Error::Engine(format!(
            "label `{}` is set by the host; use another name",
            l.key
        ))),
        None => Ok(()),
    }
}

/// A job's output as the guest reads it: a task follows the engine's stream into a bounded
/// channel (aborted with the handle), and `read` hands out at most what the guest asks for.
#[allow(
    unreachable_pub,
    reason = "bindgen! re-exports its `with` types with `pub use`"
)]
pub struct LogStream {
    chunks: mpsc::Receiver<Result<Bytes, Error>>,
    /// The part of a chunk that did not fit the last read.
    pending: Bytes,
    /// An error met after some bytes were read; the next read returns it.
    failed: Option<Error>,
    ended: bool,
    _follow: AbortOnDropHandle<()>,
    /// Counted against [`MAX_STREAMS`] until dropped.
    _slot: Option<StreamSlot>,
}

/// One of an engine handle's [`MAX_STREAMS`] log streams, given back when dropped.
struct StreamSlot(Arc<AtomicUsize>);

impl StreamSlot {
    fn take(open: &Arc<AtomicUsize>) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_STREAMS).then_some(n + 1)
        })
        .ok()?;
        Some(StreamSlot(open.clone()))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LogStream {
    async fn read(&mut self, max: usize, wait: Duration) -> Result<LogRead, Error> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.pending.is_empty() && !self.ended {
            match tokio::time::timeout(wait.min(MAX_WAIT), self.chunks.recv()).await {
                Err(_) => return Ok(self.answer(Vec::new())),
                Ok(None) => self.ended = true,
                Ok(Some(chunk)) => self.pending = chunk?,
            }
        }
        let mut out = Vec::new();
        loop {
            let take = self.pending.len().min(max - out.len());
            out.extend_from_slice(&self.pending.split_to(take));
            if out.len() >= max || self.ended {
                break;
            }
            match self.chunks.try_recv() {
                Ok(Ok(chunk)) => self.pending = chunk,
                Ok(Err(e)) => {
                    self.failed = Some(e);
                    break;
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.ended = true,
            }
        }
        Ok(self.answer(out))
    }

    fn answer(&self, bytes: Vec<u8>) -> LogRead {
        LogRead {
            bytes,
            ended: self.ended && self.pending.is_empty(),
        }
    }
}

impl HostLogStream for ConnectionView<'_> {
    async fn read(
        &mut self,
        stream: Resource<LogStream>,
        max_bytes: u32,
        wait_ms: u32,
    ) -> wasmtime::Result<Result<LogRead, Error>> {
        let stream = self.table.get_mut(&stream)?;
        let max = max_bytes.clamp(1, MAX_READ) as usize;
        let wait = Duration::from_millis(wait_ms.into());
        Ok(stream.read(max, wait).await)
    }

    async fn drop(&mut self, stream: Resource<LogStream>) -> wasmtime::Result<()> {
        self.table.delete(stream)?;
        Ok(())
    }
}

impl ConnectionView<'_> {
    pub(super) async fn create_job(
        &mut self,
        handle: Resource<DockerEngine>,
        mut spec: ContainerSpec,
    ) -> wasmtime::Result<Result<String, Error>> {
        let engine = self.table.get(&handle)?;
        Ok(async {
            let image = spec.image.clone();
            engine
                .gate
                .write(|| format!("create job container of image `{image}`"))?;
            if !spec.name.is_empty() {
                return Err(Error::Engine(
                    "the host names job containers: leave `name` empty".into(),
                ));
            }
            if spec.networks.len() > 1 {
                return Err(Error::Engine(
                    "a job container joins at most one network".into(),
                ));
            }
            refuse_host_labels(&spec.labels)?;
            spec.name = format!("orch-job-{}", uuid::Uuid::now_v7().simple());
            spec.restart = "no".into();
            engine.vet(&mut spec).await?;
            let mut body = create_body(&spec, &engine.owner);
            if let Some(labels) = body.labels.as_mut() {
                labels.insert(JOB_LABEL.into(), holder().to_string());
            }
            let options = CreateContainerOptions {
                name: Some(spec.name.clone()),
                ..Default::default()
            };
            // Tracked by name before the engine is asked: a step dropped while the create is
            // under way still has its job removed.
            engine.track_job(&spec.name);
            match engine.docker.create_container(Some(options), body).await {
                Ok(created) => Ok(created.id),
                Err(e) => {
                    engine.forget_job(&spec.name);
                    Err(e.into())
                }
            }
        }
        .await)
    }

    pub(super) async fn follow_logs(
        &mut self,
        handle: Resource<DockerEngine>,
        id: String,
    ) -> wasmtime::Result<Result<Resource<LogStream>, Error>> {
        let engine = self.table.get(&handle)?;
        if let Err(e) = engine.owned_container(&id, "read the logs of").await {
            return Ok(Err(e));
        }
        let Some(slot) = StreamSlot::take(&engine.streams) else {
            return Ok(Err(Error::Engine(format!(
                "{MAX_STREAMS} log streams are open on this engine handle; drop one first"
            ))));
        };
        let docker = engine.patient();
        let (tx, chunks) = mpsc::channel(CHUNKS);
        let follow = tokio::spawn(async move {
            let options = LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                tail: "all".into(),
                ..Default::default()
            };
            let mut stream = docker.logs(&id, Some(options));
            while let Some(item) = stream.next().await {
                let item = item.map(|out| out.into_bytes()).map_err(Error::from);
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        let stream = LogStream {
            chunks,
            pending: Bytes::new(),
            failed: None,
            ended: false,
            _follow: AbortOnDropHandle::new(follow),
            _slot: Some(slot),
        };
        Ok(Ok(self.table.push(stream)?))
    }

    pub(super) async fn wait_for(
        &mut self,
        handle: Resource<DockerEngine>,
        id: String,
        timeout_ms: u64,
    ) -> wasmtime::Result<Result<Option<i64>, Error>> {
        self.with_engine(handle, async |engine| {
            engine.owned_container(&id, "wait for").await?;
            let limit = Duration::from_millis(timeout_ms).min(JOB_TIMEOUT);
            match tokio::time::timeout(limit, exit_code(&engine.patient(), &id)).await {
                Ok(code) => code.map(Some),
                Err(_) => Ok(None),
            }
        })
        .await
    }

    pub(super) async fn read_file(
        &mut self,
        handle: Resource<DockerEngine>,
        id: String,
        path: String,
        max_bytes: u32,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        self.with_engine(handle, async |engine| {
            let found = engine.owned_container(&id, "read a file of").await?;
            let name = found.name.as_deref().unwrap_or(&id).trim_start_matches('/');
            // Files of other containers (a shared service's secrets) are not for reading.
            if !engine.is_job(name) {
                return Err(engine.gate.refuse(Refused::Never {
                    what: format!("read a file of container `{name}`"),
                    how: "only the step's own job containers (create-job) can be read".into(),
                }));
            }
            let max = max_bytes.min(MAX_FILE) as usize;
            let options = DownloadFromContainerOptions { path: path.clone() };
            let mut stream = engine.docker.download_from_container(&id, Some(options));
            // One file's tar: headers (a long name adds a few blocks), data, end blocks.
            let limit = max + 16 * 1024;
            let mut tar = Vec::new();
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(chunk) if tar.len() + chunk.len() > limit => {
                        return Err(too_large(&path, max));
                    }
                    Ok(chunk) => tar.extend_from_slice(&chunk),
                    Err(BollardError::DockerResponseServerError {
                        status_code: 404, ..
                    }) => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
            }
            one_file(&tar, &path, max).map(Some)
        })
        .await
    }
}

/// The container's exit code once it is not running.
pub(super) async fn exit_code(docker: &Docker, id: &str) -> Result<i64, Error> {
    let options = WaitContainerOptions {
        condition: "not-running".into(),
    };
    let mut wait = docker.wait_container(id, Some(options));
    match wait.next().await {
        Some(Ok(exit)) => Ok(exit.status_code),
        // A non-zero exit comes back as this error; it is an answer, not a failure.
        Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(e.into()),
        None => Err(Error::Engine(format!("wait on `{id}` returned nothing"))),
    }
}

fn too_large(path: &str, max: usize) -> Error {
    Error::Engine(format!("`{path}` is larger than {max} bytes"))
}

/// The single regular file in `tar`, the engine's archive of `path`.
fn one_file(tar: &[u8], path: &str, max: usize) -> Result<Vec<u8>, Error> {
    let broken = |e: std::io::Error| Error::Engine(format!("archive of `{path}`: {e}"));
    let mut archive = tar::Archive::new(tar);
    let mut entries = archive.entries().map_err(broken)?;
    let Some(entry) = entries.next() else {
        return Err(Error::Engine(format!("archive of `{path}` is empty")));
    };
    let mut entry = entry.map_err(broken)?;
    if entry.header().entry_type() != tar::EntryType::Regular {
        return Err(Error::Engine(format!(
            "`{path}` is not a regular file ({:?})",
            entry.header().entry_type()
        )));
    }
    if entry.size() > max as u64 {
        return Err(too_large(path, max));
    }
    let mut data = Vec::with_capacity(entry.size() as usize);
    std::io::Read::read_to_end(&mut entry, &mut data).map_err(broken)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(name: &str, kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, data).unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_file_comes_out_of_its_archive_within_the_limit() {
        let tar = tar_of("orch-output", tar::EntryType::Regular, b"A=1\n");
        assert_eq!(one_file(&tar, "/tmp/orch-output", 10).unwrap(), b"A=1\n");
        let err = one_file(&tar, "/tmp/orch-output", 3).unwrap_err();
        assert!(matches!(&err, Error::Engine(m) if m.contains("larger than 3 bytes")));
        let link = tar_of("orch-output", tar::EntryType::Symlink, b"");
        let err = one_file(&link, "/tmp/orch-output", 10).unwrap_err();
        assert!(matches!(&err, Error::Engine(m) if m.contains("not a regular file")));
    }

    #[test]
    fn only_dead_processes_of_this_machine_lose_their_jobs() {
        assert!(!holder_is_gone(holder()), "this process runs");
        let here = machine();
        let [host, boot, ns] = here.split('/').collect::<Vec<_>>()[..] else {
            panic!("{here}")
        };
        assert!(holder_is_gone(&format!("{here}/999999999/1")));
        let reused = format!("{here}/{}/1", std::process::id());
        assert!(holder_is_gone(&reused), "same pid, other start time");
        assert!(!holder_is_gone(&format!(
            "elsewhere/{boot}/{ns}/999999999/1"
        )));
        assert!(!holder_is_gone(&format!(
            "{host}/other-boot/{ns}/999999999/1"
        )));
        assert!(
            !holder_is_gone(&format!("{host}/{boot}/pid4026532000/999999999/1")),
            "another pid namespace (a container on this host) is not judged"
        );
        assert!(!holder_is_gone("garbage"));
        assert!(!holder_is_gone("a/b/c/d"));
    }

    #[test]
    fn reads_are_cut_to_what_the_guest_asks_and_end_after_the_last_byte() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, chunks) = mpsc::channel(4);
            let mut stream = LogStream {
                chunks,
                pending: Bytes::new(),
                failed: None,
                ended: false,
                _follow: AbortOnDropHandle::new(tokio::spawn(async {})),
                _slot: None,
            };
            let quiet = stream.read(8, Duration::from_millis(10)).await.unwrap();
            assert!(quiet.bytes.is_empty() && !quiet.ended);
            tx.send(Ok(Bytes::from_static(b"hello "))).await.unwrap();
            tx.send(Ok(Bytes::from_static(b"world\n"))).await.unwrap();
            drop(tx);
            let first = stream.read(8, Duration::from_secs(1)).await.unwrap();
            assert_eq!(first.bytes, b"hello wo");
            assert!(!first.ended);
            let rest = stream.read(8, Duration::from_secs(1)).await.unwrap();
            assert_eq!(rest.bytes, b"rld\n");
            assert!(rest.ended);
        });
    }
}
