//! The one line a failed command prints: the error and its causes, each distinct cause once.

use rbuild::oci::{truncate_for_message, MAX_MESSAGE_CHARS};

/// `error: cause: cause…` on one line. Libraries' errors often include their source's text in
/// their own message *and* return it as `source()`; a cause whose text is already part of the
/// line is therefore skipped, so nothing is said twice. Each cause is cut at
/// [`MAX_MESSAGE_CHARS`] characters (it may quote a hostile input).
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&truncate_for_message(&text, MAX_MESSAGE_CHARS));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;
    use std::fmt;

    /// Says its source's text and also returns it as `source()`, as many errors do.
    #[derive(Debug)]
    struct Repeating(&'static str, Option<Box<Repeating>>);

    impl fmt::Display for Repeating {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)?;
            match &self.1 {
                Some(inner) => write!(f, ": {inner}"),
                None => Ok(()),
            }
        }
    }

    impl std::error::Error for Repeating {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        let error = anyhow::Error::new(Repeating(
            "store",
            Some(Box::new(Repeating(
                "cannot stat x/store",
                Some(Box::new(Repeating("Not a directory (os error 20)", None))),
            ))),
        ));
        assert_eq!(
            format!("{error:#}"),
            "store: cannot stat x/store: Not a directory (os error 20): cannot stat x/store: Not a directory (os error 20): Not a directory (os error 20)"
        );
        assert_eq!(
            one_line(&error),
            "store: cannot stat x/store: Not a directory (os error 20)"
        );
        let error = anyhow::anyhow!("inner cause").context("outer step");
        assert_eq!(one_line(&error), "outer step: inner cause");
        let error = anyhow::anyhow!("{}", "x".repeat(60_000)).context("long");
        assert!(one_line(&error).len() < 1100);
    }
}
