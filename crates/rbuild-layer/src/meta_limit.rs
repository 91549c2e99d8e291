//! A guard in front of the tar reader that bounds memory: the `tar` crate reads a PAX header or
//! a GNU long name/link entry whole into memory, so a layer (a gzip bomb, say) could announce a
//! gigabyte-long "name". This reader follows the tar structure as the bytes pass through and
//! fails the stream when such a metadata entry is larger than [`MAX_META_SIZE`]. It tracks the
//! PAX `size` record, which changes where the next header starts, and stops at the first zero
//! block, where the `tar` crate stops reading entries.

use std::io::{self, Read};

/// The largest PAX header or GNU long name/link entry accepted.
pub(crate) const MAX_META_SIZE: u64 = 1024 * 1024;

const BLOCK: u64 = 512;

enum State {
    /// Collecting a 512-byte header.
    Header { buf: Box<[u8; 512]>, filled: usize },
    /// Passing `remaining` bytes of entry data (and padding).
    Data { remaining: u64 },
    /// Collecting a PAX header's records, to find a `size` record.
    Pax {
        buf: Vec<u8>,
        remaining: u64,
        padding: u64,
    },
    /// After the end-of-archive block: nothing more is checked.
    Done,
}

pub(crate) struct MetaLimit<R> {
    inner: R,
    state: State,
    /// A PAX `size` for the next entry.
    size_override: Option<u64>,
}

impl<R: Read> MetaLimit<R> {
    pub(crate) fn new(inner: R) -> Self {
        MetaLimit {
            inner,
            state: new_header(),
            size_override: None,
        }
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    fn track(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match &mut self.state {
                State::Done => return Ok(()),
                State::Header { buf, filled } => {
                    let n = data.len().min(512 - *filled);
                    buf[*filled..*filled + n].copy_from_slice(&data[..n]);
                    *filled += n;
                    data = &data[n..];
                    if *filled == 512 {
                        let header = **buf;
                        self.state = self.after_header(&header)?;
                    }
                }
                State::Data { remaining } => {
                    let n = (data.len() as u64).min(*remaining);
                    *remaining -= n;
                    data = &data[n as usize..];
                    if *remaining == 0 {
                        self.state = new_header();
                    }
                }
                State::Pax {
                    buf,
                    remaining,
                    padding,
                } => {
                    let n = (data.len() as u64).min(*remaining) as usize;
                    buf.extend_from_slice(&data[..n]);
                    *remaining -= n as u64;
                    data = &data[n..];
                    if *remaining == 0 {
                        self.size_override = pax_size(buf);
                        self.state = if *padding == 0 {
                            new_header()
                        } else {
                            State::Data {
                                remaining: *padding,
                            }
                        };
                    }
                }
            }
        }
        Ok(())
    }

    fn after_header(&mut self, header: &[u8; 512]) -> io::Result<State> {
        if header.iter().all(|&b| b == 0) {
            return Ok(State::Done);
        }
        let flag = header[156];
        let Some(field_size) = parse_size(&header[124..136]) else {
            // The tar crate reports the bad header; nothing more to follow here.
            return Ok(State::Done);
        };
        let is_meta = matches!(flag, b'x' | b'g' | b'L' | b'K');
        if is_meta && field_size > MAX_META_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a {} header of {field_size} bytes (more than {MAX_META_SIZE})",
                    match flag {
                        b'x' | b'g' => "PAX",
                        _ => "GNU long name",
                    }
                ),
            ));
        }
        let size = if is_meta {
            field_size
        } else {
            self.size_override.take().unwrap_or(field_size)
        };
        let padded = size.div_ceil(BLOCK) * BLOCK;
        Ok(if flag == b'x' && size > 0 {
            State::Pax {
                buf: Vec::with_capacity(size as usize),
                remaining: size,
                padding: padded - size,
            }
        } else if padded == 0 {
            new_header()
        } else {
            State::Data { remaining: padded }
        })
    }
}

impl<R: Read> Read for MetaLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.track(&buf[..n])?;
        Ok(n)
    }
}

fn new_header() -> State {
    State::Header {
        buf: Box::new([0; 512]),
        filled: 0,
    }
}

/// A numeric header field: octal text, or GNU base-256 (high bit set).
fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ')
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

/// The `size` record of PAX records, if any.
fn pax_size(records: &[u8]) -> Option<u64> {
    let mut rest = records;
    let mut size = None;
    while !rest.is_empty() {
        // A malformed record ends the scan; the tar crate reports it.
        let Some(space) = rest.iter().position(|&b| b == b' ') else {
            return size;
        };
        let Some(len) = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
        else {
            return size;
        };
        if len <= space || len > rest.len() {
            return size;
        }
        let record = &rest[space + 1..len];
        if let Some(value) = record.strip_prefix(b"size=") {
            let value = value.strip_suffix(b"\n").unwrap_or(value);
            size = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        }
        rest = &rest[len..];
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_size_records_are_found() {
        assert_eq!(pax_size(b"12 size=345\n17 path=a/b/cdef\n"), Some(345));
        assert_eq!(pax_size(b"17 path=a/b/cdef\n12 size=345\n"), Some(345));
        assert_eq!(pax_size(b"17 path=a/b/cdef\n"), None);
    }

    #[test]
    fn size_fields_parse_as_octal_or_base_256() {
        assert_eq!(parse_size(b"00000001750\0"), Some(1000));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 1;
        big[10] = 1;
        assert_eq!(parse_size(&big), Some(257));
    }
}
