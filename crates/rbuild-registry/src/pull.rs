//! Pull: manifests with the right `Accept` list, index → platform, blobs streamed into a
//! sink, verified as they arrive, resumed with `Range` after a broken connection.

use std::io::Write;
use std::sync::Arc;

use futures_util::stream::{self, TryStreamExt};
use rbuild_oci::{
    AnyManifest, Descriptor, Digest, Manifest, MediaType, Platform, Reference, Sha256Hasher,
};
use reqwest::header::{ACCEPT, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::StatusCode;

use crate::blob::{BlobSink, BlobWrite};
use crate::client::RegistryClient;
use crate::error::{DigestMismatch, RegistryError};
use crate::options::Direction;
use crate::scope::Scope;
use crate::transport::{status_error, Session};
use crate::transport_error::describe_send_error;

/// Every manifest kind we can read, as Docker sends it.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifests beyond this size are refused (containerd's limit), so a hostile registry cannot
/// make us buffer without bound.
const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// A manifest or index as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes (their sha256 is the digest).
    pub bytes: Vec<u8>,
    /// The media type from `Content-Type`, or the document's own.
    pub media_type: MediaType,
    /// The sha256 of `bytes`.
    pub digest: Digest,
    /// The host that served it (a mirror, a mapped registry, or the registry itself).
    pub host: String,
}

/// An image manifest resolved for one platform, with the blobs it needs.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference asked for.
    pub reference: Reference,
    /// The image manifest's digest.
    pub digest: Digest,
    /// The image manifest's media type.
    pub media_type: MediaType,
    /// The image manifest's exact bytes.
    pub manifest_bytes: Vec<u8>,
    /// The decoded image manifest.
    pub manifest: Manifest,
    /// The digest of the index it was chosen from, if the reference named an index.
    pub index_digest: Option<Digest>,
    /// The host that served it.
    pub host: String,
}

impl PulledImage {
    /// The config and the layers, in manifest order.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        std::iter::once(&self.manifest.config)
            .chain(self.manifest.layers.iter())
            .collect()
    }
}

fn pull_action(reference: &Reference) -> String {
    format!(
        "pull of {}:{}",
        reference.repository(),
        reference.tag_or_digest()
    )
}

impl RegistryClient {
    /// Fetches the manifest or index `reference` names, trying mirrors and mapped registries
    /// first. A digest-pinned reference is verified against the bytes.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> Result<FetchedManifest, RegistryError> {
        let action = pull_action(reference);
        let endpoints = self.endpoints(reference.registry(), Direction::Pull);
        let last = endpoints.len().saturating_sub(1);
        let mut error = None;
        for (i, endpoint) in endpoints.iter().enumerate() {
            let attempt = async {
                let session = self.session(endpoint, Direction::Pull, &action).await?;
                self.fetch_manifest_from(&session, reference, &reference.tag_or_digest(), &action)
                    .await
            };
            match attempt.await {
                Ok(fetched) => return Ok(fetched),
                Err(e) if i < last => {
                    tracing::warn!(host = %endpoint.host, error = %e, "mirror failed; trying the next");
                    error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(error.unwrap_or_else(|| RegistryError::Config("no endpoint to pull from".into())))
    }

    async fn fetch_manifest_from(
        &self,
        session: &Session,
        reference: &Reference,
        tag_or_digest: &str,
        action: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = session.url(&format!(
            "/v2/{}/manifests/{tag_or_digest}",
            reference.repository()
        ));
        let scope = Scope::pull(reference.repository());
        let response = session
            .send(&scope, action, session.retry, |http| {
                Ok(http.get(&url).header(ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        if response.status() != StatusCode::OK {
            return Err(status_error(&session.registry, action, response).await);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let mut response = response;
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > MAX_MANIFEST_SIZE {
                        return Err(RegistryError::InvalidResponse {
                            registry: session.registry.clone(),
                            action: action.to_owned(),
                            message: format!(
                                "manifest larger than {} MiB",
                                MAX_MANIFEST_SIZE >> 20
                            ),
                        });
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(RegistryError::Connect {
                        registry: session.registry.clone(),
                        action: action.to_owned(),
                        cause: describe_send_error(&e).0,
                    })
                }
            }
        }
        let digest = Digest::sha256_of(&bytes);
        if let Ok(pinned) = Digest::parse(tag_or_digest) {
            if pinned != digest {
                return Err(RegistryError::DigestMismatch(Box::new(DigestMismatch {
                    registry: session.registry.clone(),
                    what: format!("manifest {}@{pinned}", reference.repository()),
                    expected: pinned,
                    expected_size: bytes.len() as u64,
                    actual: digest,
                    actual_size: bytes.len() as u64,
                })));
            }
        }
        let media_type = match content_type.as_deref() {
            Some(ct) if MediaType::from(ct).is_index() || MediaType::from(ct).is_manifest() => {
                MediaType::from(ct)
            }
            _ => document_media_type(&bytes).ok_or_else(|| RegistryError::InvalidResponse {
                registry: session.registry.clone(),
                action: action.to_owned(),
                message: format!(
                    "unknown manifest type (Content-Type {:?})",
                    content_type.unwrap_or_default()
                ),
            })?,
        };
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
            host: session.registry.clone(),
        })
    }

    /// Resolves `reference` to one image manifest for `platform` (through an index if it
    /// names one), without downloading blobs.
    pub async fn resolve_image(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<PulledImage, RegistryError> {
        let fetched = self.fetch_manifest(reference).await?;
        let action = pull_action(reference);
        let parsed = AnyManifest::from_json(&fetched.bytes, Some(&fetched.media_type)).map_err(
            |source| RegistryError::Oci {
                context: format!("manifest of {reference} from {}", fetched.host),
                source,
            },
        )?;
        let (fetched, manifest, index_digest) = match parsed {
            AnyManifest::Image(manifest) => (fetched, manifest, None),
            AnyManifest::Index(index) => {
                let chosen = index.find_platform(platform).ok_or_else(|| {
                    let available: Vec<String> = index
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref())
                        .map(platform_text)
                        .collect();
                    RegistryError::NoMatchingPlatform {
                        reference: reference.to_string(),
                        platform: platform_text(platform),
                        available: if available.is_empty() {
                            "none".to_owned()
                        } else {
                            available.join(", ")
                        },
                    }
                })?;
                let endpoint = self
                    .endpoints(reference.registry(), Direction::Pull)
                    .into_iter()
                    .find(|e| e.host == fetched.host)
                    .ok_or_else(|| RegistryError::Config("endpoint vanished".into()))?;
                let session = self.session(&endpoint, Direction::Pull, &action).await?;
                let child = self
                    .fetch_manifest_from(&session, reference, chosen.digest.as_str(), &action)
                    .await?;
                let manifest =
                    Manifest::from_json(&child.bytes).map_err(|source| RegistryError::Oci {
                        context: format!("manifest {} of {reference}", chosen.digest),
                        source,
                    })?;
                (child, manifest, Some(fetched.digest))
            }
        };
        Ok(PulledImage {
            reference: reference.clone(),
            digest: fetched.digest,
            media_type: fetched.media_type,
            manifest_bytes: fetched.bytes,
            manifest,
            index_digest,
            host: fetched.host,
        })
    }

    /// Pulls `reference` for `platform`: resolves the manifest, then streams the config and
    /// every layer the sink lacks into it, several at once, each verified by digest.
    pub async fn pull_image(
        &self,
        reference: &Reference,
        platform: &Platform,
        sink: &dyn BlobSink,
    ) -> Result<PulledImage, RegistryError> {
        let image = self.resolve_image(reference, platform).await?;
        let action = pull_action(reference);
        let endpoint = self
            .endpoints(reference.registry(), Direction::Pull)
            .into_iter()
            .find(|e| e.host == image.host)
            .ok_or_else(|| RegistryError::Config("endpoint vanished".into()))?;
        let session = self.session(&endpoint, Direction::Pull, &action).await?;
        let mut seen = std::collections::HashSet::new();
        let blobs: Vec<Descriptor> = image
            .blobs()
            .into_iter()
            .filter(|d| seen.insert(d.digest.clone()))
            .cloned()
            .collect();
        stream::iter(blobs.into_iter().map(Ok))
            .try_for_each_concurrent(self.options().max_concurrent_blobs.max(1), |blob| {
                let session = session.clone();
                async move {
                    self.fetch_blob_from(&session, reference.repository(), &blob, sink)
                        .await
                }
            })
            .await?;
        Ok(image)
    }

    /// Downloads one blob of `reference`'s repository into `sink` (nothing if it has it).
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        sink: &dyn BlobSink,
    ) -> Result<(), RegistryError> {
        let action = pull_action(reference);
        let endpoint = self
            .endpoints(reference.registry(), Direction::Pull)
            .pop()
            .ok_or_else(|| RegistryError::Config("no endpoint to pull from".into()))?;
        let session = self.session(&endpoint, Direction::Pull, &action).await?;
        self.fetch_blob_from(&session, reference.repository(), descriptor, sink)
            .await
    }

    async fn fetch_blob_from(
        &self,
        session: &Arc<Session>,
        repository: &str,
        descriptor: &Descriptor,
        sink: &dyn BlobSink,
    ) -> Result<(), RegistryError> {
        let digest = &descriptor.digest;
        if sink.has_blob(digest) {
            self.note_blob_holder(&session.registry, repository, digest);
            return Ok(());
        }
        let action = format!("pull of blob {digest} from {repository}");
        let local = |e: std::io::Error| RegistryError::Local {
            digest: digest.clone(),
            message: e.to_string(),
        };
        let url = session.url(&format!("/v2/{repository}/blobs/{digest}"));
        let scope = Scope::pull(repository);
        let mut writer: Box<dyn BlobWrite> = sink.begin_blob().map_err(local)?;
        let mut hasher = Sha256Hasher::new();
        let mut received: u64 = 0;
        let mut broken = 0u32;
        'attempts: loop {
            let offset = received;
            let response = session
                .send(&scope, &action, session.retry, |http| {
                    let request = http.get(&url);
                    Ok(if offset > 0 {
                        request.header(RANGE, format!("bytes={offset}-"))
                    } else {
                        request
                    })
                })
                .await?;
            match response.status() {
                StatusCode::OK if offset > 0 => {
                    // The server ignored the Range: start over from the first byte.
                    tracing::debug!(%digest, "server does not resume; restarting blob");
                    writer = sink.begin_blob().map_err(local)?;
                    hasher = Sha256Hasher::new();
                    received = 0;
                }
                StatusCode::OK => {}
                StatusCode::PARTIAL_CONTENT if offset > 0 => {
                    let start = response
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(content_range_start);
                    if start != Some(offset) {
                        return Err(RegistryError::InvalidResponse {
                            registry: session.registry.clone(),
                            action,
                            message: format!(
                                "asked to resume at byte {offset}, got Content-Range {start:?}"
                            ),
                        });
                    }
                }
                _ => return Err(status_error(&session.registry, &action, response).await),
            }
            let mut response = response;
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        received += chunk.len() as u64;
                        if received > descriptor.size {
                            return Err(self.mismatch(session, descriptor, hasher, chunk.len()));
                        }
                        hasher.update(&chunk);
                        writer.write_all(&chunk).map_err(local)?;
                    }
                    Ok(None) => break 'attempts,
                    Err(e) => {
                        let cause = describe_send_error(&e).0;
                        broken += 1;
                        if broken > session.retry.max_retries {
                            return Err(RegistryError::Connect {
                                registry: session.registry.clone(),
                                action,
                                cause: format!("{cause} after {received} bytes"),
                            });
                        }
                        tracing::warn!(%digest, received, %cause, "blob download broke; resuming");
                        tokio::time::sleep(session.retry.delay(broken, None)).await;
                        continue 'attempts;
                    }
                }
            }
        }
        let (actual, size) = hasher.finish();
        if &actual != digest || size != descriptor.size {
            return Err(RegistryError::DigestMismatch(Box::new(DigestMismatch {
                registry: session.registry.clone(),
                what: format!("blob {digest} of {repository}"),
                expected: digest.clone(),
                expected_size: descriptor.size,
                actual,
                actual_size: size,
            })));
        }
        writer.commit(digest, size).map_err(local)?;
        self.note_blob_holder(&session.registry, repository, digest);
        self.report(crate::progress::Transfer {
            kind: crate::progress::TransferKind::Downloaded,
            digest: digest.clone(),
            size,
            registry: session.registry.clone(),
            repository: repository.to_owned(),
        });
        Ok(())
    }

    fn mismatch(
        &self,
        session: &Session,
        descriptor: &Descriptor,
        hasher: Sha256Hasher,
        extra: usize,
    ) -> RegistryError {
        let size = hasher.len() + extra as u64;
        let (actual, _) = hasher.finish();
        RegistryError::DigestMismatch(Box::new(DigestMismatch {
            registry: session.registry.clone(),
            what: format!("blob {}", descriptor.digest),
            expected: descriptor.digest.clone(),
            expected_size: descriptor.size,
            actual,
            actual_size: size,
        }))
    }
}

/// `bytes 100-199/200` → 100.
fn content_range_start(value: &str) -> Option<u64> {
    value
        .trim()
        .strip_prefix("bytes")?
        .trim()
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn document_media_type(bytes: &[u8]) -> Option<MediaType> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    match probe.media_type {
        Some(mt) => Some(MediaType::from(mt.as_str())),
        None if probe.manifests.is_some() => Some(MediaType::OciIndex),
        None => Some(MediaType::OciManifest),
    }
}

fn platform_text(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("items 1-2"), None);
    }
}
