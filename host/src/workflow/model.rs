//! The validated workflow: every reference resolved, every value typed.

use super::authored::{Catchup, ConnectionKind, Overlap};
use super::diagnostic::Source;
use super::expr::{Expr, Reference, Template};
use super::inputs::InputSpec;
use crate::dag::Dag;
use indexmap::IndexMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

/// Default per-step memory cap.
pub const DEFAULT_MEMORY: u64 = 256 * 1024 * 1024;
/// Default per-step wall-clock timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A workflow that passed every static check.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub description: Option<String>,
    pub source: Source,
    /// Directory of the file: plugin paths and `.env` are relative to it.
    pub dir: PathBuf,
    pub inputs: IndexMap<String, InputSpec>,
    pub connections: IndexMap<String, Connection>,
    pub schedules: Vec<Schedule>,
    pub webhook: Option<Webhook>,
    /// Steps in topological order (dependencies first, then declaration order).
    pub steps: IndexMap<String, Step>,
    /// Who needs whom, built once at validation.
    pub dag: Dag,
}

impl Workflow {
    /// Names of every secret any expression reads.
    pub fn secret_names(&self) -> Vec<String> {
        self.referenced(|r| match r {
            super::expr::Reference::Secret(Some(n)) => Some(n.clone()),
            _ => None,
        })
    }

    /// Names of every environment variable any expression reads.
    pub fn env_names(&self) -> Vec<String> {
        self.referenced(|r| match r {
            super::expr::Reference::Env(Some(n)) => Some(n.clone()),
            _ => None,
        })
    }

    fn referenced(&self, pick: impl Fn(&super::expr::Reference) -> Option<String>) -> Vec<String> {
        let mut names: Vec<String> = self
            .steps
            .values()
            .flat_map(|s| s.exprs())
            .chain(self.connections.values().flat_map(|c| c.settings.exprs()))
            .flat_map(|e| e.references.iter().filter_map(&pick))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// A step that passed static checks.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub description: Option<String>,
    pub plugin: PluginRef,
    pub needs: Vec<String>,
    pub condition: Option<Expr>,
    pub with: Template,
    pub allow: Vec<Grant>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub limits: Limits,
    /// Secret outputs to keep in the host secret store after success.
    pub store_secrets: Vec<StoreSecret>,
    /// Labels the worker running it must have, sorted (empty: any worker taking untagged
    /// steps).
    pub runs_on: Vec<String>,
    pub spans: StepSpans,
}

/// One `store_secret` mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSecret {
    /// The output to store; `None`: the step's only secret output.
    pub output: Option<String>,
    /// The secret's name in the store (`secrets.NAME` later).
    pub name: String,
}

impl Step {
    /// Every expression of the step (`if` and `with`).
    pub fn exprs(&self) -> Vec<&Expr> {
        let mut exprs = self.with.exprs();
        exprs.extend(self.condition.as_ref());
        exprs
    }

    /// The other steps the step's expressions read: all of them (`steps` as a whole), or these
    /// ids, sorted and without repeats.
    pub fn steps_read(&self) -> StepsRead<'_> {
        let exprs = self.exprs();
        let references = || exprs.iter().flat_map(|e| e.references.iter());
        if references().any(|r| *r == Reference::Step(None)) {
            return StepsRead::All;
        }
        let mut ids: Vec<&str> = references()
            .filter_map(|r| match r {
                Reference::Step(Some(id)) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        StepsRead::These(ids)
    }
}

/// Which finished steps a step's expressions read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepsRead<'a> {
    All,
    These(Vec<&'a str>),
}

/// Where a step's parts are in the file, for diagnostics found later (plugin checks).
#[derive(Debug, Clone, Default)]
pub struct StepSpans {
    pub step: Range<usize>,
    pub plugin: Range<usize>,
    pub with: Option<Range<usize>>,
}

/// Which component a step runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PluginRef {
    /// Compiled into the `orch` binary (`plugin = "echo"`).
    Builtin(String),
    /// A component file, relative paths resolved against the workflow's directory.
    File {
        path: PathBuf,
        sha256: Option<String>,
    },
    /// A component in an OCI registry (`plugin = "oci://HOST/REPO:TAG"`), optionally pinned
    /// to a manifest digest (`{ oci = "HOST/REPO:TAG", digest = "sha256:..." }`).
    Oci {
        /// `HOST[:PORT]/REPO:TAG`, without `oci://`.
        reference: String,
        digest: Option<String>,
    },
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginRef::Builtin(name) => f.write_str(name),
            PluginRef::File { path, .. } => write!(f, "{}", path.display()),
            PluginRef::Oci { reference, .. } => write!(f, "oci://{reference}"),
        }
    }
}

/// What a step may reach, from its `allow` list. Default: nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// A named connection from `[connections]`.
    Connection(String),
    /// An HTTP origin; `host` may start with `*.` to allow subdomains.
    Http {
        scheme: String,
        host: String,
        port: u16,
    },
    /// A raw TCP destination (wasi:sockets).
    Tcp { host: String, port: u16 },
    /// A host directory the plugin may read (not write), seen in the sandbox at `guest`
    /// (the grant as written, without a leading `./`); `host` is resolved against the
    /// workflow's directory.
    Dir { guest: String, host: PathBuf },
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // An IPv6 host is written in brackets, as in a URL.
        let bracketed = |host: &str| {
            if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_string()
            }
        };
        match self {
            Grant::Connection(name) => f.write_str(name),
            Grant::Http { scheme, host, port } => {
                write!(f, "{scheme}://{}:{port}", bracketed(host))
            }
            Grant::Tcp { host, port } => write!(f, "tcp://{}:{port}", bracketed(host)),
            Grant::Dir { guest, .. } if guest.starts_with('/') => f.write_str(guest),
            Grant::Dir { guest, .. } => write!(f, "./{guest}"),
        }
    }
}

/// Retries for `retryable` step errors: exponential backoff from `backoff`, capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = no retry).
    pub max: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// No retries.
    pub const NONE: RetryPolicy = RetryPolicy {
        max: 0,
        backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
    };

    /// The wait before attempt `next` (2 = first retry): backoff × 2^(next-2), capped.
    pub fn delay_before(&self, next: u32) -> Duration {
        let factor = 2u32.saturating_pow(next.saturating_sub(2));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Resource limits of one step instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory: u64,
    pub fuel: Option<u64>,
}

/// A named endpoint whose credentials the host keeps.
#[derive(Debug, Clone)]
pub struct Connection {
    pub name: String,
    pub kind: ConnectionKind,
    /// Kind-specific settings (`url`, `database`...), templated (`${{ secrets.X }}`), rendered
    /// by the host at run start.
    pub settings: Template,
}

/// A validated `[[schedule]]`.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// As written: 5 fields, or 6 with seconds first (vixie-cron semantics, Sunday = 0).
    pub cron: String,
    pub parsed: croner::Cron,
    pub timezone: chrono_tz::Tz,
    pub overlap: Overlap,
    pub catchup: Catchup,
    pub inputs: IndexMap<String, serde_json::Value>,
}

/// A validated `[webhook]`.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The secret (by name) whose value keys the HMAC-SHA256 signature.
    pub secret: String,
    /// Input name -> path segments into the JSON payload.
    pub inputs: IndexMap<String, Vec<String>>,
    /// Refuse deliveries without a signed timestamp (they can be replayed under a new id).
    pub require_timestamp: bool,
}
