//! Test helpers for rbuild's crates (dev-only).
//!
//! - [`TestRegistry`]: the real `docker-registry` (CNCF Distribution 2.8, Debian package
//!   `docker-registry`) on a free loopback port with temporary storage: plain HTTP, htpasswd
//!   Basic auth over TLS with a CA made in the test ([`TestTls`]), or token auth with a small
//!   token issuer ([`TokenIssuer`]). Its access log is captured so tests can assert on requests.
//! - [`FaultProxy`]: an HTTP/1.1 proxy in front of a registry that answers 500/503/429, drops
//!   connections mid-body or stalls, for the first N matching requests.
//! - [`CannedServer`]: a loopback HTTP server with canned replies ([`Reply`]): endless bodies,
//!   announced huge sizes, silence, for the hostile-answer tests.
//! - [`TestImage`]: an image built in memory from real tar layers, config and manifest.
//! - [`skopeo`]: an independent client to check results with.
//! - [`BusyboxImage`]: a realistic base image from Debian's static busybox (applet symlinks,
//!   `/etc/passwd` with `root`, `nobody`, `app` 1000:1000, `/tmp` 1777), one deterministic gzip
//!   layer in an `rbuild_store::Store`, exportable as an OCI layout and pushable to a
//!   [`TestRegistry`].
//! - [`ImageTree`]: an image's filesystem (every path's type, mode, owner, size, sha256, link
//!   target, hardlink group, xattrs) and config, read from an OCI layout, a docker-archive or a
//!   store; [`compare`] two of them into a readable [`Diff`], minus an [`AllowList`] whose
//!   entries each name a [`KnownDifference`] (the known BuildKit-vs-Buildah differences).
//! - [`Buildah`]: the oracle, `buildah bud --isolation chroot --format docker` with private
//!   `vfs` storage.
//! - [`conformance`]: the cases of `testdata/conformance` and [`ConformanceEnv::run_case`],
//!   which builds a case with Buildah and compares it with rbuild's image.
//!
//! ```no_run
//! use rbuild_testkit::{RegistryAuth, TestRegistry};
//!
//! let Some(registry) = TestRegistry::start_or_skip(RegistryAuth::None) else {
//!     return; // docker-registry is not installed and CI is unset
//! };
//! let host = registry.host(); // "127.0.0.1:PORT"
//! # let _ = host;
//! ```
//!
//! Snapshots of two images and their differences:
//!
//! ```
//! use rbuild_testkit::{compare, AllowList, BusyboxImage, ExtraFile, ImageTree};
//!
//! if !BusyboxImage::available() {
//!     return; // apt-get install busybox-static
//! }
//! let dir = tempfile::tempdir().unwrap();
//! BusyboxImage::build().unwrap().export_oci_layout(&dir.path().join("a"), "latest").unwrap();
//! BusyboxImage::build_with(&[ExtraFile::new("opt/x.txt", "x\n")], |c| c.user = "app".into())
//!     .unwrap()
//!     .export_oci_layout(&dir.path().join("b"), "latest")
//!     .unwrap();
//! let a = ImageTree::from_path(&dir.path().join("a")).unwrap();
//! let b = ImageTree::from_path(&dir.path().join("b")).unwrap();
//! assert_eq!(a.get("/bin/sh").unwrap().link_target.as_deref(), Some("busybox"));
//!
//! let diff = compare(&b, &a, &AllowList::buildkit_vs_buildah());
//! let lines: Vec<String> = diff.differences.iter().map(|d| d.to_string()).collect();
//! assert_eq!(lines.len(), 3, "{diff}");
//! assert!(lines[0].starts_with("/opt: only in candidate"));
//! assert!(lines[1].starts_with("/opt/x.txt: only in candidate"));
//! assert_eq!(lines[2], "config User: \"app\" != null");
//! ```

mod allow_list;
mod buildah;
mod busybox;
mod canned_http;
pub mod conformance;
mod error;
pub mod expect;
mod fault_proxy;
mod http;
mod image;
mod image_tree;
mod registry;
pub mod skopeo;
mod tls;
mod token_issuer;
mod tree_diff;

pub use allow_list::{glob_match, AllowList, AllowTarget, Allowance, Aspect, KnownDifference};
pub use buildah::{Buildah, BuildahRequest, BUILDAH_BINARY};
pub use busybox::{write_rootfs, BusyboxImage, ExtraFile, BASE_PATH, BUSYBOX_BINARY};
pub use conformance::{CaseFailure, ConformanceEnv};
pub use image_tree::{describe, EntryKind, ImageTree, TreeEntry};
pub use tree_diff::{compare, Diff, Difference};

pub use canned_http::{CannedServer, Reply};
pub use error::TestkitError;
pub use fault_proxy::{Fault, FaultProxy, FaultRule};
pub use image::{pseudo_random, TestImage, TestLayer};
pub use registry::{AccessLogEntry, RegistryAuth, TestRegistry, REGISTRY_BINARY};
pub use tls::TestTls;
pub use token_issuer::{TokenIssuer, TokenIssuerConfig, TokenRequest};
