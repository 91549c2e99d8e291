//! Parse and expansion errors.

use crate::span::Span;
use serde::{Deserialize, Serialize};

/// A Dockerfile that cannot be parsed: where and why.
///
/// `Display` gives `LINE:COL: message`; [`ParseError::render`] prefixes a file name, which is the
/// one-line form the CLI prints (`Dockerfile:3:1: unknown instruction: RUNN (did you mean RUN?)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    /// 1-based line of the offending instruction (or line).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Last line of the offending instruction.
    pub end_line: usize,
    /// What is wrong, without location.
    pub message: String,
}

impl ParseError {
    /// An error at `span` with `message` (cut at [`rbuild_oci::MAX_MESSAGE_CHARS`]: messages
    /// quote the Dockerfile, which may hold a 60 KB word).
    pub fn at(span: Span, message: impl Into<String>) -> Self {
        let message = message.into();
        let message =
            rbuild_oci::truncate_for_message(&message, rbuild_oci::MAX_MESSAGE_CHARS).into_owned();
        ParseError {
            line: span.line,
            column: span.column,
            end_line: span.end_line,
            message,
        }
    }

    /// `FILE:LINE:COL: message`, e.g. `Dockerfile:4:1: FROM requires either one or three arguments`.
    pub fn render(&self, file_name: &str) -> String {
        format!(
            "{file_name}:{}:{}: {}",
            self.line, self.column, self.message
        )
    }

    /// The span the error points at.
    pub fn span(&self) -> Span {
        Span::new(self.line, self.column, self.end_line)
    }
}

/// The message of [`ExpandError::too_large`] before the instruction is named.
const TOO_LARGE: &str = "expands to more than the expansion limit";

/// Word expansion failed (bad substitution, `${V:?msg}` on an unset variable, unterminated
/// quote, ...). The message is BuildKit's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    /// What went wrong.
    pub message: String,
}

impl ExpandError {
    /// An expansion error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        ExpandError {
            message: message.into(),
        }
    }

    /// The expansion of one instruction grew past [`crate::MAX_EXPANSION_BYTES`].
    pub(crate) fn too_large() -> Self {
        ExpandError::new(TOO_LARGE)
    }

    /// Whether this is [`ExpandError::too_large`], not yet named after its instruction.
    pub(crate) fn is_too_large(&self) -> bool {
        self.message == TOO_LARGE
    }

    /// Names the instruction in a [`ExpandError::too_large`] error
    /// (`ENV expands to more than 1 MiB`); other errors are returned as they are.
    pub(crate) fn for_instruction(self, keyword: &str) -> Self {
        if self.is_too_large() {
            ExpandError::new(format!(
                "{keyword} expands to more than {} MiB",
                crate::MAX_EXPANSION_BYTES >> 20
            ))
        } else {
            self
        }
    }

    /// Turns this into a [`ParseError`] located at `span`.
    pub fn at(&self, span: Span) -> ParseError {
        ParseError::at(span, self.message.clone())
    }
}
