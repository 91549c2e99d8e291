//! Per-instruction argument splitting, as BuildKit's `line_parsers.go` and
//! `split_command.go` do it (quotes and escapes are kept; word expansion removes them later).

use super::json::{parse_json_args, JsonArgs};
use crate::shell::go_quote;

/// BuildKit's `[\t\v\f\r ]` class, the separator of whitespace-delimited arguments.
pub(crate) fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits `s` on runs of [`is_token_space`], like `regexp.Split(s, -1)` on a trimmed string.
pub(crate) fn split_token_space(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_space = false;
    for c in s.chars() {
        if is_token_space(c) {
            if !in_space {
                out.push(std::mem::take(&mut cur));
                in_space = true;
            }
        } else {
            in_space = false;
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Splits at the first run of [`is_token_space`] (`regexp.Split(s, 2)`).
pub(crate) fn split_once_token_space(s: &str) -> Option<(&str, &str)> {
    let start = s.find(is_token_space)?;
    let rest = &s[start..];
    let end = rest.find(|c| !is_token_space(c)).unwrap_or(rest.len());
    Some((&s[..start], &rest[end..]))
}

/// `splitCommand`: the keyword (as written), the leading `--flags`, and the remaining text.
pub(crate) fn split_command(line: &str) -> (String, Vec<String>, String) {
    let trimmed = line.trim();
    match split_once_token_space(trimmed) {
        None => (trimmed.to_string(), Vec::new(), String::new()),
        Some((cmd, rest)) => {
            let (args, flags) = extract_builder_flags(rest);
            (cmd.to_string(), flags, args.trim().to_string())
        }
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Phase {
    Spaces,
    Word,
    Quote,
}

/// `extractBuilderFlags`: consumes leading words starting with `--` (quotes removed, `\`
/// escaping the next character) and returns the rest of the line. A bare `--` ends the flags.
fn extract_builder_flags(line: &str) -> (&str, Vec<String>) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let n = chars.len();
    let byte_at = |pos: usize| if pos < n { chars[pos].0 } else { line.len() };
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= n {
        let mut ch = if pos < n { chars[pos].1 } else { '\0' };
        if phase == Phase::Spaces {
            if pos == n {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            if ch != '-' || pos + 1 == n || chars[pos + 1].1 != '-' {
                return (&line[byte_at(pos)..], words);
            }
            phase = Phase::Word;
        }
        if pos == n {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (&line[byte_at(pos)..], words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            if ch == '\\' {
                if pos + 1 == n {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = chars[pos].1;
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        if ch == '\\' {
            if pos + 1 == n {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = chars[pos].1;
        }
        word.push(ch);
        pos += 1;
    }
    ("", words)
}

/// `parseWords`: whitespace-separated words, quotes and escapes kept in the words.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut sb = String::new();
    let mut pos = 0;
    while pos <= n {
        let mut ch = if pos < n { chars[pos] } else { '\0' };
        if phase == Phase::Spaces {
            if pos == n {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if pos == n {
            if blank_ok || !sb.is_empty() {
                words.push(std::mem::take(&mut sb));
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !sb.is_empty() {
                    words.push(std::mem::take(&mut sb));
                }
                sb.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == n {
                    pos += 1;
                    continue;
                }
                sb.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            sb.push(ch);
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == n {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            sb.push(ch);
            ch = chars[pos];
        }
        sb.push(ch);
        pos += 1;
    }
    words
}

/// Arguments of one instruction after the per-keyword line parser ran.
#[derive(Debug)]
pub(crate) struct ParsedArgs {
    pub args: Vec<String>,
    pub json: bool,
}

impl ParsedArgs {
    fn plain(args: Vec<String>) -> Self {
        ParsedArgs { args, json: false }
    }
}

const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

/// `parseNameVal` (ENV, LABEL): `[key, value, sep]` triples; `sep` is `""` for the legacy
/// `KEY value` form and `"="` otherwise.
pub(crate) fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<ParsedArgs, String> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Ok(ParsedArgs::plain(Vec::new()));
    }
    if !words[0].contains('=') {
        let Some((k, v)) = split_once_token_space(rest) else {
            return Err(format!("{key} must have two arguments"));
        };
        return Ok(ParsedArgs::plain(vec![
            k.to_string(),
            v.to_string(),
            String::new(),
        ]));
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for word in words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                go_quote(&word)
            ));
        };
        out.push(k.to_string());
        out.push(v.to_string());
        out.push("=".to_string());
    }
    Ok(ParsedArgs::plain(out))
}

/// `parseNameOrNameVal` (ARG).
pub(crate) fn parse_name_or_name_val(rest: &str, escape: char) -> ParsedArgs {
    ParsedArgs::plain(parse_words(rest, escape))
}

/// `parseStringsWhitespaceDelimited` (FROM, EXPOSE).
pub(crate) fn parse_strings_whitespace_delimited(rest: &str) -> ParsedArgs {
    ParsedArgs::plain(split_token_space(rest))
}

/// `parseString` (MAINTAINER, STOPSIGNAL, USER, WORKDIR).
pub(crate) fn parse_string(rest: &str) -> ParsedArgs {
    if rest.is_empty() {
        return ParsedArgs::plain(Vec::new());
    }
    ParsedArgs::plain(vec![rest.to_string()])
}

fn parse_json(rest: &str) -> JsonArgs {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return JsonArgs::Invalid;
    }
    parse_json_args(rest)
}

/// `parseMaybeJSON` (RUN, CMD, ENTRYPOINT, SHELL): a JSON string array, else the whole text.
pub(crate) fn parse_maybe_json(rest: &str) -> Result<ParsedArgs, String> {
    if rest.is_empty() {
        return Ok(ParsedArgs::plain(Vec::new()));
    }
    match parse_json(rest) {
        JsonArgs::Strings(v) => Ok(ParsedArgs {
            args: v,
            json: true,
        }),
        JsonArgs::NotStrings => Err(NOT_STRING_ARRAY.to_string()),
        JsonArgs::Invalid => Ok(ParsedArgs::plain(vec![rest.to_string()])),
    }
}

/// `parseMaybeJSONToList` (ADD, COPY, VOLUME): a JSON string array, else whitespace-split words.
pub(crate) fn parse_maybe_json_to_list(rest: &str) -> Result<ParsedArgs, String> {
    match parse_json(rest) {
        JsonArgs::Strings(v) => Ok(ParsedArgs {
            args: v,
            json: true,
        }),
        JsonArgs::NotStrings => Err(NOT_STRING_ARRAY.to_string()),
        JsonArgs::Invalid => Ok(parse_strings_whitespace_delimited(rest)),
    }
}

/// `parseHealthConfig`: the type word, then the command like `parseMaybeJSON`.
pub(crate) fn parse_health_config(rest: &str) -> Result<ParsedArgs, String> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(ParsedArgs::plain(Vec::new()));
    }
    let after = &rest[sep..];
    let next = after.trim_start();
    let typ = rest[..sep].to_string();
    let inner = parse_maybe_json(next)?;
    let mut args = vec![typ];
    args.extend(inner.args);
    Ok(ParsedArgs {
        args,
        json: inner.json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_extracted() {
        let (cmd, flags, args) = split_command("COPY --from=a --chown=\"x y\" -- --b c");
        assert_eq!(cmd, "COPY");
        assert_eq!(flags, vec!["--from=a", "--chown=x y"]);
        assert_eq!(args, "--b c");
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words("a=\"b c\" d='e f'", '\\'),
            vec!["a=\"b c\"", "d='e f'"]
        );
        assert_eq!(parse_words("a=b\\ c", '\\'), vec!["a=b\\ c"]);
    }

    #[test]
    fn legacy_env() {
        let p = parse_name_val("A  b c", "ENV", '\\').unwrap();
        assert_eq!(p.args, vec!["A", "b c", ""]);
        assert_eq!(
            parse_name_val("A", "ENV", '\\').unwrap_err(),
            "ENV must have two arguments"
        );
    }
}
