//! `.dockerignore` patterns and paths from arbitrary bytes: parsing and matching never panic,
//! a literal pattern matches its own path, and `--chmod` parsing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild::copy::chmod::Chmod;
use rbuild::IgnoreMatcher;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (patterns, path) = text.split_once('\0').unwrap_or((&text, "a/b"));
    if let Ok(matcher) = IgnoreMatcher::parse(patterns) {
        let first = matcher.is_ignored(path);
        assert_eq!(first, matcher.is_ignored(path));
        let _ = matcher.may_reinclude_below(path);
    }
    let literal: String = path
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '/')
        .collect();
    let literal = literal.trim_matches('/');
    if !literal.is_empty() && !literal.contains("//") {
        let m = IgnoreMatcher::parse(literal).expect("a literal pattern compiles");
        assert!(m.is_ignored(literal), "{literal:?}");
    }
    if let Ok(chmod) = Chmod::parse(path) {
        let _ = chmod.apply(0o644, false);
    }
});
