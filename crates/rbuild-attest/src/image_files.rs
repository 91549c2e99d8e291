//! The final image's filesystem as the SBOM sees it: the layer scans applied in order, each
//! layer's whiteouts removing what the layers below it hold, as a runtime would unpack them.

use crate::layer_scan::{FoundDatabase, LayerScan, ScannedFile};
use crate::packages::Package;
use std::collections::{BTreeMap, BTreeSet};

/// The files and package databases visible in the final image.
#[derive(Debug, Default)]
pub struct ImageFiles {
    files: BTreeMap<String, ScannedFile>,
    databases: BTreeMap<String, FoundDatabase>,
    /// Problems the scans met.
    pub problems: Vec<String>,
    /// Files the scans counted but did not list (past their bound).
    pub files_left_out: u64,
}

impl ImageFiles {
    /// Applies `scans` (base layer first).
    pub fn from_scans<'a>(scans: impl IntoIterator<Item = &'a LayerScan>) -> ImageFiles {
        let mut image = ImageFiles::default();
        for scan in scans {
            for gone in &scan.whiteouts {
                image.remove(gone);
            }
            for file in &scan.files {
                image.files.insert(file.path.clone(), file.clone());
            }
            for db in &scan.databases {
                image.databases.insert(db.path.clone(), db.clone());
            }
            image.problems.extend(scan.problems.iter().cloned());
            image.files_left_out += scan.files_left_out;
        }
        image
    }

    /// `dir/` (opaque: everything below it) or `path` (it and everything below it).
    fn remove(&mut self, gone: &str) {
        let prefix = if gone.ends_with('/') || gone.is_empty() {
            gone.to_owned()
        } else {
            self.files.remove(gone);
            self.databases.remove(gone);
            format!("{gone}/")
        };
        remove_prefix(&mut self.files, &prefix);
        remove_prefix(&mut self.databases, &prefix);
    }

    /// The installed packages, sorted by manager, name and version, without duplicates.
    pub fn packages(&self) -> Vec<&Package> {
        let mut all: Vec<&Package> = self.databases.values().flat_map(|d| &d.packages).collect();
        all.sort_by(|a, b| {
            (a.manager, &a.name, &a.version, &a.arch)
                .cmp(&(b.manager, &b.name, &b.version, &b.arch))
        });
        all.dedup_by(|a, b| {
            (a.manager, &a.name, &a.version, &a.arch) == (b.manager, &b.name, &b.version, &b.arch)
        });
        all
    }

    /// Regular files no package owns, by path.
    pub fn unowned_files(&self) -> Vec<&ScannedFile> {
        let owned: BTreeSet<&str> = self
            .databases
            .values()
            .flat_map(|d| {
                d.owned_files
                    .iter()
                    .chain(d.packages.iter().flat_map(|p| &p.files))
            })
            .map(String::as_str)
            .collect();
        self.files
            .values()
            .filter(|f| !owned.contains(f.path.as_str()))
            .collect()
    }
}

fn remove_prefix<V>(map: &mut BTreeMap<String, V>, prefix: &str) {
    if prefix.is_empty() {
        map.clear();
        return;
    }
    let doomed: Vec<String> = map
        .range(prefix.to_owned()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer_scan::tests::tar_of;
    use crate::layer_scan::{scan_layer, ScanOptions};

    fn scan(items: &[(&str, Option<&[u8]>)]) -> LayerScan {
        let options = ScanOptions {
            files: true,
            packages: true,
        };
        scan_layer(&tar_of(items)[..], options, "t").unwrap()
    }

    #[test]
    fn whiteouts_hide_lower_files_and_databases() {
        let base = scan(&[
            ("bin/sh", Some(b"sh")),
            ("usr/bin/hello", Some(b"hello")),
            ("opt/a/x", Some(b"x")),
            ("opt/ab", Some(b"ab")),
            ("var/lib/dpkg/status", Some(b"Package: hello\nVersion: 1\n")),
            ("var/lib/dpkg/info/hello.list", Some(b"/usr/bin/hello\n")),
        ]);
        let top = scan(&[
            (".wh.opt", Some(b"")),
            ("opt/", None),
            ("opt/new", Some(b"n")),
            ("var/lib/dpkg/.wh..wh..opq", Some(b"")),
            ("etc/app.conf", Some(b"c")),
        ]);
        let image = ImageFiles::from_scans([&base, &top]);
        let unowned: Vec<&str> = image
            .unowned_files()
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        // The database went with the opaque directory, so hello's file is unowned now.
        assert_eq!(
            unowned,
            vec!["bin/sh", "etc/app.conf", "opt/new", "usr/bin/hello"]
        );
        assert!(image.packages().is_empty());
        let kept = ImageFiles::from_scans([&base]);
        assert_eq!(kept.packages().len(), 1);
        let unowned: Vec<&str> = kept
            .unowned_files()
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        assert!(!unowned.contains(&"usr/bin/hello"));
        assert!(unowned.contains(&"opt/ab"));
    }
}
