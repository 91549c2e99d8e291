//! Transfer progress: one event per blob that finished moving, for progress displays.

use rbuild_oci::Digest;
use std::sync::Arc;

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    /// Downloaded into the sink (and verified).
    Downloaded,
    /// Uploaded to the registry.
    Uploaded,
    /// Mounted from another repository of the same registry: no bytes sent.
    Mounted,
    /// The repository already had it: no bytes sent.
    Existed,
}

/// A blob finished moving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// What happened.
    pub kind: TransferKind,
    /// The blob.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// The registry host.
    pub registry: String,
    /// The repository it went to or came from.
    pub repository: String,
}

impl Transfer {
    /// Bytes that crossed the network for this blob (0 for a mount or an existing blob).
    pub fn bytes_moved(&self) -> u64 {
        match self.kind {
            TransferKind::Downloaded | TransferKind::Uploaded => self.size,
            TransferKind::Mounted | TransferKind::Existed => 0,
        }
    }
}

/// Receives [`Transfer`] events (from the client's tasks: keep it quick).
pub type TransferFn = Arc<dyn Fn(&Transfer) + Send + Sync>;
