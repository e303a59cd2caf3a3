//! `GET /v1/stats`: golden signals per service or per caller -> service edge over a window,
//! from what the proxies report in their heartbeats.

use serde::{Deserialize, Serialize};

/// How the rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatsBy {
    /// One row per service (its inbound requests).
    Service,
    /// One row per caller -> service edge.
    Edge,
}

/// One row of golden signals over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsRow {
    pub service: String,
    pub namespace: String,
    /// The calling service (`None` in rows by service).
    pub caller: Option<String>,
    /// Proxies that reported.
    pub proxies: u64,
    pub requests: u64,
    pub requests_per_second: f64,
    /// Share of requests not answered 5xx (`None` without requests).
    pub success_rate: Option<f64>,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub latency_ms_p99: Option<f64>,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub window_seconds: u64,
    pub by: StatsBy,
    pub rows: Vec<StatsRow>,
}
