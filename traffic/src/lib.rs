//! Signet's traffic configuration: per destination service, routes (path, method, headers)
//! with timeouts and retry policies, the load balancer, retry budget, circuit-breaker limits
//! and outlier detection.
//!
//! One document model serves everyone: `meshctl traffic` reads and diffs it, the control
//! plane validates, versions and distributes it, and each proxy reads its part (from the
//! control plane, or from a file) with the same [`load`] and [`check`] code. Its JSON Schema,
//! [`SCHEMA`], is published by `meshctl traffic schema` and tested to agree with the loader.
//!
//! - [`doc`]: the document and its defaults.
//! - [`load`]: text to a checked document, problems at `file:line`.
//! - [`check`]: ranges, uniqueness and relations serde cannot see.
//! - [`diff`]: what changes between two documents, setting by setting.
//! - [`duration`]: `250ms`, `10s`, `5m`, `1h`, for every configuration file.
//! - [`weight`]: endpoint weights' default and bounds.

pub mod check;
pub mod diff;
pub mod doc;
pub mod duration;
pub mod labels;
pub mod load;
pub mod pattern;
pub mod weight;

pub use doc::{ServiceTraffic, TrafficDoc};
pub use load::{LoadError, load};

/// The traffic document's JSON Schema (draft 2020-12).
pub const SCHEMA: &str = include_str!("../schema/traffic.schema.json");

impl TrafficDoc {
    /// The settings for `service`: its entry, or the defaults.
    pub fn service(&self, service: &str) -> ServiceTraffic {
        self.services
            .iter()
            .find(|s| s.service == service)
            .cloned()
            .unwrap_or_else(|| ServiceTraffic::defaults(service))
    }

    /// Only the entries for `services` (what a proxy that calls them needs).
    pub fn only(&self, services: &[&str]) -> TrafficDoc {
        TrafficDoc {
            services: self
                .services
                .iter()
                .filter(|s| services.contains(&s.service.as_str()))
                .cloned()
                .collect(),
        }
    }

    /// The document as canonical JSON, every default written out.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}
