//! Compiled components cached on disk by content hash, so a warm `orch run` skips Cranelift.

use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::PathBuf;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Content hash of a component, hex.
pub(crate) fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Disk cache of precompiled components, keyed by content hash and engine settings.
#[derive(Debug, Clone)]
pub(super) struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    /// A cache in `dir`; `None` compiles every time.
    pub(super) fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// Load `bytes` as a component, from the cache when possible.
    pub(super) fn load(
        &self,
        engine: &Engine,
        hash: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        if let Some(component) = self.lookup(engine, hash) {
            return Ok(component);
        }
        let compiled = engine.precompile_component(bytes)?;
        self.store(engine, hash, &compiled)
    }

    /// The cached compile of `hash`, if the cache is usable and has it.
    pub(super) fn lookup(&self, engine: &Engine, hash: &str) -> Option<Component> {
        let path = self.usable_path(engine, hash)?;
        if !path.is_file() {
            return None;
        }
        match deserialize(engine, &path) {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {e:#}");
                None
            }
        }
    }

    /// Keep `compiled` (this engine's precompiled artifact of `hash`) and load it.
    pub(super) fn store(
        &self,
        engine: &Engine,
        hash: &str,
        compiled: &[u8],
    ) -> wasmtime::Result<Component> {
        if let Some(path) = self.usable_path(engine, hash)
            && let Err(e) = write_atomically(&path, compiled)
        {
            tracing::warn!(path = %path.display(), "cannot write component cache: {e}");
        }
        deserialize_bytes(engine, compiled)
    }

    /// Where `hash` is cached for this engine, if there is a cache we trust.
    fn usable_path(&self, engine: &Engine, hash: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        // Cached code runs unchecked: a cache someone else can write is no cache at all.
        if let Err(why) = private_to_us(dir) {
            tracing::warn!(dir = %dir.display(), "component cache not used: {why}");
            return None;
        }
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Some(dir.join(format!("{hash}-{:016x}.cwasm", hasher.finish())))
    }
}

/// Is `dir` (and everything in it) ours and writable by us alone? A missing dir is: it will be
/// created `0700`.
fn private_to_us(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    let us = rustix::process::geteuid().as_raw();
    if meta.uid() != us {
        return Err(format!("owned by uid {}, not {us}", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by others (mode {:o}): `chmod go-w` it",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

#[allow(
    unsafe_code,
    reason = "the file is our own output of Engine::precompile_component"
)]
fn deserialize(engine: &Engine, path: &std::path::Path) -> wasmtime::Result<Component> {
    // SAFETY: only files written by `write_atomically` from `precompile_component` with an
    // engine of the same compatibility hash (it is in the file name) are read here.
    unsafe { Component::deserialize_file(engine, path) }
}

#[allow(
    unsafe_code,
    reason = "the bytes were just produced by Engine::precompile_component"
)]
fn deserialize_bytes(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: produced by `precompile_component` on this engine, or on an engine of the same
    // configuration in our own `orch __compile` child (the compatibility hash is checked).
    unsafe { Component::deserialize(engine, bytes) }
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    // The cache is loaded without re-validation: only its owner may write (or read) it.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
