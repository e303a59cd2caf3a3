//! SIEM formats for audit records: JSON lines, CEF, syslog (RFC 5424, framed by octet
//! counting as RFC 5425/6587 require over TCP and TLS), Splunk HEC events and Elasticsearch
//! bulk actions with ECS field names. Each function renders one record.

use std::fmt::Write as _;

use crate::record::{Event, Record};

/// The product as SIEMs see it.
const VENDOR: &str = "Signet";
const PRODUCT: &str = "signet";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The record's line, as written and hashed.
pub fn jsonl(line: &str) -> String {
    line.to_owned()
}

/// CEF header fields escape `\` and `|`.
fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|")
}

/// CEF extension values escape `\`, `=` and line breaks.
fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace("\r\n", "\\n")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn split_addr(addr: &str) -> (&str, &str) {
    match addr.rsplit_once(':') {
        Some((ip, port)) => (ip.trim_start_matches('[').trim_end_matches(']'), port),
        None => (addr, ""),
    }
}

/// A name, a signature id and a severity (0–10) for a record.
fn classify(record: &Record) -> (String, String, u8) {
    match &record.event {
        Event::Decision(d) => (
            format!("{} {}", d.action, d.decision),
            format!("decision:{}", d.decision),
            if d.decision == "deny" { 5 } else { 1 },
        ),
        Event::Shadow(s) => (
            format!("{} would {}", s.enforced.action, s.would),
            format!("shadow:{}", s.would),
            2,
        ),
        Event::Certificate(c) => (
            format!("certificate {}", c.kind),
            format!("certificate:{}", c.kind),
            3,
        ),
        Event::Policy(_) => ("policy version applied".to_owned(), "policy".to_owned(), 3),
        Event::Config(c) => (format!("config {}", c.what), "config".to_owned(), 1),
        Event::Operator(o) => (
            format!("operator {}", o.action),
            format!("operator:{}", if o.allowed { "allow" } else { "deny" }),
            if o.allowed { 3 } else { 6 },
        ),
        Event::Gap(_) => ("records lost".to_owned(), "gap".to_owned(), 8),
    }
}

/// The CEF extension fields of a decision: `act` and the policies (`cs3`) as given, so a
/// shadow record can put the candidate's there.
fn cef_decision(
    ext: &mut Vec<(&str, String)>,
    d: &crate::record::Decision,
    act: String,
    policies: &[String],
) {
    let (src, spt) = split_addr(&d.src);
    let (dst, dpt) = split_addr(&d.dst);
    ext.extend([
        ("act", act),
        ("suser", d.principal.clone()),
        ("requestMethod", d.action.clone()),
        ("src", src.to_owned()),
        ("spt", spt.to_owned()),
        ("dst", dst.to_owned()),
        ("dpt", dpt.to_owned()),
        ("cs2Label", "service".to_owned()),
        ("cs2", format!("{}/{}", d.namespace, d.resource)),
        ("cs3Label", "policies".to_owned()),
        ("cs3", policies.join(",")),
    ]);
    if let Some(path) = &d.path {
        ext.push(("request", path.clone()));
    }
}

/// `shadow: candidate <hash> would deny (by p); enforced allow (by q)`.
pub fn shadow_summary(s: &crate::record::ShadowDecision) -> String {
    let by = |policies: &[String]| {
        if policies.is_empty() {
            "default-deny".to_owned()
        } else {
            policies.join(",")
        }
    };
    format!(
        "shadow: candidate {} would {} (by {}); enforced {} (by {})",
        s.candidate.get(..12).unwrap_or(&s.candidate),
        s.would,
        by(&s.candidate_policies),
        s.enforced.decision,
        by(&s.enforced.policies)
    )
}

/// One record as a CEF event.
pub fn cef(record: &Record) -> String {
    let (name, signature, severity) = classify(record);
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", (record.time / 1_000_000).to_string()),
        ("cs1Label", "writer".to_owned()),
        ("cs1", record.writer.clone()),
        ("cn1Label", "seq".to_owned()),
        ("cn1", record.seq.to_string()),
    ];
    match &record.event {
        Event::Decision(d) => cef_decision(&mut ext, d, d.decision.clone(), &d.policies),
        Event::Shadow(s) => {
            cef_decision(
                &mut ext,
                &s.enforced,
                format!("would-{}", s.would),
                &s.candidate_policies,
            );
            ext.push(("msg", shadow_summary(s)));
        }
        Event::Operator(o) => ext.extend([
            ("act", if o.allowed { "allow" } else { "deny" }.to_owned()),
            ("suser", o.principal.clone()),
            ("msg", format!("{} {}", o.action, o.target)),
        ]),
        Event::Certificate(c) => ext.extend([
            ("duser", c.spiffe_id.clone()),
            ("msg", format!("serial {}", c.serial)),
        ]),
        Event::Policy(p) => ext.extend([("suser", p.author.clone()), ("msg", p.summary())]),
        Event::Config(c) => ext.push(("msg", format!("{} {}", c.version, c.detail))),
        Event::Gap(g) => ext.push((
            "msg",
            format!(
                "{} records lost ({}..={}): {}",
                g.count, g.first, g.last, g.reason
            ),
        )),
    }
    let mut out = format!(
        "CEF:0|{}|{}|{}|{}|{}|{severity}|",
        cef_header(VENDOR),
        cef_header(PRODUCT),
        cef_header(VERSION),
        cef_header(&signature),
        cef_header(&name)
    );
    let body: Vec<String> = ext
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", cef_value(&v)))
        .collect();
    out.push_str(&body.join(" "));
    out
}

/// RFC 5424 structured-data parameter values escape `"`, `\` and `]`.
fn sd_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]")
}

/// Unix nanoseconds as RFC 3339 in UTC, to the microsecond.
pub fn rfc3339(ns: u64) -> String {
    let secs = i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX);
    let micros = (ns % 1_000_000_000) / 1_000;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            let mut out = String::new();
            write!(
                out,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
            .ok()?;
            Some(out)
        })
        .unwrap_or_else(|| "-".to_owned())
}

/// One record as an RFC 5424 syslog message (facility authpriv; severity warning for
/// denials and losses, notice otherwise); the JSON line is the message.
pub fn syslog(record: &Record, line: &str, hostname: &str) -> String {
    let (_, signature, severity) = classify(record);
    let level = if severity >= 5 { 4 } else { 5 };
    let pri = 10 * 8 + level;
    let host = if hostname.is_empty() { "-" } else { hostname };
    format!(
        "<{pri}>1 {} {host} signet - {} [signet@32473 writer=\"{}\" seq=\"{}\"] {line}",
        rfc3339(record.time),
        signature.replace(':', "-"),
        sd_value(&record.writer),
        record.seq
    )
}

/// A syslog message framed for TCP/TLS transport: `<length> <message>` (octet counting).
pub fn octet_counted(message: &str) -> String {
    format!("{} {message}", message.len())
}

/// One record as a Splunk HTTP Event Collector event (`/services/collector/event`).
pub fn splunk_hec(record: &Record, line: &str, hostname: &str) -> String {
    let event: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|_| serde_json::Value::String(line.to_owned()));
    serde_json::json!({
        "time": format!("{}.{:06}", record.time / 1_000_000_000, (record.time % 1_000_000_000) / 1_000),
        "host": hostname,
        "source": record.writer,
        "sourcetype": "signet:audit",
        "event": event,
    })
    .to_string()
}

/// The ECS fields of a decision (its `rule.name` from `policies`).
fn ecs_decision(doc: &mut serde_json::Value, d: &crate::record::Decision, policies: &[String]) {
    let (src, spt) = split_addr(&d.src);
    let (dst, dpt) = split_addr(&d.dst);
    doc["event"]["category"] = serde_json::json!(["network"]);
    doc["source"] = serde_json::json!({ "ip": src, "port": spt.parse::<u16>().ok() });
    doc["destination"] = serde_json::json!({ "ip": dst, "port": dpt.parse::<u16>().ok() });
    doc["user"] = serde_json::json!({ "name": d.principal });
    doc["service"] = serde_json::json!({ "name": d.resource });
    // ECS has no `service.namespace`; a workload namespace is `orchestrator.namespace`.
    doc["orchestrator"] = serde_json::json!({ "namespace": d.namespace });
    doc["rule"] = serde_json::json!({ "name": policies.join(",") });
    if d.action != "connect" {
        doc["http"] = serde_json::json!({ "request": { "method": d.action } });
    }
    if let Some(path) = &d.path {
        doc["url"] = serde_json::json!({ "path": path });
    }
    if let Some(trace) = &d.trace {
        doc["trace"] = serde_json::json!({ "id": trace });
    }
    if let Some(span) = &d.span {
        doc["span"] = serde_json::json!({ "id": span });
    }
}

/// The ECS release the Elasticsearch documents follow (and are validated against in the
/// tests, with Elastic's own field definitions).
pub const ECS_VERSION: &str = "9.4.0";

/// One record as an Elasticsearch bulk `create` action and its ECS document (two lines).
/// The document id is `<writer>/<seq>`, so a record sent twice is refused as a duplicate
/// instead of being stored twice.
pub fn elastic_bulk(record: &Record, line: &str, index: &str) -> String {
    let original: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|_| serde_json::Value::String(line.to_owned()));
    let mut doc = serde_json::json!({
        "@timestamp": rfc3339(record.time),
        "ecs": { "version": ECS_VERSION },
        "event": {
            "kind": "event",
            "sequence": record.seq,
            "provider": record.writer,
            "module": "signet",
            "dataset": "signet.audit",
        },
        "signet": original,
    });
    let (name, _, _) = classify(record);
    doc["event"]["action"] = serde_json::Value::String(name);
    match &record.event {
        Event::Decision(d) => {
            let allowed = d.decision == "allow";
            doc["event"]["type"] = serde_json::json!([if allowed { "allowed" } else { "denied" }]);
            doc["event"]["outcome"] =
                serde_json::json!(if allowed { "success" } else { "failure" });
            ecs_decision(&mut doc, d, &d.policies);
        }
        Event::Shadow(s) => {
            // Nothing happened because of it: only the enforced decision acted.
            doc["event"]["type"] = serde_json::json!(["info"]);
            doc["event"]["outcome"] = serde_json::json!("unknown");
            doc["message"] = serde_json::json!(shadow_summary(s));
            ecs_decision(&mut doc, &s.enforced, &s.candidate_policies);
        }
        Event::Operator(o) => {
            doc["event"]["category"] = serde_json::json!(["configuration"]);
            doc["event"]["type"] = serde_json::json!(["change"]);
            doc["event"]["outcome"] =
                serde_json::json!(if o.allowed { "success" } else { "failure" });
            doc["user"] = serde_json::json!({ "name": o.principal });
        }
        Event::Certificate(c) => {
            doc["event"]["category"] = serde_json::json!(["iam"]);
            doc["event"]["type"] = serde_json::json!(["creation"]);
            doc["user"] = serde_json::json!({ "name": c.spiffe_id });
        }
        Event::Policy(p) => {
            doc["event"]["category"] = serde_json::json!(["configuration"]);
            doc["event"]["type"] = serde_json::json!(["change"]);
            doc["user"] = serde_json::json!({ "name": p.author });
        }
        Event::Config(_) | Event::Gap(_) => {
            doc["event"]["category"] = serde_json::json!(["configuration"]);
            doc["event"]["type"] = serde_json::json!(["info"]);
        }
    }
    let action = serde_json::json!({
        "create": { "_index": index, "_id": format!("{}/{}", record.writer, record.seq) }
    });
    format!("{action}\n{doc}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Decision, GENESIS};

    fn record(path: &str) -> Record {
        Record {
            seq: 3,
            prev: GENESIS.to_owned(),
            time: 1_795_000_000_123_456_789,
            writer: "spiffe://t.test/ns/shop/sa/cart".to_owned(),
            event: Event::Decision(Decision {
                decision: "deny".to_owned(),
                action: "GET".to_owned(),
                principal: "spiffe://t.test/ns/shop/sa/frontend".to_owned(),
                serial: "0a".to_owned(),
                resource: "cart".to_owned(),
                namespace: "shop".to_owned(),
                path: Some(path.to_owned()),
                policies: vec!["no-admin".to_owned()],
                bundle: "ab".to_owned(),
                trace: None,
                span: None,
                src: "127.0.0.1:40000".to_owned(),
                dst: "[::1]:15006".to_owned(),
                sample: 1,
            }),
        }
    }

    #[test]
    fn cef_escapes_what_would_break_its_fields() {
        let text = cef(&record("/a=b\\c|d\ne"));
        assert!(text.starts_with("CEF:0|Signet|signet|"), "{text}");
        assert!(text.contains("|decision:deny|GET deny|5|"), "{text}");
        assert!(text.contains("request=/a\\=b\\\\c|d\\ne"), "{text}");
        assert!(text.contains("rt=1795000000123 "), "{text}");
        assert!(text.contains("dst=::1 dpt=15006"), "{text}");
        assert!(text.contains("cs3=no-admin"), "{text}");
        assert_eq!(cef_header("a|b\\c"), "a\\|b\\\\c");
    }

    #[test]
    fn elastic_documents_carry_ecs_fields_and_a_stable_id() {
        let r = record("/admin");
        let line = serde_json::to_string(&r).unwrap();
        let bulk = elastic_bulk(&r, &line, "signet-audit");
        let (action, doc) = bulk.split_once('\n').unwrap();
        let action: serde_json::Value = serde_json::from_str(action).unwrap();
        assert_eq!(action["create"]["_id"], "spiffe://t.test/ns/shop/sa/cart/3");
        let doc: serde_json::Value = serde_json::from_str(doc).unwrap();
        assert_eq!(doc["event"]["type"][0], "denied");
        assert_eq!(doc["event"]["outcome"], "failure");
        assert_eq!(doc["source"]["port"], 40000);
        assert_eq!(doc["destination"]["ip"], "::1");
        assert_eq!(doc["http"]["request"]["method"], "GET");
        assert_eq!(doc["url"]["path"], "/admin");
        assert_eq!(doc["@timestamp"], "2026-11-18T11:06:40.123456Z");
        assert_eq!(doc["signet"]["seq"], 3);

        let hec: serde_json::Value = serde_json::from_str(&splunk_hec(&r, &line, "h")).unwrap();
        assert_eq!(hec["time"], "1795000000.123456");
        assert_eq!(hec["sourcetype"], "signet:audit");
        assert_eq!(hec["event"]["event"]["decision"], "deny");
    }

    #[test]
    fn syslog_is_rfc5424_and_octet_counted() {
        let r = record("/x");
        let line = serde_json::to_string(&r).unwrap();
        let msg = syslog(&r, &line, "host-1");
        assert!(
            msg.starts_with(r#"<84>1 2026-11-18T11:06:40.123456Z host-1 signet - decision-deny [signet@32473 writer="spiffe://t.test/ns/shop/sa/cart" seq="3"] {"#),
            "{msg}"
        );
        assert!(msg.ends_with(&line));
        let framed = octet_counted(&msg);
        let (len, rest) = framed.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
        assert_eq!(sd_value(r#"a"b]c\"#), r#"a\"b\]c\\"#);
    }
}
