//! `orch serve`: serves a directory of workflows (schedules, HTTP API, webhooks) with durable
//! runs that resume after a crash; owns the shared [`AppState`] and the server's lifecycle.

pub(crate) mod api;
pub(crate) mod auth;
pub(crate) mod fire_times;
mod listen;
pub(crate) mod metrics;
pub(crate) mod registry;
pub(crate) mod runner;
pub(crate) mod scheduler;
mod web;

use crate::capability::secret_store::SecretStore;
use crate::executor::Executor;
use crate::runtime::Runtime;
use crate::store::Store;
use anyhow::Context;
use metrics::Metrics;
use registry::Registry;
use runner::Runner;
pub use runner::WorkerConfig;
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
    /// This process as a worker: labels, lease, how many steps and runs at once.
    pub worker: WorkerConfig,
    /// How often the workflows directory is rescanned for changes.
    pub reload_every: Duration,
    /// Largest accepted request body.
    pub body_limit: usize,
    /// Where `oci://` plugins come from; `locked`: enforce the directory's `orch.lock` when
    /// it has one (re-read at every scan).
    pub sources: crate::resolve::Sources,
}

/// What the API handlers, the runner and the scheduler share.
pub(crate) struct AppState {
    pub store: Store,
    /// Compiles and instantiates plugins (the web page's Plan asks them).
    pub runtime: Arc<Runtime>,
    pub registry: Arc<Registry>,
    pub runner: Arc<Runner>,
    pub metrics: Arc<Metrics>,
    pub process_env: HashMap<String, String>,
    pub secret_store: Option<SecretStore>,
    /// The web page's DAG layouts, one per workflow shape.
    pub layouts: web::LayoutCache,
    /// Plans the web page runs at once (each asks every plugin of a workflow).
    pub plans: tokio::sync::Semaphore,
    /// Log streams open per token, against [`api::MAX_STREAMS_PER_TOKEN`].
    pub streams: std::sync::Mutex<HashMap<String, usize>>,
}

impl AppState {
    /// A server's state over `store`, with no workflow loaded yet ([`Registry::scan`] loads
    /// them) and no run resumed; runs read `secrets.X` and `env.X` from `process_env`.
    pub(crate) fn new(
        config: &ServeConfig,
        store: Store,
        runtime: Arc<Runtime>,
        secret_store: Option<SecretStore>,
        process_env: HashMap<String, String>,
    ) -> Arc<Self> {
        let registry = Arc::new(Registry::default());
        let metrics = Arc::new(Metrics::default());
        let executor = Executor {
            runtime: runtime.clone(),
            store: store.clone(),
            max_parallel: config.worker.max_steps,
        };
        let runner = Arc::new(Runner::new(
            executor,
            registry.clone(),
            metrics.clone(),
            process_env.clone(),
            secret_store.clone(),
            config.worker.clone(),
        ));
        Arc::new(Self {
            store,
            runtime,
            registry,
            runner,
            metrics,
            process_env,
            secret_store,
            layouts: Default::default(),
            plans: tokio::sync::Semaphore::new(web::MAX_PLANS),
            streams: Default::default(),
        })
    }
}

/// Serve until `stop` is cancelled (SIGTERM/SIGINT at the CLI), then stop gracefully.
///
/// Every trigger (API call, webhook delivery, schedule tick) commits a `queued` run row before
/// it is acknowledged; a worker (this process, or another sharing the PostgreSQL store) puts
/// its steps on the queue and workers claim them, committing each state change before the
/// next. Runs left unfinished by a stop or a crash carry on.
pub async fn serve(
    config: ServeConfig,
    store: Store,
    runtime: Arc<Runtime>,
    secret_store: Option<SecretStore>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    // SQLite has one writer process: a second server on the same file is refused.
    let _single = match store.file() {
        Some(file) => Some(single_server(file)?),
        None => None,
    };
    let process_env: HashMap<String, String> = std::env::vars().collect();
    let state = AppState::new(&config, store, runtime.clone(), secret_store, process_env);
    let registry = state.registry.clone();
    let scan = registry
        .scan(&config.workflows, &runtime, &config.sources)
        .await
        .with_context(|| {
            format!(
                "cannot read the workflows directory {}",
                config.workflows.display()
            )
        })?;
    report(&scan);
    let runner = state.runner.clone();
    runner
        .register()
        .await
        .context("cannot register this worker in the run store")?;

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
        store: state.store.clone(),
        registry: registry.clone(),
        runner: runner.clone(),
        metrics: state.metrics.clone(),
        reloaded: reloaded.clone(),
    };
    let cron = tokio::spawn(scheduler.run(background.clone()));
    let heartbeat = tokio::spawn(runner.clone().heartbeat());
    let work = tokio::spawn(runner.clone().work());
    let watcher = tokio::spawn(watch(
        config.workflows.clone(),
        config.reload_every,
        config.sources.clone(),
        registry,
        runtime,
        reloaded,
        background.clone(),
    ));
    let app =
        api::router(state.clone(), config.body_limit).merge(web::router(state, config.body_limit));
    // SSE streams may hold connections open: they get a second after the stop, no more.
    let http = tokio::spawn(listen::serve_http(
        listener,
        app,
        stop.clone(),
        Duration::from_secs(1),
    ));

    stop.cancelled().await;
    eprintln!(
        "orch serve: stopping: no new runs; running steps get {} to finish",
        humantime::format_duration(config.grace)
    );
    background.cancel();
    let _ = cron.await;
    let _ = watcher.await;
    runner.shutdown(config.grace).await;
    let _ = work.await;
    heartbeat.abort();
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    eprintln!("orch serve: stopped");
    Ok(())
}

/// Hold an exclusive lock beside a SQLite store for as long as this server runs.
fn single_server(db: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let mut path = db.as_os_str().to_owned();
    path.push(".serve-lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", std::path::Path::new(&path).display()))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `orch serve` already uses the SQLite store {}: SQLite serves one process. \
             Stop the other server, or run several workers on one PostgreSQL store \
             (--database-url postgres://...)",
            db.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", std::path::Path::new(&path).display()))
        }
    }
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
    sources: crate::resolve::Sources,
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
        match registry.scan(&dir, &runtime, &sources).await {
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
