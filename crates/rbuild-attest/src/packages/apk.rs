//! apk's installed database (`lib/apk/db/installed`): `K:value` lines, one paragraph per
//! package; `F:` names a directory and the `R:` lines after it its files.

use super::{image_path, Package, PackageManager, MAX_PACKAGES};

/// The packages of an apk installed database, with the files each owns.
pub fn parse_apk_installed(text: &str) -> Vec<Package> {
    let mut packages = Vec::new();
    for paragraph in text.split("\n\n") {
        if packages.len() >= MAX_PACKAGES {
            break;
        }
        let mut package = Package {
            manager: Some(PackageManager::Apk),
            ..Package::default()
        };
        let mut dir = String::new();
        for line in paragraph.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            match key {
                "P" => package.name = value.to_owned(),
                "V" => package.version = value.to_owned(),
                "A" => package.arch = Some(value.to_owned()),
                "L" => package.license = Some(value.to_owned()),
                "m" => package.supplier = Some(value.to_owned()),
                "F" => dir = image_path(value),
                "R" if !dir.is_empty() => package.files.push(format!("{dir}/{value}")),
                "R" => package.files.push(image_path(value)),
                _ => {}
            }
        }
        if !package.name.is_empty() && !package.version.is_empty() {
            packages.push(package);
        }
    }
    packages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_and_their_files() {
        let text = "C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\nL:MIT\nF:lib\nR:ld-musl-x86_64.so.1\nR:libc.musl-x86_64.so.1\n\nP:busybox\nV:1.36.1-r29\nF:bin\nR:busybox\n\nP:\nV:1\n";
        let p = parse_apk_installed(text);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "musl");
        assert_eq!(p[0].license.as_deref(), Some("MIT"));
        assert_eq!(
            p[0].files,
            vec!["lib/ld-musl-x86_64.so.1", "lib/libc.musl-x86_64.so.1"]
        );
        assert_eq!(p[1].files, vec!["bin/busybox"]);
    }
}
