//! A service's endpoints by subset (the traffic settings name subsets by label; endpoints
//! carry the labels their proxies registered). Rebuilt whenever the endpoints or the
//! settings change; a subset's endpoints are the service's own (`Arc`), so their latency,
//! connections and ejections are shared with the whole set.

use std::sync::Arc;

use signet_traffic::ServiceTraffic;

use super::balance::Endpoints;

/// Each subset's endpoints.
#[derive(Debug, Default)]
pub struct Subsets {
    by_name: Vec<(Arc<str>, Endpoints)>,
}

impl Subsets {
    /// The subsets `settings` name, out of `all`.
    pub fn build(settings: &ServiceTraffic, all: &Endpoints) -> Self {
        Self {
            by_name: settings
                .subsets
                .iter()
                .map(|s| {
                    let members = all
                        .list
                        .iter()
                        .filter(|e| signet_traffic::labels::selects(&s.labels, &e.labels))
                        .cloned()
                        .collect();
                    (Arc::from(s.name.as_str()), Endpoints::new(members))
                })
                .collect(),
        }
    }

    /// The endpoints of `name`; `None` for a subset the settings do not name.
    pub fn get(&self, name: &str) -> Option<&Endpoints> {
        self.by_name
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, e)| e)
    }

    /// Each subset's name and endpoint count (for `/endpoints`).
    pub fn sizes(&self) -> Vec<(Arc<str>, usize)> {
        self.by_name
            .iter()
            .map(|(n, e)| (Arc::clone(n), e.list.len()))
            .collect()
    }
}
