//! `/v1/traffic*` and `/v1/endpoints`: the mesh's traffic settings, their versions, and what
//! the proxies' balancers and the subsets' shares look like from the heartbeats.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Enforcement;

/// `GET /v1/traffic`: the document in force (or an older version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficSettings {
    /// 0: none applied, the defaults everywhere.
    pub version: u64,
    pub author: String,
    pub applied_at: i64,
    /// The traffic document with every default written out (`meshctl traffic schema`).
    pub document: Value,
}

/// One stored version of the traffic settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficVersion {
    pub version: u64,
    pub author: String,
    pub applied_at: i64,
    /// How many settings it changed.
    pub changes: u64,
    /// The version it rolled back to, if it was a rollback.
    pub rollback_of: Option<u64>,
}

/// `GET /v1/traffic/history`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficHistory {
    pub versions: Vec<TrafficVersion>,
}

/// One setting a document changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingChange {
    pub service: String,
    /// e.g. `timeout`, `routes[charge].retry.max_retries`, `routes.order`; empty for the
    /// whole entry.
    pub setting: String,
    /// The value in force, as JSON text (`None`: absent).
    pub before: Option<String>,
    /// The new value, as JSON text (`None`: removed).
    pub after: Option<String>,
}

/// `POST /v1/traffic` and `POST /v1/traffic/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficApplied {
    /// The new version, or the one that stays in force.
    pub version: u64,
    /// Stored and pushed (false: a dry run, or nothing changed).
    pub applied: bool,
    pub changes: Vec<SettingChange>,
    /// Which proxies apply it (only when applied).
    pub enforcement: Option<Enforcement>,
}

/// An endpoint's own health check, as its proxy reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointHealth {
    Unknown,
    Healthy,
    Unhealthy,
    /// No proxy of the service registered this address.
    Unregistered,
}

impl EndpointHealth {
    /// As it is written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Unregistered => "unregistered",
        }
    }
}

/// One endpoint as one caller's balancer sees it, or (`caller` `None`) an endpoint no
/// caller reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointView {
    pub endpoint: String,
    pub health: EndpointHealth,
    pub caller: Option<String>,
    pub caller_instance: Option<String>,
    /// Taken out of the balancer by outlier detection.
    pub ejected: bool,
    pub ejections: u64,
    pub in_flight: u64,
    /// The balancer's peak-EWMA latency (`None`: no caller's view).
    pub latency_ewma_ms: Option<f64>,
    /// Its weight in the balancer (1-10,000; 0 from a proxy that predates weights).
    pub weight: u32,
    /// The labels its proxy registered (empty when unregistered).
    pub labels: BTreeMap<String, String>,
}

/// `GET /v1/endpoints?service=NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointList {
    pub service: String,
    pub endpoints: Vec<EndpointView>,
}

/// A subset's configured weight in a split route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitShare {
    pub subset: String,
    pub weight: u32,
    /// Its weight over the route's total (0 to 1).
    pub share: f64,
}

/// A route that splits its requests between subsets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRoute {
    pub route: String,
    pub split: Vec<SplitShare>,
}

/// The requests a subset's endpoints answered over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedShare {
    /// `None`: endpoints in no subset.
    pub subset: Option<String>,
    pub requests: u64,
    /// Of all the service's requests (`None` when there were none).
    pub share: Option<f64>,
}

/// `GET /v1/traffic/split?service=NAME`: configured against observed shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitReport {
    pub service: String,
    /// The traffic version in force.
    pub version: u64,
    pub window_seconds: u64,
    pub routes: Vec<SplitRoute>,
    pub observed: Vec<ObservedShare>,
    /// All the service's inbound requests over the window.
    pub requests: u64,
}
