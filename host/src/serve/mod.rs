//! `orch serve`: serves a directory of workflows: cron schedules, the HTTP API and webhooks,
//! durable runs that resume after a crash, and a graceful stop on SIGTERM/SIGINT.
//!
//! Every trigger (API call, webhook delivery, schedule tick) commits a `queued` run row before
//! it is acknowledged; the runner then executes it, committing each state change before the
//! next. At start, runs left queued, running or interrupted are resumed.

pub mod api;
pub mod auth;
pub mod metrics;
pub mod registry;
pub mod runner;
pub mod scheduler;
pub mod ticks;

use crate::capability::secret_store::SecretStore;
use crate::executor::Executor;
use crate::runtime::Runtime;
use crate::store::{Store, Trigger};
use anyhow::Context;
use metrics::Metrics;
use registry::Registry;
use runner::Runner;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How to serve.
pub struct ServeConfig {
    pub workflows: PathBuf,
    pub bind: SocketAddr,
    /// How long running steps may take to finish after SIGTERM.
    pub grace: Duration,
    /// Most runs executing at once.
    pub max_runs: usize,
    /// Most steps of one run executing at once.
    pub max_parallel: usize,
    /// How often the workflows directory is rescanned for changes.
    pub reload_every: Duration,
    /// Largest accepted request body.
    pub body_limit: usize,
}

/// What the API handlers share.
pub struct Shared {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub runner: Arc<Runner>,
    pub metrics: Arc<Metrics>,
    pub process_env: HashMap<String, String>,
    pub secret_store: Option<SecretStore>,
}

/// Serve until `stop` is cancelled (SIGTERM/SIGINT at the CLI), then stop gracefully.
pub async fn serve(
    config: ServeConfig,
    store: Store,
    runtime: Arc<Runtime>,
    secret_store: Option<SecretStore>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let registry = Arc::new(Registry::default());
    let scan = registry
        .scan(&config.workflows, &runtime)
        .await
        .with_context(|| {
            format!(
                "cannot read the workflows directory {}",
                config.workflows.display()
            )
        })?;
    report(&scan);
    let metrics = Arc::new(Metrics::default());
    let process_env: HashMap<String, String> = std::env::vars().collect();
    let executor = Executor {
        runtime: runtime.clone(),
        store: store.clone(),
        max_parallel: config.max_parallel,
    };
    let runner = Arc::new(Runner::new(
        executor,
        registry.clone(),
        metrics.clone(),
        process_env.clone(),
        secret_store.clone(),
        config.max_runs,
    ));
    resume(&store, &runner).await?;

    let shared = Arc::new(Shared {
        store: store.clone(),
        registry: registry.clone(),
        runner: runner.clone(),
        metrics: metrics.clone(),
        process_env,
        secret_store,
    });
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    let bound = listener.local_addr()?;
    // The line scripts and tests wait for.
    eprintln!(
        "orch serve: listening on http://{bound} ({} workflows, {} rejected)",
        registry.all().len(),
        registry.rejected().len()
    );

    let reloaded = Arc::new(Notify::new());
    let background = CancellationToken::new();
    let scheduler = scheduler::Scheduler {
        store: store.clone(),
        registry: registry.clone(),
        runner: runner.clone(),
        metrics,
        reloaded: reloaded.clone(),
    };
    let cron = tokio::spawn(scheduler.run(background.clone()));
    let watcher = tokio::spawn(watch(
        config.workflows.clone(),
        config.reload_every,
        registry,
        runtime,
        reloaded,
        background.clone(),
    ));
    let app = api::router(shared, config.body_limit);
    let http_stop = stop.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await
    });

    stop.cancelled().await;
    eprintln!(
        "orch serve: stopping: no new runs; running steps get {} to finish",
        humantime::format_duration(config.grace)
    );
    background.cancel();
    let _ = cron.await;
    let _ = watcher.await;
    runner.shutdown(config.grace).await;
    // SSE streams may hold connections open: do not wait for them past the grace period.
    let _ = tokio::time::timeout(Duration::from_secs(1), http).await;
    eprintln!("orch serve: stopped");
    Ok(())
}

/// Hand every unfinished run back to the runner, oldest first. Runs of one schedule run one
/// after another.
async fn resume(store: &Store, runner: &Arc<Runner>) -> anyhow::Result<()> {
    let unfinished = store.unfinished_runs().await?;
    if !unfinished.is_empty() {
        eprintln!("orch serve: resuming {} unfinished runs", unfinished.len());
    }
    for run in unfinished {
        let group = (run.trigger == Trigger::Cron)
            .then(|| run.trigger_detail.clone())
            .flatten()
            .map(|detail| (run.workflow.clone(), detail));
        let after_group = group.is_some();
        runner.submit(run.id, run.workflow, group, after_group);
    }
    Ok(())
}

/// Print what a scan loaded and rejected.
fn report(scan: &registry::Scan) {
    for name in &scan.loaded {
        tracing::info!("serving workflow `{name}`");
    }
    for rejected in &scan.rejected {
        eprintln!(
            "orch serve: not serving {}:\n{}",
            rejected.path,
            rejected.errors.trim_end()
        );
    }
    for name in &scan.removed {
        tracing::info!("no longer serving workflow `{name}`");
    }
}

/// Rescan the directory periodically; wake the scheduler when something changed.
async fn watch(
    dir: PathBuf,
    every: Duration,
    registry: Arc<Registry>,
    runtime: Arc<Runtime>,
    reloaded: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match registry.scan(&dir, &runtime).await {
            Ok(scan) if scan.changed() => {
                report(&scan);
                if !scan.loaded.is_empty() {
                    eprintln!("orch serve: reloaded {}", scan.loaded.join(", "));
                }
                reloaded.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::error!("cannot rescan {}: {e}", dir.display()),
        }
    }
}
