//! USER resolution and /etc/subuid parsing never panic, whatever the image's files hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{0}');
    let user = parts.next().unwrap_or("");
    let passwd = parts.next().unwrap_or("");
    let group = parts.next().unwrap_or("");
    if let Ok(u) = rbuild_sandbox::user::resolve_user(user, passwd, group) {
        assert!(!u.home.is_empty());
        assert!(!u.additional_gids.contains(&u.gid));
    }
    for (start, count) in rbuild_sandbox::idmap::subordinate_ranges(passwd, Some(user), 1000) {
        assert!(count > 0, "{start}");
    }
});
