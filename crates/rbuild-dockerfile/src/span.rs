//! Source locations: every node the parser produces carries one.

use serde::{Deserialize, Serialize};

/// Where a node sits in the Dockerfile: 1-based line and column of its first character and the
/// last line it covers (continuation lines and heredoc bodies included).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct Span {
    /// First line (1-based).
    pub line: usize,
    /// Column of the first character on `line` (1-based, counted in characters).
    pub column: usize,
    /// Last line the node covers (1-based, `>= line`).
    pub end_line: usize,
}

impl Span {
    /// A span starting at `line:column` and ending on `end_line`.
    pub fn new(line: usize, column: usize, end_line: usize) -> Self {
        Span {
            line,
            column,
            end_line: end_line.max(line),
        }
    }
}

/// A value together with the span it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spanned<T> {
    /// The parsed value.
    pub node: T,
    /// Where it came from.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// Wraps `node` with `span`.
    pub fn new(node: T, span: Span) -> Self {
        Spanned { node, span }
    }
}
