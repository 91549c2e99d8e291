//! Build arguments BuildKit defines by itself: the platform args every `FROM` can use, and the
//! proxy args a `RUN` receives without any `ARG` but that are never persisted.

use rbuild_oci::Platform;

/// Names of the proxy build args (matched case-insensitively, as BuildKit does). They reach
/// `RUN` steps as environment variables when given with `--build-arg`, but stay out of cache
/// keys, history and the image config, and are never reported as unused.
pub const PROXY_ARGS: [&str; 5] = [
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "all_proxy",
];

/// Whether `name` is one of the proxy args.
pub fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// The automatic platform args, in BuildKit's order: `TARGETPLATFORM TARGETOS TARGETARCH
/// TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT`.
pub fn platform_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut args = Vec::with_capacity(8);
    for (prefix, platform) in [("TARGET", target), ("BUILD", build)] {
        args.push((format!("{prefix}PLATFORM"), platform.to_string()));
        args.push((format!("{prefix}OS"), platform.os.clone()));
        args.push((format!("{prefix}ARCH"), platform.architecture.clone()));
        args.push((
            format!("{prefix}VARIANT"),
            platform.variant.clone().unwrap_or_default(),
        ));
    }
    args
}

/// Whether `name` is an automatic platform arg.
pub fn is_platform_arg(name: &str) -> bool {
    matches!(
        name,
        "TARGETPLATFORM"
            | "TARGETOS"
            | "TARGETARCH"
            | "TARGETVARIANT"
            | "BUILDPLATFORM"
            | "BUILDOS"
            | "BUILDARCH"
            | "BUILDVARIANT"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_args_follow_the_platforms() {
        let target = Platform::new("linux", "arm64", Some("v8"));
        let build = Platform::new("linux", "amd64", None);
        let args = platform_args(&target, &build);
        let get = |k: &str| args.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("TARGETPLATFORM"), Some("linux/arm64/v8"));
        assert_eq!(get("TARGETVARIANT"), Some("v8"));
        assert_eq!(get("BUILDARCH"), Some("amd64"));
        assert_eq!(get("BUILDVARIANT"), Some(""));
        assert!(args.iter().all(|(n, _)| is_platform_arg(n)));
    }

    #[test]
    fn proxy_args_match_case_insensitively() {
        assert!(is_proxy_arg("HTTP_PROXY"));
        assert!(is_proxy_arg("no_proxy"));
        assert!(!is_proxy_arg("PROXY"));
    }
}
