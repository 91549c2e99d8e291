//! `.dockerignore` with Docker's own rules (moby/patternmatcher): patterns are cleaned like
//! Go's `filepath.Clean` with a leading `/` dropped; `*` and `?` never match `/`; `**` matches
//! any number of directories (none included); `[...]` classes; `\` escapes; a pattern matches a
//! path or any of its parent directories; a `!pattern` re-includes; the last matching pattern
//! wins.

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    tokens: Vec<Token>,
    exclusion: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `*`: any run of non-separator characters.
    Star,
    /// `?`: one non-separator character.
    Question,
    /// `**` (with its following `/` eaten): empty or anything ending in `/`.
    DoubleStarDir,
    /// `**` at the end: anything.
    DoubleStarEnd,
    /// `[...]`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// The compiled patterns of an ignore file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
}

/// A pattern that does not compile (an unclosed `[`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad .dockerignore pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as cleaned.
    pub pattern: String,
    /// What is wrong.
    pub reason: String,
}

impl IgnoreMatcher {
    /// Reads an ignore file's text: `#` comments, blank lines, whitespace trimmed.
    pub fn parse(text: &str) -> Result<IgnoreMatcher, PatternError> {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exclusion = pattern.starts_with('!');
            if exclusion {
                pattern = pattern[1..].trim();
            }
            let mut cleaned = if pattern.is_empty() {
                String::new()
            } else {
                go_clean(pattern)
            };
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            patterns.push(Pattern {
                tokens: compile(&cleaned)?,
                text: cleaned,
                exclusion,
            });
        }
        Ok(IgnoreMatcher { patterns })
    }

    /// The patterns in force, `!` kept, after cleaning.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| {
                if p.exclusion {
                    format!("!{}", p.text)
                } else {
                    p.text.clone()
                }
            })
            .collect()
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the context root, `/`-separated) is ignored: patterns are
    /// tried in order against the path and each of its parents, the last match decides.
    pub fn is_ignored(&self, path: &str) -> bool {
        let path = go_clean(path.trim_start_matches('/'));
        let parents: Vec<&str> = path.split('/').collect();
        let mut ignored = false;
        for pattern in &self.patterns {
            let mut matched = matches(&pattern.tokens, &path);
            if !matched && parents.len() > 1 {
                for i in 1..parents.len() {
                    if matches(&pattern.tokens, &parents[..i].join("/")) {
                        matched = true;
                        break;
                    }
                }
            }
            if matched {
                ignored = !pattern.exclusion;
            }
        }
        ignored
    }

    /// Whether some `!` pattern could re-include something below `dir`: then an ignored
    /// directory must still be walked.
    pub fn may_reinclude_below(&self, dir: &str) -> bool {
        let dir = go_clean(dir);
        self.patterns.iter().any(|p| {
            p.exclusion && (p.text.starts_with(&format!("{dir}/")) || p.text.contains('*'))
        })
    }
}

/// Go's `path.Clean` (relative paths stay relative; an empty result is `.`).
pub fn go_clean(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn compile(pattern: &str) -> Result<Vec<Token>, PatternError> {
    let err = |reason: &str| PatternError {
        pattern: pattern.to_string(),
        reason: reason.to_string(),
    };
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i >= chars.len() {
                    Token::DoubleStarEnd
                } else {
                    Token::DoubleStarDir
                });
                continue;
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::Question),
            '\\' => {
                i += 1;
                let c = *chars.get(i).ok_or_else(|| err("trailing backslash"))?;
                tokens.push(Token::Literal(c));
            }
            '[' => {
                let mut j = i + 1;
                let negated = matches!(chars.get(j), Some('^'));
                if negated {
                    j += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let c = *chars
                        .get(j)
                        .ok_or_else(|| err("unclosed character class"))?;
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' {
                        j += 1;
                        *chars
                            .get(j)
                            .ok_or_else(|| err("unclosed character class"))?
                    } else {
                        c
                    };
                    if chars.get(j + 1) == Some(&'-') && chars.get(j + 2).is_some_and(|c| *c != ']')
                    {
                        let hi = chars[j + 2];
                        ranges.push((lo, hi));
                        j += 3;
                    } else {
                        ranges.push((lo, lo));
                        j += 1;
                    }
                }
                tokens.push(Token::Class { negated, ranges });
                i = j;
            }
            c => tokens.push(Token::Literal(c)),
        }
        i += 1;
    }
    Ok(tokens)
}

fn matches(tokens: &[Token], path: &str) -> bool {
    let chars: Vec<char> = path.chars().collect();
    // Memoised on (token, position): each pair is decided once, so a pattern full of `*` stays
    // polynomial (Go's regexp engine, which Docker uses, is linear).
    let mut memo = vec![None; (tokens.len() + 1) * (chars.len() + 1)];
    Matcher {
        tokens,
        s: &chars,
        memo: &mut memo,
    }
    .at(0, 0)
}

struct Matcher<'a> {
    tokens: &'a [Token],
    s: &'a [char],
    memo: &'a mut Vec<Option<bool>>,
}

impl Matcher<'_> {
    fn at(&mut self, t: usize, i: usize) -> bool {
        let slot = t * (self.s.len() + 1) + i;
        if let Some(known) = self.memo[slot] {
            return known;
        }
        let result = self.decide(t, i);
        self.memo[slot] = Some(result);
        result
    }

    fn decide(&mut self, t: usize, i: usize) -> bool {
        let s = self.s;
        let Some(token) = self.tokens.get(t) else {
            return i == s.len();
        };
        match token {
            Token::Literal(c) => s.get(i) == Some(c) && self.at(t + 1, i + 1),
            Token::Question => s.get(i).is_some_and(|c| *c != '/') && self.at(t + 1, i + 1),
            Token::Class { negated, ranges } => {
                s.get(i).is_some_and(|&c| {
                    ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
                }) && self.at(t + 1, i + 1)
            }
            Token::Star => {
                let mut j = i;
                loop {
                    if self.at(t + 1, j) {
                        return true;
                    }
                    if j == s.len() || s[j] == '/' {
                        return false;
                    }
                    j += 1;
                }
            }
            Token::DoubleStarDir => {
                // Empty, or any prefix ending in '/'.
                if self.at(t + 1, i) {
                    return true;
                }
                (i..s.len()).any(|n| s[n] == '/' && self.at(t + 1, n + 1))
            }
            Token::DoubleStarEnd => true,
        }
    }
}

/// Whether one path component `name` matches the glob `pattern` (`*`, `?`, `[...]`, `\`), the
/// rules COPY/ADD sources follow.
pub(crate) fn glob_match(pattern: &str, name: &str) -> Result<bool, PatternError> {
    Ok(matches(&compile(pattern)?, name))
}

/// Whether `s` holds glob metacharacters.
pub(crate) fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignored(patterns: &str, path: &str) -> bool {
        IgnoreMatcher::parse(patterns).unwrap().is_ignored(path)
    }

    // Cases from moby/patternmatcher's TestMatches and TestPatternMatches tables.
    #[test]
    fn patternmatcher_cases() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "/", true),
            ("**/", "/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
        ];
        for (pattern, path, want) in cases {
            // patternmatcher's MatchesOrParentMatches: the path or one of its parents.
            let got = ignored(pattern, path);
            assert_eq!(got, *want, "pattern {pattern:?} path {path:?}");
        }
    }

    #[test]
    fn parents_negation_and_cleaning() {
        assert!(ignored("dir", "dir/sub/file"));
        assert!(ignored("/dir/", "dir/file"));
        assert!(ignored("./a/../b", "b"));
        assert!(!ignored("*.md\n!README.md", "README.md"));
        assert!(ignored("*.md\n!README.md", "CHANGES.md"));
        assert!(ignored("*.md\n!README.md\nREADME*", "README.md"));
        assert!(!ignored("# comment\n\n   \n", "anything"));
        assert!(ignored("  spaced.txt  ", "spaced.txt"));
        assert!(!ignored("docs\n!docs/keep", "docs/keep"));
        assert!(ignored("docs\n!docs/keep", "docs/other"));
        assert!(ignored("*", "a/b"));
        assert!(!ignored("*/x", "x"));
        assert!(ignored("**/node_modules", "a/b/node_modules/c.js"));
        let m = IgnoreMatcher::parse("docs\n!docs/keep\n").unwrap();
        assert!(m.may_reinclude_below("docs"));
        assert!(!m.may_reinclude_below("src"));
        assert_eq!(m.patterns(), vec!["docs", "!docs/keep"]);
        assert!(IgnoreMatcher::parse("a[b").is_err());
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = "*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let path = "a".repeat(200);
        assert!(!ignored(pattern, &path));
        assert!(ignored(pattern, &format!("{path}b")));
    }

    #[test]
    fn go_clean_matches_go() {
        assert_eq!(go_clean("a/./b/../c/"), "a/c");
        assert_eq!(go_clean("../a"), "../a");
        assert_eq!(go_clean("/../a"), "/a");
        assert_eq!(go_clean(""), ".");
        assert_eq!(go_clean("./"), ".");
    }
}
