//! Which proxies enforce a change: what every change's answer carries.

use serde::{Deserialize, Serialize};

/// The registered proxies that reported enforcing a change by the deadline, and those that
/// did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    pub proxies: u64,
    pub enforced_by: u64,
    pub pending: Vec<PendingProxy>,
}

/// A proxy that had not reported a change by the deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingProxy {
    pub instance: String,
    pub spiffe_id: String,
    pub service: String,
    /// The version it reports instead.
    pub enforces: u64,
}
