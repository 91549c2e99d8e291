//! The shell patterns of `${V#p}`, `${V%p}` and `${V/p/r}`: `*`, `?` and `\` escapes, nothing
//! else, matched with the leftmost-first semantics of the Go regular expression BuildKit builds
//! from them (`*` → `.*` or `.*?`, `?` → `.`, and `.` does not match a newline).
//!
//! Matching is a Pike VM over the pattern's tokens: O(text × pattern), never exponential.

use crate::error::ExpandError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyChar,
    Star,
}

/// A compiled shell pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    tokens: Vec<Token>,
    greedy: bool,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Match,
    Consume(usize),
    StarConsume(usize),
}

impl Pattern {
    /// Compiles `pattern` as BuildKit's `convertShellPatternToRegex` does.
    pub(crate) fn compile(pattern: &str, greedy: bool) -> Result<Pattern, ExpandError> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::AnyChar),
                '\\' => {
                    // `}` and `/` are escaped inside `${}`; the escape is not part of the pattern.
                    if matches!(chars.peek(), Some('}') | Some('/')) {
                        continue;
                    }
                    match chars.next() {
                        Some(c @ ('*' | '?' | '\\')) => tokens.push(Token::Literal(c)),
                        Some(c) => {
                            return Err(ExpandError::new(format!(
                            "invalid pattern ({pattern}) in substitution: invalid escape '\\{c}'"
                        )))
                        }
                        None => {
                            return Err(ExpandError::new(format!(
                                "invalid pattern ({pattern}) in substitution: invalid escape '\\'"
                            )))
                        }
                    }
                }
                c => tokens.push(Token::Literal(c)),
            }
        }
        Ok(Pattern { tokens, greedy })
    }

    fn add_thread(
        &self,
        list: &mut Vec<(Step, usize)>,
        seen: &mut [u32],
        gen: u32,
        state: usize,
        start: usize,
    ) {
        if seen[state] == gen {
            return;
        }
        seen[state] = gen;
        if state == self.tokens.len() {
            list.push((Step::Match, start));
            return;
        }
        match self.tokens[state] {
            Token::Star => {
                if self.greedy {
                    list.push((Step::StarConsume(state), start));
                    self.add_thread(list, seen, gen, state + 1, start);
                } else {
                    self.add_thread(list, seen, gen, state + 1, start);
                    list.push((Step::StarConsume(state), start));
                }
            }
            _ => list.push((Step::Consume(state), start)),
        }
    }

    /// The leftmost-first match in `text` starting at or after `from` (only at `from` when
    /// `anchored`), as `(start, end)` char indices.
    pub(crate) fn find(
        &self,
        text: &[char],
        from: usize,
        anchored: bool,
    ) -> Option<(usize, usize)> {
        let states = self.tokens.len() + 1;
        // Two generations of "seen" marks; a generation counter avoids clearing them per step.
        let mut seen_cur = vec![0u32; states];
        let mut seen_next = vec![0u32; states];
        let mut gen: u32 = 1;
        let mut clist: Vec<(Step, usize)> = Vec::new();
        let mut nlist: Vec<(Step, usize)> = Vec::new();
        let mut matched = None;
        let mut pos = from;
        loop {
            if matched.is_none() && (pos == from || !anchored) {
                self.add_thread(&mut clist, &mut seen_cur, gen, 0, pos);
            }
            if clist.is_empty() {
                if matched.is_some() || anchored || pos >= text.len() {
                    break;
                }
                pos += 1;
                gen += 1;
                std::mem::swap(&mut seen_cur, &mut seen_next);
                continue;
            }
            let c = text.get(pos).copied();
            gen += 1;
            nlist.clear();
            for &(step, start) in clist.iter() {
                match step {
                    Step::Match => {
                        matched = Some((start, pos));
                        break;
                    }
                    Step::Consume(s) => {
                        let ok = match (self.tokens[s], c) {
                            (Token::Literal(l), Some(c)) => l == c,
                            (Token::AnyChar, Some(c)) => c != '\n',
                            _ => false,
                        };
                        if ok {
                            self.add_thread(&mut nlist, &mut seen_next, gen, s + 1, start);
                        }
                    }
                    Step::StarConsume(s) => {
                        if matches!(c, Some(c) if c != '\n') {
                            self.add_thread(&mut nlist, &mut seen_next, gen, s, start);
                        }
                    }
                }
            }
            std::mem::swap(&mut clist, &mut nlist);
            std::mem::swap(&mut seen_cur, &mut seen_next);
            if c.is_none() {
                // Threads left after the end can only be matches recorded above.
                break;
            }
            pos += 1;
        }
        matched
    }
}

/// `${V#p}` / `${V##p}`: removes the shortest (longest when `greedy`) prefix matching `pattern`.
pub(crate) fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandError> {
    let re = Pattern::compile(pattern, greedy)?;
    let chars: Vec<char> = value.chars().collect();
    Ok(match re.find(&chars, 0, true) {
        Some((_, end)) => chars[end..].iter().collect(),
        None => value.to_string(),
    })
}

/// `${V%p}` / `${V%%p}`: removes the shortest (longest) suffix, by reversing both sides as
/// BuildKit does (keeping `\x` escapes together).
pub(crate) fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandError> {
    let reversed_pattern = reverse_pattern(pattern);
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reversed_pattern, &reversed_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = vec!['\0'; chars.len()];
    let last = chars.len().saturating_sub(1);
    let mut i = 0;
    while i < chars.len() {
        let out_idx = last - i;
        if chars[i] == '\\' && i != last {
            out[out_idx - 1] = '\\';
            out[out_idx] = chars[i + 1];
            i += 2;
        } else {
            out[out_idx] = chars[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// `${V/p/r}` and `${V//p/r}`.
pub(crate) fn replace(
    value: &str,
    pattern: &str,
    replacement: &str,
    all: bool,
) -> Result<String, ExpandError> {
    let re = Pattern::compile(pattern, true)?;
    let chars: Vec<char> = value.chars().collect();
    if !all {
        return Ok(match re.find(&chars, 0, false) {
            Some((s, e)) => {
                let mut out: String = chars[..s].iter().collect();
                out.push_str(replacement);
                out.extend(chars[e..].iter());
                out
            }
            None => value.to_string(),
        });
    }
    // Go's Regexp.ReplaceAllString: successive non-overlapping matches, an empty match right
    // after a previous match is not replaced, and `$` in the replacement is a template.
    let mut out = String::new();
    let mut last_end = 0usize;
    let mut search = 0usize;
    while search <= chars.len() {
        let Some((s, e)) = re.find(&chars, search, false) else {
            break;
        };
        out.extend(chars[last_end..s].iter());
        if e > last_end || s == 0 {
            let whole: String = chars[s..e].iter().collect();
            expand_template(&mut out, replacement, &whole);
        }
        if out.len() > super::MAX_EXPANSION_BYTES {
            return Err(ExpandError::too_large());
        }
        last_end = e;
        if search + 1 > e {
            search += 1;
        } else {
            search = e;
        }
    }
    if last_end < chars.len() {
        out.extend(chars[last_end..].iter());
    }
    Ok(out)
}

/// Go's `Regexp.Expand` for a regexp without capture groups: `$0`/`${0}` is the match, `$$` a
/// dollar, any other well-formed reference is empty, a malformed one is literal text.
fn expand_template(out: &mut String, template: &str, whole: &str) {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.len() > 1 && rest.as_bytes()[1] == b'$' {
            out.push('$');
            rest = &rest[2..];
            continue;
        }
        let (name, after) = if rest.len() > 1 && rest.as_bytes()[1] == b'{' {
            match rest[2..].find('}') {
                Some(end) => {
                    let n = &rest[2..2 + end];
                    if !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        (Some(n), &rest[2 + end + 1..])
                    } else {
                        (None, rest)
                    }
                }
                None => (None, rest),
            }
        } else {
            let n_len = rest[1..]
                .char_indices()
                .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
                .map(|(i, _)| i)
                .unwrap_or(rest.len() - 1);
            if n_len == 0 {
                (None, rest)
            } else {
                (Some(&rest[1..1 + n_len]), &rest[1 + n_len..])
            }
        };
        match name {
            Some(n) => {
                if n.chars().all(|c| c.is_ascii_digit()) && n.parse::<u64>().ok() == Some(0) {
                    out.push_str(whole);
                }
                rest = after;
            }
            None => {
                out.push('$');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_suffix_trimming() {
        assert_eq!(trim_prefix("*/", "a/b/c", false).unwrap(), "b/c");
        assert_eq!(trim_prefix("*/", "a/b/c", true).unwrap(), "c");
        assert_eq!(trim_suffix("/*", "a/b/c", false).unwrap(), "a/b");
        assert_eq!(trim_suffix("/*", "a/b/c", true).unwrap(), "a");
        assert_eq!(trim_prefix("x", "abc", false).unwrap(), "abc");
        assert_eq!(trim_suffix("\\*", "ab*", false).unwrap(), "ab");
        assert_eq!(trim_prefix("?", "abc", false).unwrap(), "bc");
    }

    #[test]
    fn replacement() {
        assert_eq!(replace("aaa", "a", "b", false).unwrap(), "baa");
        assert_eq!(replace("aaa", "a", "b", true).unwrap(), "bbb");
        assert_eq!(replace("a.b.c", ".", "/", true).unwrap(), "a/b/c");
        assert_eq!(replace("hello", "l*", "L", false).unwrap(), "heL");
        assert_eq!(replace("abc", "", "-", true).unwrap(), "-a-b-c-");
        assert_eq!(replace("abc", "b", "[$0]", true).unwrap(), "a[b]c");
        assert_eq!(replace("abc", "b", "$x$$", true).unwrap(), "a$c");
    }

    #[test]
    fn star_does_not_cross_newlines() {
        assert_eq!(trim_prefix("*", "ab\ncd", true).unwrap(), "\ncd");
    }

    #[test]
    fn bad_escape_is_an_error() {
        assert!(trim_prefix("\\a", "abc", false).is_err());
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = "*a".repeat(200);
        let value = "a".repeat(5000) + "b";
        assert!(trim_prefix(&pattern, &value, true).is_ok());
    }
}
