//! The `orch` command line: the clap types, and `CliError`, whose `report` is the one place that
//! prints an error and maps the exit code (1 a step failed or the run could not finish, 2 invalid).

mod authoring;
mod cmd;
mod prepare;
mod progress;
mod remote;
mod render;
mod schema;
mod settings;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Run workflows of sandboxed WebAssembly steps.
#[derive(Debug, Parser)]
#[command(name = "orch", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Run store: sqlite://PATH or postgres://... (default: orch.db in the user data dir).
    #[arg(long, global = true, env = "ORCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where compiled plugins are cached (default: the user cache dir).
    #[arg(long, global = true, env = "ORCH_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The host secret store (default: `secrets/` in the user data dir).
    #[arg(long, global = true, env = "ORCH_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Machine-readable output: JSON lines for events, JSON for results.
    #[arg(long, global = true)]
    pub json: bool,
    /// Refuse plugins missing from `orch.lock` (beside the workflow), or whose digest or
    /// imports differ from it. `orch serve` enforces a lock that exists without it.
    #[arg(long, global = true)]
    pub locked: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a workflow now.
    Run {
        /// The workflow file.
        file: PathBuf,
        /// An input value: NAME=VALUE (repeatable).
        #[arg(short, long = "input", value_name = "NAME=VALUE")]
        inputs: Vec<String>,
        /// Most steps running at once.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
    },
    /// Show what a run would change, changing nothing.
    Plan {
        file: PathBuf,
        #[arg(short, long = "input", value_name = "NAME=VALUE")]
        inputs: Vec<String>,
    },
    /// Check workflow files, including each step's `with` against its plugin's schema.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Draw a workflow's DAG.
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: cmd::GraphFormat,
    },
    /// Inspect recorded runs (from the store, or from a server with --server).
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Serve a directory of workflows: cron schedules, the HTTP API, webhooks.
    Serve {
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Trigger a run of a served workflow.
    Trigger {
        /// The workflow's name.
        workflow: String,
        /// An input value: NAME=VALUE (repeatable), typed by the workflow's inputs.
        #[arg(short, long = "input", value_name = "NAME=VALUE")]
        inputs: Vec<String>,
        /// Wait for the run to end; the exit code says how it ended.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// API tokens of `orch serve` (stored hashed in the run store).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Workers of `orch serve` sharing the run store: labels, heartbeat, steps held.
    Workers {
        #[command(subcommand)]
        command: WorkersCommand,
    },
    /// Schedules: next fire times, and why recent ticks did what they did.
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Write, build, test and inspect plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Pin the plugins of a directory of workflows (or one file) in `orch.lock`.
    Lock {
        /// A workflow file or a directory of them; the lock is written beside them.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Re-resolve locked references (all, or the one with this source or plugin name).
        #[arg(long, num_args = 0..=1, value_name = "NAME")]
        upgrade: Option<Option<String>>,
        /// Record upgrades that add imports (an escalation, refused by default).
        #[arg(long)]
        accept: bool,
        /// Write nothing; list the locked grants no step used in its workflow's last N runs
        /// (connections, origins, tcp destinations: what `allow` could lose).
        #[arg(long, value_name = "RUNS", num_args = 0..=1, default_missing_value = "20")]
        suggest: Option<u32>,
    },
    /// Print a JSON Schema: `workflow` (for editors: taplo, Even Better TOML).
    Schema {
        #[arg(value_enum)]
        what: SchemaKind,
    },
    /// Print a shell completion script (`orch completions bash > /etc/bash_completion.d/orch`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Start a project here: a starter workflow, an `.env` example and the workflow schema.
    Init {
        /// Where to write (default: the current directory).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// The host secret store (values kept by `store_secret`, read as `secrets.NAME`).
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Bring a pipeline from another tool across as workflows.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// A `.gitlab-ci.yml` and its local includes: workflows, `.env.example` and a report of
    /// what did not translate.
    Gitlab {
        /// The pipeline file.
        #[arg(default_value = ".gitlab-ci.yml")]
        file: PathBuf,
        /// Where to write (default: the pipeline's directory, so its paths stay relative).
        #[arg(long)]
        out: Option<PathBuf>,
        /// One workflow per CI file (each local include its own) instead of one for all.
        #[arg(long)]
        split: bool,
        /// The workflow's name (default: the pipeline's directory name).
        #[arg(long, conflicts_with = "split")]
        name: Option<String>,
        /// Overwrite files that exist.
        #[arg(long)]
        force: bool,
    },
}

/// Where a server is, for commands that can call one.
#[derive(Debug, clap::Args)]
pub struct RemoteArgs {
    /// An `orch serve` URL, e.g. http://127.0.0.1:8080.
    #[arg(long, global = true, env = "ORCH_SERVER")]
    pub server: Option<String>,
    /// API token (from `orch token create`).
    #[arg(long, global = true, env = "ORCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// How `orch serve` runs: [`crate::serve::ServeConfig`] as flags.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The directory of workflow files (*.toml); rescanned for changes.
    #[arg(long, default_value = "workflows")]
    pub workflows: PathBuf,
    /// Where the API listens.
    #[arg(long, default_value = "127.0.0.1:8080", env = "ORCH_BIND")]
    pub bind: SocketAddr,
    /// After SIGTERM/SIGINT, how long running steps may take to finish.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    /// Most runs started and unfinished at once (all workers on the store together).
    #[arg(long, default_value_t = 16)]
    pub max_runs: usize,
    /// Most steps this worker runs at once.
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    /// Labels of this worker: it runs steps whose `runs_on` labels it all has, e.g.
    /// `gpu,docker-shared` (GitLab runner tags).
    #[arg(long, value_delimiter = ',', env = "ORCH_WORKER_LABELS", value_parser = parse_label)]
    pub worker_labels: Vec<String>,
    /// Run only steps with `runs_on` (by default a worker also takes untagged steps).
    #[arg(long)]
    pub tagged_only: bool,
    /// How long a claimed step stays this worker's without a heartbeat: a worker that dies
    /// has its steps taken over by another within this (renewed every fifth of it).
    #[arg(long, default_value = "15s", value_parser = parse_lease)]
    pub lease: Duration,
    /// How often the directory is rescanned.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub reload_every: Duration,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body: usize,
    /// Do not enforce the directory's `orch.lock` (by default a lock that exists is enforced:
    /// a plugin missing from it or differing from it is not served).
    #[arg(long, conflicts_with = "locked")]
    pub unlocked: bool,
}

/// A worker label: what `runs_on` accepts.
fn parse_label(s: &str) -> Result<String, String> {
    let s = s.trim();
    let fine = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a label: use 1-63 letters, digits, `-`, `_` or `.`"
        ))
    }
}

/// A lease of at least a second (renewals come every fifth of it).
fn parse_lease(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) {
        return Err("a lease is at least 1s".into());
    }
    Ok(d)
}

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// Workers heard from lately, newest first.
    List {
        /// Also workers stopped or lost within this long (default: the last day).
        #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
        since: Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and stored hashed.
    Create {
        name: String,
        /// It may see runs, workflows and logs (API and web page) but not trigger or cancel.
        #[arg(long)]
        read_only: bool,
    },
    /// Tokens (never their values).
    List,
    /// Revoke tokens by id or name.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Every schedule of a workflows directory with its next fire times.
    List {
        #[arg(long, default_value = "workflows")]
        workflows: PathBuf,
        /// How many next fire times to show.
        #[arg(long, default_value_t = 3)]
        next: usize,
    },
    /// Recent ticks of a workflow's schedules with their outcome and reason.
    Explain {
        workflow: String,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Where the workflow file is, to show its next fire times too.
        #[arg(long, default_value = "workflows")]
        workflows: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Names of stored secrets.
    List,
    /// Print a secret's value.
    Get { name: String },
    /// Store a secret read from stdin.
    Set { name: String },
    /// Delete a secret.
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// The most recent runs.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One run: steps, outputs (masked), logs, denials.
    Show {
        /// Run id or a unique prefix of it.
        id: String,
        /// Show the log lines after this sequence number (-1: from the first) instead of the
        /// last ones; 1000 at a time.
        #[arg(long, value_name = "SEQ", allow_hyphen_values = true)]
        logs_after: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Built-in plugins.
    List,
    /// A plugin's name, version, config schema, and what its imports let it reach.
    Inspect {
        /// A built-in name, a path to a .wasm component, or oci://HOST/REPO:TAG (read from
        /// the manifest and config alone, without downloading the component).
        plugin: String,
    },
    /// Scaffold a plugin directory that builds and whose test passes as written.
    New {
        /// The plugin's name (lowercase letters, digits, `-`); also its directory.
        name: String,
        #[arg(long, value_enum, default_value = "rust")]
        lang: authoring::Lang,
        /// Where to create it (default: the current directory).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build DIR/NAME.wasm with the language's toolchain, check it and precompile it.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Push a component to an OCI registry as a wasm artifact (oci://HOST[:PORT]/REPO:TAG).
    Push { file: PathBuf, reference: String },
    /// Fetch a plugin from a registry: resolve the tag, verify the digest, precompile it.
    Pull { reference: String },
    /// `pull`, then pin it in the lock of DIR (default: the current directory).
    Add {
        reference: String,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// What changes between two plugins (names, paths or oci:// references): imports added
    /// and removed, config fields; exit 1 when the new one imports something new.
    Diff { old: String, new: String },
    /// Build if needed, then plan and run the plugin's test workflow (DIR/workflow.toml).
    Test {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Another workflow to plan and run.
        #[arg(long, conflicts_with = "with")]
        workflow: Option<PathBuf>,
        /// Instead of a workflow: one step of the plugin with this config (a JSON object).
        #[arg(long, value_name = "JSON")]
        with: Option<String>,
        /// A grant for that step (an origin, `tcp://host:port`, `./dir`); repeatable.
        #[arg(long, value_name = "GRANT", requires = "with")]
        allow: Vec<String>,
    },
}

/// What `orch schema` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemaKind {
    /// Workflow files.
    Workflow,
}

/// The exit code of a command that did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// A step failed, or the run could not be completed.
    Failed,
    /// Invalid workflow, inputs or usage.
    Invalid,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        match exit {
            Exit::Failed => ExitCode::from(1),
            Exit::Invalid => ExitCode::from(2),
        }
    }
}

/// Why a command did not succeed: what is left to show the user, and the exit code.
#[derive(Debug)]
enum CliError {
    /// Already shown (a failed run's summary, the problems of each file `validate` checked):
    /// print nothing more, exit with this code.
    Reported(Exit),
    /// Workflow diagnostics, rendered with their source excerpts: printed as they are, exit 2.
    Diagnostics(String),
    /// The user's to fix (inputs, a missing secret, an unknown plugin, a request the server
    /// refused): `error: …` for each problem, exit 2.
    Invalid(Vec<String>),
    /// Anything else: `error: {e:#}` (the message and its causes), exit 1.
    Failed(anyhow::Error),
}

impl CliError {
    /// One problem that is the user's to fix.
    fn invalid(problem: impl std::fmt::Display) -> Self {
        CliError::Invalid(vec![problem.to_string()])
    }

    /// A failure with no cause behind it.
    fn failed(message: impl std::fmt::Display) -> Self {
        CliError::Failed(anyhow::anyhow!("{message}"))
    }

    /// The exit code.
    fn code(&self) -> Exit {
        match self {
            CliError::Reported(exit) => *exit,
            CliError::Diagnostics(_) | CliError::Invalid(_) => Exit::Invalid,
            CliError::Failed(_) => Exit::Failed,
        }
    }

    /// Print what the user has not seen yet, on stderr; the exit code. This is the only place
    /// the CLI writes `error: …`.
    fn report(&self) -> Exit {
        match self {
            CliError::Reported(_) => {}
            CliError::Diagnostics(text) => eprint!("{text}"),
            CliError::Invalid(problems) => {
                for problem in problems {
                    eprintln!("error: {problem}");
                }
            }
            CliError::Failed(e) => eprintln!("error: {e:#}"),
        }
        self.code()
    }
}

/// A missing secret or env value, or a connection that cannot be rendered, is the user's to
/// fix (exit 2); anything else from a run is not (exit 1).
impl From<crate::executor::ExecError> for CliError {
    fn from(e: crate::executor::ExecError) -> Self {
        use crate::executor::ExecError;
        match e {
            ExecError::Lookup(_) | ExecError::Connection(_) => CliError::invalid(e),
            e => CliError::Failed(e.into()),
        }
    }
}

/// Every other error `?` meets: `error: {e:#}`, exit 1. Listed one by one, not as a blanket impl,
/// so that an error with a mapping of its own (`ExecError` above) cannot slip through as exit 1.
macro_rules! failed_from {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for CliError {
            fn from(e: $error) -> Self {
                CliError::Failed(e.into())
            }
        }
    )*};
}

failed_from!(
    anyhow::Error,
    std::io::Error,
    serde_json::Error,
    crate::store::StoreError,
    crate::capability::secret_store::SecretStoreError,
    remote::RemoteError,
);

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORCH_LOG")
        .unwrap_or_else(|_| "warn,rdkafka::client=off".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let e = CliError::failed(format_args!("cannot start the async runtime: {e}"));
            return e.report().into();
        }
    };
    let outcome = runtime.block_on(async {
        let outcome = cmd::dispatch(cli).await;
        crate::capability::docker::settle_jobs().await;
        outcome
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report().into(),
    }
}
