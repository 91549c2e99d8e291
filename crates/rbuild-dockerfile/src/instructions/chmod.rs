//! `--chmod` and `--chown` values.

/// Validates a `--chmod` value as BuildKit does: an octal mode up to `07777`, or a symbolic
/// mode (`u+x`, `go-w,a+r`, `u=rwX`).
pub fn validate_chmod(value: &str) -> Result<(), String> {
    let non_octal = || {
        format!(
            "invalid chmod parameter: '{value}'. it should be octal string and between 0 and 07777"
        )
    };
    if let Ok(mode) = u32::from_str_radix(value, 8) {
        if !value.is_empty() && value.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return if mode > 0o7777 {
                Err(non_octal())
            } else {
                Ok(())
            };
        }
    }
    // BuildKit's symbolic parser reports a number error for anything that starts like a number.
    if value.is_empty() || value.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(non_octal());
    }
    for clause in value.split(',') {
        let rest = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        if rest.is_empty() {
            return Err(format!(
                "invalid chmod parameter: '{value}': missing operator in {clause:?}"
            ));
        }
        let mut chars = rest.chars().peekable();
        while let Some(op) = chars.next() {
            if !matches!(op, '+' | '-' | '=') {
                return Err(format!(
                    "invalid chmod parameter: '{value}': unexpected {op:?} in {clause:?}"
                ));
            }
            if matches!(chars.peek(), Some('u' | 'g' | 'o')) {
                chars.next();
                continue;
            }
            while matches!(chars.peek(), Some('r' | 'w' | 'x' | 'X' | 's' | 't')) {
                chars.next();
            }
        }
    }
    Ok(())
}

/// Validates a `--chown` value: `user`, `user:group`, `uid:gid`, neither part empty.
pub fn validate_chown(value: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid chown parameter: '{value}': {why}"));
    if value.is_empty() {
        return bad("user is empty");
    }
    if value.chars().any(char::is_whitespace) {
        return bad("contains whitespace");
    }
    let (user, group) = match value.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (value, None),
    };
    if user.is_empty() {
        return bad("user is empty");
    }
    if let Some(g) = group {
        if g.is_empty() {
            return bad("group is empty");
        }
        if g.contains(':') {
            return bad("more than one ':'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_values() {
        assert!(validate_chmod("755").is_ok());
        assert!(validate_chmod("0644").is_ok());
        assert!(validate_chmod("7777").is_ok());
        assert!(validate_chmod("u+x").is_ok());
        assert!(validate_chmod("go-w,a+rX").is_ok());
        assert!(validate_chmod("u=g").is_ok());
        assert_eq!(
            validate_chmod("64a").unwrap_err(),
            "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777"
        );
        assert_eq!(
            validate_chmod("10000").unwrap_err(),
            "invalid chmod parameter: '10000'. it should be octal string and between 0 and 07777"
        );
        assert!(validate_chmod("u").is_err());
        assert!(validate_chmod("u+q").is_err());
    }

    #[test]
    fn chown_values() {
        assert!(validate_chown("1000:1000").is_ok());
        assert!(validate_chown("app").is_ok());
        assert!(validate_chown(":g").is_err());
        assert!(validate_chown("u:").is_err());
        assert!(validate_chown("a:b:c").is_err());
    }
}
