//! Package databases found in an image, read as data and never executed: dpkg's `status`
//! (and `status.d/*`, as distroless images keep it) with the `info/*.list` file lists, apk's
//! `installed`, rpm's sqlite database (`rpmdb.sqlite`).

mod apk;
mod dpkg;
pub(crate) mod rpm;

use serde::{Deserialize, Serialize};

pub use apk::parse_apk_installed;
pub use dpkg::{parse_dpkg_list, parse_dpkg_status};
pub use rpm::{parse_rpm_header, parse_rpmdb_sqlite};

/// The largest package database file read (text databases and rpm's sqlite file alike);
/// a larger one is left out of the SBOM with a note.
pub const MAX_PACKAGE_DB_BYTES: u64 = 256 << 20;

/// The most packages read from one database.
pub const MAX_PACKAGES: usize = 100_000;

/// Which package manager installed a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    /// Debian's dpkg.
    Deb,
    /// Alpine's apk.
    Apk,
    /// rpm.
    Rpm,
}

impl PackageManager {
    /// The package-URL type (`pkg:deb/...`).
    pub fn purl_type(self) -> &'static str {
        match self {
            PackageManager::Deb => "deb",
            PackageManager::Apk => "apk",
            PackageManager::Rpm => "rpm",
        }
    }
}

/// One installed package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Its manager.
    pub manager: Option<PackageManager>,
    /// Its name.
    pub name: String,
    /// Its version (`epoch:version-release` for rpm, as the database has it otherwise).
    pub version: String,
    /// Its architecture.
    pub arch: Option<String>,
    /// Its declared license, as the database writes it.
    pub license: Option<String>,
    /// Its maintainer or vendor.
    pub supplier: Option<String>,
    /// The files it owns, without a leading `/` (apk and rpm; dpkg's come from `.list` files).
    pub files: Vec<String>,
}

/// What kind of package database lives at `path` in an image, if any.
pub fn db_kind(path: &str) -> Option<DbKind> {
    match path {
        "var/lib/dpkg/status" => Some(DbKind::DpkgStatus),
        "lib/apk/db/installed" => Some(DbKind::ApkInstalled),
        "var/lib/rpm/rpmdb.sqlite" | "usr/lib/sysimage/rpm/rpmdb.sqlite" => Some(DbKind::RpmSqlite),
        p if p.starts_with("var/lib/dpkg/status.d/") && !p[22..].contains('/') => {
            // distroless keeps one status paragraph per file; `*.md5sums` are not status files.
            (!p.ends_with(".md5sums")).then_some(DbKind::DpkgStatus)
        }
        p if p.starts_with("var/lib/dpkg/info/")
            && p.ends_with(".list")
            && !p[18..].contains('/') =>
        {
            Some(DbKind::DpkgList)
        }
        _ => None,
    }
}

/// The kinds of [`db_kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// dpkg's status file.
    DpkgStatus,
    /// A dpkg `info/<package>.list`.
    DpkgList,
    /// apk's installed database.
    ApkInstalled,
    /// rpm's sqlite database.
    RpmSqlite,
}

/// Strips a leading `/` or `./` so owned paths compare with layer paths.
pub(crate) fn image_path(path: &str) -> String {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            break;
        }
    }
    let p = p.trim_end_matches('/');
    if p == "." {
        String::new()
    } else {
        p.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_paths_are_recognised() {
        assert_eq!(db_kind("var/lib/dpkg/status"), Some(DbKind::DpkgStatus));
        assert_eq!(
            db_kind("var/lib/dpkg/status.d/base"),
            Some(DbKind::DpkgStatus)
        );
        assert_eq!(db_kind("var/lib/dpkg/status.d/base.md5sums"), None);
        assert_eq!(
            db_kind("var/lib/dpkg/info/bash.list"),
            Some(DbKind::DpkgList)
        );
        assert_eq!(db_kind("var/lib/dpkg/info/x/bash.list"), None);
        assert_eq!(db_kind("lib/apk/db/installed"), Some(DbKind::ApkInstalled));
        assert_eq!(db_kind("var/lib/rpm/rpmdb.sqlite"), Some(DbKind::RpmSqlite));
        assert_eq!(db_kind("etc/passwd"), None);
        assert_eq!(image_path("./usr/bin/x"), "usr/bin/x");
        assert_eq!(image_path("/usr/"), "usr");
    }
}
