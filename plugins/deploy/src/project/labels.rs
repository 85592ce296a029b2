//! The labels a converged container carries: compose's own, so `docker compose` sees the
//! project, and the config hashes that tell an unchanged service from a changed one.

use super::Spec;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

pub const PROJECT: &str = "com.docker.compose.project";
pub const SERVICE: &str = "com.docker.compose.service";
pub const NUMBER: &str = "com.docker.compose.container-number";
pub const ONEOFF: &str = "com.docker.compose.oneoff";
pub const HASH: &str = "com.docker.compose.config-hash";
pub const DEPENDS_ON: &str = "com.docker.compose.depends_on";
pub const NETWORK: &str = "com.docker.compose.network";
pub const VOLUME: &str = "com.docker.compose.volume";
/// The image id the container was created from, as compose records it; compared after a pull
/// so that a moved tag recreates the container.
pub const IMAGE: &str = "com.docker.compose.image";
/// Short per-part hashes, so that `plan` can say which part of a service changed.
pub const PARTS: &str = "orch.deploy.config-parts";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The config hash of a spec and the short hash of each of its parts.
pub fn hashes(spec: &Spec) -> Result<(String, BTreeMap<String, String>), String> {
    let json = serde_json::to_string(spec).map_err(|e| format!("hashing the config: {e}"))?;
    let hash = hex(&Sha256::digest(json.as_bytes()));
    let value = serde_json::to_value(spec).map_err(|e| format!("hashing the config: {e}"))?;
    let mut parts = BTreeMap::new();
    if let serde_json::Value::Object(fields) = value {
        for (k, v) in fields {
            let digest = Sha256::digest(v.to_string().as_bytes());
            parts.insert(k, hex(&digest[..4]));
        }
    }
    Ok((hash, parts))
}

/// The value of the [`PARTS`] label.
pub fn parts_label(parts: &BTreeMap<String, String>) -> String {
    parts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Which parts differ between a container's [`PARTS`] label and a new spec; empty when the
/// label is missing (a container made by another tool) or unreadable.
pub fn changed_parts(old_label: Option<&str>, new: &BTreeMap<String, String>) -> Vec<String> {
    let Some(old) = old_label else {
        return Vec::new();
    };
    let old: BTreeMap<&str, &str> = old.split(',').filter_map(|p| p.split_once('=')).collect();
    if old.is_empty() {
        return Vec::new();
    }
    let keys: BTreeSet<&str> = old
        .keys()
        .copied()
        .chain(new.keys().map(String::as_str))
        .collect();
    keys.into_iter()
        .filter(|k| old.get(k).copied() != new.get(*k).map(String::as_str))
        .map(str::to_string)
        .collect()
}
