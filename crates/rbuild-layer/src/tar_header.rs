//! Encoding one tar entry's header as BuildKit's writer (Go's `archive/tar` in PAX format) does:
//! a USTAR header, preceded by a PAX extended header (`x`) only when a value does not fit USTAR
//! (long or non-ASCII names and link targets, large ids or sizes) or when the entry has xattrs.
//!
//! Every field is set here explicitly; nothing comes from the environment, so the same entry
//! always encodes to the same bytes.

use std::collections::BTreeMap;

/// The size of one tar block.
pub(crate) const BLOCK: usize = 512;

/// The type of an entry (the USTAR typeflag byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryType {
    Regular,
    HardLink,
    Symlink,
    Char,
    Block,
    Directory,
    Fifo,
}

impl EntryType {
    fn flag(self) -> u8 {
        match self {
            EntryType::Regular => b'0',
            EntryType::HardLink => b'1',
            EntryType::Symlink => b'2',
            EntryType::Char => b'3',
            EntryType::Block => b'4',
            EntryType::Directory => b'5',
            EntryType::Fifo => b'6',
        }
    }
}

/// Everything that goes into one entry's header(s).
pub(crate) struct HeaderFields<'a> {
    /// The entry's name; directories end in `/`.
    pub name: &'a [u8],
    pub entry_type: EntryType,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    /// Whole seconds since the epoch.
    pub mtime: i64,
    pub link_name: &'a [u8],
    pub dev_major: u64,
    pub dev_minor: u64,
    /// Extended attributes, kept as `SCHILY.xattr.<name>` PAX records.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Why an entry cannot be encoded.
#[derive(Debug)]
pub(crate) struct EncodeError(pub &'static str);

const NAME_LEN: usize = 100;
const PREFIX_LEN: usize = 155;
const MAX_OCTAL_7: u64 = 0o7777777;
const MAX_OCTAL_11: u64 = 0o77777777777;

/// Appends the encoded header(s) of `fields` to `out`: an optional PAX header with its records
/// (padded to a block) and then the USTAR header block.
pub(crate) fn encode(fields: &HeaderFields<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut pax: BTreeMap<Vec<u8>, &[u8]> = BTreeMap::new();
    let mut numbers: Vec<(&'static str, String)> = Vec::new();

    let (prefix, name) = match split_ustar_path(fields.name) {
        Some(split) => split,
        None => {
            pax.insert(b"path".to_vec(), fields.name);
            (&b""[..], truncate(fields.name, NAME_LEN))
        }
    };
    let link_name = if fields.link_name.len() > NAME_LEN || !fields.link_name.is_ascii() {
        pax.insert(b"linkpath".to_vec(), fields.link_name);
        truncate(fields.link_name, NAME_LEN)
    } else {
        fields.link_name
    };
    let uid = if fields.uid > MAX_OCTAL_7 {
        numbers.push(("uid", fields.uid.to_string()));
        0
    } else {
        fields.uid
    };
    let gid = if fields.gid > MAX_OCTAL_7 {
        numbers.push(("gid", fields.gid.to_string()));
        0
    } else {
        fields.gid
    };
    let size = if fields.size > MAX_OCTAL_11 {
        numbers.push(("size", fields.size.to_string()));
        0
    } else {
        fields.size
    };
    let mtime = if fields.mtime < 0 || fields.mtime as u64 > MAX_OCTAL_11 {
        numbers.push(("mtime", fields.mtime.to_string()));
        0
    } else {
        fields.mtime as u64
    };
    if fields.dev_major > MAX_OCTAL_7 || fields.dev_minor > MAX_OCTAL_7 {
        return Err(EncodeError("device number too large for a tar header"));
    }
    for (key, value) in &numbers {
        pax.insert(key.as_bytes().to_vec(), value.as_bytes());
    }
    for (xname, value) in fields.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(xname);
        pax.insert(key, value);
    }

    if !pax.is_empty() {
        let mut records = Vec::new();
        for (key, value) in &pax {
            push_pax_record(&mut records, key, value);
        }
        let pax_name = pax_header_name(fields.name);
        let header = ustar_block(&UstarBlock {
            name: truncate(&pax_name, NAME_LEN),
            prefix: b"",
            mode: 0,
            uid: 0,
            gid: 0,
            size: records.len() as u64,
            mtime: 0,
            flag: b'x',
            link_name: b"",
            dev_major: 0,
            dev_minor: 0,
        });
        out.extend_from_slice(&header);
        out.extend_from_slice(&records);
        pad_to_block(out);
    }

    out.extend_from_slice(&ustar_block(&UstarBlock {
        name,
        prefix,
        mode: u64::from(fields.mode & 0o7777),
        uid,
        gid,
        size,
        mtime,
        flag: fields.entry_type.flag(),
        link_name,
        dev_major: fields.dev_major,
        dev_minor: fields.dev_minor,
    }));
    Ok(())
}

/// Appends zero bytes so that `out`'s length is a whole number of blocks.
pub(crate) fn pad_to_block(out: &mut Vec<u8>) {
    let rem = out.len() % BLOCK;
    if rem != 0 {
        out.resize(out.len() + BLOCK - rem, 0);
    }
}

/// The number of zero bytes that follow `size` bytes of entry data.
pub(crate) fn padding_after(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 {
        0
    } else {
        BLOCK - rem
    }
}

/// Splits an ASCII name into USTAR (prefix, name) if it fits, as Go's `splitUSTARPath` does.
fn split_ustar_path(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if !path.is_ascii() {
        return None;
    }
    if path.len() <= NAME_LEN {
        return Some((b"", path));
    }
    let max_prefix = PREFIX_LEN.min(path.len() - 1);
    // The last `/` at or before index `max_prefix` whose remainder fits the name field.
    let slash = path[..=max_prefix].iter().rposition(|&b| b == b'/')?;
    let (prefix, name) = (&path[..slash], &path[slash + 1..]);
    if slash == 0 || name.is_empty() || name.len() > NAME_LEN {
        return None;
    }
    Some((prefix, name))
}

/// Go's name for a PAX header: `<dir>/PaxHeaders.0/<base>`.
fn pax_header_name(name: &[u8]) -> Vec<u8> {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    let mut out = dir.to_vec();
    out.extend_from_slice(b"PaxHeaders.0/");
    out.extend_from_slice(base);
    out
}

fn truncate(bytes: &[u8], len: usize) -> &[u8] {
    &bytes[..bytes.len().min(len)]
}

/// One PAX record `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
fn push_pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

struct UstarBlock<'a> {
    name: &'a [u8],
    prefix: &'a [u8],
    mode: u64,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    flag: u8,
    link_name: &'a [u8],
    dev_major: u64,
    dev_minor: u64,
}

fn ustar_block(b: &UstarBlock<'_>) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..b.name.len()].copy_from_slice(b.name);
    octal(&mut h[100..108], b.mode);
    octal(&mut h[108..116], b.uid);
    octal(&mut h[116..124], b.gid);
    octal(&mut h[124..136], b.size);
    octal(&mut h[136..148], b.mtime);
    h[156] = b.flag;
    h[157..157 + b.link_name.len()].copy_from_slice(b.link_name);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // uname and gname (265..329) stay empty: layers carry numeric ids only.
    octal(&mut h[329..337], b.dev_major);
    octal(&mut h[337..345], b.dev_minor);
    h[345..345 + b.prefix.len()].copy_from_slice(b.prefix);
    // The checksum is computed with its own field read as spaces.
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&x| u64::from(x)).sum();
    octal(&mut h[148..155], sum);
    h
}

/// Zero-padded octal digits filling all but the last byte of `field`, then NUL.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(name: &'a [u8], xattrs: &'a [(Vec<u8>, Vec<u8>)]) -> HeaderFields<'a> {
        HeaderFields {
            name,
            entry_type: EntryType::Regular,
            mode: 0o4755,
            uid: 1000,
            gid: 1000,
            size: 5,
            mtime: 1_700_000_000,
            link_name: b"",
            dev_major: 0,
            dev_minor: 0,
            xattrs,
        }
    }

    fn parse_one(bytes: &[u8]) -> (Vec<u8>, u32, u64) {
        let mut data = bytes.to_vec();
        data.extend_from_slice(b"hello");
        pad_to_block(&mut data);
        data.resize(data.len() + 2 * BLOCK, 0);
        let mut archive = tar::Archive::new(&data[..]);
        let mut entries = archive.entries().unwrap();
        let entry = entries.next().unwrap().unwrap();
        let path = entry.path_bytes().into_owned();
        let mode = entry.header().mode().unwrap();
        let size = entry.size();
        (path, mode, size)
    }

    #[test]
    fn a_short_name_is_one_ustar_block_with_a_valid_checksum() {
        let mut out = Vec::new();
        encode(&fields(b"usr/bin/tool", &[]), &mut out).unwrap();
        assert_eq!(out.len(), BLOCK);
        assert_eq!(&out[257..265], b"ustar\x0000");
        assert_eq!(&out[265..329], &[0u8; 64][..], "no user or group names");
        assert_eq!(parse_one(&out), (b"usr/bin/tool".to_vec(), 0o4755, 5));
    }

    #[test]
    fn a_long_ascii_name_is_split_into_prefix_and_name() {
        let name = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let mut out = Vec::new();
        encode(&fields(name.as_bytes(), &[]), &mut out).unwrap();
        assert_eq!(out.len(), BLOCK);
        assert_eq!(parse_one(&out).0, name.as_bytes());
    }

    #[test]
    fn non_ascii_or_very_long_names_and_xattrs_use_a_pax_header() {
        let name = b"caf\xe9/"
            .iter()
            .copied()
            .chain([b'x'; 300])
            .collect::<Vec<u8>>();
        let xattrs = vec![(b"user.k".to_vec(), b"v\0\xff".to_vec())];
        let mut out = Vec::new();
        encode(&fields(&name, &xattrs), &mut out).unwrap();
        assert_eq!(out[156], b'x');
        assert_eq!(parse_one(&out).0, name);
        let mut data = out.clone();
        data.extend_from_slice(b"hello");
        pad_to_block(&mut data);
        data.resize(data.len() + 2 * BLOCK, 0);
        let mut archive = tar::Archive::new(&data[..]);
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        let records: Vec<(String, Vec<u8>)> = entry
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (r.key().unwrap().to_owned(), r.value_bytes().to_vec())
            })
            .collect();
        assert!(records.contains(&("SCHILY.xattr.user.k".to_owned(), b"v\0\xff".to_vec())));
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        for value_len in [0, 1, 5, 6, 7, 90, 95, 96, 97, 1000] {
            let mut out = Vec::new();
            push_pax_record(&mut out, b"path", &vec![b'a'; value_len]);
            let space = out.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&out[..space]).unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "value length {value_len}");
        }
    }
}
