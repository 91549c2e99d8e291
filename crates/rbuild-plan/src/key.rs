//! Cache keys (DESIGN.md §1): a digest over a length-framed canonical encoding, so that no two
//! different inputs can encode to the same bytes.
//!
//! A step's *step digest* covers what the planner knows without I/O: the instruction after
//! expansion, exactly the ARG/ENV values it can observe, and the platform. Its *cache key* then
//! chains the parent key, the step digest and the digests of the step's inputs (context files,
//! another stage's files, a URL's content), which only the engine can compute. The planner fills
//! in cache keys where no such input exists up the chain.

use rbuild_oci::{Digest, Sha256Hasher};

/// Version tag mixed into every key: bump it whenever the encoding or a step's meaning changes,
/// so that old cache entries are never reused with a new meaning.
pub const KEY_VERSION: &str = "rbuild-cache-v1";

/// Builds one digest from tagged, length-framed fields.
pub struct KeyEncoder {
    hasher: Sha256Hasher,
}

impl KeyEncoder {
    /// A new encoding of the given kind (`"step"`, `"key"`, `"base"`...).
    pub fn new(kind: &str) -> Self {
        let mut encoder = KeyEncoder {
            hasher: Sha256Hasher::new(),
        };
        encoder.field("version", KEY_VERSION.as_bytes());
        encoder.field("kind", kind.as_bytes());
        encoder
    }

    /// Appends one field: its tag and its bytes, each preceded by its length.
    pub fn field(&mut self, tag: &str, data: &[u8]) -> &mut Self {
        self.hasher.update(&(tag.len() as u64).to_be_bytes());
        self.hasher.update(tag.as_bytes());
        self.hasher.update(&(data.len() as u64).to_be_bytes());
        self.hasher.update(data);
        self
    }

    /// The digest of everything appended.
    pub fn finish(self) -> Digest {
        self.hasher.finish().0
    }
}

/// The key of a step: `digest(parent key, step digest, input digests...)`.
///
/// The engine calls this with the digests of the step's inputs in the order of
/// [`Step::inputs`](crate::Step::inputs); the planner calls it with none.
pub fn chain_key(parent: &Digest, step_digest: &Digest, input_digests: &[Digest]) -> Digest {
    let mut encoder = KeyEncoder::new("key");
    encoder.field("parent", parent.as_str().as_bytes());
    encoder.field("step", step_digest.as_str().as_bytes());
    for input in input_digests {
        encoder.field("input", input.as_str().as_bytes());
    }
    encoder.finish()
}

/// The key a stage starts from when it is `FROM scratch`.
pub fn scratch_base_key(platform: &str) -> Digest {
    let mut encoder = KeyEncoder::new("base");
    encoder.field("scratch", platform.as_bytes());
    encoder.finish()
}

/// The key a stage starts from when it is `FROM` an image: its manifest (or index) digest.
pub fn image_base_key(manifest_digest: &Digest) -> Digest {
    let mut encoder = KeyEncoder::new("base");
    encoder.field("image", manifest_digest.as_str().as_bytes());
    encoder.finish()
}

/// The input digest of files copied from another stage: that stage's final key and the paths.
pub fn stage_input_key(stage_key: &Digest, paths: &[String]) -> Digest {
    let mut encoder = KeyEncoder::new("stage-input");
    encoder.field("stage", stage_key.as_str().as_bytes());
    for path in paths {
        encoder.field("path", path.as_bytes());
    }
    encoder.finish()
}

/// The input digest of files copied from an image: its manifest digest and the paths.
pub fn image_input_key(manifest_digest: &Digest, paths: &[String]) -> Digest {
    let mut encoder = KeyEncoder::new("image-input");
    encoder.field("image", manifest_digest.as_str().as_bytes());
    for path in paths {
        encoder.field("path", path.as_bytes());
    }
    encoder.finish()
}

/// The input digest of a remote file of `ADD` pinned by `--checksum` (without one, its content
/// is only known after downloading it, so the step has no key before it runs).
pub fn url_input_key(url: &str, checksum: &str) -> Digest {
    let mut encoder = KeyEncoder::new("url-input");
    encoder
        .field("url", url.as_bytes())
        .field("checksum", checksum.as_bytes());
    encoder.finish()
}

/// The input digest of a remote file of `ADD` without `--checksum`, by the version the server
/// names it with (`etag:…` or `last-modified:…`): a server that changes a file without changing
/// its `ETag` or `Last-Modified` gives a stale cache hit, as any HTTP cache would.
pub fn url_validator_key(url: &str, validator: &str) -> Digest {
    let mut encoder = KeyEncoder::new("url-validator-input");
    encoder
        .field("url", url.as_bytes())
        .field("validator", validator.as_bytes());
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_keeps_field_boundaries() {
        let mut a = KeyEncoder::new("t");
        a.field("x", b"ab").field("y", b"c");
        let mut b = KeyEncoder::new("t");
        b.field("x", b"a").field("y", b"bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn chain_depends_on_every_part() {
        let p = Digest::sha256_of(b"parent");
        let s = Digest::sha256_of(b"step");
        let i = Digest::sha256_of(b"input");
        let base = chain_key(&p, &s, &[]);
        assert_eq!(base, chain_key(&p, &s, &[]));
        assert_ne!(base, chain_key(&s, &p, &[]));
        assert_ne!(base, chain_key(&p, &s, std::slice::from_ref(&i)));
        assert_ne!(
            chain_key(&p, &s, &[i.clone(), p.clone()]),
            chain_key(&p, &s, &[p.clone(), i])
        );
    }
}
