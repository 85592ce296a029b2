//! Settings every command shares (store, runtime, secret store, output style), and the
//! Ctrl-C/SIGTERM cancel token of a foreground run.

use super::Cli;
use crate::capability::secret_store::SecretStore;
use crate::oci::{BlobCache, Registry};
use crate::resolve::Sources;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::Store;
use anyhow::Context;
use serde::Serialize;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

/// Settings every command shares.
pub(super) struct Settings {
    database_url: Option<String>,
    cache_dir: Option<PathBuf>,
    secrets_dir: Option<PathBuf>,
    pub(super) json: bool,
    pub(super) color: bool,
    /// `--locked`: plugins must match `orch.lock` beside the workflow.
    pub(super) locked: bool,
}

/// Sandboxes for a command that loads plugins to describe or plan with them, not to run steps.
pub(super) const FEW_SANDBOXES: u32 = 4;

impl Settings {
    pub(super) fn new(cli: &Cli) -> Self {
        Self {
            database_url: cli.database_url.clone(),
            cache_dir: cli.cache_dir.clone(),
            secrets_dir: cli.secrets_dir.clone(),
            json: cli.json,
            locked: cli.locked,
            color: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn dirs() -> Option<directories::ProjectDirs> {
        directories::ProjectDirs::from("dev", "orch", "orch")
    }

    /// The wasm runtime, with room for `sandboxes` plugin instances at once (see
    /// [`RuntimeConfig::sandboxes`]; [`FEW_SANDBOXES`] for a command that only describes or
    /// plans).
    pub(super) fn runtime(&self, sandboxes: u32) -> anyhow::Result<Runtime> {
        let cache_dir = self
            .cache_dir
            .clone()
            .or_else(|| Self::dirs().map(|d| d.cache_dir().join("components")));
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir,
            sandboxes,
        })?;
        // Plugins compile in a child of this binary, bounded in time and memory.
        Ok(match std::env::current_exe() {
            Ok(exe) => runtime.compile_in_child(exe),
            Err(_) => runtime,
        })
    }

    /// Plugin sources for workflows in `dir`: the OCI registry client (its blob cache beside
    /// the compiled components) and `dir`'s lock (read by [`Sources::reload`]).
    pub(super) fn sources(&self, dir: PathBuf) -> anyhow::Result<Sources> {
        let cache = self
            .cache_dir
            .clone()
            .or_else(|| Self::dirs().map(|d| d.cache_dir().to_path_buf()))
            .map(|d| d.join("oci"));
        Ok(Sources {
            registry: Some(Arc::new(Registry::new(BlobCache::new(cache)))),
            lock: None,
            lock_dir: std::path::absolute(&dir).unwrap_or(dir),
            locked: self.locked,
            strict: self.locked,
        })
    }

    /// Where `orch plugin new|build` write the plugin kit: beside the compiled components.
    pub(super) fn kit_cache(&self) -> anyhow::Result<PathBuf> {
        match &self.cache_dir {
            Some(dir) => Ok(dir.join("kit")),
            None => Ok(Self::dirs()
                .context("no home directory: pass --cache-dir or set ORCH_CACHE_DIR")?
                .cache_dir()
                .join("kit")),
        }
    }

    pub(super) fn secret_store(&self) -> anyhow::Result<SecretStore> {
        let dir = match &self.secrets_dir {
            Some(dir) => dir.clone(),
            None => Self::dirs()
                .context("no home directory: pass --secrets-dir or set ORCH_SECRETS_DIR")?
                .data_dir()
                .join("secrets"),
        };
        Ok(SecretStore::new(dir))
    }

    pub(super) async fn store(&self) -> anyhow::Result<Store> {
        Ok(Store::open(&self.store_url()?).await?)
    }

    /// Open the store on a task of its own, so that it opens while the caller does other work.
    pub(super) fn open_store_soon(&self) -> tokio::task::JoinHandle<anyhow::Result<Store>> {
        let url = self.store_url();
        tokio::spawn(async move { Ok(Store::open(&url?).await?) })
    }

    /// The store, if there is one already (a SQLite file is not created for a look).
    pub(super) async fn existing_store(&self) -> Option<Store> {
        let url = self.store_url().ok()?;
        if url.starts_with("sqlite:") && !Store::sqlite_file_exists(&url) {
            return None;
        }
        Store::open(&url).await.ok()
    }

    fn store_url(&self) -> anyhow::Result<String> {
        Ok(match &self.database_url {
            Some(url) => url.clone(),
            None => {
                let dirs = Self::dirs()
                    .context("no home directory: pass --database-url or set ORCH_DATABASE_URL")?;
                crate::store::default_url(dirs.data_dir())
            }
        })
    }

    /// Print a command's result on stdout: JSON with `--json`, else the text `human` makes of
    /// it (ending in a newline).
    pub(super) fn emit<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce(&T) -> String,
    ) -> serde_json::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string(value)?);
        } else {
            print!("{}", human(value));
        }
        Ok(())
    }
}

/// A token cancelled by Ctrl-C or SIGTERM, so an interrupted run is recorded as cancelled.
pub(super) fn cancel_on_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
        eprintln!("interrupted: stopping");
        cancel.cancel();
    });
    token
}
