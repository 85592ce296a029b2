//! The `orch` command line: parse arguments, call the library, render, map exit codes
//! (0 success, 1 a step failed or the run could not finish, 2 invalid workflow or usage).

mod commands;
mod graph;
mod progress;
mod remote;
mod render;
mod service;
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
        format: graph::GraphFormat,
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
        /// The directory of workflow files (*.toml); rescanned for changes.
        #[arg(long, default_value = "workflows")]
        workflows: PathBuf,
        /// Where the API listens.
        #[arg(long, default_value = "127.0.0.1:8080", env = "ORCH_BIND")]
        bind: SocketAddr,
        /// After SIGTERM/SIGINT, how long running steps may take to finish.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        grace: Duration,
        /// Most runs executing at once.
        #[arg(long, default_value_t = 16)]
        max_runs: usize,
        /// Most steps of one run executing at once.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
        /// How often the directory is rescanned.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        reload_every: Duration,
        /// Largest request body accepted, in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        max_body: usize,
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
    /// Schedules: next fire times, and why recent ticks did what they did.
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Inspect plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// The host secret store (values kept by `store_secret`, read as `secrets.NAME`).
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
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

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and stored hashed.
    Create { name: String },
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
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Built-in plugins.
    List,
    /// A plugin's name, version, capabilities and config schema.
    Inspect {
        /// A built-in name or a path to a .wasm component.
        plugin: String,
    },
}

/// How a command ended, mapped to the process exit code.
#[derive(Debug)]
pub enum Outcome {
    Success,
    /// A step failed, or the run could not be completed.
    Failed,
    /// Invalid workflow, inputs or usage.
    Invalid,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::Failed => ExitCode::from(1),
            Outcome::Invalid => ExitCode::from(2),
        }
    }
}

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
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
