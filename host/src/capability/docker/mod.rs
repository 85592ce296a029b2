//! Host side of `orch:plugin/docker`: a Docker Engine API (bollard) on connections the step is
//! granted, every call checked against the connection's policy; the address stays in the host.

mod engine;
mod errors;
mod job;
mod policy;
mod spec;

use super::connections::{ConnectionData, ConnectionGate, ConnectionView, connection_view};
use crate::capability::bindings::orch::plugin::docker::{Error, Host};
use crate::workflow::ConnectionKind;
use bollard::Docker;
use bollard::errors::Error as BollardError;
#[allow(
    unreachable_pub,
    reason = "bindgen! re-exports its `with` types with `pub use`"
)]
pub use job::LogStream;
pub(crate) use job::settle as settle_jobs;
use policy::{Policy, PolicyGate};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{Linker, Resource};

/// Stamped on every container, network and volume created through a connection (value: the
/// connection's owner, `WORKFLOW/CONNECTION`); only those may be started, stopped, removed,
/// exec'd into, inspected, listed or mounted through it.
pub(crate) const OWNER_LABEL: &str = "orch.connection";

/// How long one engine request may take (pulls and waits excepted).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An open engine, owned by the guest through a resource handle.
#[allow(
    unreachable_pub,
    reason = "bindgen! re-exports its `with` types with `pub use`"
)]
pub struct DockerEngine {
    docker: Docker,
    /// On this machine (unix socket): bind sources can be resolved here.
    local: bool,
    policy: Policy,
    /// Where denials are reported, and the name the policy is read from.
    gate: PolicyGate,
    /// The [`OWNER_LABEL`] value of what this connection creates: `WORKFLOW/CONNECTION`, or its
    /// `owner` setting (workflows that manage one project together share it).
    owner: String,
    /// Names of the job containers created through this handle and not yet removed by the
    /// guest; removed when the handle drops ([`job`]).
    jobs: Mutex<Vec<String>>,
    /// Log streams open on this handle (each holds an engine connection and a buffer).
    streams: Arc<AtomicUsize>,
}

async fn open_engine(gate: &ConnectionGate, name: &str) -> Result<DockerEngine, Error> {
    let connection = gate.open::<Error>(name, ConnectionKind::Docker)?;
    let Some(host) = connection.setting("host").filter(|h| !h.trim().is_empty()) else {
        return Err(Error::Engine(format!(
            "connection `{name}` has no `host`, or it rendered empty (set it to unix:///var/run/docker.sock or tcp://host:2375)"
        )));
    };
    let policy = Policy::from_settings(&connection.settings)
        .map_err(|e| Error::Engine(format!("connection `{name}`: {e}")))?;
    let owner = connection
        .setting("owner")
        .unwrap_or(&connection.id)
        .to_string();
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
    let engine = DockerEngine {
        docker,
        local: host.starts_with("unix://"),
        policy,
        gate: PolicyGate {
            connection: name.to_string(),
            granter: gate.granter.clone(),
            sink: gate.sink.clone(),
        },
        owner,
        jobs: Mutex::default(),
        streams: Arc::default(),
    };
    // A plan changes nothing, leftovers included.
    if !engine.gate.granter.planning() {
        job::sweep(&engine).await;
    }
    Ok(engine)
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

/// Link `orch:plugin/docker` into the plugin linker.
pub(crate) fn add_to_linker(linker: &mut Linker<super::StepState>) -> wasmtime::Result<()> {
    crate::capability::bindings::orch::plugin::docker::add_to_linker::<_, ConnectionData>(
        linker,
        connection_view,
    )
}
