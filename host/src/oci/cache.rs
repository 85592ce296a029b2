//! Components and manifests by digest, so that a run whose plugins are pinned (by the workflow
//! or the lock) starts without the registry. Content-addressed: an entry is checked against
//! its digest when read, and written to a temporary file then renamed.

use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// `DIR/blobs/sha256/HEX` (components, configs) and `DIR/manifests/sha256/HEX.json` (the
/// manifest's own bytes), every entry checked against its digest when read.
#[derive(Debug, Clone)]
pub struct BlobCache {
    dir: Option<PathBuf>,
}

impl BlobCache {
    /// A cache under `dir`; `None` keeps nothing (every pull goes to the registry).
    pub fn new(dir: Option<PathBuf>) -> Self {
        BlobCache { dir }
    }

    fn path(&self, kind: &str, digest: &str, ext: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(
            self.dir
                .as_ref()?
                .join(kind)
                .join("sha256")
                .join(format!("{hex}{ext}")),
        )
    }

    /// The blob with this digest, if cached and intact.
    pub fn get(&self, digest: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.path("blobs", digest, "")?).ok()?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        (actual == digest).then_some(bytes)
    }

    /// Keep `bytes` under `digest` (best effort: a cache that cannot be written costs a pull).
    pub fn put(&self, digest: &str, bytes: &[u8]) {
        if let Some(path) = self.path("blobs", digest, "") {
            write_atomic(path, bytes);
        }
    }

    /// The raw manifest with this digest, if cached and intact.
    pub(super) fn manifest(&self, digest: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.path("manifests", digest, ".json")?).ok()?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        (actual == digest).then_some(bytes)
    }

    pub(super) fn put_manifest(&self, digest: &str, raw: &[u8]) {
        if let Some(path) = self.path("manifests", digest, ".json") {
            write_atomic(path, raw);
        }
    }
}

fn write_atomic(path: PathBuf, bytes: &[u8]) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    if let Ok(mut file) = tempfile::NamedTempFile::new_in(dir) {
        use std::io::Write;
        if file.write_all(bytes).is_ok() {
            let _ = file.persist(&path);
        }
    }
}
