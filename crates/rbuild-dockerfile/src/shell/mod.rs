//! Word expansion exactly as BuildKit's `shell` package (`ProcessWord` / `ProcessWords`):
//! `$V`, `${V}`, `${V:-x}`, `${V-x}`, `${V:+x}`, `${V+x}`, `${V:?msg}`, `${V?msg}`, `${V#p}`,
//! `${V##p}`, `${V%p}`, `${V%%p}`, `${V/p/r}`, `${V//p/r}`, single and double quotes, and
//! escapes with the active escape character.
//!
//! Every expansion reports the variable names it looked up ([`Lookups`]), so a planner can key
//! a step's cache on exactly the ARG/ENV values it observed.

mod pattern;

use crate::error::ExpandError;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Where expansion looks variables up.
pub trait Environment {
    /// The value of `name`, or `None` when it is not set (set-but-empty is `Some("")`).
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Environment for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Environment for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// A list of `(name, value)` pairs; the last pair with a name wins, as in BuildKit's
/// `BuildEnvs`.
impl Environment for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Environment for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

/// No variable is set.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyEnvironment;

impl Environment for EmptyEnvironment {
    fn lookup(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// The variable names an expansion looked up.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lookups {
    /// Names that were set when looked up (their values influenced the result).
    pub found: BTreeSet<String>,
    /// Names that were looked up but unset (their absence influenced the result).
    pub missing: BTreeSet<String>,
}

impl Lookups {
    /// Adds everything `other` looked up.
    pub fn merge(&mut self, other: Lookups) {
        self.found.extend(other.found);
        self.missing.extend(other.missing);
    }

    /// Every name looked up, set or not.
    pub fn all(&self) -> BTreeSet<&str> {
        self.found
            .iter()
            .chain(self.missing.iter())
            .map(String::as_str)
            .collect()
    }
}

/// Lexer switches, mirroring the fields of BuildKit's `shell.Lex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LexOptions {
    /// The escape character (`\` or a backtick).
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters (used for heredoc bodies).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset_env: bool,
}

impl LexOptions {
    /// Plain expansion with `escape` as escape character.
    pub fn new(escape: char) -> Self {
        LexOptions {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }
}

/// The result of expanding one word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// The expanded text (`ProcessWord`).
    pub word: String,
    /// The expanded text split into words (`ProcessWords`).
    pub words: Vec<String>,
    /// Names looked up.
    pub lookups: Lookups,
}

/// Expands `word` into one string (BuildKit's `ProcessWord`).
pub fn expand_word(
    word: &str,
    env: &dyn Environment,
    escape: char,
) -> Result<(String, Lookups), ExpandError> {
    let e = process(word, env, LexOptions::new(escape))?;
    Ok((e.word, e.lookups))
}

/// Expands `word` and splits it into words on unquoted whitespace (BuildKit's
/// `ProcessWords`).
pub fn expand_words(
    word: &str,
    env: &dyn Environment,
    escape: char,
) -> Result<(Vec<String>, Lookups), ExpandError> {
    let e = process(word, env, LexOptions::new(escape))?;
    Ok((e.words, e.lookups))
}

/// Expands `word` with explicit lexer options.
pub fn process(
    word: &str,
    env: &dyn Environment,
    options: LexOptions,
) -> Result<Expanded, ExpandError> {
    // Most words hold nothing the lexer treats specially: the result is the word itself.
    let special = |c: char| matches!(c, '$' | '\'' | '"' | '<' | '\u{feff}') || c == options.escape;
    if !word.contains(special) {
        return Ok(Expanded {
            word: word.to_string(),
            words: word.split_whitespace().map(str::to_string).collect(),
            lookups: Lookups::default(),
        });
    }
    let mut chars: Vec<char> = word.chars().collect();
    // Go's text/scanner skips a byte-order mark at the very start.
    if chars.first() == Some(&'\u{feff}') {
        chars.remove(0);
    }
    let mut lexer = Lexer {
        chars,
        pos: 0,
        env,
        options,
        raw_escapes: options.raw_escapes,
        lookups: Lookups::default(),
        depth: 0,
    };
    match lexer.process_stop_on(None, options.raw_escapes) {
        Ok((word, words)) => Ok(Expanded {
            word,
            words,
            lookups: lexer.lookups,
        }),
        Err(e) if e.is_too_large() => Err(e),
        Err(e) => Err(ExpandError::new(format!(
            "failed to process {}: {}",
            rbuild_oci::truncate_for_message(&go_quote(word), rbuild_oci::MAX_MESSAGE_INPUT_CHARS),
            e.message
        ))),
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Environment,
    options: LexOptions,
    raw_escapes: bool,
    lookups: Lookups,
    /// Nesting of `${...}` being processed; bounded so hostile input cannot overflow the stack.
    depth: usize,
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

/// BuildKit has no limit (Go stacks grow); ours keeps recursion bounded.
const MAX_NESTING: usize = 256;

/// The most text one instruction may expand to, in bytes (1 MiB), over all its words. BuildKit
/// has no limit; without one, `ENV a=$a$a` repeated 40 times asks for 1 TiB.
pub const MAX_EXPANSION_BYTES: usize = 1 << 20;

/// Fails once `text` is longer than [`MAX_EXPANSION_BYTES`].
fn check_size(text: &str) -> Result<(), ExpandError> {
    if text.len() > MAX_EXPANSION_BYTES {
        return Err(ExpandError::too_large());
    }
    Ok(())
}

fn err<T>(msg: impl Into<String>) -> Result<T, ExpandError> {
    Err(ExpandError::new(msg))
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        match self.env.lookup(name) {
            Some(v) => {
                self.lookups.found.insert(name.to_string());
                Some(v.to_string())
            }
            None => {
                self.lookups.missing.insert(name.to_string());
                None
            }
        }
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let tmp = self.process_dollar()?;
                result.push_str(&tmp);
                check_size(&result)?;
                words.add_string(&tmp);
            } else if ch == '<' {
                let tmp = self.process_possible_heredoc();
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else if !self.options.skip_process_quotes && ch == '\'' {
                let tmp = self.process_single_quote()?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else if !self.options.skip_process_quotes && ch == '"' {
                let tmp = self.process_double_quote()?;
                result.push_str(&tmp);
                check_size(&result)?;
                words.add_raw_string(&tmp);
            } else {
                let mut ch = self.next().unwrap_or_default();
                if ch == self.options.escape {
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    match self.next() {
                        None => break,
                        Some(c) => ch = c,
                    }
                    words.add_raw_char(ch);
                } else {
                    words.add_char(ch);
                }
                result.push(ch);
            }
        }
        if let Some(stop) = stop {
            return err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    /// `<<` keeps the blanks after it in the same word, so `<< EOF` is one word (BuildKit's
    /// `processPossibleHeredoc`); the text itself is unchanged.
    fn process_possible_heredoc(&mut self) -> String {
        self.next(); // '<'
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.next();
        let mut out = "<<".to_string();
        while let Some(c @ (' ' | '\t' | '\r')) = self.peek() {
            out.push(c);
            self.next();
        }
        out
    }

    fn process_single_quote(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        let open = self.next().unwrap_or_default();
        if self.options.raw_quotes {
            result.push(open);
        }
        loop {
            match self.next() {
                None => {
                    return err(
                        "unexpected end of statement while looking for matching single-quote",
                    )
                }
                Some('\'') => {
                    if self.options.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        let open = self.next().unwrap_or_default();
        if self.options.raw_quotes {
            result.push(open);
        }
        loop {
            match self.peek() {
                None => {
                    return err(
                        "unexpected end of statement while looking for matching double-quote",
                    )
                }
                Some('"') => {
                    self.next();
                    if self.options.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                    check_size(&result)?;
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.options.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // A trailing escape is dropped; the loop then reports the open quote.
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.options.escape => {
                                ch = self.next().unwrap_or_default();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, ExpandError> {
        if self.depth >= MAX_NESTING {
            return err(format!(
                "syntax error: substitutions nested deeper than {MAX_NESTING} levels"
            ));
        }
        self.depth += 1;
        let r = self.process_dollar_inner();
        self.depth -= 1;
        r
    }

    fn process_dollar_inner(&mut self) -> Result<String, ExpandError> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.options.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // '{'
        match self.peek() {
            None => return err("syntax error: missing '}'"),
            Some('{') | Some('}') | Some(':') => return err("syntax error: bad substitution"),
            _ => {}
        }
        let name = self.process_name();
        let Some(first) = self.next() else {
            return err("syntax error: missing '}'");
        };
        let mut modifier = first.to_string();
        match first {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.options.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut ch = first;
                let null_is_unset = first == ':';
                if null_is_unset {
                    match self.next() {
                        Some(c) => {
                            ch = c;
                            modifier.push(c);
                        }
                        None => return err("syntax error: missing '}'"),
                    }
                }
                let raw = ch == '#' || ch == '%';
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return err("syntax error: missing '}'");
                        }
                        return Err(e);
                    }
                };
                let value = self.get_env(&name);
                if self.options.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let set = value.is_some();
                let value = value.unwrap_or_default();
                match ch {
                    '-' => Ok(if !set || (null_is_unset && value.is_empty()) {
                        word
                    } else {
                        value
                    }),
                    '+' => Ok(if !set || (null_is_unset && value.is_empty()) {
                        String::new()
                    } else {
                        word
                    }),
                    '?' => {
                        if !set {
                            let msg = if word.is_empty() {
                                "is not allowed to be unset".to_string()
                            } else {
                                word
                            };
                            return err(format!("{name}: {msg}"));
                        }
                        if null_is_unset && value.is_empty() {
                            let msg = if word.is_empty() {
                                "is not allowed to be empty".to_string()
                            } else {
                                word
                            };
                            return err(format!("{name}: {msg}"));
                        }
                        Ok(value)
                    }
                    '%' | '#' => {
                        let (greedy, pat) = match word.strip_prefix(ch) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        if ch == '%' {
                            pattern::trim_suffix(&pat, &value, greedy)
                        } else {
                            pattern::trim_prefix(&pat, &value, greedy)
                        }
                    }
                    _ => err(format!("unsupported modifier ({modifier}) in substitution")),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pat = match self.process_stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return err("syntax error: missing '/' in ${}");
                        }
                        return Err(e);
                    }
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((w, _)) => w,
                    Err(e) => {
                        if self.peek().is_none() {
                            return err("syntax error: missing '}'");
                        }
                        return Err(e);
                    }
                };
                let value = self.get_env(&name);
                let Some(value) = value else {
                    if self.options.skip_unset_env {
                        return Ok(format!("${{{name}/{pat}/{replacement}}}"));
                    }
                    return pattern::replace("", &pat, &replacement, all);
                };
                pattern::replace(&value, &pat, &replacement, all)
            }
            _ => err(format!("unsupported modifier ({modifier}) in substitution")),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(c) = self.peek() {
                    if !is_digit(c) {
                        break;
                    }
                    name.push(c);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphabetic() || is_digit(ch) || ch == '_') {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric() && !c.is_alphabetic())
}

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Go's `strconv.Quote`, used to render values the way BuildKit's messages and dumps do.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` (letters, marks, numbers, punctuation, symbols
/// and the ASCII space): control, format and non-ASCII space characters are not printable.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
        | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF
        | 0xFFFE | 0xFFFF | 0xF0000..=0x10FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![
            ("PWD".into(), "/home".into()),
            ("NULL".into(), String::new()),
        ]
    }

    #[test]
    fn basic_forms() {
        let e = env();
        assert_eq!(expand_word("he${PWD}x", &e, '\\').unwrap().0, "he/homex");
        assert_eq!(expand_word("${X:-a b}", &e, '\\').unwrap().0, "a b");
        assert_eq!(expand_word("${NULL-a}", &e, '\\').unwrap().0, "");
        assert_eq!(expand_word("${PWD#/}", &e, '\\').unwrap().0, "home");
        assert_eq!(expand_word("${PWD/o/0}", &e, '\\').unwrap().0, "/h0me");
        assert!(expand_word("${X:?boom}", &e, '\\')
            .unwrap_err()
            .message
            .ends_with("X: boom"));
    }

    #[test]
    fn lookups_are_recorded() {
        let e = env();
        let (_, l) = expand_word("$PWD ${X:-$NULL}", &e, '\\').unwrap();
        assert_eq!(l.found.iter().collect::<Vec<_>>(), vec!["NULL", "PWD"]);
        assert_eq!(l.missing.iter().collect::<Vec<_>>(), vec!["X"]);
    }

    #[test]
    fn plain_words_take_the_fast_path_with_the_same_result() {
        let e = env();
        for w in ["abc", "  a  b\tc ", "", "x\u{a0}y", "\u{feff}a b"] {
            let fast = process(w, &e, LexOptions::new('\\')).unwrap();
            let mut slow_input = String::from(w);
            slow_input.push_str("''");
            let slow = process(&slow_input, &e, LexOptions::new('\\')).unwrap();
            assert_eq!(fast.word, slow.word, "{w:?}");
        }
        assert_eq!(
            expand_words("  a  b\tc ", &e, '\\').unwrap().0,
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn backtick_escape() {
        let e = env();
        assert_eq!(expand_word("a`$PWD", &e, '`').unwrap().0, "a$PWD");
        assert_eq!(expand_word("a\\$PWD", &e, '`').unwrap().0, "a\\/home");
    }

    #[test]
    fn go_quote_matches_strconv() {
        assert_eq!(
            go_quote("a\"b\\\u{0}♥\u{a0}"),
            "\"a\\\"b\\\\\\x00♥\\u00a0\""
        );
    }
}
