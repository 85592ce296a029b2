//! The CNCF wasm OCI artifact: one `application/wasm` layer and a config that lists the
//! component's imports and exports, so a registry client can review a plugin before pulling it.

use super::{MAX_CONFIG_BYTES, MAX_LAYER_BYTES, OciError, WASM_CONFIG, WASM_LAYER};
use oci_client::Reference;
use oci_client::manifest::OciImageManifest;
use serde::{Deserialize, Serialize};

/// `application/vnd.wasm.config.v0+json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// RFC 3339; fixed by the pusher so the same bytes push to the same digest.
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub layer_digests: Vec<String>,
    pub component: Option<ComponentInfo>,
}

/// What the component imports and exports, read from the binary by the pusher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentInfo {
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl WasmConfig {
    /// The config of a wasip2 component for the world `target` with these imports and exports.
    pub fn component(
        imports: Vec<String>,
        exports: Vec<String>,
        layer_digest: String,
        target: String,
    ) -> Self {
        WasmConfig {
            // Reproducible: the same component pushes to the same manifest digest.
            created: "1970-01-01T00:00:00Z".into(),
            author: None,
            architecture: "wasm".into(),
            os: "wasip2".into(),
            layer_digests: vec![layer_digest],
            component: Some(ComponentInfo {
                exports,
                imports,
                target: Some(target),
            }),
        }
    }
}

/// One wasm layer of bounded size, a wasm config that parses: the artifact's facts.
pub(super) fn check(
    reference: &Reference,
    manifest: &OciImageManifest,
    config: &str,
    manifest_digest: String,
) -> Result<super::Artifact, OciError> {
    let not = |reason: String| OciError::NotAPlugin {
        reference: reference.whole(),
        reason,
    };
    if manifest.config.media_type != WASM_CONFIG {
        return Err(not(format!(
            "its config is `{}`, not `{WASM_CONFIG}` (push it with `orch plugin push`)",
            manifest.config.media_type
        )));
    }
    let [layer] = manifest.layers.as_slice() else {
        return Err(not(format!(
            "it has {} layers; a wasm artifact has exactly one",
            manifest.layers.len()
        )));
    };
    if layer.media_type != WASM_LAYER {
        return Err(not(format!(
            "its layer is `{}`, not `{WASM_LAYER}`",
            layer.media_type
        )));
    }
    let size = u64::try_from(layer.size).unwrap_or(u64::MAX);
    if size > MAX_LAYER_BYTES {
        return Err(not(format!(
            "its component is {} (limit {})",
            bytesize::ByteSize(size),
            bytesize::ByteSize(MAX_LAYER_BYTES)
        )));
    }
    if config.len() > MAX_CONFIG_BYTES {
        return Err(not("its config is over 1 MiB".into()));
    }
    let config: WasmConfig =
        serde_json::from_str(config).map_err(|e| not(format!("its config does not parse: {e}")))?;
    Ok(super::Artifact {
        manifest_digest,
        layer_digest: layer.digest.clone(),
        size,
        config,
        annotations: manifest.annotations.clone().unwrap_or_default(),
    })
}
