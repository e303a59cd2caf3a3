//! What applying a document would change, setting by setting, with every default written out
//! so that "not set" and "set to the default" are the same thing.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::doc::{ServiceTraffic, TrafficDoc};

/// One setting that changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The service.
    pub service: String,
    /// The setting, e.g. `timeout`, `routes[charge].retry.max_retries`, or `` for the whole
    /// entry.
    pub setting: String,
    /// Its value now (JSON), `None` when not there.
    pub before: Option<String>,
    /// Its value after (JSON), `None` when removed.
    pub after: Option<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.setting.is_empty() {
            self.service.clone()
        } else {
            format!("{}.{}", self.service, self.setting)
        };
        match (&self.before, &self.after) {
            (None, Some(a)) => write!(f, "+ {at}: {a}"),
            (Some(b), None) => write!(f, "- {at}: {b}"),
            (Some(b), Some(a)) => write!(f, "~ {at}: {b} -> {a}"),
            (None, None) => write!(f, "  {at}"),
        }
    }
}

/// The changes from `before` to `after`: services compared with their defaults filled in, so
/// adding an entry that only restates defaults changes nothing.
pub fn diff(before: &TrafficDoc, after: &TrafficDoc) -> Vec<Change> {
    let mut services: Vec<&str> = before
        .services
        .iter()
        .chain(&after.services)
        .map(|s| s.service.as_str())
        .collect();
    services.sort_unstable();
    services.dedup();
    let mut changes = Vec::new();
    for service in services {
        let old = flatten(&before.service(service));
        let new = flatten(&after.service(service));
        let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let (b, a) = (old.get(key), new.get(key));
            if b != a {
                changes.push(Change {
                    service: service.to_owned(),
                    setting: key.clone(),
                    before: b.cloned(),
                    after: a.cloned(),
                });
            }
        }
    }
    changes
}

/// Setting path to JSON value. Routes are keyed by name (their order is shown as `order`),
/// so inserting a route reads as one added route, not every later one changed.
fn flatten(service: &ServiceTraffic) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(Value::Object(mut fields)) = serde_json::to_value(service) else {
        return out;
    };
    fields.remove("service");
    let routes = fields.remove("routes");
    walk("", &Value::Object(fields), &mut out);
    if let Some(Value::Array(routes)) = routes {
        let order: Vec<Value> = routes
            .iter()
            .filter_map(|r| r.get("name").cloned())
            .collect();
        out.insert("routes.order".to_owned(), Value::Array(order).to_string());
        for r in routes {
            let name = r
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned();
            walk(&format!("routes[{name}]"), &r, &mut out);
        }
    }
    out
}

fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(fields) => {
            for (k, v) in fields {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&path, v, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load;

    #[test]
    fn restating_defaults_changes_nothing() {
        let before = TrafficDoc::default();
        let after = load("services:\n  - service: cart\n    timeout: 30s\n", "t").unwrap();
        assert!(diff(&before, &after).is_empty());
    }

    #[test]
    fn changes_are_named_setting_by_setting() {
        let before = load(
            "services:\n  - service: cart\n    routes:\n      - name: a\n        timeout: 1s\n",
            "t",
        )
        .unwrap();
        let after = load(
            "services:\n  - service: cart\n    balancer: round-robin\n    routes:\n      - name: b\n      - name: a\n        timeout: 2s\n",
            "t",
        )
        .unwrap();
        let shown: Vec<String> = diff(&before, &after)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            shown.contains(&"~ cart.balancer: \"p2c-ewma\" -> \"round-robin\"".to_owned()),
            "{shown:#?}"
        );
        assert!(
            shown.contains(&"~ cart.routes[a].timeout: \"1s\" -> \"2s\"".to_owned()),
            "{shown:#?}"
        );
        assert!(
            shown.contains(&"+ cart.routes[b].name: \"b\"".to_owned()),
            "{shown:#?}"
        );
        assert!(
            shown.contains(&"~ cart.routes.order: [\"a\"] -> [\"b\",\"a\"]".to_owned()),
            "{shown:#?}"
        );
        assert!(!shown.iter().any(|s| s.contains("routes[a].name")));
    }
}
