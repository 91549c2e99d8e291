//! The first pass: text → a flat list of instruction nodes, exactly as BuildKit's `parser`
//! package builds its AST (directives, comments, continuation lines, heredoc bodies, the
//! per-keyword argument splitting, exec vs shell form). Nothing is validated per instruction
//! here: an unknown keyword or flag is still a node. [`crate::parse`] builds typed instructions
//! from these nodes.

mod directives;
mod heredoc;
mod json;
pub(crate) mod line_parsers;

use crate::error::ParseError;
use crate::model::{Directives, Heredoc, Warning};
use crate::shell::go_quote;
use crate::span::Span;
use directives::DirectiveParser;
use line_parsers::{
    parse_health_config, parse_maybe_json, parse_maybe_json_to_list, parse_name_or_name_val,
    parse_name_val, parse_string, parse_strings_whitespace_delimited, split_command, ParsedArgs,
};
use serde::{Deserialize, Serialize};

pub(crate) use heredoc::parse_heredoc_word;

/// One instruction as the first pass sees it (BuildKit's `Node`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The keyword as written (`RUN`, `run`, `Run` ...).
    pub keyword: String,
    /// The whole instruction text, continuation lines joined (BuildKit's `Original`).
    pub original: String,
    /// Leading `--flag[=value]` words, quotes removed.
    pub flags: Vec<String>,
    /// Arguments after the per-keyword split (`ENV`/`LABEL` give `key, value, sep` triples).
    pub args: Vec<String>,
    /// For `ONBUILD`: the trigger instruction.
    pub child: Option<Box<Node>>,
    /// True when the arguments were a JSON array (exec form).
    pub json: bool,
    /// Here-documents read after the instruction line.
    pub heredocs: Vec<Heredoc>,
    /// Where the instruction is.
    pub span: Span,
}

impl Node {
    /// The lower-cased keyword.
    pub fn keyword_lower(&self) -> String {
        self.keyword.to_ascii_lowercase()
    }

    /// BuildKit's `Node.Dump()` s-expression: `run ["--mount=x"] "a" "b"`.
    pub fn dump(&self) -> String {
        let mut s = self.keyword.to_lowercase();
        if !self.flags.is_empty() {
            s.push_str(" [");
            for (i, f) in self.flags.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                s.push_str(&go_quote(f));
            }
            s.push(']');
        }
        if let Some(child) = &self.child {
            s.push_str(" (");
            s.push_str(&child.dump());
            s.push(')');
        }
        for a in &self.args {
            s.push(' ');
            s.push_str(&go_quote(a));
        }
        s.trim().to_string()
    }

    fn can_contain_heredoc(&self) -> bool {
        let node = match (&self.child, self.keyword_lower().as_str()) {
            (Some(child), "onbuild") => child.as_ref(),
            _ => self,
        };
        matches!(node.keyword_lower().as_str(), "add" | "copy" | "run") && !node.json
    }
}

/// The result of the first pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyntaxTree {
    /// Parser directives.
    pub directives: Directives,
    /// Instructions in file order.
    pub nodes: Vec<Node>,
    /// Warnings of the first pass (empty continuation lines).
    pub warnings: Vec<Warning>,
}

impl SyntaxTree {
    /// The whole tree in BuildKit's dump format, one `(instruction ...)` per line, as in the
    /// `result` files of BuildKit's parser test data.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push('(');
            out.push_str(&n.dump());
            out.push_str(")\n");
        }
        out
    }
}

/// BuildKit's limit on one physical line (`bufio.Scanner`'s default buffer).
const MAX_LINE: usize = 65535;

/// Physical lines with their endings, numbered from 1.
struct Lines<'a> {
    text: &'a str,
    pos: usize,
    number: usize,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Result<Option<&'a str>, ParseError> {
        if self.pos >= self.text.len() {
            return Ok(None);
        }
        let rest = &self.text[self.pos..];
        let len = rest.find('\n').map(|i| i + 1).unwrap_or(rest.len());
        let line = &rest[..len];
        self.pos += len;
        self.number += 1;
        if line.trim_end_matches('\n').len() > MAX_LINE {
            return Err(ParseError::at(
                Span::new(self.number, 1, self.number),
                format!("dockerfile line greater than max allowed size of {MAX_LINE}"),
            ));
        }
        Ok(Some(line))
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(s: &str) -> bool {
    s.trim_start().starts_with('#')
}

/// Removes a trailing continuation escape (BuildKit's regex `([^E])E[ \t]*$|^E[ \t]*$`).
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    match before.chars().next_back() {
        None => ("", false),
        Some(prev) if prev != escape => (before, false),
        Some(_) => (line, true),
    }
}

/// Runs the first pass over a whole Dockerfile.
pub fn parse_syntax(text: &str) -> Result<SyntaxTree, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = Lines {
        text,
        pos: 0,
        number: 0,
    };
    let mut directives = DirectiveParser::default();
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();

    while let Some(raw) = lines.next_line()? {
        let line_no = lines.number;
        let token = trim_newline(raw).trim_start();
        directives
            .parse_line(token)
            .map_err(|m| ParseError::at(Span::new(line_no, 1, line_no), m))?;
        let processed = if is_comment(token) { "" } else { token };
        let start_line = line_no;
        let column = 1 + trim_newline(raw)
            .chars()
            .take_while(|c| c.is_whitespace())
            .count();
        let (first, mut is_end) = trim_continuation(processed, directives.escape);
        if is_end && first.is_empty() {
            continue;
        }
        let mut buf = first.to_string();
        let mut has_empty_continuation = false;
        while !is_end {
            let Some(raw) = lines.next_line()? else { break };
            let current = lines.number;
            let token = trim_newline(raw);
            directives
                .parse_line(token)
                .map_err(|m| ParseError::at(Span::new(current, 1, current), m))?;
            if is_comment(raw) {
                continue;
            }
            if token.trim_start().is_empty() {
                has_empty_continuation = true;
                continue;
            }
            let (part, end) = trim_continuation(token, directives.escape);
            is_end = end;
            buf.push_str(part);
        }
        let span = Span::new(start_line, column, lines.number);
        if has_empty_continuation {
            warnings.push(Warning {
                rule: "NoEmptyContinuation".to_string(),
                message: format!("Empty continuation line found in: {buf}"),
                span,
            });
        }
        let mut node =
            node_from_line(&buf, directives.escape, 0).map_err(|m| ParseError::at(span, m))?;
        if node.can_contain_heredoc() && buf.contains("<<") {
            let docs = heredoc::heredocs_from_line(&buf).map_err(|m| ParseError::at(span, m))?;
            for mut doc in docs {
                let mut terminated = false;
                while let Some(body_line) = lines.next_line()? {
                    let mut candidate = trim_newline(body_line);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(body_line);
                }
                if !terminated {
                    return Err(ParseError::at(
                        Span::new(start_line, column, lines.number),
                        "unterminated heredoc",
                    ));
                }
                node.heredocs.push(doc);
            }
        }
        node.span = Span::new(start_line, column, lines.number);
        nodes.push(node);
    }

    if nodes.is_empty() {
        let line = lines.number.max(1);
        return Err(ParseError::at(
            Span::new(line, 1, line),
            "file with no instructions",
        ));
    }
    Ok(SyntaxTree {
        directives: directives.into_directives(),
        nodes,
        warnings,
    })
}

/// `newNodeFromLine`: splits keyword, flags and arguments and runs the keyword's line parser.
/// `ONBUILD ONBUILD ...` nests nodes (and is rejected later); the bound keeps recursion finite.
const MAX_ONBUILD_NESTING: usize = 16;

fn node_from_line(line: &str, escape: char, depth: usize) -> Result<Node, String> {
    let (keyword, flags, rest) = split_command(line);
    let lower = keyword.to_ascii_lowercase();
    let mut child = None;
    let parsed = match lower.as_str() {
        "add" | "copy" | "volume" => parse_maybe_json_to_list(&rest)?,
        "arg" => parse_name_or_name_val(&rest, escape),
        "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json(&rest)?,
        "env" => parse_name_val(&rest, "ENV", escape)?,
        "label" => parse_name_val(&rest, "LABEL", escape)?,
        "expose" | "from" => parse_strings_whitespace_delimited(&rest),
        "healthcheck" => parse_health_config(&rest)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => parse_string(&rest),
        "onbuild" => {
            if !rest.is_empty() {
                if depth >= MAX_ONBUILD_NESTING {
                    return Err(format!(
                        "ONBUILD nested deeper than {MAX_ONBUILD_NESTING} levels"
                    ));
                }
                child = Some(Box::new(node_from_line(&rest, escape, depth + 1)?));
            }
            ParsedArgs {
                args: Vec::new(),
                json: false,
            }
        }
        _ => ParsedArgs {
            args: Vec::new(),
            json: false,
        },
    };
    Ok(Node {
        keyword,
        original: line.to_string(),
        flags,
        args: parsed.args,
        child,
        json: parsed.json,
        heredocs: Vec::new(),
        span: Span::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a \\  \t", '\\'), ("a ", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("a`", '`'), ("a", false));
        assert_eq!(trim_continuation("a\\", '`'), ("a\\", true));
    }

    #[test]
    fn heredoc_bodies_are_read() {
        let t = parse_syntax("FROM a\nRUN <<EOF cat\nhello\nEOF\nRUN x\n").unwrap();
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.nodes[1].heredocs[0].content, "hello\n");
        assert_eq!(t.nodes[1].span, Span::new(2, 1, 4));
        assert_eq!(t.nodes[2].span.line, 5);
    }

    #[test]
    fn unterminated_heredoc() {
        let e = parse_syntax("FROM a\nRUN <<EOF\nhello\n").unwrap_err();
        assert_eq!(e.to_string(), "2:1: unterminated heredoc");
    }
}
