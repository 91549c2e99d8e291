//! Parsing `WWW-Authenticate` challenges (RFC 7235) as registries send them.

use std::collections::BTreeMap;

/// One authentication challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm="…",service="…",scope="…"`: get a token from `realm`.
    Bearer {
        /// The token endpoint URL.
        realm: String,
        /// The `service` parameter to pass to the token endpoint.
        service: Option<String>,
        /// The scope the registry asked for, if any.
        scope: Option<String>,
        /// The `error` parameter (`invalid_token`, `insufficient_scope`), if any.
        error: Option<String>,
    },
    /// `Basic realm="…"`: send username and password with every request.
    Basic {
        /// The realm, informational only.
        realm: Option<String>,
    },
}

/// Parses every challenge in a `WWW-Authenticate` value; unknown schemes are skipped.
///
/// Accepts quoted and unquoted parameter values, escaped quotes, and several challenges in one
/// header (`Basic realm="x", Bearer realm="y"`).
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut challenges = Vec::new();
    for (scheme, params) in split_challenges(header) {
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => {
                if let Some(realm) = params.get("realm") {
                    challenges.push(Challenge::Bearer {
                        realm: realm.clone(),
                        service: params.get("service").cloned(),
                        scope: params.get("scope").cloned(),
                        error: params.get("error").cloned(),
                    });
                }
            }
            "basic" => challenges.push(Challenge::Basic {
                realm: params.get("realm").cloned(),
            }),
            _ => {}
        }
    }
    challenges
}

/// Picks the challenge to answer: Bearer before Basic, as Docker does.
pub fn preferred_challenge(header: &str) -> Option<Challenge> {
    let mut all = parse_challenges(header);
    all.sort_by_key(|c| match c {
        Challenge::Bearer { .. } => 0,
        Challenge::Basic { .. } => 1,
    });
    all.into_iter().next()
}

type Params = BTreeMap<String, String>;

/// Tokenises the header into `(scheme, params)` pairs. A bare token (not followed by `=`) starts
/// a new challenge; `key=value` pairs belong to the current one.
fn split_challenges(header: &str) -> Vec<(String, Params)> {
    let mut out: Vec<(String, Params)> = Vec::new();
    let bytes = header.as_bytes();
    let mut pos = 0;
    while pos < bytes.len() {
        while pos < bytes.len() && (bytes[pos] == b',' || bytes[pos].is_ascii_whitespace()) {
            pos += 1;
        }
        let start = pos;
        while pos < bytes.len() && is_token_byte(bytes[pos]) {
            pos += 1;
        }
        if pos == start {
            // Not a token: skip one byte so malformed input cannot loop forever.
            pos += 1;
            continue;
        }
        let token = &header[start..pos];
        let mut look = pos;
        while look < bytes.len() && bytes[look] == b' ' {
            look += 1;
        }
        if look < bytes.len() && bytes[look] == b'=' && !token_is_token68_padding(bytes, look) {
            pos = look + 1;
            while pos < bytes.len() && bytes[pos] == b' ' {
                pos += 1;
            }
            let value = if pos < bytes.len() && bytes[pos] == b'"' {
                pos += 1;
                let mut value = String::new();
                let mut chars = header[pos..].char_indices();
                let mut consumed = header.len() - pos;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            consumed = i + 1;
                            break;
                        }
                        other => value.push(other),
                    }
                }
                pos += consumed;
                value
            } else {
                let vstart = pos;
                while pos < bytes.len() && bytes[pos] != b',' {
                    pos += 1;
                }
                header[vstart..pos].trim().to_owned()
            };
            if let Some((_, params)) = out.last_mut() {
                params.insert(token.to_ascii_lowercase(), value);
            }
        } else {
            out.push((token.to_owned(), Params::new()));
        }
    }
    out
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b)
}

/// `=` that ends a token68 blob (`Negotiate abc==`) is padding, not a parameter separator.
fn token_is_token68_padding(bytes: &[u8], eq: usize) -> bool {
    bytes.get(eq + 1) == Some(&b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_all_parameters() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        assert_eq!(
            parse_challenges(h),
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
                error: None,
            }]
        );
    }

    #[test]
    fn scope_with_comma_inside_quotes_is_one_value() {
        let h = r#"Bearer realm="http://a/t", scope="repository:x/y:pull,push", error="insufficient_scope""#;
        match &parse_challenges(h)[0] {
            Challenge::Bearer { scope, error, .. } => {
                assert_eq!(scope.as_deref(), Some("repository:x/y:pull,push"));
                assert_eq!(error.as_deref(), Some("insufficient_scope"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn basic_and_several_challenges() {
        let h = r#"Basic realm="Registry Realm", Bearer realm=http://t/token,service=reg"#;
        let all = parse_challenges(h);
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[0],
            Challenge::Basic {
                realm: Some("Registry Realm".into())
            }
        );
        assert!(
            matches!(preferred_challenge(h), Some(Challenge::Bearer { ref service, .. }) if service.as_deref() == Some("reg"))
        );
    }

    #[test]
    fn escaped_quote_and_case_insensitive_scheme() {
        let all = parse_challenges(r#"basic REALM="a \"b\"""#);
        assert_eq!(
            all,
            vec![Challenge::Basic {
                realm: Some(r#"a "b""#.into())
            }]
        );
    }

    #[test]
    fn garbage_does_not_panic_or_loop() {
        for h in [
            "",
            "=",
            "\"",
            "Bearer",
            "Bearer realm",
            "Bearer realm=\"unterminated",
            ",,,",
            "Negotiate abc==",
        ] {
            let _ = parse_challenges(h);
        }
        assert!(
            parse_challenges("Bearer service=x").is_empty(),
            "bearer needs a realm"
        );
    }
}
