//! A blob uploaded while it is still being produced: the layer writer hands over compressed
//! chunks as it makes them, each goes out as one `PATCH` (with its `Content-Range`), and the
//! digest, known only at the end, is given on the final `PUT`. A session that fails or is
//! given up is `DELETE`d, so the registry keeps nothing of it: a blob exists in the
//! repository only once the registry has checked the whole content against its digest.

use bytes::Bytes;
use rbuild_oci::{Digest, Reference};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use reqwest::StatusCode;
use std::sync::Arc;

use crate::client::RegistryClient;
use crate::error::RegistryError;
use crate::push::{finish_upload, location_of, with_digest};
use crate::retry::RetryPolicy;
use crate::scope::Scope;
use crate::transport::{status_error, Session};

/// An open upload session in one repository, fed chunk by chunk.
///
/// ```no_run
/// # async fn run(client: rbuild_registry::RegistryClient, to: rbuild_oci::Reference)
/// # -> Result<(), rbuild_registry::RegistryError> {
/// let data = b"a blob".to_vec();
/// let digest = rbuild_oci::Digest::sha256_of(&data);
/// let mut upload = client.start_stream_upload(&to).await?;
/// upload.send_chunk(data).await?;
/// upload.finish(&digest).await?;
/// # Ok(()) }
/// ```
pub struct StreamUpload {
    client: RegistryClient,
    session: Arc<Session>,
    scope: Scope,
    destination: Reference,
    action: String,
    /// Where the next request goes (the last `Location` the registry sent).
    location: String,
    /// Bytes the registry has accepted so far.
    offset: u64,
}

impl std::fmt::Debug for StreamUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamUpload")
            .field("destination", &self.destination.to_string())
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// Opens an upload session (`POST /v2/<repository>/blobs/uploads/`) in `destination`'s
    /// repository, for a blob whose digest is not known yet.
    pub async fn start_stream_upload(
        &self,
        destination: &Reference,
    ) -> Result<StreamUpload, RegistryError> {
        let action = format!(
            "streaming upload of a layer to {}",
            destination.repository()
        );
        self.open_upload(destination, action).await
    }

    /// Opens an upload session; `action` names it in errors.
    pub(crate) async fn open_upload(
        &self,
        destination: &Reference,
        action: String,
    ) -> Result<StreamUpload, RegistryError> {
        let repository = destination.repository();
        let session = self.push_session(destination, &action).await?;
        let scope = Scope::push(repository);
        let url = session.url(&format!("/v2/{repository}/blobs/uploads/"));
        // Opening a session changes nothing the client relies on: safe to retry.
        let response = session
            .send(&scope, &action, session.retry, |http| {
                Ok(http.post(&url).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(&session.registry, &action, response).await);
        }
        let location = location_of(&session, &action, &response)?;
        tracing::debug!(destination = %destination, "streaming upload opened");
        Ok(StreamUpload {
            client: self.clone(),
            session,
            scope,
            destination: destination.clone(),
            action,
            location,
            offset: 0,
        })
    }
}

impl StreamUpload {
    /// Bytes sent and accepted so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Sends the next `chunk` of the blob (one `PATCH`). Not retried: a failed chunk fails
    /// the session, which the caller then gives up with [`StreamUpload::abort`].
    pub async fn send_chunk(&mut self, chunk: Vec<u8>) -> Result<(), RegistryError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(chunk);
        let len = chunk.len() as u64;
        let start = self.offset;
        let url = self.location.clone();
        let response = self
            .session
            .send(&self.scope, &self.action, RetryPolicy::none(), |http| {
                Ok(http
                    .patch(&url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{start}-{}", start + len - 1))
                    .header(CONTENT_LENGTH, len)
                    .body(chunk.clone()))
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error(&self.session.registry, &self.action, response).await);
        }
        self.location = location_of(&self.session, &self.action, &response)?;
        self.offset += len;
        Ok(())
    }

    /// Ends the upload: `PUT` with `digest`, which the registry checks against everything
    /// sent. On success the blob exists in the repository (and later pushes there find it,
    /// or mount it into other repositories of the registry).
    pub async fn finish(self, digest: &Digest) -> Result<(), RegistryError> {
        let url = with_digest(&self.location, digest);
        let response = self
            .session
            .send(&self.scope, &self.action, RetryPolicy::none(), |http| {
                Ok(http.put(&url).header(CONTENT_LENGTH, "0"))
            })
            .await;
        let outcome = match response {
            Ok(response) => {
                finish_upload(&self.session, &self.action, response, digest, self.offset).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            self.abort().await;
            return Err(e);
        }
        let registry = self.destination.registry();
        let repository = self.destination.repository();
        self.client.note_blob_holder(registry, repository, digest);
        self.client.report(crate::progress::Transfer {
            kind: crate::progress::TransferKind::Uploaded,
            digest: digest.clone(),
            size: self.offset,
            registry: registry.to_owned(),
            repository: repository.to_owned(),
        });
        tracing::debug!(%digest, size = self.offset, destination = %self.destination, "streamed blob uploaded");
        Ok(())
    }

    /// Gives the session up (`DELETE`), so the registry discards what it received. Errors are
    /// only logged: a registry that cannot delete drops stale sessions by itself, and nothing
    /// of an unfinished session is ever a blob.
    pub async fn abort(self) {
        let url = self.location.clone();
        let outcome = self
            .session
            .send(&self.scope, &self.action, RetryPolicy::none(), |http| {
                Ok(http.delete(&url))
            })
            .await;
        match outcome {
            Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {
                tracing::debug!(destination = %self.destination, "streaming upload cancelled");
            }
            Ok(r) => {
                tracing::debug!(destination = %self.destination, status = r.status().as_u16(), "registry refused to cancel an upload");
            }
            Err(e) => {
                tracing::debug!(destination = %self.destination, error = %e, "cancelling an upload failed");
            }
        }
    }
}
