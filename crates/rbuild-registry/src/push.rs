//! Push: per blob HEAD → cross-repository mount → upload (one PUT for small blobs, PATCH
//! chunks + PUT for large ones), several blobs at once, the manifest last. A failure before
//! the manifest leaves the tag untouched.

use std::io::Read;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use rbuild_oci::{Descriptor, Digest, Manifest, MediaType, Reference};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;

use crate::auth::percent_encode_into;
use crate::blob::BlobSource;
use crate::client::RegistryClient;
use crate::error::{DigestMismatch, RegistryError};
use crate::options::Direction;
use crate::retry::RetryPolicy;
use crate::scope::Scope;
use crate::transport::{status_error, Session};

/// What happened to one blob during a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobPush {
    /// The repository already had it (HEAD answered 200).
    Existed,
    /// Mounted from another repository of the same registry; no bytes sent.
    Mounted {
        /// The source repository.
        from: String,
    },
    /// Uploaded.
    Uploaded,
}

/// The result of pushing one image to one destination.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// The destination.
    pub reference: Reference,
    /// The manifest digest the registry stored.
    pub digest: Digest,
    /// Each blob and what was done with it, in manifest order (config first).
    pub blobs: Vec<(Digest, BlobPush)>,
}

impl PushOutcome {
    /// How many blobs were uploaded (not existing, not mounted).
    pub fn uploaded(&self) -> usize {
        self.blobs
            .iter()
            .filter(|(_, p)| *p == BlobPush::Uploaded)
            .count()
    }

    /// How many blobs were mounted from another repository.
    pub fn mounted(&self) -> usize {
        self.blobs
            .iter()
            .filter(|(_, p)| matches!(p, BlobPush::Mounted { .. }))
            .count()
    }
}

fn push_action(destination: &Reference) -> String {
    format!("push to {}", destination.repository())
}

impl RegistryClient {
    /// Pushes an image manifest and its blobs (read from `source`) to every destination.
    ///
    /// Destinations are handled in order, so on one registry the first uploads and the others
    /// mount from it. A destination's manifest is put only after all its blobs are in place.
    pub async fn push_image(
        &self,
        manifest_bytes: &[u8],
        media_type: &MediaType,
        source: &dyn BlobSource,
        destinations: &[Reference],
    ) -> Result<Vec<PushOutcome>, RegistryError> {
        let manifest = Manifest::from_json(manifest_bytes).map_err(|error| RegistryError::Oci {
            context: "manifest to push".to_owned(),
            error,
        })?;
        let mut blobs: Vec<Descriptor> = Vec::new();
        for blob in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
            if !blobs.iter().any(|b| b.digest == blob.digest) {
                blobs.push(blob.clone());
            }
        }
        let mut outcomes = Vec::new();
        for destination in destinations {
            let mut results = self.push_blobs(destination, &blobs, source).await?;
            let digest = match self
                .push_manifest(destination, manifest_bytes, media_type)
                .await
            {
                // A registry may not yet see a blob whose upload another client pushing the
                // same blobs has just finished (Distribution answers 400
                // MANIFEST_BLOB_UNKNOWN). Make sure of the blobs once more (HEAD, and upload
                // whatever is really missing), then put the manifest once more.
                Err(e) if is_manifest_blob_unknown(&e) => {
                    tracing::warn!(destination = %destination, error = %e, "registry does not see a just-pushed blob yet; checking the blobs and putting the manifest again");
                    tokio::time::sleep(self.options().retry.delay(1, None)).await;
                    results = self.push_blobs(destination, &blobs, source).await?;
                    self.push_manifest(destination, manifest_bytes, media_type)
                        .await?
                }
                // --push-ignore-immutable-tag-errors: the tag exists and the registry keeps
                // it; the build still succeeds, as Kaniko's flag makes it.
                Err(e)
                    if self.options().push_ignore_immutable_tag_errors
                        && is_immutable_tag_error(&e) =>
                {
                    tracing::warn!(
                        "{destination}: the tag is immutable and exists, left as it is \
                         (--push-ignore-immutable-tag-errors): {e}"
                    );
                    continue;
                }
                other => other?,
            };
            outcomes.push(PushOutcome {
                reference: destination.clone(),
                digest,
                blobs: results,
            });
        }
        Ok(outcomes)
    }

    /// Makes every blob present in `destination`'s repository, several at once.
    pub async fn push_blobs(
        &self,
        destination: &Reference,
        blobs: &[Descriptor],
        source: &dyn BlobSource,
    ) -> Result<Vec<(Digest, BlobPush)>, RegistryError> {
        let action = push_action(destination);
        let session = self.push_session(destination, &action).await?;
        // One token for everything: push on the destination, pull on every mount source.
        let mut scope = Scope::push(destination.repository());
        for blob in blobs {
            if let Some(from) = self.mount_source(destination, &blob.digest) {
                scope = scope.with_pull(&from);
            }
        }
        let concurrency = self.options().max_concurrent_blobs.max(1);
        let mut results: Vec<(usize, Digest, BlobPush)> = stream::iter(blobs.iter().enumerate())
            .map(|(i, blob)| {
                let session = &session;
                let scope = &scope;
                async move {
                    let outcome = self
                        .push_blob_with(session, scope, destination, blob, source)
                        .await?;
                    Ok::<_, RegistryError>((i, blob.digest.clone(), outcome))
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        results.sort_by_key(|(i, _, _)| *i);
        Ok(results.into_iter().map(|(_, d, p)| (d, p)).collect())
    }

    /// Makes one blob present in `destination`'s repository.
    pub async fn push_blob(
        &self,
        destination: &Reference,
        blob: &Descriptor,
        source: &dyn BlobSource,
    ) -> Result<BlobPush, RegistryError> {
        let action = push_action(destination);
        let session = self.push_session(destination, &action).await?;
        let mut scope = Scope::push(destination.repository());
        if let Some(from) = self.mount_source(destination, &blob.digest) {
            scope = scope.with_pull(&from);
        }
        self.push_blob_with(&session, &scope, destination, blob, source)
            .await
    }

    /// Puts a manifest (or index) under `destination`'s tag, or its digest when it has no
    /// tag, and returns the digest. The registry's `Docker-Content-Digest` is checked.
    pub async fn push_manifest(
        &self,
        destination: &Reference,
        bytes: &[u8],
        media_type: &MediaType,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::sha256_of(bytes);
        if let Some(pinned) = destination.digest() {
            if pinned != &digest {
                return Err(RegistryError::Config(format!(
                    "{destination} pins {pinned}, but the manifest is {digest}"
                )));
            }
        }
        let target = destination
            .tag()
            .map(str::to_owned)
            .unwrap_or_else(|| digest.to_string());
        let action = format!("push of manifest {}:{target}", destination.repository());
        let session = self.push_session(destination, &action).await?;
        let url = session.url(&format!(
            "/v2/{}/manifests/{target}",
            destination.repository()
        ));
        let body = Bytes::copy_from_slice(bytes);
        let scope = Scope::push(destination.repository());
        let response = session
            .send(&scope, &action, session.retry, |http| {
                Ok(http
                    .put(&url)
                    .header(CONTENT_TYPE, media_type.as_str())
                    .body(body.clone()))
            })
            .await?;
        if response.status() != StatusCode::CREATED && response.status() != StatusCode::OK {
            return Err(status_error(&session.registry, &action, response).await);
        }
        check_docker_content_digest(
            &session,
            &action,
            response.headers(),
            &digest,
            bytes.len() as u64,
        )?;
        tracing::info!(destination = %destination, %digest, "pushed manifest");
        Ok(digest)
    }

    /// Checks that `destination` accepts a push before anything is built, as Kaniko does:
    /// an upload session is started in its repository (`POST /v2/<repo>/blobs/uploads/`) and
    /// cancelled at once (`DELETE` of its location). Nothing is written.
    pub async fn check_push_permission(
        &self,
        destination: &Reference,
    ) -> Result<(), RegistryError> {
        let action = format!("push permission check of {}", destination.repository());
        self.open_upload(destination, action).await?.abort().await;
        Ok(())
    }

    pub(crate) async fn push_session(
        &self,
        destination: &Reference,
        action: &str,
    ) -> Result<std::sync::Arc<Session>, RegistryError> {
        let endpoint = self
            .endpoints(destination.registry(), Direction::Push)
            .pop()
            .ok_or_else(|| RegistryError::Config("no endpoint to push to".into()))?;
        self.session(&endpoint, Direction::Push, action).await
    }

    fn mount_source(&self, destination: &Reference, digest: &Digest) -> Option<String> {
        self.blob_holders(destination.registry(), digest)
            .into_iter()
            .find(|repo| repo != destination.repository())
    }

    /// HEAD → mount → upload, restarted from the HEAD on a retryable failure.
    async fn push_blob_with(
        &self,
        session: &Session,
        scope: &Scope,
        destination: &Reference,
        blob: &Descriptor,
        source: &dyn BlobSource,
    ) -> Result<BlobPush, RegistryError> {
        let repository = destination.repository();
        let policy = session.retry;
        let mut attempt = 0u32;
        loop {
            match self
                .push_blob_once(session, scope, destination, blob, source)
                .await
            {
                Ok(outcome) => {
                    self.note_blob_holder(destination.registry(), repository, &blob.digest);
                    self.report(crate::progress::Transfer {
                        kind: match outcome {
                            BlobPush::Existed => crate::progress::TransferKind::Existed,
                            BlobPush::Mounted { .. } => crate::progress::TransferKind::Mounted,
                            BlobPush::Uploaded => crate::progress::TransferKind::Uploaded,
                        },
                        digest: blob.digest.clone(),
                        size: blob.size,
                        registry: destination.registry().to_owned(),
                        repository: repository.to_owned(),
                    });
                    return Ok(outcome);
                }
                Err(e) if e.is_retryable() && attempt < policy.max_retries => {
                    attempt += 1;
                    tracing::warn!(digest = %blob.digest, error = %e, attempt, "blob push failed; starting it again");
                    tokio::time::sleep(policy.delay(attempt, e.retry_after())).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn push_blob_once(
        &self,
        session: &Session,
        scope: &Scope,
        destination: &Reference,
        blob: &Descriptor,
        source: &dyn BlobSource,
    ) -> Result<BlobPush, RegistryError> {
        let repository = destination.repository();
        let digest = &blob.digest;
        let action = format!("push of blob {digest} to {repository}");
        let head_url = session.url(&format!("/v2/{repository}/blobs/{digest}"));
        let response = session
            .send(scope, &action, session.retry, |http| {
                Ok(http.head(&head_url))
            })
            .await?;
        match response.status() {
            StatusCode::OK => return Ok(BlobPush::Existed),
            StatusCode::NOT_FOUND => {}
            _ => return Err(status_error(&session.registry, &action, response).await),
        }

        let plain_post = session.url(&format!("/v2/{repository}/blobs/uploads/"));
        let mut response = None;
        let mut scope = scope.clone();
        if let Some(from) = self.mount_source(destination, digest) {
            let mut mount_url = plain_post.clone();
            mount_url.push_str("?mount=");
            percent_encode_into(&mut mount_url, digest.as_str());
            mount_url.push_str("&from=");
            percent_encode_into(&mut mount_url, &from);
            let attempt = session
                .send(&scope, &action, session.retry, |http| {
                    Ok(http.post(&mount_url).header(CONTENT_LENGTH, "0"))
                })
                .await;
            match attempt {
                Ok(r) if r.status() == StatusCode::CREATED => {
                    tracing::debug!(%digest, %from, "mounted blob");
                    return Ok(BlobPush::Mounted { from });
                }
                Ok(r) => response = Some(r),
                // No read access to the source (or the registry dislikes the mount): upload
                // instead, as Docker does, with a token for the destination alone.
                Err(RegistryError::Auth { .. }) => {
                    tracing::debug!(%digest, %from, "mount refused; uploading");
                    scope = Scope::push(repository);
                }
                Err(e) => return Err(e),
            }
        }
        let response = match response {
            Some(r) => r,
            None => {
                session
                    .send(&scope, &action, session.retry, |http| {
                        Ok(http.post(&plain_post).header(CONTENT_LENGTH, "0"))
                    })
                    .await?
            }
        };
        let scope = &scope;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(&session.registry, &action, response).await);
        }
        let mut location = location_of(session, &action, &response)?;

        let size = blob.size;
        let options = self.options();
        if size > options.monolithic_upload_limit && options.upload_chunk_size > 0 {
            let mut offset = 0u64;
            while offset < size {
                let len = options.upload_chunk_size.min(size - offset);
                let url = location.clone();
                let response = session
                    .send(scope, &action, RetryPolicy::none(), |http| {
                        let body = blob_body(source, digest, offset, len)?;
                        Ok(http
                            .patch(&url)
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_RANGE, format!("{offset}-{}", offset + len - 1))
                            .header(CONTENT_LENGTH, len)
                            .body(body))
                    })
                    .await?;
                if response.status() != StatusCode::ACCEPTED {
                    return Err(status_error(&session.registry, &action, response).await);
                }
                location = location_of(session, &action, &response)?;
                offset += len;
            }
            let url = with_digest(&location, digest);
            let response = session
                .send(scope, &action, RetryPolicy::none(), |http| {
                    Ok(http.put(&url).header(CONTENT_LENGTH, "0"))
                })
                .await?;
            finish_upload(session, &action, response, digest, size).await?;
        } else {
            let url = with_digest(&location, digest);
            let response = session
                .send(scope, &action, RetryPolicy::none(), |http| {
                    let body = blob_body(source, digest, 0, size)?;
                    Ok(http
                        .put(&url)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, size)
                        .body(body))
                })
                .await?;
            finish_upload(session, &action, response, digest, size).await?;
        }
        tracing::debug!(%digest, size, "uploaded blob");
        Ok(BlobPush::Uploaded)
    }
}

/// A manifest PUT refused because the registry does not know one of its blobs.
/// A registry refusing to overwrite an immutable tag: ECR (`TAG_INVALID` "… cannot be
/// overwritten because the tag is immutable"), Harbor (412 "… configured as Immutable"),
/// Artifact Registry, Quay: a 4xx answer whose error says "immutable".
pub fn is_immutable_tag_error(error: &RegistryError) -> bool {
    let client_error = error.status().is_some_and(|s| (400..500).contains(&s));
    let says_immutable = |text: &str| text.to_ascii_lowercase().contains("immutable");
    client_error
        && (error.codes().iter().any(|c| says_immutable(&c.message))
            || says_immutable(&error.to_string()))
}

fn is_manifest_blob_unknown(error: &RegistryError) -> bool {
    error.status() == Some(400)
        && error
            .codes()
            .iter()
            .any(|c| c.code == "MANIFEST_BLOB_UNKNOWN")
}

pub(crate) async fn finish_upload(
    session: &Session,
    action: &str,
    response: reqwest::Response,
    digest: &Digest,
    size: u64,
) -> Result<(), RegistryError> {
    if response.status() != StatusCode::CREATED {
        return Err(status_error(&session.registry, action, response).await);
    }
    check_docker_content_digest(session, action, response.headers(), digest, size)
}

fn check_docker_content_digest(
    session: &Session,
    action: &str,
    headers: &reqwest::header::HeaderMap,
    digest: &Digest,
    size: u64,
) -> Result<(), RegistryError> {
    let Some(value) = headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    match Digest::parse(value.trim()) {
        Ok(stored) if &stored == digest => Ok(()),
        Ok(stored) => Err(RegistryError::DigestMismatch(Box::new(DigestMismatch {
            registry: session.registry.clone(),
            what: action.to_owned(),
            expected: digest.clone(),
            expected_size: size,
            actual: Some(stored),
            actual_size: size,
        }))),
        Err(_) => Err(RegistryError::InvalidResponse {
            registry: session.registry.clone(),
            action: action.to_owned(),
            message: format!(
                "Docker-Content-Digest {:?} is not a digest",
                rbuild_oci::truncate_for_message(value, rbuild_oci::MAX_MESSAGE_INPUT_CHARS)
            ),
        }),
    }
}

pub(crate) fn location_of(
    session: &Session,
    action: &str,
    response: &reqwest::Response,
) -> Result<String, RegistryError> {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RegistryError::InvalidResponse {
            registry: session.registry.clone(),
            action: action.to_owned(),
            message: format!("{} without a Location header", response.status()),
        })?;
    Ok(session.url(location))
}

pub(crate) fn with_digest(location: &str, digest: &Digest) -> String {
    let mut url = location.to_owned();
    url.push(if location.contains('?') { '&' } else { '?' });
    url.push_str("digest=");
    percent_encode_into(&mut url, digest.as_str());
    url
}

/// A request body streaming `len` bytes of a blob from `offset`, read on a blocking thread.
fn blob_body(
    source: &dyn BlobSource,
    digest: &Digest,
    offset: u64,
    len: u64,
) -> Result<reqwest::Body, RegistryError> {
    const PIECE: usize = 256 << 10;
    let mut reader = source
        .open_blob(digest, offset)
        .map_err(|e| RegistryError::Local {
            digest: digest.clone(),
            message: format!("cannot open for upload: {e}"),
        })?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let shown = digest.clone();
    tokio::task::spawn_blocking(move || {
        let mut remaining = len;
        while remaining > 0 {
            let want = remaining.min(PIECE as u64) as usize;
            let mut buf = vec![0u8; want];
            let item = match reader.read(&mut buf) {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("local blob {shown} ended {remaining} bytes early"),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    remaining -= n as u64;
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    let stream = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_appended_to_location() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(
            with_digest("http://h/v2/a/blobs/uploads/u?_state=s", &d),
            format!(
                "http://h/v2/a/blobs/uploads/u?_state=s&digest=sha256%3A{}",
                d.encoded()
            )
        );
        assert!(with_digest("http://h/u", &d).starts_with("http://h/u?digest="));
    }
}
