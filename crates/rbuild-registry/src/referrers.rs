//! OCI 1.1 referrers: an artifact manifest whose `subject` names an image is pushed like any
//! manifest (by digest), then made findable. A registry with the referrers API
//! (`GET /v2/<repo>/referrers/<digest>` answering an index) indexes it itself; for one without
//! it (Distribution 2.8), the client keeps the referrers tag schema: an index tagged
//! `sha256-<hex of the subject>` listing every referrer, read, extended and put back.

use rbuild_oci::{AnyManifest, Descriptor, Digest, Index, Manifest, MediaType, Reference};
use reqwest::header::ACCEPT;
use reqwest::StatusCode;

use crate::blob::BlobSource;
use crate::body::{read_limited, BodyLabel};
use crate::client::RegistryClient;
use crate::error::RegistryError;
use crate::scope::Scope;
use crate::transport::status_error;

/// How a referrer was made findable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferrerAttach {
    /// The registry serves the referrers API and lists it itself.
    ReferrersApi,
    /// The registry lacks the API: the referrers index under this tag lists it.
    TagSchema {
        /// `sha256-<hex>`.
        tag: String,
    },
}

/// How many times the referrers tag's index is updated before a concurrent writer wins.
const REFERRERS_TAG_ATTEMPTS: u32 = 5;

impl std::fmt::Display for ReferrerAttach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReferrerAttach::ReferrersApi => f.write_str("referrers API"),
            ReferrerAttach::TagSchema { tag } => write!(f, "tag {tag}"),
        }
    }
}

/// The referrers tag of `subject` (`sha256:abc…` → `sha256-abc…`).
pub fn referrers_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm(), subject.encoded())
}

/// `destination`'s repository, named by digest alone (no tag to overwrite).
fn by_digest(destination: &Reference, digest: &Digest) -> Result<Reference, RegistryError> {
    Reference::parse(&format!("{}@{digest}", destination.name())).map_err(|error| {
        RegistryError::Oci {
            context: format!("reference of {digest} in {}", destination.name()),
            error,
        }
    })
}

impl RegistryClient {
    /// Pushes an artifact manifest (its `subject` set) and its blobs (read from `source`)
    /// to `destination`'s repository by digest, then makes it findable: through the
    /// referrers API when the registry serves it, else by adding it to the referrers tag
    /// index. A failure leaves every tag as it was (the tag index is put last, whole).
    pub async fn push_referrer(
        &self,
        destination: &Reference,
        manifest_bytes: &[u8],
        source: &dyn BlobSource,
    ) -> Result<ReferrerAttach, RegistryError> {
        let manifest = Manifest::from_json(manifest_bytes).map_err(|error| RegistryError::Oci {
            context: "referrer manifest to push".into(),
            error,
        })?;
        let subject = manifest
            .subject
            .clone()
            .ok_or_else(|| RegistryError::Config("a referrer manifest needs a subject".into()))?;
        let blobs: Vec<Descriptor> = std::iter::once(manifest.config.clone())
            .chain(manifest.layers.iter().cloned())
            .collect();
        self.push_blobs(destination, &blobs, source).await?;
        let digest = Digest::sha256_of(manifest_bytes);
        self.push_manifest(
            &by_digest(destination, &digest)?,
            manifest_bytes,
            &MediaType::OciManifest,
        )
        .await?;
        if self
            .referrers_api(destination, &subject.digest)
            .await?
            .is_some()
        {
            return Ok(ReferrerAttach::ReferrersApi);
        }
        let mut entry = Descriptor::of_bytes(MediaType::OciManifest, manifest_bytes);
        entry.artifact_type = manifest
            .artifact_type
            .clone()
            .or_else(|| Some(manifest.config.media_type.as_str().to_owned()));
        entry.annotations = manifest.annotations.clone();
        let tag = referrers_tag(&subject.digest);
        let tagged = destination
            .with_tag(&tag)
            .map_err(|error| RegistryError::Oci {
                context: format!("referrers tag of {}", subject.digest),
                error,
            })?;
        // The tag's index is read, extended and written back; another pusher may write it in
        // between (two builds of the same image attaching their documents at once). So the
        // write is checked by reading the index again, and the whole update retried.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut index = self
                .tag_index(destination, &tag)
                .await?
                .unwrap_or_else(empty_index);
            if !index.manifests.iter().any(|d| d.digest == entry.digest) {
                index.manifests.push(entry.clone());
            }
            let written = self
                .push_manifest(&tagged, &index.to_canonical_json(), &MediaType::OciIndex)
                .await;
            let listed = match &written {
                Ok(_) => self
                    .tag_index(destination, &tag)
                    .await?
                    .is_some_and(|now| now.manifests.iter().any(|d| d.digest == entry.digest)),
                Err(_) => false,
            };
            if listed {
                break;
            }
            if attempt >= REFERRERS_TAG_ATTEMPTS {
                written?;
                return Err(RegistryError::Config(format!(
                    "the referrers tag {tag} of {} lost this document to concurrent updates {attempt} times",
                    destination.name()
                )));
            }
            tracing::debug!(%tag, attempt, "referrers tag updated concurrently; trying again");
            tokio::time::sleep(std::time::Duration::from_millis(50 * attempt as u64)).await;
        }
        tracing::info!(destination = %destination.name(), %digest, %tag, "referrer listed under the referrers tag");
        Ok(ReferrerAttach::TagSchema { tag })
    }

    /// The referrers of `subject` in `repository`'s repository: from the referrers API
    /// when the registry serves it, else from the referrers tag (empty when neither lists
    /// any).
    pub async fn referrers(
        &self,
        repository: &Reference,
        subject: &Digest,
    ) -> Result<Index, RegistryError> {
        if let Some(index) = self.referrers_api(repository, subject).await? {
            return Ok(index);
        }
        Ok(self
            .tag_index(repository, &referrers_tag(subject))
            .await?
            .unwrap_or_else(empty_index))
    }

    /// `GET /v2/<repo>/referrers/<digest>`: the index, or `None` when the registry does not
    /// serve the API (404 or 405 without an index).
    async fn referrers_api(
        &self,
        repository: &Reference,
        subject: &Digest,
    ) -> Result<Option<Index>, RegistryError> {
        let action = format!("referrers of {}@{subject}", repository.repository());
        let session = self.push_session(repository, &action).await?;
        let url = session.url(&format!(
            "/v2/{}/referrers/{subject}",
            repository.repository()
        ));
        let scope = Scope::push(repository.repository());
        let response = session
            .send(&scope, &action, session.retry, |http| {
                Ok(http.get(&url).header(ACCEPT, MediaType::OciIndex.as_str()))
            })
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if matches!(e.status(), Some(404 | 405)) => return Ok(None),
            Err(e) => return Err(e),
        };
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => return Ok(None),
            _ => return Err(status_error(&session.registry, &action, response).await),
        }
        let body = read_limited(
            response,
            rbuild_oci::MAX_MANIFEST_BYTES,
            &BodyLabel {
                registry: &session.registry,
                action: &action,
                what: "referrers index",
            },
        )
        .await?;
        // A registry without the API may answer 200 with something else (an HTML page):
        // only an index counts.
        Ok(Index::from_json(&body).ok())
    }

    /// The index tagged `tag` in `repository`'s repository, `None` when the tag is absent.
    async fn tag_index(
        &self,
        repository: &Reference,
        tag: &str,
    ) -> Result<Option<Index>, RegistryError> {
        let action = format!("referrers tag {}:{tag}", repository.repository());
        let session = self.push_session(repository, &action).await?;
        match self
            .fetch_manifest_from(&session, repository, tag, &action)
            .await
        {
            Ok(fetched) => {
                match AnyManifest::from_json(&fetched.bytes, Some(&fetched.media_type)) {
                    Ok(AnyManifest::Index(index)) => Ok(Some(index)),
                    Ok(_) => Err(RegistryError::InvalidResponse {
                        registry: session.registry.clone(),
                        action,
                        message: format!("{tag} is an image manifest, not a referrers index"),
                    }),
                    Err(error) => Err(RegistryError::Oci {
                        context: format!("referrers index {tag} from {}", session.registry),
                        error,
                    }),
                }
            }
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn empty_index() -> Index {
    Index {
        schema_version: 2,
        media_type: Some(MediaType::OciIndex),
        artifact_type: None,
        manifests: Vec::new(),
        subject: None,
        annotations: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_of_a_subject() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(referrers_tag(&d), format!("sha256-{}", d.encoded()));
        let r = Reference::parse("reg:5000/team/app:v1").unwrap();
        let p = by_digest(&r, &d).unwrap();
        assert_eq!(p.tag(), None);
        assert_eq!(p.digest(), Some(&d));
    }
}
