//! rbuild: build OCI images from Dockerfiles without a daemon.
//!
//! This crate is what other build tools embed and what the `rbuild` binary is a thin script
//! over. Today it offers the front half of a build: reading a Dockerfile and planning it
//! ([`plan_dockerfile`]); the build engine (RUN in a rootless sandbox, COPY/ADD, layers, push)
//! grows here as its parts land.
//!
//! The underlying crates are re-exported, so an embedder needs only this one dependency:
//! [`dockerfile`] (parsing and word expansion), [`plan`] (the layer-plan IR), [`oci`] (digests,
//! references, manifests, configs).
//!
//! ```
//! use rbuild::{plan_dockerfile, PlanRequest};
//!
//! let text = "FROM busybox AS build\nRUN echo hi > /hi\nFROM scratch\nCOPY --from=build /hi /\n";
//! let planned = plan_dockerfile(text, &PlanRequest::default()).unwrap();
//! assert_eq!(planned.plan.stages.len(), 2);
//! ```

pub use rbuild_dockerfile as dockerfile;
pub use rbuild_oci as oci;
pub use rbuild_plan as plan;

mod planning;

pub use planning::{plan_dockerfile, plan_dockerfile_with, PlanRequest, Planned};
