//! Parser directives (`# syntax=`, `# escape=`, `# check=`): only in the leading run of
//! comment lines, each at most once, as BuildKit's `DirectiveParser` reads them.

use crate::model::Directives;
use std::collections::BTreeSet;

pub(super) struct DirectiveParser {
    done: bool,
    seen: BTreeSet<String>,
    pub(super) escape: char,
    syntax: Option<String>,
    check: Option<String>,
}

impl Default for DirectiveParser {
    fn default() -> Self {
        DirectiveParser {
            done: false,
            seen: BTreeSet::new(),
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// Go's RE2 `\s`: ASCII space, tab, newline, form feed, carriage return.
fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{c}' | '\r')
}

/// Matches `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` and returns the name and value.
fn match_directive(s: &str) -> Option<(&str, &str)> {
    let mut chars = s.char_indices();
    let (_, first) = chars.next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let name_end = s
        .char_indices()
        .skip(1)
        .find(|&(_, c)| !c.is_ascii_alphanumeric())
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let name = &s[..name_end];
    let rest = s[name_end..].trim_start_matches(is_re_space);
    let after_eq = rest.strip_prefix('=')?;
    if after_eq.is_empty() || after_eq.contains('\n') {
        return None;
    }
    let lead_trimmed = after_eq.trim_start_matches(is_re_space);
    if lead_trimmed.is_empty() {
        // All whitespace: the lazy group takes the last whitespace character.
        let last = after_eq.char_indices().next_back()?.0;
        return Some((name, &after_eq[last..]));
    }
    Some((name, lead_trimmed.trim_end_matches(is_re_space)))
}

impl DirectiveParser {
    /// Looks at one line (newline removed). Returns an error message for a repeated directive
    /// or an invalid escape token.
    pub(super) fn parse_line(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some(rest) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(());
        };
        let Some((name, value)) = match_directive(rest.trim_start()) else {
            self.done = true;
            return Ok(());
        };
        let key = name.to_ascii_lowercase();
        if !matches!(key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if !self.seen.insert(key.clone()) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        match key.as_str() {
            "escape" => {
                self.escape = match value {
                    "`" => '`',
                    "\\" => '\\',
                    _ => {
                        return Err(format!(
                            "invalid escape token '{value}' does not match ` or \\"
                        ))
                    }
                }
            }
            "syntax" => self.syntax = Some(value.to_string()),
            _ => self.check = Some(value.to_string()),
        }
        Ok(())
    }

    pub(super) fn into_directives(self) -> Directives {
        Directives {
            syntax: self.syntax,
            escape: self.escape,
            check: self.check,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_regex() {
        assert_eq!(match_directive("escape = `"), Some(("escape", "`")));
        assert_eq!(
            match_directive("syntax=docker/dockerfile:1  "),
            Some(("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(match_directive("escape= "), Some(("escape", " ")));
        assert_eq!(match_directive("escape="), None);
        assert_eq!(match_directive("1x=y"), None);
        assert_eq!(match_directive("es cape=y"), None);
    }

    #[test]
    fn only_leading_comments_count() {
        let mut p = DirectiveParser::default();
        p.parse_line("# escape=`").unwrap();
        p.parse_line("").unwrap();
        p.parse_line("# syntax=x").unwrap();
        let d = p.into_directives();
        assert_eq!(d.escape, '`');
        assert_eq!(d.syntax, None);
    }

    #[test]
    fn repeated_directive_is_an_error() {
        let mut p = DirectiveParser::default();
        p.parse_line("# syntax=a").unwrap();
        assert_eq!(
            p.parse_line("# SYNTAX=b").unwrap_err(),
            "only one syntax parser directive can be used"
        );
    }
}
