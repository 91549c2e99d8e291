//! Answering a registry's challenge: Basic headers, Bearer tokens fetched from the realm and
//! cached per scope until they expire.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use crate::challenge::Challenge;
use crate::credentials::{Credential, FoundCredential};
use crate::error::{ErrorCode, RegistryError};
use crate::scope::Scope;
use crate::secret::{redact_url, Secret};
use crate::transport_error::describe_send_error;

/// Tokens are renewed this long before they expire, so a request never races the expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// The longest a token is kept, whatever `expires_in` says (24 hours): a hostile or odd token
/// server may send `u64::MAX` seconds, which would overflow the clock.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// The lifetime the token spec says to assume when `expires_in` is missing.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// What a session knows about authenticating with one registry host.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    /// The challenge from the last 401 (or the ping), if any.
    pub challenge: Option<Challenge>,
    /// The credential, looked up once per session (`Some(None)`: looked up, none found).
    pub credential: Option<Option<FoundCredential>>,
    tokens: HashMap<Scope, CachedToken>,
}

#[derive(Debug)]
struct CachedToken {
    token: Secret,
    renew_after: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl AuthState {
    /// A fresh state that knows `challenge` (from the ping), if any.
    pub fn with_challenge(challenge: Option<Challenge>) -> AuthState {
        AuthState {
            challenge,
            ..AuthState::default()
        }
    }

    /// Forgets the cached token for `scope` (after the registry refused it).
    pub fn forget_token(&mut self, scope: &Scope) {
        self.tokens.remove(scope);
    }

    /// The `Authorization` header value for a request needing `scope`, fetching a token if
    /// the challenge asks for one. `None` when the request should go anonymously.
    pub async fn authorization(
        &mut self,
        http: &reqwest::Client,
        registry: &str,
        action: &str,
        scope: &Scope,
        missing: &str,
    ) -> Result<Option<Secret>, RegistryError> {
        let credential = self
            .credential
            .as_ref()
            .and_then(|c| c.as_ref())
            .map(|f| &f.credential);
        match &self.challenge {
            None => Ok(None),
            Some(Challenge::Basic { .. }) => Ok(match credential {
                Some(Credential::Basic { username, password }) => {
                    Some(basic_header(username, password))
                }
                Some(Credential::RegistryToken(token)) => {
                    Some(Secret::new(format!("Bearer {}", token.expose())))
                }
                _ => None,
            }),
            Some(Challenge::Bearer { realm, service, .. }) => {
                if let Some(Credential::RegistryToken(token)) = credential {
                    return Ok(Some(Secret::new(format!("Bearer {}", token.expose()))));
                }
                if let Some(cached) = self.tokens.get(scope) {
                    if Instant::now() < cached.renew_after {
                        return Ok(Some(Secret::new(format!(
                            "Bearer {}",
                            cached.token.expose()
                        ))));
                    }
                }
                let found = self.credential.as_ref().and_then(|c| c.as_ref());
                let (token, lifetime) = fetch_token(
                    http,
                    registry,
                    action,
                    realm,
                    service.as_deref(),
                    scope,
                    found,
                    missing,
                )
                .await?;
                let header = Secret::new(format!("Bearer {}", token.expose()));
                self.tokens.insert(
                    scope.clone(),
                    CachedToken {
                        token,
                        renew_after: Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN),
                    },
                );
                Ok(Some(header))
            }
        }
    }
}

fn basic_header(username: &str, password: &Secret) -> Secret {
    Secret::new(format!(
        "Basic {}",
        STANDARD.encode(format!("{username}:{}", password.expose()))
    ))
}

/// Asks the token endpoint for a token (`missing` explains an absent credential): OAuth2 POST with a refresh token for identity tokens,
/// otherwise GET with Basic credentials (or anonymously), as Docker does.
#[allow(clippy::too_many_arguments)]
async fn fetch_token(
    http: &reqwest::Client,
    registry: &str,
    action: &str,
    realm: &str,
    service: Option<&str>,
    scope: &Scope,
    found: Option<&FoundCredential>,
    missing: &str,
) -> Result<(Secret, Duration), RegistryError> {
    let realm_shown =
        rbuild_oci::truncate_for_message(&redact_url(realm), rbuild_oci::MAX_MESSAGE_INPUT_CHARS)
            .into_owned();
    let request = match found.map(|f| &f.credential) {
        Some(Credential::IdentityToken(refresh)) => {
            let mut form: Vec<(&str, &str)> = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.expose()),
                ("client_id", "rbuild"),
            ];
            if let Some(service) = service {
                form.push(("service", service));
            }
            let joined = scope.entries().join(" ");
            if !joined.is_empty() {
                form.push(("scope", &joined));
            }
            let body = form_urlencode(&form);
            http.post(realm)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body)
        }
        other => {
            let mut query: Vec<(&str, &str)> = Vec::new();
            if let Some(service) = service {
                query.push(("service", service));
            }
            for entry in scope.entries() {
                query.push(("scope", entry));
            }
            let separator = if realm.contains('?') { '&' } else { '?' };
            let url = if query.is_empty() {
                realm.to_owned()
            } else {
                format!("{realm}{separator}{}", form_urlencode(&query))
            };
            let request = http.get(url);
            match other {
                Some(Credential::Basic { username, password }) => request.header(
                    reqwest::header::AUTHORIZATION,
                    basic_header(username, password).expose(),
                ),
                _ => request,
            }
        }
    };
    let response = request.send().await.map_err(|e| {
        let (cause, _) = describe_send_error(&e);
        RegistryError::Connect {
            registry: registry.to_owned(),
            action: format!("{action} (token from {realm_shown})"),
            cause,
        }
    })?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        let codes = ErrorCode::parse_body(&crate::body::read_error_body(response).await);
        let reason = match found {
            Some(f) => format!(
                "the token server {realm_shown} rejected the credentials from {}",
                f.source
            ),
            None => format!("the token server {realm_shown} refused anonymous access; {missing}"),
        };
        return Err(RegistryError::Auth {
            status: status.as_u16(),
            registry: registry.to_owned(),
            action: action.to_owned(),
            reason,
            codes,
        });
    }
    if !status.is_success() {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::retry::parse_retry_after(v, std::time::SystemTime::now()));
        let codes = ErrorCode::parse_body(&crate::body::read_error_body(response).await);
        return Err(RegistryError::Status {
            status: status.as_u16(),
            registry: registry.to_owned(),
            action: format!("{action} (token from {realm_shown})"),
            codes,
            retry_after,
        });
    }
    let token_action = format!("{action} (token from {realm_shown})");
    let body = crate::body::read_limited(
        response,
        crate::body::MAX_TOKEN_RESPONSE_BYTES,
        &crate::body::BodyLabel {
            registry,
            action: &token_action,
            what: "token answer",
        },
    )
    .await?;
    let answer: TokenAnswer =
        serde_json::from_slice(&body).map_err(|e| RegistryError::InvalidResponse {
            registry: registry.to_owned(),
            action: format!("{action} (token from {realm_shown})"),
            message: format!("token answer is not JSON with a token: {e}"),
        })?;
    let token = answer
        .token
        .filter(|t| !t.is_empty())
        .or(answer.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| RegistryError::InvalidResponse {
            registry: registry.to_owned(),
            action: format!("{action} (token from {realm_shown})"),
            message: "token answer has neither \"token\" nor \"access_token\"".to_owned(),
        })?;
    let lifetime = answer
        .expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME)
        .min(MAX_TOKEN_LIFETIME);
    tracing::debug!(registry, scope = %scope, realm = %realm_shown, "obtained registry token");
    Ok((Secret::new(token), lifetime))
}

/// `application/x-www-form-urlencoded` encoding of key/value pairs.
pub(crate) fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode_into(&mut out, key);
        out.push('=');
        percent_encode_into(&mut out, value);
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode_into(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_urlencode(&[("scope", "repository:a/b:pull,push"), ("service", "x y")]),
            "scope=repository%3Aa%2Fb%3Apull%2Cpush&service=x%20y"
        );
    }
}
