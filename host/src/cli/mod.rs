//! The `orch` command line: parse arguments, call the library, render, map exit codes
//! (0 success, 1 a step failed or the run could not finish, 2 invalid workflow or usage).

mod commands;
mod progress;
mod render;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
        format: crate::plan::GraphFormat,
    },
    /// Inspect recorded runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
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
