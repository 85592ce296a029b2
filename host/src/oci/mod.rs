//! Plugins in OCI registries (Spin and Obelisk pull components the same way): references,
//! pulls verified against their digests and cached by content so a pinned run needs no network,
//! pushes in the CNCF wasm artifact layout, and inspection from the manifest and config alone.
//!
//! The protocol is `oci-client`'s (digest checks of manifests and blobs included); this module
//! adds the artifact layout, the bounds, the cache and errors that say how to fix things.

mod artifact;
mod auth;
mod cache;

pub use artifact::{ComponentInfo, WasmConfig};
pub use cache::BlobCache;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest, OciManifest};
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

/// The config media type of a wasm artifact (CNCF TAG Runtime, wasm OCI artifact v0).
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The layer media type: the component itself.
pub const WASM_LAYER: &str = "application/wasm";
/// The manifest annotation that carries `describe()`: name, version, config-schema digest.
pub const DESCRIBE_ANNOTATION: &str = "dev.orch.plugin.describe";
/// Largest component pulled (the runtime refuses larger ones to compile anyway).
pub const MAX_LAYER_BYTES: u64 = 64 << 20;
/// Largest config blob accepted.
const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Why a registry operation failed, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("`{0}` is not an OCI reference: write HOST[:PORT]/REPOSITORY:TAG or ...@sha256:DIGEST")]
    Reference(String),
    #[error(
        "{registry}: credentials refused or missing: `docker login {registry}`, or set ORCH_REGISTRY={registry} with ORCH_REGISTRY_USER and ORCH_REGISTRY_PASSWORD (or ORCH_REGISTRY_TOKEN)"
    )]
    Unauthorized { registry: String },
    #[error("{reference}: not found in the registry ({detail})")]
    NotFound { reference: String, detail: String },
    #[error(
        "{registry} cannot be reached over HTTPS ({detail}); if it serves plain HTTP on a trusted network, list it in ORCH_INSECURE_REGISTRIES={registry}"
    )]
    Transport { registry: String, detail: String },
    #[error("{reference} is not an orch plugin artifact: {reason}")]
    NotAPlugin { reference: String, reason: String },
    #[error(
        "{reference}: the component does not match its digest ({detail}): the registry served tampered or corrupt bytes; nothing was kept"
    )]
    Tampered { reference: String, detail: String },
    #[error("{reference}: {detail}")]
    Registry { reference: String, detail: String },
    #[error(
        "{reference} is pinned to {digest}, which is not in the local cache and cannot be fetched offline"
    )]
    NotCached { reference: String, digest: String },
}

/// A pulled or inspected artifact: what the lock records.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// `sha256:...` of the manifest: what a tag resolved to.
    pub manifest_digest: String,
    /// `sha256:...` of the component (the only layer).
    pub layer_digest: String,
    /// The component's size in bytes.
    pub size: u64,
    pub config: WasmConfig,
    pub annotations: BTreeMap<String, String>,
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Only sha256 digests are trusted (a registry answering with another algorithm is not
/// compared by the client library against the pin).
fn pinned_digest(reference: &Reference, digest: &str) -> Result<String, OciError> {
    let ok = digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(digest.to_ascii_lowercase())
    } else {
        Err(OciError::Reference(format!(
            "{} (only sha256 digests are accepted, got `{digest}`)",
            reference.whole()
        )))
    }
}

/// `oci://HOST/REPO:TAG` or `HOST/REPO:TAG` (with `@sha256:...` allowed) as a reference.
pub fn parse(text: &str) -> Result<Reference, OciError> {
    let bare = text.strip_prefix("oci://").unwrap_or(text);
    // A registry host is required: `orch/echo` would silently mean Docker Hub.
    let first = bare.split('/').next().unwrap_or_default();
    let has_host =
        bare.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if !has_host {
        return Err(OciError::Reference(text.to_string()));
    }
    bare.parse::<Reference>()
        .map_err(|_| OciError::Reference(text.to_string()))
}

/// A client holding one registry's credentials, for the requests of one operation.
struct Session {
    client: Client,
    auth: oci_client::secrets::RegistryAuth,
}

/// A client for one command: registry settings, credentials, and the blob cache.
pub struct Registry {
    insecure: Vec<String>,
    cache: BlobCache,
}

impl Registry {
    /// Registries listed in `ORCH_INSECURE_REGISTRIES` (comma-separated `HOST:PORT`) are
    /// reached over plain HTTP; every other one over HTTPS only.
    pub fn new(cache: BlobCache) -> Self {
        let insecure = std::env::var("ORCH_INSECURE_REGISTRIES")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        Registry { insecure, cache }
    }

    /// Also reach `registries` (`HOST:PORT`) over plain HTTP.
    pub fn insecure(mut self, registries: impl IntoIterator<Item = String>) -> Self {
        self.insecure.extend(registries);
        self
    }

    /// The blob cache (pinned components are read from it offline).
    pub fn cache(&self) -> &BlobCache {
        &self.cache
    }

    fn client(&self) -> Result<Client, OciError> {
        // reqwest needs a process-wide rustls provider; ring is the one already in the tree.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client::try_from(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(self.insecure.clone()),
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: concat!("orch/", env!("CARGO_PKG_VERSION")),
            platform_resolver: None,
            ..Default::default()
        })
        .map_err(|e| OciError::Registry {
            reference: String::new(),
            detail: e.to_string(),
        })
    }

    /// One client with the registry's credentials (read once: they may come from a credential
    /// helper process), for every request of one operation.
    async fn session(&self, reference: &Reference) -> Result<Session, OciError> {
        let client = self.client()?;
        let auth = auth::for_registry(reference.resolve_registry()).await;
        client
            .store_auth_if_needed(reference.resolve_registry(), &auth)
            .await;
        Ok(Session { client, auth })
    }

    /// The manifest digest a reference resolves to now (a tag may move; a digest may not).
    pub async fn resolve(&self, reference: &Reference) -> Result<String, OciError> {
        if let Some(digest) = reference.digest() {
            return pinned_digest(reference, digest);
        }
        let session = self.session(reference).await?;
        self.resolve_in(&session, reference).await
    }

    async fn resolve_in(
        &self,
        session: &Session,
        reference: &Reference,
    ) -> Result<String, OciError> {
        if let Some(digest) = reference.digest() {
            return pinned_digest(reference, digest);
        }
        let digest = session
            .client
            .fetch_manifest_digest(reference, &session.auth)
            .await
            .map_err(|e| self.error(reference, e))?;
        pinned_digest(reference, &digest)
    }

    /// The manifest and config of `reference`, without the component: enough to see its
    /// imports and describe() metadata before downloading it. Both are checked against their
    /// digests here (a pinned reference against its own digest, never one the registry names).
    pub async fn inspect(&self, reference: &Reference) -> Result<Artifact, OciError> {
        let session = self.session(reference).await?;
        self.inspect_in(&session, reference).await
    }

    async fn inspect_in(
        &self,
        session: &Session,
        reference: &Reference,
    ) -> Result<Artifact, OciError> {
        let digest = self.resolve_in(session, reference).await?;
        let pinned = reference.clone_with_digest(digest.clone());
        let (raw, _) = session
            .client
            .pull_manifest_raw(&pinned, &session.auth, &[OCI_IMAGE_MEDIA_TYPE])
            .await
            .map_err(|e| self.error(reference, e))?;
        if raw.len() > MAX_CONFIG_BYTES || sha256(&raw) != digest {
            return Err(OciError::Tampered {
                reference: reference.whole(),
                detail: format!("the manifest is not {digest}"),
            });
        }
        let manifest: OciImageManifest =
            serde_json::from_slice(&raw).map_err(|e| OciError::NotAPlugin {
                reference: reference.whole(),
                reason: format!("its manifest does not parse: {e}"),
            })?;
        let config = self
            .blob(session, &pinned, &manifest.config, MAX_CONFIG_BYTES as u64)
            .await?;
        let config_text = String::from_utf8_lossy(&config);
        let artifact = artifact::check(reference, &manifest, &config_text, digest)?;
        self.cache.put(&manifest.config.digest, &config);
        self.cache.put_manifest(&artifact.manifest_digest, &raw);
        Ok(artifact)
    }

    /// The component of `reference` and what it is: verified against the manifest's digest,
    /// bounded by the size the manifest declares, kept in the cache by digest. A reference
    /// pinned to a digest that is already cached needs no network.
    pub async fn pull(&self, reference: &Reference) -> Result<(Artifact, Vec<u8>), OciError> {
        if let Some(digest) = reference.digest() {
            let digest = pinned_digest(reference, digest)?;
            if let Some(found) = self.cached(reference, &digest) {
                return Ok(found);
            }
        }
        let session = self.session(reference).await?;
        let artifact = self.inspect_in(&session, reference).await?;
        if let Some(bytes) = self.cache.get(&artifact.layer_digest) {
            return Ok((artifact, bytes));
        }
        let pinned = reference.clone_with_digest(artifact.manifest_digest.clone());
        let layer = oci_client::manifest::OciDescriptor {
            media_type: WASM_LAYER.into(),
            digest: artifact.layer_digest.clone(),
            size: artifact.size as i64,
            ..Default::default()
        };
        let bytes = self
            .blob(&session, &pinned, &layer, MAX_LAYER_BYTES)
            .await?;
        self.cache.put(&artifact.layer_digest, &bytes);
        Ok((artifact, bytes))
    }

    /// One blob, read no further than the size its descriptor declares (at most `max`), and
    /// checked against its digest before it is returned.
    async fn blob(
        &self,
        session: &Session,
        reference: &Reference,
        descriptor: &oci_client::manifest::OciDescriptor,
        max: u64,
    ) -> Result<Vec<u8>, OciError> {
        use futures::TryStreamExt;
        let declared = u64::try_from(descriptor.size).unwrap_or(u64::MAX);
        if declared > max {
            return Err(OciError::NotAPlugin {
                reference: reference.whole(),
                reason: format!(
                    "it declares a {} blob (limit {})",
                    bytesize::ByteSize(declared),
                    bytesize::ByteSize(max)
                ),
            });
        }
        let mut stream = session
            .client
            .pull_blob_stream(reference, descriptor)
            .await
            .map_err(|e| self.error(reference, e))?
            .stream;
        let mut bytes = Vec::with_capacity(declared as usize);
        while let Some(chunk) = stream.try_next().await.map_err(|e| {
            let detail = e.to_string();
            if detail.contains("igest") {
                OciError::Tampered {
                    reference: reference.whole(),
                    detail,
                }
            } else {
                OciError::Registry {
                    reference: reference.whole(),
                    detail,
                }
            }
        })? {
            if (bytes.len() + chunk.len()) as u64 > declared {
                return Err(OciError::Tampered {
                    reference: reference.whole(),
                    detail: format!("the registry sent more than the declared {declared} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let actual = sha256(&bytes);
        if actual != descriptor.digest {
            return Err(OciError::Tampered {
                reference: reference.whole(),
                detail: format!("expected {}, got {actual}", descriptor.digest),
            });
        }
        Ok(bytes)
    }

    /// A pinned reference from the cache alone: the manifest (by its digest), its config and
    /// its layer, each checked against its digest as it is read.
    pub fn cached(
        &self,
        reference: &Reference,
        manifest_digest: &str,
    ) -> Option<(Artifact, Vec<u8>)> {
        let raw = self.cache.manifest(manifest_digest)?;
        let manifest: OciImageManifest = serde_json::from_slice(&raw).ok()?;
        let config = self.cache.get(&manifest.config.digest)?;
        let artifact = artifact::check(
            reference,
            &manifest,
            &String::from_utf8_lossy(&config),
            manifest_digest.to_string(),
        )
        .ok()?;
        let bytes = self.cache.get(&artifact.layer_digest)?;
        Some((artifact, bytes))
    }

    /// Push `component` to `reference` as a wasm artifact; the manifest digest it got.
    pub async fn push(
        &self,
        reference: &Reference,
        component: Vec<u8>,
        config: &WasmConfig,
        annotations: BTreeMap<String, String>,
    ) -> Result<String, OciError> {
        let Session { client, .. } = self.session(reference).await?;
        let config_json = serde_json::to_vec(config).map_err(|e| OciError::Registry {
            reference: reference.whole(),
            detail: e.to_string(),
        })?;
        let layer = ImageLayer::new(component, WASM_LAYER.to_string(), None);
        let config = Config::new(config_json, WASM_CONFIG.to_string(), None);
        let mut manifest =
            OciImageManifest::build(std::slice::from_ref(&layer), &config, Some(annotations));
        manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
        manifest.artifact_type = Some(WASM_CONFIG.to_string());
        let fail = |e| self.error(reference, e);
        client
            .push_blob(reference, layer.data.clone(), &manifest.layers[0].digest)
            .await
            .map_err(fail)?;
        client
            .push_blob(reference, config.data.clone(), &manifest.config.digest)
            .await
            .map_err(fail)?;
        let body =
            serde_json::to_vec(&OciManifest::Image(manifest)).map_err(|e| OciError::Registry {
                reference: reference.whole(),
                detail: e.to_string(),
            })?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        client
            .push_manifest_raw(
                reference,
                body,
                http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
            )
            .await
            .map_err(fail)?;
        Ok(digest)
    }

    /// Name what went wrong and how to fix it.
    fn error(&self, reference: &Reference, e: OciDistributionError) -> OciError {
        let registry = reference.resolve_registry().to_string();
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_)
            | OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => OciError::Unauthorized { registry },
            OciDistributionError::ServerError { code: 404, .. } => OciError::NotFound {
                reference: reference.whole(),
                detail: "no such repository, tag or digest".into(),
            },
            OciDistributionError::RegistryError { envelope, .. }
                if envelope
                    .errors
                    .iter()
                    .any(|e| e.code == oci_client::errors::OciErrorCode::Unauthorized) =>
            {
                OciError::Unauthorized { registry }
            }
            OciDistributionError::ImageManifestNotFoundError(detail) => OciError::NotFound {
                reference: reference.whole(),
                detail,
            },
            OciDistributionError::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        oci_client::errors::OciErrorCode::ManifestUnknown
                            | oci_client::errors::OciErrorCode::NameUnknown
                            | oci_client::errors::OciErrorCode::BlobUnknown
                    )
                }) =>
            {
                OciError::NotFound {
                    reference: reference.whole(),
                    detail: envelope
                        .errors
                        .iter()
                        .map(|e| e.message.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                }
            }
            OciDistributionError::DigestError(d) => OciError::Tampered {
                reference: reference.whole(),
                detail: d.to_string(),
            },
            OciDistributionError::RequestError(e) if !self.insecure.contains(&registry) => {
                // The whole chain: "connection refused" or a TLS failure, not just "error
                // sending request".
                let mut detail = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    detail.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                OciError::Transport { registry, detail }
            }
            other => OciError::Registry {
                reference: reference.whole(),
                detail: format!("{other}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_their_registry() {
        let r = parse("oci://127.0.0.1:5000/orch/echo:1.0").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "orch/echo");
        assert_eq!(r.tag(), Some("1.0"));
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned = parse(&format!("ghcr.io/acme/fetch@{digest}")).unwrap();
        assert_eq!(pinned.digest(), Some(digest.as_str()));
        // Without a registry host a reference would silently mean Docker Hub: refused.
        for bad in ["orch/echo:1", "echo", "oci://", "oci://host.io/UPPER:1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
