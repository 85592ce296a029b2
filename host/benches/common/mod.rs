//! Shared by the benches: a workflow prepared once (runtime with its own compile cache, a
//! SQLite run store, resolved plugins) and run as often as a bench needs, and medians.
#![allow(dead_code, reason = "each bench uses part of it")]

use orch::executor::{Executor, RunReport, RunSpec, Silent};
use orch::resolve::{self, ResolvedWorkflow};
use orch::store::Store;
use orch::{Runtime, RuntimeConfig};
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A parsed and resolved workflow with an executor, in `dir`.
pub struct Prepared {
    executor: Executor,
    workflow: Arc<ResolvedWorkflow>,
}

impl Prepared {
    /// Parse `toml` as `dir/bench.toml` (directory grants are relative to `dir`).
    pub async fn new(dir: &Path, toml: &str, max_parallel: usize) -> anyhow::Result<Self> {
        let runtime = Arc::new(Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.join("cache")),
            ..Default::default()
        })?);
        let store = Store::open(&format!("sqlite://{}", dir.join("bench.db").display())).await?;
        let workflow = orch::workflow::parse(&dir.join("bench.toml"), toml)
            .map_err(|d| anyhow::anyhow!("invalid bench workflow: {d}"))?;
        let workflow = resolve::resolve(&runtime, &Default::default(), workflow)
            .await
            .map_err(|d| anyhow::anyhow!("{d}"))?;
        Ok(Self {
            executor: Executor {
                runtime,
                store,
                max_parallel,
            },
            workflow: Arc::new(workflow),
        })
    }

    /// One run with `inputs` and `env`; it must succeed.
    pub async fn run(
        &self,
        inputs: Map<String, Json>,
        env: HashMap<String, String>,
    ) -> anyhow::Result<RunReport> {
        let spec = RunSpec {
            workflow: self.workflow.clone(),
            inputs,
            trigger: orch::store::Trigger::Cli,
            process_env: env,
            control: Default::default(),
            resume: None,
            secret_store: None,
        };
        let report = self.executor.run(spec, Arc::new(Silent)).await?;
        anyhow::ensure!(
            report.succeeded(),
            "bench run failed: {:?}",
            report.steps.iter().find(|s| s.error.is_some())
        );
        Ok(report)
    }
}

/// The duration of step `id` in `report`.
pub fn step_duration(report: &RunReport, id: &str) -> Duration {
    report
        .steps
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.duration)
        .unwrap_or_default()
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
