//! Pull: manifests with the right `Accept` list, index → platform, blobs streamed into a
//! sink, verified as they arrive, resumed with `Range` after a broken connection.

use std::io::Write;
use std::sync::Arc;

use futures_util::stream::{self, TryStreamExt};
use rbuild_oci::{
    truncate_for_message, AnyManifest, Descriptor, Digest, Index, Manifest, MediaType, Platform,
    Reference, Sha256Hasher, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, MAX_MESSAGE_INPUT_CHARS,
};
use reqwest::header::{ACCEPT, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::StatusCode;

use crate::blob::{BlobSink, BlobWrite};
use crate::body::{read_limited, BodyLabel};
use crate::client::RegistryClient;
use crate::error::{DigestMismatch, RegistryError};
use crate::options::Direction;
use crate::scope::Scope;
use crate::transport::{status_error, Session};
use crate::transport_error::describe_send_error;

/// Every manifest kind we can read, as Docker sends it.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// How many indexes deep [`RegistryClient::resolve_image`] follows an index whose entry for the
/// platform is itself an index (2: an index of indexes of manifests). Deeper nesting is
/// refused with a message saying so.
pub const MAX_INDEX_NESTING: usize = 2;

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

    pub(crate) async fn fetch_manifest_from(
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
        let what = format!("manifest {}:{tag_or_digest}", reference.repository());
        let bytes = read_limited(
            response,
            MAX_MANIFEST_BYTES,
            &BodyLabel {
                registry: &session.registry,
                action,
                what: &what,
            },
        )
        .await?;
        let digest = Digest::sha256_of(&bytes);
        if let Ok(pinned) = Digest::parse(tag_or_digest) {
            if pinned != digest {
                return Err(RegistryError::DigestMismatch(Box::new(DigestMismatch {
                    registry: session.registry.clone(),
                    what: format!("manifest {}@{pinned}", reference.repository()),
                    expected: pinned,
                    expected_size: bytes.len() as u64,
                    actual: Some(digest),
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
                    truncate_for_message(
                        &content_type.unwrap_or_default(),
                        MAX_MESSAGE_INPUT_CHARS
                    )
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
    /// names one, and through a nested index up to [`MAX_INDEX_NESTING`] levels), without
    /// downloading blobs. A manifest whose config is larger than [`MAX_CONFIG_BYTES`] is
    /// refused here, before the config is fetched.
    pub async fn resolve_image(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<PulledImage, RegistryError> {
        let mut fetched = self.fetch_manifest(reference).await?;
        let action = pull_action(reference);
        let mut index_digest = None;
        let mut nesting = 0usize;
        let manifest = loop {
            let parsed = AnyManifest::from_json(&fetched.bytes, Some(&fetched.media_type))
                .map_err(|error| RegistryError::Oci {
                    context: format!(
                        "manifest {} of {reference} from {}",
                        fetched.digest, fetched.host
                    ),
                    error,
                })?;
            let index = match parsed {
                AnyManifest::Image(manifest) => break manifest,
                AnyManifest::Index(index) => index,
            };
            if index_digest.is_none() {
                index_digest = Some(fetched.digest.clone());
            }
            let chosen = choose_entry(&index, platform).ok_or_else(|| {
                RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    platform: platform.to_string(),
                    available: available_platforms(&index),
                }
            })?;
            if chosen.media_type.is_index() {
                nesting += 1;
                if nesting > MAX_INDEX_NESTING {
                    return Err(RegistryError::InvalidResponse {
                        registry: fetched.host.clone(),
                        action,
                        message: format!(
                            "index {} for {platform} is nested more than {MAX_INDEX_NESTING} indexes deep; refused",
                            chosen.digest
                        ),
                    });
                }
            }
            if chosen.size > MAX_MANIFEST_BYTES {
                return Err(RegistryError::TooLarge {
                    registry: fetched.host.clone(),
                    action,
                    what: format!("manifest {} for {platform}", chosen.digest),
                    size: Some(chosen.size),
                    limit: MAX_MANIFEST_BYTES,
                });
            }
            let endpoint = self
                .endpoints(reference.registry(), Direction::Pull)
                .into_iter()
                .find(|e| e.host == fetched.host)
                .ok_or_else(|| RegistryError::Config("endpoint vanished".into()))?;
            let session = self.session(&endpoint, Direction::Pull, &action).await?;
            let mut child = self
                .fetch_manifest_from(&session, reference, chosen.digest.as_str(), &action)
                .await?;
            // The index says what the entry is; the server's Content-Type may not.
            if chosen.media_type.is_index() || chosen.media_type.is_manifest() {
                child.media_type = chosen.media_type.clone();
            }
            fetched = child;
        };
        if manifest.config.size > MAX_CONFIG_BYTES {
            return Err(RegistryError::TooLarge {
                registry: fetched.host.clone(),
                action,
                what: format!("image config {}", manifest.config.digest),
                size: Some(manifest.config.size),
                limit: MAX_CONFIG_BYTES,
            });
        }
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
                            return Err(RegistryError::DigestMismatch(Box::new(DigestMismatch {
                                registry: session.registry.clone(),
                                what: format!("blob {digest} of {repository}"),
                                expected: digest.clone(),
                                expected_size: descriptor.size,
                                actual: None,
                                actual_size: received,
                            })));
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
                actual: Some(actual),
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

/// The entry of `index` to follow for `platform`: an image manifest for it, else an index for
/// it (or an index without a platform, which may list it), as containerd walks them.
fn choose_entry<'a>(index: &'a Index, platform: &Platform) -> Option<&'a Descriptor> {
    index.find_platform(platform).or_else(|| {
        index.manifests.iter().find(|d| {
            d.media_type.is_index() && d.platform.as_ref().is_none_or(|p| platform.matches(p))
        })
    })
}

/// The entries of `index` for a message: `linux/amd64, linux/arm/v7, linux/s390x (an index)`,
/// cut with [`truncate_for_message`] when the index is long, or `none`.
fn available_platforms(index: &Index) -> String {
    let entries: Vec<String> = index
        .manifests
        .iter()
        .filter(|d| d.media_type.is_manifest() || d.media_type.is_index())
        .map(|d| {
            let platform = d
                .platform
                .as_ref()
                .map_or_else(|| "no platform".to_owned(), Platform::to_string);
            if d.media_type.is_index() {
                format!("{platform} (an index)")
            } else {
                platform
            }
        })
        .collect();
    if entries.is_empty() {
        return "none".to_owned();
    }
    truncate_for_message(&entries.join(", "), MAX_MESSAGE_INPUT_CHARS).into_owned()
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
