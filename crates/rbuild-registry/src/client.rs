//! The registry client: options, credentials, and one session per host and direction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rbuild_oci::Digest;

use crate::credentials::CredentialChain;
use crate::error::RegistryError;
use crate::options::{Direction, Endpoint, RegistryOptions};
use crate::transport::Session;

/// An OCI distribution client. Cheap to clone; clones share sessions, tokens and the record
/// of which repositories hold which blobs (used for cross-repository mounts).
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    options: RegistryOptions,
    chain: Arc<CredentialChain>,
    sessions: tokio::sync::Mutex<HashMap<(String, Direction), Arc<Session>>>,
    /// `(registry host, digest)` → repositories known to hold the blob.
    holders: Mutex<HashMap<(String, Digest), Vec<String>>>,
    /// Where finished blob transfers are reported.
    progress: std::sync::RwLock<Option<crate::progress::TransferFn>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client with `options`, finding credentials through `credentials`.
    pub fn new(options: RegistryOptions, credentials: CredentialChain) -> RegistryClient {
        RegistryClient {
            inner: Arc::new(Inner {
                options,
                chain: Arc::new(credentials),
                sessions: tokio::sync::Mutex::new(HashMap::new()),
                holders: Mutex::new(HashMap::new()),
                progress: std::sync::RwLock::new(None),
            }),
        }
    }

    /// Reports every blob that finishes moving (downloaded, uploaded, mounted or already there)
    /// to `callback`, from now on.
    pub fn set_progress(&self, callback: crate::progress::TransferFn) {
        if let Ok(mut slot) = self.inner.progress.write() {
            *slot = Some(callback);
        }
    }

    pub(crate) fn report(&self, transfer: crate::progress::Transfer) {
        if let Ok(slot) = self.inner.progress.read() {
            if let Some(callback) = slot.as_ref() {
                callback(&transfer);
            }
        }
    }

    /// The options this client was made with.
    pub fn options(&self) -> &RegistryOptions {
        &self.inner.options
    }

    /// Records that `repository` on `registry` holds `digest`, so a push to another
    /// repository of that registry can mount it instead of uploading it. Pulls and pushes
    /// record this themselves.
    pub fn note_blob_holder(&self, registry: &str, repository: &str, digest: &Digest) {
        let host = self.api_host(registry);
        let mut holders = self.holders();
        let list = holders.entry((host, digest.clone())).or_default();
        if !list.iter().any(|r| r == repository) {
            list.push(repository.to_owned());
        }
    }

    /// Repositories of `registry` known to hold `digest`, oldest first.
    pub fn blob_holders(&self, registry: &str, digest: &Digest) -> Vec<String> {
        let host = self.api_host(registry);
        self.holders()
            .get(&(host, digest.clone()))
            .cloned()
            .unwrap_or_default()
    }

    fn holders(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Digest), Vec<String>>> {
        // Entries are inserted whole; a panic elsewhere cannot leave one half-written.
        self.inner.holders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The host that serves `registry`'s API (Docker Hub's is `registry-1.docker.io`).
    pub(crate) fn api_host(&self, registry: &str) -> String {
        self.inner
            .options
            .endpoints(registry, Direction::Push)
            .pop()
            .map(|e| e.host)
            .unwrap_or_else(|| registry.to_owned())
    }

    /// The endpoints to try for `registry`, in order.
    pub(crate) fn endpoints(&self, registry: &str, direction: Direction) -> Vec<Endpoint> {
        self.inner.options.endpoints(registry, direction)
    }

    /// The session for `endpoint`, opened (scheme probe, challenge) on first use.
    pub(crate) async fn session(
        &self,
        endpoint: &Endpoint,
        direction: Direction,
        action: &str,
    ) -> Result<Arc<Session>, RegistryError> {
        let mut sessions = self.inner.sessions.lock().await;
        let key = (endpoint.host.clone(), direction);
        if let Some(session) = sessions.get(&key) {
            return Ok(session.clone());
        }
        let session = Arc::new(
            Session::open(
                endpoint,
                &self.inner.options,
                self.inner.chain.clone(),
                action,
            )
            .await?,
        );
        sessions.insert(key, session.clone());
        Ok(session)
    }
}

impl RegistryClient {
    /// Checks that the credentials found for `registry` are accepted, as `docker login` does
    /// before storing them: `GET /v2/` answered with the registry's challenge.
    pub async fn check_credentials(&self, registry: &str) -> Result<(), RegistryError> {
        let action = format!("login to {registry}");
        let endpoint = self
            .endpoints(registry, Direction::Push)
            .pop()
            .ok_or_else(|| RegistryError::Config("no endpoint for login".into()))?;
        let session = self.session(&endpoint, Direction::Push, &action).await?;
        let url = session.url("/v2/");
        let response = session
            .send(
                &crate::scope::Scope::default(),
                &action,
                session.retry,
                |http| Ok(http.get(&url)),
            )
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(crate::transport::status_error(&session.registry, &action, response).await)
        }
    }
}
