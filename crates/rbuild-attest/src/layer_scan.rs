//! One pass over a layer blob: decompressed as it is read (gzip, zstd or plain, told by its
//! first bytes), its tar entries give the uncompressed size, the largest files, the whiteouts
//! and, when asked, every file's sha256 and the package databases it carries. The result
//! depends only on the blob's bytes, so a caller may keep it by the blob's digest.

use crate::packages::{self, DbKind, Package};
use crate::record::FileSize;
use crate::AttestError;
use rbuild_oci::Sha256Hasher;
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, BufReader, Read};

/// How many of a layer's largest files are kept.
pub const TOP_FILES: usize = 10;

/// The most files of one layer listed (and hashed) for the SBOM; files past it are counted,
/// not listed, and the SBOM says how many were left out.
pub const MAX_HASHED_FILES: usize = 200_000;

/// What to gather besides sizes and whiteouts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// List every regular file, with its sha256 (for the SBOM's files).
    pub files: bool,
    /// Read package databases (for the SBOM's packages).
    pub packages: bool,
}

/// What one layer holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerScan {
    /// The options it was made with (a scan with more serves a request for less).
    pub listed_files: bool,
    /// Whether package databases were read.
    pub read_packages: bool,
    /// The tar stream's size.
    pub uncompressed_size: u64,
    /// The tar stream's sha256 (the layer's diffID), as read: scans are kept by it.
    #[serde(default)]
    pub diff_id: Option<String>,
    /// Tar entries.
    pub entries: u64,
    /// The largest regular files, largest first.
    pub top_files: Vec<FileSize>,
    /// Every whiteout: `path` (deleted) or `dir/` (opaque), in tar order.
    pub whiteouts: Vec<String>,
    /// Regular files (hard links included), when `listed_files`, at most [`MAX_HASHED_FILES`].
    pub files: Vec<ScannedFile>,
    /// Regular files past [`MAX_HASHED_FILES`], counted only.
    #[serde(default)]
    pub files_left_out: u64,
    /// Package databases (status files, `.list` files, apk and rpm databases) found.
    pub databases: Vec<FoundDatabase>,
    /// Databases that could not be read, one line each.
    pub problems: Vec<String>,
}

/// A regular file of a layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannedFile {
    /// Its path, no leading `/`.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// Its sha256 (hex), unless the hashing bound was reached.
    pub sha256: Option<String>,
}

/// A package database file found in a layer, already parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundDatabase {
    /// Its path.
    pub path: String,
    /// The packages it lists (status, apk, rpm databases).
    pub packages: Vec<Package>,
    /// The files it lists (dpkg `.list` files).
    pub owned_files: Vec<String>,
}

impl LayerScan {
    /// Whether this scan has what `options` asks for.
    pub fn serves(&self, options: ScanOptions) -> bool {
        (self.listed_files || !options.files) && (self.read_packages || !options.packages)
    }
}

/// Reads a layer blob and gathers what `options` asks for, and the tar's diffID. `label`
/// names it in errors.
pub fn scan_layer(
    blob: impl Read,
    options: ScanOptions,
    label: &str,
) -> Result<LayerScan, AttestError> {
    scan(blob, options, label, true)
}

/// [`scan_layer`] of a tar whose diffID the caller already has (the layer writer computed
/// it): the stream is not hashed a second time and [`LayerScan::diff_id`] is left `None`.
pub fn scan_written_tar(
    tar: impl Read,
    options: ScanOptions,
    label: &str,
) -> Result<LayerScan, AttestError> {
    scan(tar, options, label, false)
}

fn scan(
    blob: impl Read,
    options: ScanOptions,
    label: &str,
    hash_stream: bool,
) -> Result<LayerScan, AttestError> {
    let fail = |reason: String| AttestError::Layer {
        digest: label.to_owned(),
        reason,
    };
    let mut input = BufReader::with_capacity(256 << 10, blob);
    let magic = input.fill_buf().map_err(|e| fail(e.to_string()))?;
    let decoded: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(input))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(input).map_err(|e| fail(e.to_string()))?)
    } else {
        Box::new(input)
    };
    let mut counted = Counting {
        inner: decoded,
        count: 0,
        hasher: hash_stream.then(Sha256Hasher::new),
    };
    let mut scan = LayerScan {
        listed_files: options.files,
        read_packages: options.packages,
        ..LayerScan::default()
    };
    let mut archive = tar::Archive::new(&mut counted);
    let entries = archive.entries().map_err(|e| fail(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| fail(format!("tar entry {}: {e}", scan.entries + 1)))?;
        scan.entries += 1;
        let path = packages::image_path(&String::from_utf8_lossy(&entry.path_bytes()));
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (Some(d), n),
            None => (None, path.as_str()),
        };
        if name == ".wh..wh..opq" {
            scan.whiteouts.push(
                format!("{}/", dir.unwrap_or_default())
                    .trim_start_matches('/')
                    .to_owned(),
            );
            continue;
        }
        if let Some(gone) = name.strip_prefix(".wh.") {
            scan.whiteouts.push(match dir {
                Some(d) => format!("{d}/{gone}"),
                None => gone.to_owned(),
            });
            continue;
        }
        let kind = entry.header().entry_type();
        let size = entry.size();
        if kind.is_hard_link() {
            if options.files {
                let target = entry
                    .link_name_bytes()
                    .map(|t| packages::image_path(&String::from_utf8_lossy(&t)));
                let same = target.and_then(|t| scan.files.iter().find(|f| f.path == t).cloned());
                if let Some(same) = same {
                    scan.files.push(ScannedFile { path, ..same });
                }
            }
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            continue;
        }
        keep_largest(&mut scan.top_files, &path, size);
        let db = if options.packages {
            packages::db_kind(&path)
        } else {
            None
        };
        let mut content = None;
        if let Some(kind) = db {
            if size <= packages::MAX_PACKAGE_DB_BYTES {
                let mut bytes = Vec::with_capacity(size as usize);
                (&mut entry)
                    .take(packages::MAX_PACKAGE_DB_BYTES)
                    .read_to_end(&mut bytes)
                    .map_err(|e| fail(format!("{path}: {e}")))?;
                content = Some(bytes);
                let bytes = content.as_deref().unwrap_or_default();
                match read_database(kind, &path, bytes) {
                    Ok(found) => scan.databases.push(found),
                    Err(e) => scan.problems.push(e.to_string()),
                }
            } else {
                scan.problems.push(format!(
                    "{path}: {size} bytes, larger than the limit; not read"
                ));
            }
        }
        if options.files {
            if scan.files.len() >= MAX_HASHED_FILES {
                scan.files_left_out += 1;
                continue;
            }
            let mut hasher = Sha256Hasher::new();
            match &content {
                Some(bytes) => hasher.update(bytes),
                None => {
                    io::copy(&mut entry, &mut hasher).map_err(|e| fail(format!("{path}: {e}")))?;
                }
            }
            let sha256 = Some(hasher.finish().0.encoded().to_owned());
            scan.files.push(ScannedFile { path, size, sha256 });
        }
    }
    // Whatever follows the tar's end (padding blocks) belongs to the stream too.
    io::copy(&mut counted, &mut io::sink()).map_err(|e| fail(e.to_string()))?;
    scan.uncompressed_size = counted.count;
    scan.diff_id = counted.hasher.map(|h| h.finish().0.to_string());
    Ok(scan)
}

fn read_database(kind: DbKind, path: &str, bytes: &[u8]) -> Result<FoundDatabase, AttestError> {
    let mut found = FoundDatabase {
        path: path.to_owned(),
        ..FoundDatabase::default()
    };
    let text = || String::from_utf8_lossy(bytes);
    match kind {
        DbKind::DpkgStatus => found.packages = packages::parse_dpkg_status(&text()),
        DbKind::DpkgList => found.owned_files = packages::parse_dpkg_list(&text()),
        DbKind::ApkInstalled => found.packages = packages::parse_apk_installed(&text()),
        DbKind::RpmSqlite => {
            let problem = |reason: String| AttestError::PackageDb {
                path: path.to_owned(),
                reason,
            };
            let mut file = tempfile::NamedTempFile::new().map_err(|e| problem(e.to_string()))?;
            io::Write::write_all(&mut file, bytes).map_err(|e| problem(e.to_string()))?;
            found.packages = packages::parse_rpmdb_sqlite(file.path()).map_err(problem)?;
        }
    }
    Ok(found)
}

fn keep_largest(top: &mut Vec<FileSize>, path: &str, size: u64) {
    if top.len() == TOP_FILES && top.last().is_some_and(|l| l.size >= size) {
        return;
    }
    let at = top.partition_point(|f| f.size >= size);
    top.insert(
        at,
        FileSize {
            path: path.to_owned(),
            size,
        },
    );
    top.truncate(TOP_FILES);
}

/// Counts and hashes what is read through it.
struct Counting<R> {
    inner: R,
    count: u64,
    hasher: Option<Sha256Hasher>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Reads the byte chunks a channel delivers, in order, until its senders are gone (the
/// reading side of [`scan_layer`] over a tar copied while the layer is written).
#[derive(Debug)]
pub struct ChunkReader {
    chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl ChunkReader {
    /// A reader of what `chunks` receives.
    pub fn new(chunks: std::sync::mpsc::Receiver<Vec<u8>>) -> ChunkReader {
        ChunkReader {
            chunks,
            current: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tar of `(path, content)` pairs; a `None` content makes a directory.
    pub(crate) fn tar_of(items: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in items {
            let mut h = tar::Header::new_gnu();
            match content {
                Some(c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, *c).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut e, data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn sizes_whiteouts_files_and_packages_in_one_pass() {
        let big = vec![7u8; 5000];
        let tar = tar_of(&[
            ("etc/", None),
            ("etc/.wh..wh..opq", Some(b"")),
            ("usr/.wh.old", Some(b"")),
            (".wh.gone", Some(b"")),
            ("usr/big", Some(&big)),
            ("usr/small", Some(b"hi")),
            (
                "var/lib/dpkg/status",
                Some(b"Package: hello\nStatus: install ok installed\nVersion: 2.10-3\n"),
            ),
            (
                "var/lib/dpkg/info/hello.list",
                Some(b"/.\n/usr\n/usr/small\n"),
            ),
        ]);
        let blob = gzip(&tar);
        let options = ScanOptions {
            files: true,
            packages: true,
        };
        let scan = scan_layer(&blob[..], options, "test").unwrap();
        assert_eq!(scan.uncompressed_size, tar.len() as u64);
        assert_eq!(
            scan.diff_id,
            Some(rbuild_oci::Digest::sha256_of(&tar).to_string())
        );
        // The same scan from the tar delivered in chunks.
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let chunks: Vec<Vec<u8>> = tar.chunks(777).map(<[u8]>::to_vec).collect();
        let feeder = std::thread::spawn(move || {
            for c in chunks {
                tx.send(c).unwrap();
            }
        });
        let streamed = scan_written_tar(ChunkReader::new(rx), options, "test").unwrap();
        feeder.join().unwrap();
        assert_eq!(streamed.diff_id, None);
        assert_eq!(
            LayerScan {
                diff_id: scan.diff_id.clone(),
                ..streamed
            },
            scan
        );
        assert_eq!(scan.entries, 8);
        assert_eq!(scan.whiteouts, vec!["etc/", "usr/old", "gone"]);
        assert_eq!(scan.top_files[0].path, "usr/big");
        assert_eq!(scan.top_files[0].size, 5000);
        let small = scan.files.iter().find(|f| f.path == "usr/small").unwrap();
        assert_eq!(
            small.sha256.as_deref(),
            Some(rbuild_oci::Digest::sha256_of(b"hi").encoded())
        );
        assert_eq!(scan.databases.len(), 2);
        assert_eq!(scan.databases[0].packages[0].name, "hello");
        assert_eq!(scan.databases[1].owned_files, vec!["usr", "usr/small"]);
        // Without the options: no file list, no database read; the same sizes.
        let plain = scan_layer(&tar[..], ScanOptions::default(), "test").unwrap();
        assert!(plain.files.is_empty() && plain.databases.is_empty());
        assert_eq!(plain.top_files, scan.top_files);
        assert!(scan.serves(ScanOptions::default()) && !plain.serves(options));
    }

    #[test]
    fn rpm_and_apk_databases_in_a_layer_are_read_and_junk_is_a_problem_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("rpmdb.sqlite");
        let header = crate::packages::rpm::header_blob(
            &[
                (1000, "bash"),
                (1001, "5.2"),
                (1002, "1.fc40"),
                (1022, "x86_64"),
            ],
            &[(1116, 0)],
            &[(1118, &["/usr/bin/"]), (1117, &["bash"])],
        );
        crate::packages::rpm::write_rpmdb(&db, &[header]);
        let rpmdb = std::fs::read(&db).unwrap();
        let tar = tar_of(&[
            ("usr/lib/sysimage/rpm/rpmdb.sqlite", Some(&rpmdb)),
            (
                "lib/apk/db/installed",
                Some(b"P:musl\nV:1.2.5-r0\nF:lib\nR:libc.so\n"),
            ),
            ("var/lib/rpm/rpmdb.sqlite", Some(b"hostile: not a database")),
        ]);
        let options = ScanOptions {
            files: true,
            packages: true,
        };
        let scan = scan_layer(&tar[..], options, "t").unwrap();
        let names: Vec<&str> = scan
            .databases
            .iter()
            .flat_map(|d| d.packages.iter().map(|p| p.name.as_str()))
            .collect();
        assert_eq!(names, vec!["bash", "musl"]);
        assert_eq!(scan.databases[0].packages[0].files, vec!["usr/bin/bash"]);
        assert_eq!(scan.problems.len(), 1, "{:?}", scan.problems);
        assert!(scan.problems[0].starts_with("var/lib/rpm/rpmdb.sqlite in the image: "));
    }

    #[test]
    fn a_broken_layer_is_an_error_naming_it() {
        let blob = gzip(&tar_of(&[("a", Some(b"x"))]));
        let e = scan_layer(
            &blob[..blob.len() / 2],
            ScanOptions::default(),
            "sha256:abc",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("layer sha256:abc: "), "{e}");
    }

    #[test]
    fn only_ten_largest_files_are_kept() {
        let mut top = Vec::new();
        for i in 0..50u64 {
            keep_largest(&mut top, &format!("f{i}"), i * 7 % 31);
        }
        assert_eq!(top.len(), TOP_FILES);
        assert!(top.windows(2).all(|w| w[0].size >= w[1].size));
        assert_eq!(top[0].size, 30);
    }
}
