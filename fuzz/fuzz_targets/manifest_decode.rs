//! Arbitrary bytes decoded as a manifest, index or image config, then validated and re-encoded:
//! errors are fine, panics are not, and whatever validates must survive a canonical round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_oci::{AnyManifest, ImageConfig, Index, Manifest, MediaType};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::from_json(data) {
        assert_eq!(Manifest::from_json(&m.to_canonical_json()).unwrap(), m);
    }
    if let Ok(i) = Index::from_json(data) {
        assert_eq!(Index::from_json(&i.to_canonical_json()).unwrap(), i);
    }
    if let Ok(c) = ImageConfig::from_json(data) {
        assert_eq!(ImageConfig::from_json(&c.to_canonical_json()).unwrap(), c);
    }
    let _ = AnyManifest::from_json(data, None);
    let _ = AnyManifest::from_json(data, Some(&MediaType::DockerManifestList));
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rbuild_oci::Reference::parse(text).map(|r| r.familiar());
        let _ = rbuild_oci::Digest::parse(text);
        let _ = rbuild_oci::Platform::parse(text).map(|p| p.normalized());
    }
});
