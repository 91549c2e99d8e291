//! A small token server for the registry's `auth: token` mode: checks a username and password
//! (GET with Basic auth, or the OAuth2 POST forms), and issues ES256 JWTs whose `x5c` header
//! carries a self-signed certificate that the registry trusts through `rootcertbundle`.

use std::io::{BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use crate::http::{read_head, request_body_kind, write_response, BodyKind};
use crate::tls::SigningCert;
use crate::TestkitError;

/// Who may get which token, and how long tokens live.
#[derive(Debug, Clone)]
pub struct TokenIssuerConfig {
    /// The `service` (token audience) the registry expects.
    pub service: String,
    /// The `iss` claim the registry trusts.
    pub issuer: String,
    /// The one user.
    pub username: String,
    /// Its password.
    pub password: String,
    /// A refresh token accepted by the OAuth2 POST form (`grant_type=refresh_token`).
    pub identity_token: Option<String>,
    /// Token lifetime in seconds; negative issues tokens that are already expired (beyond the
    /// registry's 60 s leeway when below -60).
    pub token_lifetime_secs: i64,
    /// Whether anonymous requests get pull-only tokens (else they are refused with 401).
    pub anonymous_pull: bool,
    /// The first this many requests are answered 503 (a token server having a bad moment).
    pub unavailable_first: usize,
}

impl Default for TokenIssuerConfig {
    fn default() -> Self {
        TokenIssuerConfig {
            service: "rbuild-test-registry".to_owned(),
            issuer: "rbuild-testkit".to_owned(),
            username: "tokenuser".to_owned(),
            password: "tokenpass".to_owned(),
            identity_token: None,
            token_lifetime_secs: 300,
            anonymous_pull: false,
            unavailable_first: 0,
        }
    }
}

/// One request the issuer answered (for assertions on caching and scopes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// The `scope` values asked for.
    pub scopes: Vec<String>,
    /// Whether a token was issued.
    pub granted: bool,
}

/// The running issuer; stops when dropped.
pub struct TokenIssuer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct IssuerState {
    config: TokenIssuerConfig,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    x5c: String,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    unavailable_left: std::sync::atomic::AtomicUsize,
}

impl TokenIssuer {
    pub(crate) fn start(
        config: TokenIssuerConfig,
        signer: &SigningCert,
    ) -> Result<TokenIssuer, TestkitError> {
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &signer.key_pkcs8, &rng)
                .map_err(|e| TestkitError::Image(format!("token signing key: {e}")))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| TestkitError::io("bind token issuer", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| TestkitError::io("token issuer address", e))?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let unavailable_first = config.unavailable_first;
        let state = Arc::new(IssuerState {
            config,
            key,
            rng,
            x5c: STANDARD.encode(&signer.cert_der),
            requests: requests.clone(),
            unavailable_left: std::sync::atomic::AtomicUsize::new(unavailable_first),
        });
        let thread = crate::http::spawn_accept_loop(listener, stop.clone(), state, serve);
        Ok(TokenIssuer {
            addr,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    /// The token endpoint URL, as the registry's `realm`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(state: &IssuerState, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    while let Some(head) = read_head(&mut reader)? {
        let (method, target) = head.method_and_path();
        let body = match request_body_kind(&head) {
            BodyKind::Length(n) if n <= 1 << 20 => {
                let mut body = vec![0u8; n as usize];
                reader.read_exact(&mut body)?;
                body
            }
            _ => Vec::new(),
        };
        let unavailable = state
            .unavailable_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if unavailable {
            write_response(&mut writer, 503, "Service Unavailable", &[], b"")?;
            continue;
        }
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut params = parse_form(query);
        if method == "POST" {
            params.extend(parse_form(&String::from_utf8_lossy(&body)));
        }
        let scopes: Vec<String> = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let config = &state.config;
        // None: anonymous; Some(Ok(user)): authenticated; Some(Err): wrong credentials.
        let identity: Option<Result<String, ()>> = if method == "POST" {
            match param("grant_type").as_deref() {
                Some("refresh_token") => {
                    Some(match (param("refresh_token"), &config.identity_token) {
                        (Some(given), Some(expected)) if &given == expected => {
                            Ok(config.username.clone())
                        }
                        _ => Err(()),
                    })
                }
                Some("password") => Some(
                    if param("username").as_deref() == Some(&config.username)
                        && param("password").as_deref() == Some(&config.password)
                    {
                        Ok(config.username.clone())
                    } else {
                        Err(())
                    },
                ),
                _ => Some(Err(())),
            }
        } else {
            head.header("authorization").map(|value| {
                let decoded = value
                    .strip_prefix("Basic ")
                    .and_then(|b| STANDARD.decode(b.trim()).ok())
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default();
                match decoded.split_once(':') {
                    Some((u, p)) if u == config.username && p == config.password => {
                        Ok(u.to_owned())
                    }
                    _ => Err(()),
                }
            })
        };
        let access: Option<Vec<serde_json::Value>> = match &identity {
            Some(Ok(_)) => Some(
                scopes
                    .iter()
                    .filter_map(|s| access_entry(s, false))
                    .collect(),
            ),
            None if config.anonymous_pull => Some(
                scopes
                    .iter()
                    .filter_map(|s| access_entry(s, true))
                    .collect(),
            ),
            _ => None,
        };
        let user = identity.as_ref().and_then(|i| i.clone().ok());
        state
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(TokenRequest {
                method: method.clone(),
                user: user.clone(),
                scopes: scopes.clone(),
                granted: access.is_some(),
            });
        match access {
            None => write_response(
                &mut writer,
                401,
                "Unauthorized",
                &[("Content-Type", "application/json".to_owned())],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )?,
            Some(access) => {
                let token = sign_token(state, user.as_deref().unwrap_or(""), access);
                let body = serde_json::json!({
                    "token": token,
                    "access_token": token,
                    "expires_in": config.token_lifetime_secs.max(1),
                });
                write_response(
                    &mut writer,
                    200,
                    "OK",
                    &[("Content-Type", "application/json".to_owned())],
                    body.to_string().as_bytes(),
                )?;
            }
        }
        if head.wants_close() {
            break;
        }
    }
    Ok(())
}

/// `repository:team/app:pull,push` → the JWT `access` entry (pull only if `pull_only`).
fn access_entry(scope: &str, pull_only: bool) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = actions
        .split(',')
        .filter(|a| !a.is_empty() && (!pull_only || *a == "pull"))
        .collect();
    Some(serde_json::json!({ "type": kind, "name": name, "actions": actions }))
}

fn sign_token(state: &IssuerState, subject: &str, access: Vec<serde_json::Value>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let expires = now + state.config.token_lifetime_secs;
    let header = serde_json::json!({ "typ": "JWT", "alg": "ES256", "x5c": [state.x5c] });
    let claims = serde_json::json!({
        "iss": state.config.issuer,
        "sub": subject,
        "aud": state.config.service,
        "exp": expires,
        "nbf": expires.min(now) - 10,
        "iat": expires.min(now) - 10,
        "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = state
        .key
        .sign(&state.rng, signing_input.as_bytes())
        .map(|s| URL_SAFE_NO_PAD.encode(s.as_ref()))
        .unwrap_or_default();
    format!("{signing_input}.{signature}")
}

/// Parses `a=1&b=x%20y` (also `+` as space).
fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_scope_parsing() {
        assert_eq!(
            parse_form("scope=repository%3Aa%2Fb%3Apull%2Cpush&service=x+y&bad=%zz&t=%4"),
            vec![
                ("scope".into(), "repository:a/b:pull,push".into()),
                ("service".into(), "x y".into()),
                ("bad".into(), "%zz".into()),
                ("t".into(), "%4".into()),
            ]
        );
        assert_eq!(
            access_entry("repository:a/b:pull,push", true).unwrap()["actions"],
            serde_json::json!(["pull"])
        );
        assert!(access_entry("nonsense", false).is_none());
    }
}
