//! `rbuild-registry`: an OCI distribution client for pulling base images and pushing results
//! to any registry (Docker Hub, GitLab, Harbor, ECR, GCR, GHCR, a plain Distribution server).
//!
//! - **Credentials** in Docker's order ([`CredentialChain`]): `credHelpers` → `credsStore` →
//!   `auths` from `config.json`/`auth.json`, then GitLab's `CI_REGISTRY*` variables;
//!   [`write_login`] stores a login as `docker login` does.
//! - **Authentication**: Basic and Bearer challenges, tokens cached per [`Scope`]; a push asks
//!   in one token request for push on the destination and pull on the mount sources.
//! - **Pull** ([`RegistryClient::pull_image`]): index → platform, blobs streamed into a
//!   [`BlobSink`], verified by digest as they arrive, resumed with `Range` after a break.
//! - **Push** ([`RegistryClient::push_image`]): per blob HEAD → cross-repository mount →
//!   upload (one PUT, or PATCH chunks + PUT), several at once, manifest last.
//! - **Streaming upload** ([`RegistryClient::start_stream_upload`], [`StreamUpload`]): a blob
//!   sent chunk by chunk while it is being produced, its digest given on the final PUT; a
//!   failed or abandoned session is deleted.
//! - **Referrers** ([`RegistryClient::push_referrer`]): OCI 1.1 artifact manifests with a
//!   `subject`, through the referrers API or the `sha256-<hex>` referrers tag schema.
//! - **Downloads** ([`RegistryClient::download_url`], for `ADD https://…`): the same TLS
//!   options, timeouts and retries, streamed to a file with a size limit.
//! - **Limits**: manifests and indexes ([`rbuild_oci::MAX_MANIFEST_BYTES`]), configs
//!   ([`rbuild_oci::MAX_CONFIG_BYTES`], refused by their descriptor before being fetched), token
//!   answers ([`MAX_TOKEN_RESPONSE_BYTES`]) and error bodies ([`MAX_ERROR_BODY_BYTES`]) are
//!   never read past their limit; index nesting stops at [`MAX_INDEX_NESTING`].
//! - **Retries** ([`RetryPolicy`]) on connection errors, 5xx and 429 (`Retry-After`), never
//!   on authentication errors; every failure is a [`RegistryError`] naming host, action and
//!   cause, with the registry's status and codes. Credentials are [`Secret`]s and never
//!   appear in messages or logs.
//!
//! ```no_run
//! use rbuild_oci::{Platform, Reference};
//! use rbuild_registry::{CredentialChain, DirBlobs, RegistryClient, RegistryOptions};
//!
//! # async fn run() -> Result<(), rbuild_registry::RegistryError> {
//! let client = RegistryClient::new(RegistryOptions::default(), CredentialChain::from_env());
//! let blobs = DirBlobs::new("/tmp/layout");
//! let source = Reference::parse("alpine:3.20").unwrap();
//! let image = client.pull_image(&source, &Platform::host(), &blobs).await?;
//! let destination = Reference::parse("registry.example:5000/team/alpine:3.20").unwrap();
//! client
//!     .push_image(&image.manifest_bytes, &image.media_type, &blobs, &[destination])
//!     .await?;
//! # Ok(())
//! # }
//! ```

mod auth;
mod blob;
mod body;
mod challenge;
mod client;
pub mod credentials;
mod download;
mod error;
mod options;
mod progress;
mod pull;
mod push;
mod referrers;
mod retry;
mod scope;
mod secret;
mod stream_upload;
mod tls_config;
mod transport;
mod transport_error;

pub use auth::MAX_TOKEN_LIFETIME;
pub use blob::{BlobSink, BlobSource, BlobWrite, DirBlobs, MemoryBlobs};
pub use body::{MAX_ERROR_BODY_BYTES, MAX_TOKEN_RESPONSE_BYTES};
pub use challenge::{parse_challenges, preferred_challenge, Challenge};
pub use client::RegistryClient;
pub use credentials::{write_login, Credential, CredentialChain, CredentialError, FoundCredential};
pub use download::{DownloadedUrl, UrlDownload, MAX_URL_DOWNLOAD_BYTES};
pub use error::{DigestMismatch, ErrorCode, RegistryError};
pub use options::{is_loopback_host, Direction, Endpoint, PlainHttp, RegistryOptions};
pub use progress::{Transfer, TransferFn, TransferKind};
pub use pull::{FetchedManifest, PulledImage, MANIFEST_ACCEPT, MAX_INDEX_NESTING};
pub use push::{is_immutable_tag_error, BlobPush, PushOutcome};
pub use referrers::{referrers_tag, ReferrerAttach};
pub use retry::{parse_retry_after, RetryPolicy};
pub use scope::Scope;
pub use secret::{redact_url, Secret};
pub use stream_upload::StreamUpload;
