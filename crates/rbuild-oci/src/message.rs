//! Quoting untrusted input in error messages without letting it flood them.

use std::borrow::Cow;

/// How many characters of an untrusted input an error message shows before cutting it.
pub const MAX_MESSAGE_INPUT_CHARS: usize = 200;

/// How many characters a whole error message may have before it is cut: messages that quote
/// untrusted input at a place that does not cut it itself stay one readable line.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// `text` cut to at most `max_chars` characters, followed by `…` and how many characters were
/// left out (`${a:-${a:-…(59897 more characters)`). Short text is returned unchanged.
///
/// Every message that repeats an input (a Dockerfile word, a registry's answer, a reference)
/// goes through this one helper, so a 60 KB input gives a one-line error, not a 60 KB line.
///
/// ```
/// use rbuild_oci::truncate_for_message;
///
/// assert_eq!(truncate_for_message("short", 10), "short");
/// assert_eq!(truncate_for_message("abcdefghij", 4), "abcd…(6 more characters)");
/// ```
pub fn truncate_for_message(text: &str, max_chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => {
            let rest = text[cut..].chars().count();
            Cow::Owned(format!("{}…({rest} more characters)", &text[..cut]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_character_boundaries_and_counts_the_rest() {
        assert_eq!(truncate_for_message("", 0), "");
        assert_eq!(truncate_for_message("abc", 3), "abc");
        assert_eq!(truncate_for_message("abcd", 3), "abc…(1 more characters)");
        assert_eq!(truncate_for_message("ééé", 1), "é…(2 more characters)");
        let long = "x".repeat(60_000);
        let short = truncate_for_message(&long, MAX_MESSAGE_INPUT_CHARS);
        assert!(short.len() < 300, "{}", short.len());
        assert!(short.ends_with("…(59800 more characters)"), "{short}");
    }
}

#[cfg(test)]
mod input_tests {
    use crate::{Digest, Platform, Reference};

    #[test]
    fn rejected_inputs_are_quoted_cut_short() {
        let long = format!("a/{}", "B".repeat(60_000));
        let e = Reference::parse(&long).unwrap_err().to_string();
        assert!(e.len() < 400, "{}", e.len());
        assert!(e.contains("…("), "{e}");
        let e = Digest::parse(&"x".repeat(60_000)).unwrap_err().to_string();
        assert!(e.len() < 400, "{}", e.len());
        let e = Platform::parse(&"/".repeat(60_000))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 400, "{}", e.len());
    }
}
