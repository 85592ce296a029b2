//! The plugin author's kit carried inside the `orch` binary (the WIT, the Rust, Python and
//! JavaScript SDKs, the scaffolds), written out once per kit version to the cache directory, so
//! that building a plugin needs orch and the language's own toolchain, nothing else.

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/kit.rs"));

/// The kit's files under `prefix/` (e.g. `templates/python/`), as (path below it, bytes).
pub(super) fn files(prefix: &str) -> impl Iterator<Item = (&'static str, &'static [u8])> + '_ {
    KIT.iter()
        .filter_map(move |(path, bytes)| Some((path.strip_prefix(prefix)?, *bytes)))
}

/// The kit written out under `cache` (`kit-HASH/`: `wit/`, `rust/`, `python/`, `js/`). Written
/// to a temporary directory and renamed into place, so a reader never sees half of it.
pub(super) fn materialize(cache: &Path) -> std::io::Result<PathBuf> {
    let dir = cache.join(format!("kit-{}", &version_hash()[..16]));
    if dir.is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache)?;
    let staging = tempfile::tempdir_in(cache)?;
    for (path, bytes) in KIT {
        write(&staging.path().join(path), bytes)?;
        // Each SDK carries the WIT it was written against, as it would when published.
        if let Some(wit) = path.strip_prefix("wit/") {
            for sdk in ["rust", "python/orch_sdk"] {
                write(&staging.path().join(sdk).join("wit").join(wit), bytes)?;
            }
        }
    }
    let staged = staging.keep();
    match std::fs::rename(&staged, &dir) {
        Ok(()) => Ok(dir),
        // Another process wrote the same kit first: ours is not needed.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&staged);
            Ok(dir)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staged);
            Err(e)
        }
    }
}

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes)
}

/// A digest of every file of the kit: a new orch with a changed SDK writes a new directory.
fn version_hash() -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (path, bytes) in KIT {
        hash.update(path.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kit_carries_the_wit_and_every_sdk_and_scaffold() {
        let has = |p: &str| KIT.iter().any(|(path, _)| *path == p);
        for needed in [
            "wit/world.wit",
            "wit/deps/http.wit",
            "rust/Cargo.toml",
            "rust/src/lib.rs",
            "templates/rust/src/lib.rs",
        ] {
            assert!(has(needed), "{needed} is not in the kit");
        }
        assert!(
            !KIT.iter()
                .any(|(p, _)| p.contains("node_modules") || p.contains("__pycache__")),
            "build products leaked into the kit"
        );
        let dir = tempfile::tempdir().unwrap();
        let kit = materialize(dir.path()).unwrap();
        assert!(kit.join("rust/wit/world.wit").is_file());
        assert_eq!(materialize(dir.path()).unwrap(), kit, "written once");
    }
}
