//! Planning errors: always located in the Dockerfile when the cause is there.

use rbuild_dockerfile::{ParseError, Span};

/// Why a Dockerfile could not be planned.
///
/// `Display` gives `LINE:COL: message` when the cause has a place in the Dockerfile and just the
/// message otherwise (an unknown `--target`, say); [`PlanError::render`] prefixes the file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The text does not parse (or a word does not expand).
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The Dockerfile parses but cannot be planned, because of what stands at `span`.
    #[error("{}:{}: {message}", span.line, span.column)]
    At {
        /// Where.
        span: Span,
        /// What is wrong.
        message: String,
    },
    /// A problem with the request rather than a line of the Dockerfile.
    #[error("{0}")]
    Request(String),
}

impl PlanError {
    /// An error located at `span`.
    pub fn at(span: Span, message: impl Into<String>) -> Self {
        // Messages quote the Dockerfile and base images, which may hold a 60 KB word.
        let message = message.into();
        PlanError::At {
            span,
            message: rbuild_oci::truncate_for_message(&message, rbuild_oci::MAX_MESSAGE_CHARS)
                .into_owned(),
        }
    }

    /// The one-line form the CLI prints: `Dockerfile:LINE:COL: message` (or `Dockerfile: message`
    /// when the error has no place in the file).
    pub fn render(&self, file_name: &str) -> String {
        match self {
            PlanError::Parse(e) => e.render(file_name),
            PlanError::At { span, message } => {
                format!("{file_name}:{}:{}: {message}", span.line, span.column)
            }
            PlanError::Request(message) => format!("{file_name}: {message}"),
        }
    }
}
