//! A conformance case's `expect` file: facts its image must show, whichever builder made it.
//!
//! ```text
//! # a path that must exist, optionally with its type and attributes
//! /app/hello.txt file mode=0644 owner=0:0 size=6 text=hello
//! /bin/sh symlink target=busybox
//! # a path that must not exist
//! !/app/ignored.txt
//! # a config field (JSON after the name; Labels.<key> for one label)
//! config User "app"
//! # an Env entry that must be present
//! config Env+ "GREETING=hi"
//! # or, alone in its file: the build must fail, with this text in the builder's error output
//! error checksum requires HTTP(S) or Git sources
//! ```
//!
//! `xattr.NAME=VALUE` compares an extended attribute (`<unset>` when it must be absent);
//! `sha256=HEX` the content's digest. `text=WORD` compares the file's content with trailing whitespace trimmed. Lower-case
//! config fields (`author`, `os`, `architecture`) are read from the top level of the image
//! config, the others from its `config` object. A line that starts with `candidate:` states
//! BuildKit's behaviour where Buildah (the oracle) is known to differ: it is checked on rbuild's
//! image only (the case's `allow` file accepts the difference).

use crate::image_tree::{normalize, EntryKind, ImageTree};
use crate::TestkitError;

/// One expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// A path exists with these attributes.
    Present {
        /// The path.
        path: String,
        /// Its type, if given.
        kind: Option<EntryKind>,
        /// `key=value` attributes: `mode`, `owner`, `size`, `sha256`, `target`, `text`,
        /// `xattr.NAME`.
        attributes: Vec<(String, String)>,
    },
    /// A path does not exist.
    Absent(String),
    /// A config field (under `config`, or `Labels.<key>`) equals this JSON.
    ConfigEquals {
        /// The field.
        field: String,
        /// The expected JSON.
        value: serde_json::Value,
    },
    /// `Env` contains this entry.
    EnvContains(String),
    /// The build fails (BuildKit refuses the Dockerfile or a step fails); the error output
    /// contains this text. Alone in its file: there is no image to check.
    BuildFails(String),
}

/// The line of an `expect` file and what it expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectLine {
    /// 1-based line number.
    pub line: usize,
    /// Checked on the candidate's image only (`candidate:` prefix).
    pub candidate_only: bool,
    /// The expectation.
    pub expectation: Expectation,
}

const KINDS: [(&str, EntryKind); 4] = [
    ("file", EntryKind::File),
    ("dir", EntryKind::Dir),
    ("symlink", EntryKind::Symlink),
    ("fifo", EntryKind::Fifo),
];

/// Parses an `expect` file; `origin` names it in errors.
pub fn parse_expect(text: &str, origin: &str) -> Result<Vec<ExpectLine>, TestkitError> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: String| TestkitError::Image(format!("{origin}:{}: {what}", index + 1));
        let (candidate_only, line) = match line.strip_prefix("candidate:") {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let expectation = if let Some(rest) = line.strip_prefix("error ") {
            Expectation::BuildFails(rest.trim().to_owned())
        } else if let Some(rest) = line.strip_prefix("config ") {
            let (field, json) = rest
                .trim()
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad("expected `config <Field> <JSON>`".into()))?;
            let value: serde_json::Value = serde_json::from_str(json.trim())
                .map_err(|e| bad(format!("bad JSON for {field}: {e}")))?;
            if field == "Env+" {
                let entry = value
                    .as_str()
                    .ok_or_else(|| bad("Env+ takes a JSON string".into()))?;
                Expectation::EnvContains(entry.to_owned())
            } else {
                Expectation::ConfigEquals {
                    field: field.to_owned(),
                    value,
                }
            }
        } else if let Some(path) = line.strip_prefix('!') {
            Expectation::Absent(normalize(path.trim()))
        } else if line.starts_with('/') {
            let mut words = line.split_whitespace();
            let path = normalize(words.next().unwrap_or("/"));
            let mut kind = None;
            let mut attributes = Vec::new();
            for word in words {
                if let Some((key, value)) = word.split_once('=') {
                    let known =
                        ["mode", "owner", "size", "sha256", "target", "text"].contains(&key);
                    if !known && !key.starts_with("xattr.") {
                        return Err(bad(format!("unknown attribute {key:?}")));
                    }
                    attributes.push((key.to_owned(), value.to_owned()));
                } else {
                    kind = Some(
                        KINDS
                            .iter()
                            .find(|(n, _)| *n == word)
                            .map(|(_, k)| *k)
                            .ok_or_else(|| bad(format!("unknown type {word:?}")))?,
                    );
                }
            }
            Expectation::Present {
                path,
                kind,
                attributes,
            }
        } else {
            return Err(bad(format!(
                "expected an absolute path, `!path` or `config ...`, got {line:?}"
            )));
        };
        out.push(ExpectLine {
            line: index + 1,
            candidate_only,
            expectation,
        });
    }
    if out.len() > 1 {
        if let Some(line) = out
            .iter()
            .find(|l| matches!(l.expectation, Expectation::BuildFails(_)))
        {
            return Err(TestkitError::Image(format!(
                "{origin}:{}: an `error` line must be the only line (a failed build has no image)",
                line.line
            )));
        }
    }
    Ok(out)
}

/// The text a failing build's error output must contain, when `expectations` is an `error`
/// line.
pub fn expected_failure(expectations: &[ExpectLine]) -> Option<&str> {
    expectations.iter().find_map(|l| match &l.expectation {
        Expectation::BuildFails(text) => Some(text.as_str()),
        _ => None,
    })
}

/// Whose image is checked: `candidate:` lines are skipped for the oracle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// rbuild's image.
    Candidate,
    /// Buildah's image.
    Oracle,
}

/// Checks `expectations` against `tree`; returns one message per failed line.
pub fn check_expectations(
    tree: &ImageTree,
    expectations: &[ExpectLine],
    origin: &str,
    side: Side,
) -> Vec<String> {
    let mut failures = Vec::new();
    for line in expectations {
        if line.candidate_only && side == Side::Oracle {
            continue;
        }
        let fail = |what: String| format!("{origin}:{}: {what}", line.line);
        match &line.expectation {
            Expectation::Absent(path) => {
                if tree.get(path).is_some() {
                    failures.push(fail(format!("{path} exists but must not")));
                }
            }
            Expectation::Present {
                path,
                kind,
                attributes,
            } => {
                let Some(entry) = tree.get(path) else {
                    failures.push(fail(format!("{path} is missing")));
                    continue;
                };
                if let Some(kind) = kind {
                    if entry.kind != *kind {
                        failures.push(fail(format!("{path} is a {}, not a {kind}", entry.kind)));
                    }
                }
                for (key, want) in attributes {
                    let got = match key.as_str() {
                        "mode" => format!("{:04o}", entry.mode),
                        "owner" => format!("{}:{}", entry.uid, entry.gid),
                        "size" => entry.size.to_string(),
                        "sha256" => entry
                            .sha256
                            .as_ref()
                            .map(|d| d.encoded().to_owned())
                            .unwrap_or_else(|| "<no content>".to_owned()),
                        "target" => entry.link_target.clone().unwrap_or_default(),
                        xattr if xattr.starts_with("xattr.") => entry
                            .xattrs
                            .get(&xattr["xattr.".len()..])
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .unwrap_or_else(|| "<unset>".to_owned()),
                        _ => tree
                            .text_of(path)
                            .map(|t| t.trim_end().to_owned())
                            .unwrap_or_else(|| "<not text>".to_owned()),
                    };
                    let want_normalized = if key == "mode" {
                        u32::from_str_radix(want, 8)
                            .map(|m| format!("{m:04o}"))
                            .unwrap_or_else(|_| want.clone())
                    } else {
                        want.clone()
                    };
                    if got != want_normalized {
                        failures.push(fail(format!("{path} {key} is {got:?}, expected {want:?}")));
                    }
                }
            }
            Expectation::ConfigEquals { field, value } => {
                let config = if field.starts_with(|c: char| c.is_ascii_lowercase()) {
                    serde_json::to_value(&tree.config).unwrap_or_default()
                } else {
                    serde_json::to_value(&tree.config.config).unwrap_or_default()
                };
                let got = match field.split_once('.') {
                    Some((outer, inner)) => config.get(outer).and_then(|o| o.get(inner)),
                    None => config.get(field),
                }
                .cloned()
                .unwrap_or(serde_json::Value::Null);
                if &got != value {
                    failures.push(fail(format!("config {field} is {got}, expected {value}")));
                }
            }
            Expectation::BuildFails(text) => {
                failures.push(fail(format!(
                    "the build must fail with {text:?}, but it made an image"
                )));
            }
            Expectation::EnvContains(entry) => {
                if !tree.config.config.env.contains(entry) {
                    failures.push(fail(format!(
                        "config Env {:?} lacks {entry:?}",
                        tree.config.config.env
                    )));
                }
            }
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_the_bad_line() {
        let lines = parse_expect(
            "# c\n/a file mode=644\n!/b\nconfig User \"app\"\ncandidate: config Env+ \"A=b\"\n",
            "x/expect",
        )
        .unwrap();
        assert_eq!(lines.len(), 4);
        assert!(lines[3].candidate_only && !lines[0].candidate_only);
        assert_eq!(lines[1].expectation, Expectation::Absent("/b".into()));
        let err = parse_expect("/a colour=red\n", "x/expect").unwrap_err();
        assert!(err
            .to_string()
            .contains("x/expect:1: unknown attribute \"colour\""));
        let err = parse_expect("\nconfig User app\n", "x/expect").unwrap_err();
        assert!(err.to_string().contains("x/expect:2: bad JSON for User"));
        let fails = parse_expect("error checksum requires HTTP(S)\n", "x/expect").unwrap();
        assert_eq!(expected_failure(&fails), Some("checksum requires HTTP(S)"));
        assert_eq!(expected_failure(&lines), None);
        let err = parse_expect("error x\n/a file\n", "x/expect").unwrap_err();
        assert!(err
            .to_string()
            .contains("x/expect:1: an `error` line must be the only"));
        let err = parse_expect("relative\n", "x/expect").unwrap_err();
        assert!(err
            .to_string()
            .contains("x/expect:1: expected an absolute path"));
    }
}
