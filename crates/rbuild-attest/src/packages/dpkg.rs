//! dpkg's `status` file (RFC 822-like paragraphs) and `info/<package>.list` file lists.

use super::{image_path, Package, PackageManager, MAX_PACKAGES};

/// The installed packages of a dpkg status file (paragraphs whose `Status` says
/// `installed`, or that have no `Status`, as in distroless's `status.d`).
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let mut packages = Vec::new();
    for paragraph in text.split("\n\n") {
        if packages.len() >= MAX_PACKAGES {
            break;
        }
        let mut fields: Vec<(&str, String)> = Vec::new();
        for line in paragraph.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                // A continuation line (Description, Conffiles...): no field we read spans lines.
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim(), v.trim().to_owned()));
            }
        }
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let (Some(name), Some(version)) = (get("Package"), get("Version")) else {
            continue;
        };
        if let Some(status) = get("Status") {
            if !status.ends_with(" installed") {
                continue;
            }
        }
        packages.push(Package {
            manager: Some(PackageManager::Deb),
            name,
            version,
            arch: get("Architecture"),
            license: None,
            supplier: get("Maintainer"),
            files: Vec::new(),
        });
    }
    packages
}

/// The paths of a dpkg `.list` file, without their leading `/` (the `/.` line left out).
pub fn parse_dpkg_list(text: &str) -> Vec<String> {
    text.lines()
        .map(image_path)
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_paragraphs_only() {
        let text = "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\nArchitecture: amd64\nMaintainer: GNU Libc Maintainers <x@y>\nDescription: GNU C Library\n long text: with a colon\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: noversion\nStatus: install ok installed\n";
        let p = parse_dpkg_status(text);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "libc6");
        assert_eq!(p[0].version, "2.36-9");
        assert_eq!(p[0].arch.as_deref(), Some("amd64"));
        assert_eq!(
            parse_dpkg_list("/.\n/usr\n/usr/bin/ls\n"),
            vec!["usr", "usr/bin/ls"]
        );
    }
}
