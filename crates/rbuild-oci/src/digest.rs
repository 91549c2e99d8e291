//! Content digests (`sha256:<hex>`) and the streaming hashers that compute them.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::OciError;

/// A content digest in the OCI grammar `algorithm:encoded`.
///
/// The registered algorithms are checked strictly (`sha256`: 64 lowercase hex digits, `sha512`:
/// 128); other algorithms are accepted when they follow the grammar, so that a document naming
/// one can still be decoded, but nothing in rbuild can verify them.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    /// The whole text, `algorithm:encoded`.
    text: String,
    /// Byte index of the `:`.
    colon: usize,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Digest {
    /// Parses and checks a digest string.
    pub fn parse(input: &str) -> Result<Digest, OciError> {
        let bad = |reason: &str| OciError::InvalidDigest {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let colon = input
            .find(':')
            .ok_or_else(|| bad("expected algorithm:encoded"))?;
        let (algorithm, encoded) = (&input[..colon], &input[colon + 1..]);
        if algorithm.is_empty() {
            return Err(bad("empty algorithm"));
        }
        if encoded.is_empty() {
            return Err(bad("empty encoded part"));
        }
        // algorithm ::= component (separator component)*, component ::= [a-z0-9]+, separator ::= [+._-]
        let mut previous_was_separator = true;
        for c in algorithm.chars() {
            let is_separator = matches!(c, '+' | '.' | '_' | '-');
            if is_separator && previous_was_separator {
                return Err(bad("algorithm has an empty component"));
            }
            if !(is_separator || c.is_ascii_lowercase() || c.is_ascii_digit()) {
                return Err(bad(
                    "algorithm may only contain [a-z0-9] and separators [+._-]",
                ));
            }
            previous_was_separator = is_separator;
        }
        if previous_was_separator {
            return Err(bad("algorithm ends with a separator"));
        }
        if !encoded
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '=' | '_' | '-'))
        {
            return Err(bad("encoded part may only contain [a-zA-Z0-9=_-]"));
        }
        let lower_hex = |s: &str| s.bytes().all(|b| HEX.contains(&b));
        match algorithm {
            "sha256" if encoded.len() != 64 || !lower_hex(encoded) => {
                return Err(bad("sha256 needs exactly 64 lowercase hex digits"))
            }
            "sha512" if encoded.len() != 128 || !lower_hex(encoded) => {
                return Err(bad("sha512 needs exactly 128 lowercase hex digits"))
            }
            _ => {}
        }
        Ok(Digest {
            text: input.to_string(),
            colon,
        })
    }

    /// The digest of a finished sha256 hash.
    pub fn from_sha256(bytes: [u8; 32]) -> Digest {
        let mut text = String::with_capacity(71);
        text.push_str("sha256:");
        for b in bytes {
            text.push(HEX[usize::from(b >> 4)] as char);
            text.push(HEX[usize::from(b & 15)] as char);
        }
        Digest { text, colon: 6 }
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest::from_sha256(Sha256::digest(data).into())
    }

    /// The algorithm, for example `sha256`.
    pub fn algorithm(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The encoded part (for sha256, the 64 hex digits).
    pub fn encoded(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// The whole digest as text, `algorithm:encoded`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is a sha256 digest (the only algorithm rbuild writes and verifies).
    pub fn is_sha256(&self) -> bool {
        self.algorithm() == "sha256"
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = OciError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An incremental sha256 that ends in a [`Digest`] and counts the bytes it saw.
#[derive(Clone, Default)]
pub struct Sha256Hasher {
    hasher: Sha256,
    len: u64,
}

impl Sha256Hasher {
    /// A hasher that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds more bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.len += data.len() as u64;
    }

    /// How many bytes were fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no byte was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything fed, and its length.
    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_sha256(self.hasher.finalize().into()), self.len)
    }
}

impl Write for Sha256Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A [`Write`] adapter that passes bytes on to `W` while hashing (sha256) and counting exactly
/// the bytes that `W` accepted.
pub struct DigestWriter<W: Write> {
    inner: W,
    hasher: Sha256Hasher,
}

impl<W: Write> DigestWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: Sha256Hasher::new(),
        }
    }

    /// Bytes written through so far.
    pub fn bytes_written(&self) -> u64 {
        self.hasher.len()
    }

    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The wrapped writer, mutably (bytes written to it directly are not hashed).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Ends the stream: the inner writer, the digest of all bytes written and their count.
    /// The inner writer is not flushed; call `flush` first if it buffers.
    pub fn finish(self) -> (W, Digest, u64) {
        let (digest, len) = self.hasher.finish();
        (self.inner, digest, len)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty_is_the_known_value() {
        assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY);
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.algorithm(), "sha256");
        assert_eq!(d.encoded().len(), 64);
        assert_eq!(d, Digest::sha256_of(b""));
    }

    #[test]
    fn bad_digests_are_refused() {
        for bad in [
            "",
            "sha256",
            ":abc",
            "sha256:",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c4",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256+:abc",
            "a..b:abc",
            "foo:ab/c",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            Digest::parse("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8")
                .is_ok()
        );
    }

    #[test]
    fn digest_writer_hashes_what_passes_through() {
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        assert_eq!(w.bytes_written(), 11);
        let (inner, digest, n) = w.finish();
        assert_eq!(inner, b"hello world");
        assert_eq!(n, 11);
        assert_eq!(digest, Digest::sha256_of(b"hello world"));
    }

    #[test]
    fn serde_is_the_plain_string() {
        let d = Digest::sha256_of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
