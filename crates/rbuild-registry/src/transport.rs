//! One session per registry host: scheme discovery (HTTPS, or plain HTTP where allowed),
//! authentication on 401, and retries with backoff on 5xx, 429 and broken connections.

use std::sync::Arc;
use std::time::SystemTime;

use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::auth::AuthState;
use crate::challenge::{preferred_challenge, Challenge};
use crate::credentials::CredentialChain;
use crate::error::{ErrorCode, RegistryError};
use crate::options::{Endpoint, PlainHttp, RegistryOptions};
use crate::retry::{parse_retry_after, RetryPolicy};
use crate::scope::Scope;
use crate::transport_error::{describe_send_error, SendFailure};

const CA_HINT: &str = "; trust its CA with --registry-certificate HOST=ca.pem, or use --skip-tls-verify-registry HOST";
const HANDSHAKE_HINT: &str = "; if the registry requires a client certificate, pass --registry-client-cert HOST=cert.pem,key.pem";

/// The hint for a TLS failure of `class`, or `None` when it is not a TLS failure.
fn tls_hint(class: SendFailure) -> Option<&'static str> {
    match class {
        SendFailure::Certificate => Some(CA_HINT),
        SendFailure::Handshake => Some(HANDSHAKE_HINT),
        _ => None,
    }
}

/// An authenticated connection pool to one registry host.
pub(crate) struct Session {
    /// `host[:port]`, as shown in messages.
    pub registry: String,
    /// `https://host[:port]` or `http://host[:port]`.
    pub base: String,
    http: reqwest::Client,
    auth: tokio::sync::Mutex<AuthState>,
    chain: Arc<CredentialChain>,
    /// The policy for requests that are safe to repeat as they are.
    pub retry: RetryPolicy,
}

/// Whether a status is worth retrying.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// Reads the error body of `response` into a [`RegistryError::Status`].
pub(crate) async fn status_error(
    registry: &str,
    action: &str,
    response: Response,
) -> RegistryError {
    let status = response.status().as_u16();
    let retry_after = retry_after_of(response.headers());
    let body = crate::body::read_error_body(response).await;
    RegistryError::Status {
        status,
        registry: registry.to_owned(),
        action: action.to_owned(),
        codes: ErrorCode::parse_body(&body),
        retry_after,
    }
}

fn retry_after_of(headers: &HeaderMap) -> Option<std::time::Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

pub(crate) fn build_http(
    options: &RegistryOptions,
    endpoint: &Endpoint,
) -> Result<reqwest::Client, RegistryError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(options.user_agent.clone())
        .connect_timeout(options.connect_timeout)
        .read_timeout(options.read_timeout)
        .redirect(reqwest::redirect::Policy::limited(10));
    if endpoint.skip_tls_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    // --registry-certificate: trusted CAs and pinned (self-signed) certificates, with the
    // client certificate of the host inside the same configuration.
    if let Some(config) = crate::tls_config::client_config(options, endpoint)? {
        return builder
            .use_preconfigured_tls(config)
            .build()
            .map_err(|e| RegistryError::Config(format!("HTTP client for {}: {e}", endpoint.host)));
    }
    for (host, cert, key) in &options.client_certificates {
        if host != &endpoint.host {
            continue;
        }
        let mut pem = std::fs::read(cert).map_err(|e| {
            RegistryError::Config(format!(
                "client certificate {} for {host}: {e}",
                cert.display()
            ))
        })?;
        pem.push(b'\n');
        pem.extend(std::fs::read(key).map_err(|e| {
            RegistryError::Config(format!("client key {} for {host}: {e}", key.display()))
        })?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            RegistryError::Config(format!(
                "client certificate {} / key {} for {host}: {e}",
                cert.display(),
                key.display()
            ))
        })?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| RegistryError::Config(format!("HTTP client for {}: {e}", endpoint.host)))
}

impl Session {
    /// Opens a session: finds the scheme by pinging `/v2/` and records the challenge.
    pub async fn open(
        endpoint: &Endpoint,
        options: &RegistryOptions,
        chain: Arc<CredentialChain>,
        action: &str,
    ) -> Result<Session, RegistryError> {
        let http = build_http(options, endpoint)?;
        let host = &endpoint.host;
        let session = |base: String, challenge: Option<Challenge>| Session {
            registry: host.clone(),
            base,
            http: http.clone(),
            auth: tokio::sync::Mutex::new(AuthState::with_challenge(challenge)),
            chain: chain.clone(),
            retry: options.retry,
        };
        let https = format!("https://{host}");
        let https_policy = match endpoint.plain_http {
            PlainHttp::Never => options.retry,
            // With a fallback, a failed HTTPS probe goes on to HTTP rather than retrying.
            _ => RetryPolicy::none(),
        };
        let https_error = match ping(&http, &https, host, action, https_policy).await {
            Ok(challenge) => return Ok(session(https, challenge)),
            Err(e) => e,
        };
        let fallback = match (&https_error, endpoint.plain_http) {
            (_, PlainHttp::Never) => false,
            // The peer speaks TLS: plain HTTP would only hide the real problem.
            (
                PingError::Send(_, SendFailure::Certificate | SendFailure::Handshake),
                PlainHttp::FallbackIfNoTls,
            ) => false,
            (PingError::Send(..), _) => true,
            (PingError::Status(_), _) => false,
        };
        if !fallback {
            return Err(https_error.into_registry_error(host, action));
        }
        let http_base = format!("http://{host}");
        match ping(&http, &http_base, host, action, options.retry).await {
            Ok(challenge) => {
                tracing::debug!(registry = %host, "using plain HTTP");
                Ok(session(http_base, challenge))
            }
            Err(PingError::Send(http_cause, _)) => {
                let https_cause = match https_error {
                    PingError::Send(cause, _) => cause,
                    PingError::Status(e) => e.to_string(),
                };
                Err(RegistryError::Connect {
                    registry: host.clone(),
                    action: action.to_owned(),
                    cause: if https_cause == http_cause {
                        http_cause
                    } else {
                        format!("https: {https_cause}; http: {http_cause}")
                    },
                })
            }
            Err(e) => Err(e.into_registry_error(host, action)),
        }
    }

    /// Sends the request made by `build` (called again for each attempt) with the right
    /// `Authorization`, answering one 401 by (re-)authenticating, and retrying connection
    /// errors, 5xx and 429 per `policy`. Returns any other answer for the caller to judge.
    pub async fn send<F>(
        &self,
        scope: &Scope,
        action: &str,
        policy: RetryPolicy,
        mut build: F,
    ) -> Result<Response, RegistryError>
    where
        F: FnMut(&reqwest::Client) -> Result<RequestBuilder, RegistryError>,
    {
        let mut reauthenticated = false;
        let mut retries = 0u32;
        loop {
            let authorization = match self.authorization(scope).await {
                Ok(value) => value,
                // A token server that is busy or unreachable is retried like the registry.
                Err(e) if e.is_retryable() && retries < policy.max_retries => {
                    retries += 1;
                    tracing::warn!(registry = %self.registry, %action, error = %e, retry = retries, "token request failed; retrying");
                    tokio::time::sleep(policy.delay(retries, e.retry_after())).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut request = build(&self.http)?;
            if let Some(value) = &authorization {
                request = request.header(AUTHORIZATION, value.expose());
            }
            let outcome = request.send().await;
            let retry_after = match outcome {
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::UNAUTHORIZED && !reauthenticated {
                        reauthenticated = true;
                        let challenge = response
                            .headers()
                            .get(WWW_AUTHENTICATE)
                            .and_then(|v| v.to_str().ok())
                            .and_then(preferred_challenge);
                        let mut state = self.auth.lock().await;
                        state.forget_token(scope);
                        if challenge.is_some() {
                            state.challenge = challenge;
                        }
                        continue;
                    }
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        return Err(self.auth_error(scope, response).await);
                    }
                    if !is_retryable_status(status) {
                        return Ok(response);
                    }
                    if retries >= policy.max_retries {
                        return Err(status_error(&self.registry, action, response).await);
                    }
                    tracing::warn!(registry = %self.registry, %action, status = status.as_u16(), retry = retries + 1, "registry busy or failing; retrying");
                    retry_after_of(response.headers())
                }
                Err(error) => {
                    let (cause, class) = describe_send_error(&error);
                    if let Some(hint) = tls_hint(class) {
                        return Err(RegistryError::Tls {
                            registry: self.registry.clone(),
                            action: action.to_owned(),
                            cause,
                            hint,
                        });
                    }
                    if retries >= policy.max_retries {
                        return Err(RegistryError::Connect {
                            registry: self.registry.clone(),
                            action: action.to_owned(),
                            cause,
                        });
                    }
                    tracing::warn!(registry = %self.registry, %action, %cause, retry = retries + 1, "request failed; retrying");
                    None
                }
            };
            retries += 1;
            tokio::time::sleep(policy.delay(retries, retry_after)).await;
        }
    }

    /// A full URL for `path` (which starts with `/v2/`), or a `Location` the registry sent
    /// (absolute, or relative to the registry).
    pub fn url(&self, path_or_location: &str) -> String {
        if path_or_location.starts_with("http://") || path_or_location.starts_with("https://") {
            path_or_location.to_owned()
        } else if path_or_location.starts_with('/') {
            format!("{}{path_or_location}", self.base)
        } else {
            format!("{}/{path_or_location}", self.base)
        }
    }

    async fn authorization(
        &self,
        scope: &Scope,
    ) -> Result<Option<crate::secret::Secret>, RegistryError> {
        let mut state = self.auth.lock().await;
        if state.challenge.is_none() {
            return Ok(None);
        }
        if state.credential.is_none() {
            let chain = self.chain.clone();
            let registry = self.registry.clone();
            let found = tokio::task::spawn_blocking(move || chain.lookup(&registry))
                .await
                .map_err(|e| RegistryError::Config(format!("credential lookup panicked: {e}")))??;
            if let Some(found) = &found {
                tracing::debug!(registry = %self.registry, source = %found.source, "using credentials");
            }
            state.credential = Some(found);
        }
        let missing = self.missing_credentials();
        let summary = scope.summary();
        state
            .authorization(&self.http, &self.registry, &summary, scope, &missing)
            .await
    }

    fn missing_credentials(&self) -> String {
        self.chain.missing_message(&self.registry)
    }

    async fn auth_error(&self, scope: &Scope, response: Response) -> RegistryError {
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(preferred_challenge);
        let codes = ErrorCode::parse_body(&crate::body::read_error_body(response).await);
        let state = self.auth.lock().await;
        let found = state.credential.as_ref().and_then(|c| c.as_ref());
        let reason = match (found, status, &challenge) {
            (None, _, _) => self.missing_credentials(),
            (Some(f), 403, _) => format!("access denied to the credentials from {}", f.source),
            (Some(f), _, Some(Challenge::Bearer { error: Some(e), realm, .. }))
                if e == "insufficient_scope" =>
            {
                format!(
                    "the token from {} for the credentials from {} does not grant {scope}",
                    rbuild_oci::truncate_for_message(
                        &crate::secret::redact_url(realm),
                        rbuild_oci::MAX_MESSAGE_INPUT_CHARS
                    ),
                    f.source
                )
            }
            (Some(f), _, Some(Challenge::Bearer { error: Some(e), realm, .. })) => format!(
                "the registry refused the token from {} for the credentials from {} ({e}: expired or not trusted)",
                rbuild_oci::truncate_for_message(
                        &crate::secret::redact_url(realm),
                        rbuild_oci::MAX_MESSAGE_INPUT_CHARS
                    ),
                f.source
            ),
            (Some(f), _, _) => format!("the credentials from {} were rejected", f.source),
        };
        RegistryError::Auth {
            status,
            registry: self.registry.clone(),
            action: scope.summary(),
            reason,
            codes,
        }
    }
}

enum PingError {
    Send(String, SendFailure),
    Status(RegistryError),
}

impl PingError {
    fn into_registry_error(self, host: &str, action: &str) -> RegistryError {
        match self {
            PingError::Send(cause, class) if tls_hint(class).is_some() => RegistryError::Tls {
                registry: host.to_owned(),
                action: action.to_owned(),
                cause,
                hint: tls_hint(class).unwrap_or_default(),
            },
            PingError::Send(cause, _) => RegistryError::Connect {
                registry: host.to_owned(),
                action: action.to_owned(),
                cause,
            },
            PingError::Status(e) => e,
        }
    }
}

/// `GET /v2/`: any answer but a retryable failure proves the scheme; a 401 carries the
/// challenge to answer.
async fn ping(
    http: &reqwest::Client,
    base: &str,
    host: &str,
    action: &str,
    policy: RetryPolicy,
) -> Result<Option<Challenge>, PingError> {
    let mut retries = 0u32;
    loop {
        let retry_after = match http.get(format!("{base}/v2/")).send().await {
            Ok(response) => {
                let status = response.status();
                if !is_retryable_status(status) {
                    return Ok(if status == StatusCode::UNAUTHORIZED {
                        response
                            .headers()
                            .get(WWW_AUTHENTICATE)
                            .and_then(|v| v.to_str().ok())
                            .and_then(preferred_challenge)
                    } else {
                        None
                    });
                }
                if retries >= policy.max_retries {
                    return Err(PingError::Status(
                        status_error(host, action, response).await,
                    ));
                }
                retry_after_of(response.headers())
            }
            Err(error) => {
                let (cause, class) = describe_send_error(&error);
                if tls_hint(class).is_some() || retries >= policy.max_retries {
                    return Err(PingError::Send(cause, class));
                }
                None
            }
        };
        retries += 1;
        tokio::time::sleep(policy.delay(retries, retry_after)).await;
    }
}
