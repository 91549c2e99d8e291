//! Recognising heredoc words (`<<EOF`, `<<-EOF`, `3<<"EOF"`) the way BuildKit does: the whole
//! instruction line is lexed with `\` as escape, quotes and escapes kept, and every word
//! matching `^(\d*)<<(-?)\s*([^<]*)$` names a heredoc.

use crate::model::Heredoc;
use crate::shell::{process, EmptyEnvironment, LexOptions};

fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{c}' | '\r')
}

/// BuildKit's `ParseHeredoc`: `Ok(None)` when `word` is not a heredoc marker.
pub(crate) fn parse_heredoc_word(word: &str) -> Result<Option<Heredoc>, String> {
    let digits_end = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let digits = &word[..digits_end];
    let Some(rest) = word[digits_end..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(is_re_space);
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    let fd = if digits.is_empty() {
        0
    } else {
        digits.parse::<u32>().unwrap_or(u32::MAX)
    };
    let mut options = LexOptions::new('\\');
    options.skip_unset_env = true;
    let words = process(rest, &EmptyEnvironment, options)
        .map_err(|e| e.message)?
        .words;
    if words.len() != 1 {
        return Ok(None);
    }
    options.raw_quotes = true;
    let raw_words = process(rest, &EmptyEnvironment, options)
        .map_err(|e| e.message)?
        .words;
    if raw_words.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = quotes(&words[0]) == quotes(&raw_words[0]);
    Ok(Some(Heredoc {
        name: words[0].clone(),
        content: String::new(),
        expand,
        chomp,
        fd,
    }))
}

/// BuildKit's `heredocsFromLine`: every heredoc marker of an instruction line, in order.
pub(super) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut options = LexOptions::new('\\');
    options.raw_quotes = true;
    options.raw_escapes = true;
    options.skip_unset_env = true;
    // A lexing error (an unterminated quote in the shell text) means no heredocs, as in BuildKit.
    let words = process(line, &EmptyEnvironment, options)
        .map(|e| e.words)
        .unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc_word(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        let h = parse_heredoc_word("<<EOF").unwrap().unwrap();
        assert!(h.expand && !h.chomp && h.name == "EOF");
        let h = parse_heredoc_word("<<-\"EOF\"").unwrap().unwrap();
        assert!(!h.expand && h.chomp && h.name == "EOF");
        let h = parse_heredoc_word("3<<'E'").unwrap().unwrap();
        assert_eq!((h.fd, h.expand), (3, false));
        assert!(parse_heredoc_word("<<").unwrap().is_none());
        assert!(parse_heredoc_word("a<<EOF").unwrap().is_none());
        assert!(parse_heredoc_word("<<<EOF").unwrap().is_none());
    }

    #[test]
    fn blanks_after_the_marker() {
        let names = |line: &str| -> Vec<String> {
            heredocs_from_line(line)
                .unwrap()
                .into_iter()
                .map(|d| d.name)
                .collect()
        };
        assert_eq!(names("RUN <<  EOF"), vec!["EOF"]);
        assert_eq!(names("RUN <<  EOF  > foo"), vec!["EOF"]);
        assert_eq!(names("RUN << -EOF"), vec!["-EOF"]);
        assert_eq!(names("RUN '<<EOF'"), Vec::<String>::new());
        assert_eq!(names("RUN \"<<EOF\""), Vec::<String>::new());
        assert_eq!(names("RUN cat<<EOF"), Vec::<String>::new());
        assert_eq!(names("RUN <<eo\\'f"), vec!["eo'f"]);
        assert_eq!(names("RUN <<$EOF"), vec!["$EOF"]);
        assert_eq!(names("RUN <<'one two'"), vec!["one two"]);
    }

    #[test]
    fn quoting_turns_expansion_off() {
        let h = parse_heredoc_word("<<eo'f'").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand), ("eof", false));
        let h = parse_heredoc_word("<<'e'o\\'f").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand), ("eo'f", false));
        for bad in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_heredoc_word(bad).is_err(), "{bad}");
        }
        for not in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
            assert!(parse_heredoc_word(not).unwrap().is_none(), "{not}");
        }
        for ok in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<EO\"F\"",
            "<< EOF",
            "<<- EOF",
        ] {
            assert_eq!(parse_heredoc_word(ok).unwrap().unwrap().name, "EOF", "{ok}");
        }
    }

    #[test]
    fn several_on_a_line() {
        let docs = heredocs_from_line("RUN <<A cat - <<\"B\" > /x").unwrap();
        assert_eq!(
            docs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            vec!["A", "B"]
        );
    }
}
