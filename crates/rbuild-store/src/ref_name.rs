//! The grammar of `org.opencontainers.image.ref.name` values, which name images in a layout.

use crate::StoreError;

/// Checks `name` against the image-layout ref grammar:
/// `component ("/" component)*`, `component ::= alnum+ (separator alnum+)*`,
/// `separator ::= [-._:@+] | "--"`. A full reference such as
/// `docker.io/library/alpine:3.20` or a bare tag such as `v1` both qualify.
pub fn check_ref_name(name: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| {
        Err(StoreError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    for component in name.split('/') {
        let b = component.as_bytes();
        if b.is_empty() {
            return bad("empty path component");
        }
        if !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
            return bad("components must start and end with [A-Za-z0-9]");
        }
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_alphanumeric() {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let sep = &component[start..i];
            let ok = sep == "--" || (sep.len() == 1 && "-._:@+".contains(sep));
            if !ok {
                return bad("separators are one of - . _ : @ + or --");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        for ok in [
            "v1",
            "docker.io/library/alpine:3.20",
            "a--b",
            "x@sha256:ab",
            "A+B/c_d",
        ] {
            assert!(check_ref_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a//b", "-a", "a-", "a..b", "a b", "a/", "a---b"] {
            assert!(check_ref_name(bad).is_err(), "{bad}");
        }
    }
}
