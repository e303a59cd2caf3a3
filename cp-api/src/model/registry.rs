//! `GET /v1/proxies` and `GET /v1/services`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a proxy's health check says of its app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppHealth {
    Unknown,
    Healthy,
    Unhealthy,
}

impl AppHealth {
    /// As it is written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// One registered proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proxy {
    pub instance: String,
    pub spiffe_id: String,
    pub service: String,
    pub namespace: String,
    pub endpoint: String,
    pub weight: u32,
    pub labels: BTreeMap<String, String>,
    pub admin: String,
    /// Its SVID's serial, lowercase hex.
    pub serial: String,
    pub config_version: u64,
    pub policy_version: u64,
    pub traffic_version: u64,
    pub app_health: AppHealth,
    pub registered_at: i64,
    pub last_heartbeat: i64,
    /// Heartbeating and enforcing the applied policy version.
    pub in_sync: bool,
    /// Connected to the replica answering (its versions are known here), or to another.
    pub connected_here: bool,
    /// The trust bundle sequence it acknowledged.
    pub trust_bundle: u64,
}

/// A page of proxies, by service and instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyList {
    pub proxies: Vec<Proxy>,
    pub next_after: Option<String>,
}

/// One service with registered proxies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub endpoints: Vec<String>,
    /// The SPIFFE IDs its proxies run as.
    pub identities: Vec<String>,
}

/// A page of services, by name and namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceList {
    pub services: Vec<Service>,
    pub next_after: Option<String>,
}

/// `POST /v1/services/labels`: a service's labels after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLabels {
    pub service: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// Which of the mesh's proxies see them (policies may decide on them).
    pub enforcement: super::Enforcement,
}

/// A workload the registry knows, as policies see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryWorkload {
    pub spiffe_id: String,
    /// The service its proxy registered for (`None`: only a join token names it).
    pub service: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// A service the registry knows, as policies see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryService {
    pub name: String,
    pub namespace: String,
    pub port: u16,
    pub labels: BTreeMap<String, String>,
}

/// `GET /v1/inventory`: every workload and service, for offline policy tools (`meshctl
/// authz diff`, `explain --registry`) to decide over what the proxies decide over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub trust_domain: Option<String>,
    pub workloads: Vec<InventoryWorkload>,
    pub services: Vec<InventoryService>,
}
