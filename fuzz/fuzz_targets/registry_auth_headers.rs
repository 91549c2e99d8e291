//! Untrusted text the registry client parses: `WWW-Authenticate` challenges, `Retry-After`
//! values and credentials files. None may panic or loop.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = rbuild_registry::parse_challenges(&text);
    let _ = rbuild_registry::preferred_challenge(&text);
    let _ = rbuild_registry::parse_retry_after(&text, std::time::SystemTime::UNIX_EPOCH);
    let _ = rbuild_registry::credentials::ConfigFile::parse(std::path::Path::new("fuzz.json"), &text);
    let _ = rbuild_registry::credentials::registry_hostname(&text);
});
