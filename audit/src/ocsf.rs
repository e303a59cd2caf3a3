//! Audit records as OCSF 1.5.0 events (one JSON object per record):
//!
//! | record | OCSF class | activity |
//! |---|---|---|
//! | HTTP/gRPC request decision | API Activity (6003) | by method: Create 1, Read 2, Update 3, Delete 4, else Other 99 |
//! | connection decision | Network Activity (4001) | Open 1 (allowed), Refuse 5 (denied) |
//! | operator action | API Activity (6003) | `read` → Read, a rollback or CA change → Update, else Create |
//! | certificate | Entity Management (3004) | issue → Create 1, renew → Update 3, revoke → Delete 4 |
//! | policy version, configuration | Entity Management (3004) | Update 3 |
//! | shadow decision | as the enforced decision's, status Other (99) `Shadow: would …` | |
//! | gap (records lost) | Event Log Activity (1008) | Other 99, `Records lost` |
//!
//! `status_id` is Success (1) for an allow and Failure (2) for a deny; the deciding Cedar
//! policies are `actor.authorizations` (API Activity) or named in `status_detail`. Every
//! event carries the original record under `unmapped.signet`, and `metadata.uid` is
//! `<writer>/<seq>`, stable across exports.

use serde_json::{Value, json};

use crate::record::{Decision, Event, Record};

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.5.0";

struct Class {
    uid: u32,
    name: &'static str,
    category_uid: u32,
    category_name: &'static str,
}

const API_ACTIVITY: Class = Class {
    uid: 6003,
    name: "API Activity",
    category_uid: 6,
    category_name: "Application Activity",
};
const NETWORK_ACTIVITY: Class = Class {
    uid: 4001,
    name: "Network Activity",
    category_uid: 4,
    category_name: "Network Activity",
};
const ENTITY_MANAGEMENT: Class = Class {
    uid: 3004,
    name: "Entity Management",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
const EVENT_LOG_ACTIVITY: Class = Class {
    uid: 1008,
    name: "Event Log Activity",
    category_uid: 1,
    category_name: "System Activity",
};

/// The values OCSF 1.5.0 allows for `http_request.http_method`.
const HTTP_METHODS: &[&str] = &[
    "OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "CONNECT",
];

/// Outcome of the event: `(status_id, status, severity_id, severity)`.
fn outcome(allowed: bool) -> (u32, &'static str, u32, &'static str) {
    if allowed {
        (1, "Success", 1, "Informational")
    } else {
        (2, "Failure", 3, "Medium")
    }
}

/// The fields every event has.
fn base(record: &Record, line: &str, class: &Class, activity: (u32, &str)) -> Value {
    let original: Value =
        serde_json::from_str(line).unwrap_or_else(|_| Value::String(line.to_owned()));
    json!({
        "class_uid": class.uid,
        "class_name": class.name,
        "category_uid": class.category_uid,
        "category_name": class.category_name,
        "activity_id": activity.0,
        "activity_name": activity.1,
        "type_uid": u64::from(class.uid) * 100 + u64::from(activity.0),
        "type_name": format!("{}: {}", class.name, activity.1),
        "time": record.time / 1_000_000,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": format!("{}/{}", record.writer, record.seq),
            "sequence": record.seq,
            "log_name": "signet-audit",
            "log_provider": record.writer,
            "product": {
                "name": "Signet",
                "vendor_name": "Signet",
                "version": env!("CARGO_PKG_VERSION"),
            },
        },
        "unmapped": { "signet": original },
    })
}

fn set_outcome(event: &mut Value, allowed: bool, detail: String) {
    let (status_id, status, severity_id, severity) = outcome(allowed);
    event["status_id"] = json!(status_id);
    event["status"] = json!(status);
    event["severity_id"] = json!(severity_id);
    event["severity"] = json!(severity);
    event["status_detail"] = json!(detail);
}

/// `ip:port` (IPv6 in brackets) as an OCSF network endpoint.
fn endpoint(addr: &str) -> Value {
    let (ip, port) = match addr.rsplit_once(':') {
        Some((ip, port)) => (ip.trim_start_matches('[').trim_end_matches(']'), port),
        None => (addr, ""),
    };
    let mut out = json!({});
    if ip.parse::<std::net::IpAddr>().is_ok() {
        out["ip"] = json!(ip);
    } else if !ip.is_empty() {
        out["name"] = json!(ip);
    }
    if let Ok(port) = port.parse::<u16>() {
        out["port"] = json!(port);
    }
    out
}

fn user(spiffe_id: &str) -> Value {
    json!({ "uid": spiffe_id, "name": spiffe_id })
}

fn why(d: &Decision) -> String {
    if d.policies.is_empty() {
        format!("{} by default-deny", d.decision)
    } else {
        format!("{} by {}", d.decision, d.policies.join(","))
    }
}

/// The API Activity activity for an HTTP method.
fn method_activity(method: &str) -> (u32, &str) {
    match method.to_ascii_uppercase().as_str() {
        "POST" => (1, "Create"),
        "GET" | "HEAD" => (2, "Read"),
        "PUT" | "PATCH" => (3, "Update"),
        "DELETE" => (4, "Delete"),
        _ => (99, method),
    }
}

fn decision(record: &Record, line: &str, d: &Decision) -> Value {
    let allowed = d.decision == "allow";
    let mut src = endpoint(&d.src);
    let mut dst = endpoint(&d.dst);
    dst["svc_name"] = json!(d.resource);
    let mut event = if d.action == "connect" {
        let activity = if allowed { (1, "Open") } else { (5, "Refuse") };
        let event = base(record, line, &NETWORK_ACTIVITY, activity);
        // Network Activity has no actor: the verified peer is the source endpoint's owner.
        src["owner"] = user(&d.principal);
        event
    } else {
        let mut event = base(record, line, &API_ACTIVITY, method_activity(&d.action));
        let authorizations: Vec<Value> = if d.policies.is_empty() {
            vec![json!({ "decision": d.decision, "policy": { "name": "default-deny" } })]
        } else {
            d.policies
                .iter()
                .map(|p| json!({ "decision": d.decision, "policy": { "uid": p, "name": p, "version": d.bundle } }))
                .collect()
        };
        event["actor"] = json!({ "user": user(&d.principal), "authorizations": authorizations });
        let mut api = json!({
            "operation": d.action,
            "service": { "name": d.resource, "uid": format!("{}/{}", d.namespace, d.resource) },
        });
        if let Some(trace) = &d.trace {
            api["request"] = json!({ "uid": trace });
        }
        event["api"] = api;
        // OCSF names a fixed set of methods; any other stays in `api.operation` only.
        let mut request = json!({});
        if HTTP_METHODS.contains(&d.action.as_str()) {
            request["http_method"] = json!(d.action);
        }
        if let Some(path) = &d.path {
            request["url"] = json!({ "path": path });
        }
        event["http_request"] = request;
        event
    };
    event["src_endpoint"] = src;
    event["dst_endpoint"] = dst;
    event["count"] = json!(d.sample.max(1));
    event["message"] = json!(format!(
        "{} {} {} {}{}",
        d.principal,
        d.action,
        d.resource,
        d.path.as_deref().unwrap_or(""),
        if allowed { " allowed" } else { " denied" }
    ));
    set_outcome(&mut event, allowed, why(d));
    event
}

/// One record as an OCSF event (a JSON object, one line).
pub fn ocsf(record: &Record, line: &str) -> String {
    let event = match &record.event {
        Event::Decision(d) => decision(record, line, d),
        Event::Shadow(shadow) => {
            // The enforced decision's event, said as what the candidate would have done:
            // status Other, so it never counts as an allow or a deny of its own.
            let mut event = decision(record, line, &shadow.enforced);
            let summary = crate::export::shadow_summary(shadow);
            event["status_id"] = json!(99);
            event["status"] = json!(format!("Shadow: would {}", shadow.would));
            event["severity_id"] = json!(1);
            event["severity"] = json!("Informational");
            event["status_detail"] = json!(summary);
            event["message"] = json!(summary);
            event
        }
        Event::Operator(o) => {
            let activity = match o.action.as_str() {
                "read" => (2, "Read"),
                "policy.rollback" | "ca.manage" => (3, "Update"),
                _ => (1, "Create"),
            };
            let mut event = base(record, line, &API_ACTIVITY, activity);
            event["actor"] = json!({
                "user": user(&o.principal),
                "authorizations": [{ "decision": if o.allowed { "allow" } else { "deny" }, "policy": { "name": o.detail } }],
            });
            event["api"] = json!({
                "operation": o.action,
                "service": { "name": "signet-cp" },
            });
            // The control plane records who, not from where.
            event["src_endpoint"] = json!({ "name": o.principal });
            event["message"] = json!(format!("{} {} {}", o.principal, o.action, o.target));
            set_outcome(&mut event, o.allowed, o.detail.clone());
            event
        }
        Event::Certificate(c) => {
            let activity = match c.kind.as_str() {
                "revoke" => (4, "Delete"),
                "renew" => (3, "Update"),
                _ => (1, "Create"),
            };
            let mut event = base(record, line, &ENTITY_MANAGEMENT, activity);
            event["entity"] = json!({ "uid": c.serial, "name": c.spiffe_id, "type": "X.509-SVID" });
            event["message"] = json!(format!("{} SVID {} for {}", c.kind, c.serial, c.spiffe_id));
            set_outcome(&mut event, true, c.kind.clone());
            event
        }
        Event::Policy(p) => {
            let mut event = base(record, line, &ENTITY_MANAGEMENT, (3, "Update"));
            event["actor"] = json!({ "user": user(&p.author) });
            event["entity"] = json!({
                "type": "policy bundle",
                "policy": { "uid": p.hash, "name": "signet policies", "version": p.version.to_string() },
            });
            event["message"] = json!(match p.rolled_back_from {
                Some(from) => format!("policy {} (rolled back from {from})", p.summary()),
                None => format!("policy {}", p.summary()),
            });
            set_outcome(&mut event, true, format!("version {}", p.version));
            event
        }
        Event::Config(c) => {
            let mut event = base(record, line, &ENTITY_MANAGEMENT, (3, "Update"));
            event["entity"] = json!({ "name": c.what, "type": "configuration", "version": c.version.to_string() });
            event["message"] = json!(c.detail);
            set_outcome(&mut event, true, c.detail.clone());
            event
        }
        Event::Gap(g) => {
            let mut event = base(record, line, &EVENT_LOG_ACTIVITY, (99, "Records lost"));
            let detail = format!("{} records lost: {}", g.count, g.reason);
            event["log_name"] = json!("signet-audit");
            event["log_provider"] = json!(record.writer);
            event["count"] = json!(g.count);
            event["message"] = json!(detail);
            set_outcome(&mut event, false, detail);
            event
        }
    };
    event.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::GENESIS;

    fn decision_record(action: &str, decision: &str, policies: &[&str]) -> (Record, String) {
        let record = Record {
            seq: 7,
            prev: GENESIS.to_owned(),
            time: 1_700_000_000_123_456_789,
            writer: "spiffe://t.test/ns/shop/sa/cart".to_owned(),
            event: Event::Decision(Decision {
                decision: decision.to_owned(),
                action: action.to_owned(),
                principal: "spiffe://t.test/ns/shop/sa/web".to_owned(),
                serial: "0a".to_owned(),
                resource: "cart".to_owned(),
                namespace: "shop".to_owned(),
                path: (action != "connect").then(|| "/api/items".to_owned()),
                policies: policies.iter().map(|p| (*p).to_owned()).collect(),
                bundle: "abc".to_owned(),
                trace: None,
                span: None,
                src: "127.0.0.1:40000".to_owned(),
                dst: "[::1]:8443".to_owned(),
                sample: 1,
            }),
        };
        let line = serde_json::to_string(&record).unwrap();
        (record, line)
    }

    fn event(r: &(Record, String)) -> Value {
        serde_json::from_str(&ocsf(&r.0, &r.1)).unwrap()
    }

    #[test]
    fn requests_are_api_activity_with_the_deciding_policies() {
        let e = event(&decision_record("DELETE", "deny", &[]));
        assert_eq!(e["class_uid"], 6003);
        assert_eq!(e["activity_id"], 4);
        assert_eq!(e["type_uid"], 600_304);
        assert_eq!(e["status_id"], 2);
        assert_eq!(e["time"], 1_700_000_000_123u64);
        assert_eq!(
            e["actor"]["authorizations"][0]["policy"]["name"],
            "default-deny"
        );
        assert_eq!(e["src_endpoint"]["ip"], "127.0.0.1");
        assert_eq!(e["dst_endpoint"]["ip"], "::1");
        assert_eq!(e["dst_endpoint"]["port"], 8443);
        assert_eq!(e["metadata"]["uid"], "spiffe://t.test/ns/shop/sa/cart/7");
        let e = event(&decision_record("GET", "allow", &["a", "b"]));
        assert_eq!(
            (e["activity_id"].clone(), e["status_id"].clone()),
            (json!(2), json!(1))
        );
        assert_eq!(e["actor"]["authorizations"].as_array().unwrap().len(), 2);
        assert_eq!(
            event(&decision_record("OPTIONS", "allow", &["a"]))["activity_id"],
            99
        );
    }

    #[test]
    fn connections_are_network_activity() {
        let e = event(&decision_record("connect", "deny", &["no-web"]));
        assert_eq!(e["class_uid"], 4001);
        assert_eq!(e["activity_id"], 5);
        assert_eq!(
            e["src_endpoint"]["owner"]["uid"],
            "spiffe://t.test/ns/shop/sa/web"
        );
        assert_eq!(e["status_detail"], "deny by no-web");
        assert_eq!(
            event(&decision_record("connect", "allow", &["x"]))["activity_id"],
            1
        );
    }
}
