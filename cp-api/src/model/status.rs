//! `GET /v1/status`.

use serde::{Deserialize, Serialize};

use super::CaStatus;

/// The control plane at a glance (`meshctl status`, the console's overview).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// False when the store does not answer (`store_error` says why).
    pub healthy: bool,
    pub store_error: Option<String>,
    pub trust_domain: String,
    pub uptime_seconds: u64,
    pub ca: CaStatus,
    pub policy: PolicySummary,
    pub proxies: ProxyCounts,
    pub replicas: Vec<Replica>,
    pub duties: Vec<Duty>,
}

/// The applied policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySummary {
    /// 0 before the first apply.
    pub version: u64,
    pub hash: String,
    pub policies: u64,
}

/// Registered proxies, and whether they enforce the applied version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyCounts {
    pub total: u64,
    /// Connected here, reporting the applied version, heartbeating.
    pub in_sync: u64,
    /// Connected here and not in sync.
    pub stale: u64,
    /// Connected to another replica (their versions are known there).
    pub on_other_replicas: u64,
}

/// A replica seen in the last ten minutes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub id: String,
    pub grpc: String,
    pub api: String,
    pub version: String,
    pub started_at: i64,
    pub last_seen: i64,
    /// Renewed its row in the last 5 seconds.
    pub alive: bool,
    /// The replica answering.
    pub this: bool,
}

/// A singleton duty and the replica holding its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duty {
    pub name: String,
    pub holder: Option<String>,
    pub since: Option<i64>,
    pub this: bool,
}
