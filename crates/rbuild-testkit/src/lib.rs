//! Test helpers for rbuild's crates (dev-only).
//!
//! - [`TestRegistry`]: the real `docker-registry` (CNCF Distribution 2.8, Debian package
//!   `docker-registry`) on a free loopback port with temporary storage: plain HTTP, htpasswd
//!   Basic auth over TLS with a CA made in the test ([`TestTls`]), or token auth with a small
//!   token issuer ([`TokenIssuer`]). Its access log is captured so tests can assert on requests.
//! - [`FaultProxy`]: an HTTP/1.1 proxy in front of a registry that answers 500/503/429, drops
//!   connections mid-body or stalls, for the first N matching requests.
//! - [`TestImage`]: an image built in memory from real tar layers, config and manifest.
//! - [`skopeo`]: an independent client to check results with.
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

mod error;
mod fault_proxy;
mod http;
mod image;
mod registry;
pub mod skopeo;
mod tls;
mod token_issuer;

pub use error::TestkitError;
pub use fault_proxy::{Fault, FaultProxy, FaultRule};
pub use image::{TestImage, TestLayer};
pub use registry::{AccessLogEntry, RegistryAuth, TestRegistry, REGISTRY_BINARY};
pub use tls::TestTls;
pub use token_issuer::{TokenIssuer, TokenIssuerConfig, TokenRequest};
