//! rpm's sqlite database (`rpmdb.sqlite`, rpm ≥ 4.16): table `Packages(hnum, blob)`, each
//! blob an rpm header. The header is parsed here, every offset and count checked against the
//! blob; nothing of rpm runs.
//!
//! Header layout (rpm's `headerImport`): `il` (u32 BE, index entries), `dl` (u32 BE, data
//! bytes), `il` entries of 16 bytes (`tag`, `type`, `offset`, `count`, u32 BE each), then the
//! data. Only the tags below are read.

use super::{Package, PackageManager, MAX_PACKAGES};
use std::path::Path;

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_VENDOR: u32 = 1011;
const TAG_LICENSE: u32 = 1014;
const TAG_ARCH: u32 = 1022;
const TAG_DIRINDEXES: u32 = 1116;
const TAG_BASENAMES: u32 = 1117;
const TAG_DIRNAMES: u32 = 1118;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// Most index entries and strings of one header considered (rpm's own limit is 0xffff
/// entries and 256 MB of data).
const MAX_HEADER_ENTRIES: usize = 0xffff;

/// The packages of an rpm sqlite database file.
pub fn parse_rpmdb_sqlite(path: &Path) -> Result<Vec<Package>, String> {
    use rusqlite::{Connection, OpenFlags};
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("not an sqlite database: {e}"))?;
    // The file comes from an image: no code from its schema (triggers, views' functions).
    connection
        .execute_batch("PRAGMA trusted_schema = OFF; PRAGMA query_only = ON;")
        .map_err(|e| e.to_string())?;
    let mut statement = connection
        .prepare("SELECT blob FROM Packages ORDER BY hnum")
        .map_err(|e| format!("no Packages table: {e}"))?;
    let mut rows = statement.query([]).map_err(|e| e.to_string())?;
    let mut packages = Vec::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        if packages.len() >= MAX_PACKAGES {
            break;
        }
        let blob: Vec<u8> = row.get(0).map_err(|e| e.to_string())?;
        match parse_rpm_header(&blob) {
            Ok(Some(p)) => packages.push(p),
            Ok(None) => {}
            Err(reason) => return Err(format!("package {}: {reason}", packages.len() + 1)),
        }
    }
    Ok(packages)
}

/// One package from an rpm header blob (`None` for a header without a name, such as the
/// gpg-pubkey pseudo-packages' lack of files is fine, but a nameless one is skipped).
pub fn parse_rpm_header(blob: &[u8]) -> Result<Option<Package>, String> {
    let be = |at: usize| -> Result<u32, String> {
        blob.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "header is cut short".to_string())
    };
    let il = be(0)? as usize;
    let dl = be(4)? as usize;
    if il == 0 || il > MAX_HEADER_ENTRIES {
        return Err(format!("header has {il} entries"));
    }
    let data_start = 8 + il * 16;
    let data = blob
        .get(data_start..data_start.checked_add(dl).ok_or("header size overflows")?)
        .ok_or_else(|| format!("header announces {dl} data bytes past its end"))?;
    let mut entries = Vec::with_capacity(il);
    for i in 0..il {
        let at = 8 + i * 16;
        entries.push((
            be(at)?,
            be(at + 4)?,
            be(at + 8)? as usize,
            be(at + 12)? as usize,
        ));
    }
    let find = |tag: u32| entries.iter().find(|e| e.0 == tag).copied();
    let strings = |tag: u32| -> Result<Vec<String>, String> {
        let Some((_, kind, offset, count)) = find(tag) else {
            return Ok(Vec::new());
        };
        if !matches!(kind, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return Err(format!("tag {tag} has type {kind}, not a string"));
        }
        let count = if kind == TYPE_STRING { 1 } else { count };
        if count > data.len() {
            return Err(format!(
                "tag {tag} counts {count} strings in {} bytes",
                data.len()
            ));
        }
        let mut out = Vec::with_capacity(count);
        let mut at = offset;
        for _ in 0..count {
            let rest = data
                .get(at..)
                .ok_or_else(|| format!("tag {tag} points past the data"))?;
            let end = rest
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| format!("tag {tag}: a string without its end"))?;
            out.push(String::from_utf8_lossy(&rest[..end]).into_owned());
            at += end + 1;
        }
        Ok(out)
    };
    let ints = |tag: u32| -> Result<Vec<u32>, String> {
        let Some((_, kind, offset, count)) = find(tag) else {
            return Ok(Vec::new());
        };
        if kind != TYPE_INT32 {
            return Err(format!("tag {tag} has type {kind}, not int32"));
        }
        let bytes = count
            .checked_mul(4)
            .and_then(|n| data.get(offset..offset.checked_add(n)?))
            .ok_or_else(|| format!("tag {tag} points past the data"))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    let first = |tag: u32| -> Result<Option<String>, String> {
        Ok(strings(tag)?.into_iter().next().filter(|s| !s.is_empty()))
    };
    let Some(name) = first(TAG_NAME)? else {
        return Ok(None);
    };
    let version = first(TAG_VERSION)?.unwrap_or_default();
    let release = first(TAG_RELEASE)?;
    let epoch = ints(TAG_EPOCH)?.first().copied();
    let mut full = String::new();
    if let Some(e) = epoch {
        full.push_str(&format!("{e}:"));
    }
    full.push_str(&version);
    if let Some(r) = release {
        full.push('-');
        full.push_str(&r);
    }
    let (dirs, bases, indexes) = (
        strings(TAG_DIRNAMES)?,
        strings(TAG_BASENAMES)?,
        ints(TAG_DIRINDEXES)?,
    );
    if bases.len() != indexes.len() {
        return Err(format!(
            "{} base names but {} directory indexes",
            bases.len(),
            indexes.len()
        ));
    }
    let mut files = Vec::with_capacity(bases.len());
    for (base, index) in bases.iter().zip(&indexes) {
        let dir = dirs
            .get(*index as usize)
            .ok_or_else(|| format!("directory index {index} of {} names", dirs.len()))?;
        files.push(super::image_path(&format!("{dir}{base}")));
    }
    Ok(Some(Package {
        manager: Some(PackageManager::Rpm),
        name,
        version: full,
        arch: first(TAG_ARCH)?,
        license: first(TAG_LICENSE)?,
        supplier: first(TAG_VENDOR)?,
        files,
    }))
}

/// Test helper: an rpm header blob with string tags, int32 tags and string arrays.
#[cfg(test)]
pub(crate) fn header_blob(
    strings: &[(u32, &str)],
    ints: &[(u32, u32)],
    arrays: &[(u32, &[&str])],
) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data = Vec::new();
    for (tag, s) in strings {
        index.push((*tag, TYPE_STRING, data.len(), 1));
        data.extend_from_slice(s.as_bytes());
        data.push(0);
    }
    for (tag, items) in arrays {
        index.push((*tag, TYPE_STRING_ARRAY, data.len(), items.len()));
        for s in *items {
            data.extend_from_slice(s.as_bytes());
            data.push(0);
        }
    }
    for (tag, values) in ints {
        while data.len() % 4 != 0 {
            data.push(0);
        }
        index.push((*tag, TYPE_INT32, data.len(), 1));
        data.extend_from_slice(&values.to_be_bytes());
    }
    let mut blob = Vec::new();
    blob.extend_from_slice(&(index.len() as u32).to_be_bytes());
    blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
    for (tag, kind, offset, count) in index {
        for v in [tag, kind, offset as u32, count as u32] {
            blob.extend_from_slice(&v.to_be_bytes());
        }
    }
    blob.extend_from_slice(&data);
    blob
}

/// Test helper: an `rpmdb.sqlite` with these header blobs, at `path`.
#[cfg(test)]
pub(crate) fn write_rpmdb(path: &Path, blobs: &[Vec<u8>]) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);",
    )
    .unwrap();
    for b in blobs {
        c.execute("INSERT INTO Packages (blob) VALUES (?1)", [b])
            .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bash() -> Vec<u8> {
        header_blob(
            &[
                (TAG_NAME, "bash"),
                (TAG_VERSION, "5.2.26"),
                (TAG_RELEASE, "3.fc40"),
                (TAG_ARCH, "x86_64"),
                (TAG_LICENSE, "GPL-3.0-or-later"),
            ],
            &[(TAG_EPOCH, 1), (TAG_DIRINDEXES, 0)],
            &[(TAG_DIRNAMES, &["/usr/bin/"]), (TAG_BASENAMES, &["bash"])],
        )
    }

    #[test]
    fn a_header_gives_name_version_and_files() {
        let p = parse_rpm_header(&bash()).unwrap().unwrap();
        assert_eq!(p.name, "bash");
        assert_eq!(p.version, "1:5.2.26-3.fc40");
        assert_eq!(p.arch.as_deref(), Some("x86_64"));
        assert_eq!(p.files, vec!["usr/bin/bash"]);
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        let good = bash();
        for cut in 0..good.len() {
            let _ = parse_rpm_header(&good[..cut]);
        }
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_rpm_header(&huge).is_err());
        let mut far = good.clone();
        // The first entry's offset points far past the data.
        far[16..20].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
        assert!(parse_rpm_header(&far).is_err());
        let mut many = good;
        // A string-array count far beyond the data.
        let n = u32::from_be_bytes([many[0], many[1], many[2], many[3]]) as usize;
        for i in 0..n {
            let at = 8 + i * 16;
            if many[at + 4..at + 8] == TYPE_STRING_ARRAY.to_be_bytes() {
                many[at + 12..at + 16].copy_from_slice(&u32::MAX.to_be_bytes());
            }
        }
        assert!(parse_rpm_header(&many).is_err());
    }

    #[test]
    fn sqlite_database_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("rpmdb.sqlite");
        write_rpmdb(&db, &[bash()]);
        let p = parse_rpmdb_sqlite(&db).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "bash");
        std::fs::write(dir.path().join("junk"), b"not sqlite at all, just text").unwrap();
        assert!(parse_rpmdb_sqlite(&dir.path().join("junk")).is_err());
    }
}
