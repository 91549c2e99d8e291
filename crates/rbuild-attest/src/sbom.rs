//! SPDX 2.3 JSON (<https://spdx.github.io/spdx-spec/v2.3/>) of the final image: one package
//! for the image, one per installed package (dpkg, apk, rpm databases), and every regular
//! file no package owns, with its sha256.

use crate::image_files::ImageFiles;
use crate::AttestError;
use serde_json::{json, Value};

/// What names the SBOM.
#[derive(Debug, Clone)]
pub struct SbomInput {
    /// The image's name.
    pub image_name: String,
    /// The image manifest's digest.
    pub image_digest: rbuild_oci::Digest,
    /// When it was made (RFC 3339).
    pub created: String,
    /// `rbuild-0.1.0`.
    pub tool: String,
    /// Whether unowned files are listed.
    pub files: bool,
}

/// The SBOM document as JSON.
pub fn spdx_document(input: &SbomInput, image: &ImageFiles) -> Result<Vec<u8>, AttestError> {
    let image_id = "SPDXRef-Image";
    let mut packages = vec![json!({
        "SPDXID": image_id,
        "name": input.image_name,
        "versionInfo": input.image_digest.as_str(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": format!("pkg:oci/{}@{}", purl_part(last_segment(&input.image_name)), input.image_digest),
        }],
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    for (i, p) in image.packages().iter().enumerate() {
        let id = format!("SPDXRef-Package-{}", i + 1);
        let manager = p.manager.map(|m| m.purl_type()).unwrap_or("generic");
        let mut purl = format!(
            "pkg:{manager}/{}@{}",
            purl_part(&p.name),
            purl_part(&p.version)
        );
        if let Some(arch) = &p.arch {
            purl.push_str(&format!("?arch={}", purl_part(arch)));
        }
        packages.push(json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "supplier": p.supplier.as_ref().map(|s| format!("Organization: {s}")).unwrap_or_else(|| "NOASSERTION".into()),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            // A database's free-form license text is not always an SPDX expression.
            "licenseDeclared": "NOASSERTION",
            "licenseComments": p.license.clone().unwrap_or_default(),
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl,
            }],
        }));
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let mut files: Vec<Value> = Vec::new();
    let mut unhashed = 0usize;
    if input.files {
        for (i, f) in image.unowned_files().iter().enumerate() {
            let id = format!("SPDXRef-File-{}", i + 1);
            let checksums: Vec<Value> = match &f.sha256 {
                Some(sum) => vec![json!({"algorithm": "SHA256", "checksumValue": sum})],
                None => {
                    unhashed += 1;
                    Vec::new()
                }
            };
            files.push(json!({
                "SPDXID": id,
                "fileName": format!("/{}", f.path),
                "checksums": checksums,
                "licenseConcluded": "NOASSERTION",
                "copyrightText": "NOASSERTION",
            }));
            relationships.push(json!({
                "spdxElementId": image_id,
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": id,
            }));
        }
    }
    let mut comment = String::from(
        "Packages read from the image's dpkg, apk and rpm databases; files listed are those no package owns.",
    );
    if unhashed > 0 {
        comment.push_str(&format!(" {unhashed} files have no checksum."));
    }
    if image.files_left_out > 0 {
        comment.push_str(&format!(
            " {} files are not listed: a layer lists at most {} files.",
            image.files_left_out,
            crate::MAX_HASHED_FILES
        ));
    }
    for problem in &image.problems {
        comment.push_str(&format!(" Not read: {problem}."));
    }
    let document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": input.image_name,
        "documentNamespace": format!("https://example.invalid/rbuild/spdx/{}", input.image_digest.encoded()),
        "creationInfo": {
            "created": input.created,
            "creators": [format!("Tool: {}", input.tool)],
            "comment": comment,
        },
        "packages": packages,
        "files": files,
        "relationships": relationships,
    });
    serde_json::to_vec(&document).map_err(|source| AttestError::Encode {
        what: "SBOM",
        source,
    })
}

fn last_segment(name: &str) -> &str {
    let without_tag = match name.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => n,
        _ => name,
    };
    without_tag.rsplit('/').next().unwrap_or(without_tag)
}

/// Percent-encodes what a package URL segment may not hold.
fn purl_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer_scan::tests::tar_of;
    use crate::layer_scan::{scan_layer, ScanOptions};

    #[test]
    fn packages_and_unowned_files() {
        let options = ScanOptions {
            files: true,
            packages: true,
        };
        let scan = scan_layer(
            &tar_of(&[
                ("bin/busybox", Some(b"bb")),
                ("usr/bin/hello", Some(b"hello")),
                ("var/lib/dpkg/status", Some(b"Package: hello\nVersion: 2.10-3\nArchitecture: amd64\nStatus: install ok installed\n")),
                ("var/lib/dpkg/info/hello.list", Some(b"/usr/bin/hello\n")),
            ])[..],
            options,
            "t",
        )
        .unwrap();
        let image = ImageFiles::from_scans([&scan]);
        let input = SbomInput {
            image_name: "reg/app:1".into(),
            image_digest: rbuild_oci::Digest::sha256_of(b"i"),
            created: "2026-01-01T00:00:00Z".into(),
            tool: "rbuild-0.1.0".into(),
            files: true,
        };
        let v: Value = serde_json::from_slice(&spdx_document(&input, &image).unwrap()).unwrap();
        assert_eq!(v["spdxVersion"], "SPDX-2.3");
        let names: Vec<&str> = v["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["reg/app:1", "hello"]);
        assert_eq!(
            v["packages"][1]["externalRefs"][0]["referenceLocator"],
            "pkg:deb/hello@2.10-3?arch=amd64"
        );
        let files: Vec<&str> = v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["fileName"].as_str().unwrap())
            .collect();
        assert!(files.contains(&"/bin/busybox"));
        assert!(!files.contains(&"/usr/bin/hello"), "owned by hello");
        let bb = v["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["fileName"] == "/bin/busybox")
            .unwrap();
        assert_eq!(
            bb["checksums"][0]["checksumValue"],
            rbuild_oci::Digest::sha256_of(b"bb").encoded()
        );
    }
}
