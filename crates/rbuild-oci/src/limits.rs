//! Size limits for documents read from untrusted places (registries, layouts, base images).
//!
//! A document larger than its limit is refused before it is read whole or parsed, so a hostile
//! registry cannot make a client buffer or decode without bound.

/// The largest image manifest or index accepted, in bytes (containerd's limit, 4 MiB). Real
/// manifests are a few KiB; an index of hundreds of platforms stays far below this.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// The largest image config accepted, in bytes (8 MiB). Configs hold the environment, labels
/// and one history entry per step; the largest seen in practice are a few hundred KiB.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// Refuses `len` bytes of a `what` (`image manifest`, `image config`...) larger than `limit`.
pub fn check_document_size(
    what: &'static str,
    len: u64,
    limit: u64,
) -> Result<(), crate::OciError> {
    if len > limit {
        return Err(crate::OciError::TooLarge {
            what,
            size: len,
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{ImageConfig, Index, Manifest, OciError, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};

    #[test]
    fn oversized_documents_are_refused_before_decoding() {
        // Not JSON at all: a decoder would say so; the size check must come first.
        let big = vec![b'x'; MAX_MANIFEST_BYTES as usize + 1];
        let e = Manifest::from_json(&big).unwrap_err();
        assert!(matches!(e, OciError::TooLarge { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "image manifest of {} bytes is larger than the limit of {MAX_MANIFEST_BYTES} bytes",
                big.len()
            )
        );
        assert!(matches!(
            Index::from_json(&big),
            Err(OciError::TooLarge { .. })
        ));
        let big = vec![b'x'; MAX_CONFIG_BYTES as usize + 1];
        assert!(matches!(
            ImageConfig::from_json(&big),
            Err(OciError::TooLarge { .. })
        ));
        assert!(matches!(
            ImageConfig::from_json(b"x"),
            Err(OciError::Json { .. })
        ));
    }

    #[test]
    fn decode_errors_show_their_cause_once_in_a_chain() {
        let e = Manifest::from_json(b"{").unwrap_err();
        assert!(std::error::Error::source(&e).is_none());
        assert!(
            e.to_string()
                .starts_with("cannot decode image manifest: EOF"),
            "{e}"
        );
    }
}
