//! "Did you mean ...?" suggestions, as BuildKit's `util/suggest` makes them: the first option
//! within Levenshtein distance 2 (the closest one wins), none on an exact match.

/// Appends ` (did you mean X?)` to `message` when an option is close to `value`.
pub(crate) fn wrap(message: String, value: &str, options: &[&str], case_sensitive: bool) -> String {
    let val = if case_sensitive {
        value.to_string()
    } else {
        value.to_lowercase()
    };
    let mut best: Option<String> = None;
    let mut min_dist = 3;
    for opt in options {
        let o = if case_sensitive {
            opt.to_string()
        } else {
            opt.to_lowercase()
        };
        if val == o {
            return message;
        }
        let d = levenshtein(&val, &o);
        if d < min_dist {
            best = Some(if case_sensitive {
                o
            } else {
                match_case(&o, value)
            });
            min_dist = d;
        }
    }
    match best {
        Some(m) => format!("{message} (did you mean {m}?)"),
        None => message,
    }
}

fn match_case(val: &str, orig: &str) -> String {
    if orig == orig.to_lowercase() {
        val.to_lowercase()
    } else if orig == orig.to_uppercase() {
        val.to_uppercase()
    } else {
        val.to_string()
    }
}

/// Edit distance over characters; O(a×b) time, O(b) memory.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(
            wrap("e".into(), "RUNN", &["run", "cmd"], false),
            "e (did you mean RUN?)"
        );
        assert_eq!(
            wrap("e".into(), "frm", &["from"], false),
            "e (did you mean from?)"
        );
        assert_eq!(wrap("e".into(), "xyzzy", &["from"], false), "e");
    }
}
