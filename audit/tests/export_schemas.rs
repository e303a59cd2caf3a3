//! Every kind of audit record, exported as OCSF, as Elasticsearch bulk documents and as Splunk
//! HEC events, checked by validators built from the standards' own definitions
//! (`signet_tests::validators`) or, for HEC, Splunk's documented event envelope
//! (`signet_tests::siem::hec_event_problem`).

#![expect(
    clippy::expect_used,
    reason = "test helper: a failure is the test failing"
)]

use std::path::Path;

use signet_audit::record::{
    CertificateEvent, ConfigEvent, Decision, Event, GENESIS, Gap, OperatorEvent, PolicyEvent,
    Record, ShadowDecision,
};

fn decision(action: &str, allowed: bool, policies: &[&str], trace: Option<&str>) -> Event {
    Event::Decision(decision_of(action, allowed, policies, trace))
}

fn decision_of(action: &str, allowed: bool, policies: &[&str], trace: Option<&str>) -> Decision {
    Decision {
        decision: if allowed { "allow" } else { "deny" }.to_owned(),
        action: action.to_owned(),
        principal: "spiffe://t.test/ns/shop/sa/web".to_owned(),
        serial: "0a1b".to_owned(),
        resource: "cart".to_owned(),
        namespace: "shop".to_owned(),
        path: (action != "connect").then(|| "/api/items?x=1".to_owned()),
        policies: policies.iter().map(|p| (*p).to_owned()).collect(),
        bundle: "9f86d081".to_owned(),
        trace: trace.map(str::to_owned),
        span: trace.map(|_| "00f067aa0ba902b7".to_owned()),
        src: "[2001:db8::1]:40000".to_owned(),
        dst: "127.0.0.1:8443".to_owned(),
        sample: 10,
    }
}

/// A shadow record: the candidate would have decided the opposite of `enforced_allowed`.
fn shadow(action: &str, enforced_allowed: bool, candidate_policies: &[&str]) -> Event {
    let enforced = decision_of(action, enforced_allowed, &["enforced"], None);
    Event::Shadow(ShadowDecision {
        would: if enforced_allowed { "deny" } else { "allow" }.to_owned(),
        candidate_policies: candidate_policies.iter().map(|p| (*p).to_owned()).collect(),
        candidate: "77af778b51abd4a3c51c5ddd97204a9c3ae614ebccb75a606c3b6865aed6744e".to_owned(),
        enforced,
    })
}

fn validate(file: &Path) -> (bool, String) {
    let verdict = signet_tests::validators::ocsf(file);
    (verdict.ok, verdict.report)
}

fn validate_ecs(file: &Path) -> (bool, String) {
    let verdict = signet_tests::validators::ecs(file);
    (verdict.ok, verdict.report)
}

/// One record of every kind the exports map differently.
fn every_kind() -> Vec<Record> {
    let events = vec![
        decision(
            "GET",
            true,
            &["web-reads-cart"],
            Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        ),
        decision("POST", false, &[], None),
        decision("PATCH", true, &["a", "b"], None),
        decision("DELETE", false, &["no-deletes"], None),
        decision("BREW", false, &[], None),
        decision("connect", true, &["shop-connect"], None),
        decision("connect", false, &[], None),
        shadow("GET", true, &["web-reads-cart"]),
        shadow("connect", false, &[]),
        Event::Operator(OperatorEvent {
            principal: "spiffe://t.test/signet/operator/admin".to_owned(),
            action: "policy.apply".to_owned(),
            target: "policies".to_owned(),
            allowed: true,
            detail: "admin-may-do-everything".to_owned(),
        }),
        Event::Operator(OperatorEvent {
            principal: "spiffe://t.test/signet/operator/auditor".to_owned(),
            action: "ca.manage".to_owned(),
            target: "ca".to_owned(),
            allowed: false,
            detail: "default-deny".to_owned(),
        }),
        Event::Certificate(CertificateEvent {
            kind: "issue".to_owned(),
            spiffe_id: "spiffe://t.test/ns/shop/sa/cart".to_owned(),
            serial: "0c".to_owned(),
            not_after: 1_800_000_000_000_000_000,
        }),
        Event::Certificate(CertificateEvent {
            kind: "revoke".to_owned(),
            spiffe_id: "spiffe://t.test/ns/shop/sa/cart".to_owned(),
            serial: "0c".to_owned(),
            not_after: 0,
        }),
        Event::Policy(PolicyEvent {
            version: 3,
            hash: "9f86d081".to_owned(),
            author: "spiffe://t.test/signet/operator/admin".to_owned(),
            rolled_back_from: Some(5),
            widened: Some(2),
            narrowed: Some(0),
        }),
        Event::Config(ConfigEvent {
            what: "ca".to_owned(),
            version: 4,
            detail: "promoted vault-intermediate".to_owned(),
        }),
        Event::Gap(Gap {
            first: 10,
            last: 19,
            count: 10,
            reason: "spool-full".to_owned(),
        }),
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(seq, event)| Record {
            seq: seq as u64 + 1,
            prev: GENESIS.to_owned(),
            time: 1_700_000_000_000_000_000 + seq as u64,
            writer: "spiffe://t.test/ns/shop/sa/cart".to_owned(),
            event,
        })
        .collect()
}

/// Each record rendered by `render` (given the record and its JSON line), one per line.
fn exported(records: &[Record], render: impl Fn(&Record, &str) -> String) -> String {
    let mut out = String::new();
    for record in records {
        let line = serde_json::to_string(record).expect("a record serializes");
        out.push_str(&render(record, &line));
        out.push('\n');
    }
    out
}

#[test]
fn every_record_kind_is_a_valid_ocsf_event() {
    let out = exported(&every_kind(), signet_audit::ocsf::ocsf);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, out).unwrap();
    let (ok, report) = validate(&file);
    assert!(ok, "OCSF validation failed:\n{report}");
    for class in [
        "8  6003 api_activity",
        "3  4001 network_activity",
        "4  3004 entity_management",
        "1  1008 event_log_actvity",
    ] {
        assert!(report.contains(class), "expected {class}:\n{report}");
    }
}

#[test]
fn the_validator_rejects_what_breaks_the_schema() {
    let record = Record {
        seq: 1,
        prev: GENESIS.to_owned(),
        time: 1_700_000_000_000_000_000,
        writer: "spiffe://t.test/ns/shop/sa/cart".to_owned(),
        event: decision("GET", true, &["p"], None),
    };
    let line = serde_json::to_string(&record).unwrap();
    let mut event: serde_json::Value =
        serde_json::from_str(&signet_audit::ocsf::ocsf(&record, &line)).unwrap();
    event["activity_id"] = serde_json::json!(42);
    event["not_an_ocsf_attribute"] = serde_json::json!(true);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.jsonl");
    std::fs::write(&file, format!("{event}\n")).unwrap();
    let (ok, report) = validate(&file);
    assert!(!ok, "{report}");
    assert!(report.contains("activity_id"), "{report}");
    assert!(report.contains("not_an_ocsf_attribute"), "{report}");
}

#[test]
fn every_record_kind_is_a_valid_ecs_document() {
    let records = every_kind();
    let out = exported(&records, |record, line| {
        signet_audit::export::elastic_bulk(record, line, "signet-audit")
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bulk.ndjson");
    std::fs::write(&file, out).unwrap();
    let (ok, report) = validate_ecs(&file);
    assert!(ok, "ECS validation failed:\n{report}");
    assert!(
        report.contains(&format!(
            "ok: {} documents (ECS {})",
            records.len(),
            signet_audit::export::ECS_VERSION
        )),
        "the documents claim the ECS version they are checked against:\n{report}"
    );
}

#[test]
fn the_ecs_validator_rejects_what_ecs_does_not_define() {
    let record = &every_kind()[0];
    let line = serde_json::to_string(record).unwrap();
    let bulk = signet_audit::export::elastic_bulk(record, &line, "signet-audit");
    let (action, doc) = bulk.split_once('\n').unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(doc).unwrap();
    doc["service"]["namespace"] = serde_json::json!("shop");
    doc["event"]["outcome"] = serde_json::json!("maybe");
    doc["source"]["port"] = serde_json::json!("40000");
    doc["event"]["type"] = serde_json::json!(["creation"]);
    doc.as_object_mut().unwrap().remove("ecs");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.ndjson");
    std::fs::write(&file, format!("{action}\n{doc}\n")).unwrap();
    let (ok, report) = validate_ecs(&file);
    assert!(!ok, "{report}");
    for problem in [
        "service.namespace: not an ECS field",
        "event.outcome: \"maybe\" is not an allowed value",
        "source.port: \"40000\" is not an integer",
        "event.type: \"creation\" is not expected for event.category [\"network\"]",
        "ecs.version: required by ECS, missing",
    ] {
        assert!(report.contains(problem), "expected `{problem}`:\n{report}");
    }
}

#[test]
fn every_record_kind_is_an_event_splunk_hec_accepts() {
    use signet_tests::siem::{HecRefusal, hec_event_problem};
    let records = every_kind();
    let out = exported(&records, |record, line| {
        signet_audit::export::splunk_hec(record, line, "node-1")
    });
    for (record, line) in records.iter().zip(out.lines()) {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(hec_event_problem(&event), None, "{line}");
        // The time is the record's, to the microsecond, in epoch seconds.
        let time: f64 = event["time"].as_str().unwrap().parse().unwrap();
        let micros = (time * 1e6).round() as u64;
        assert_eq!(micros, record.time / 1_000, "{line}");
        assert_eq!(event["source"], record.writer.as_str());
        assert_eq!(event["event"]["seq"], record.seq);
    }

    // The checks bite: each planted fault is refused with Splunk's code for it.
    let good: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let planted: [(&str, serde_json::Value, HecRefusal); 6] = [
        (
            "time",
            serde_json::json!("yesterday"),
            HecRefusal::InvalidDataFormat,
        ),
        ("host", serde_json::json!(7), HecRefusal::InvalidDataFormat),
        ("event", serde_json::json!(""), HecRefusal::EventBlank),
        ("event", serde_json::Value::Null, HecRefusal::EventBlank),
        (
            "fields",
            serde_json::json!({ "nested": { "a": 1 } }),
            HecRefusal::IndexedFields,
        ),
        (
            "fields",
            serde_json::json!({ "n": [1] }),
            HecRefusal::IndexedFields,
        ),
    ];
    for (key, value, refusal) in planted {
        let mut bad = good.clone();
        bad[key] = value;
        assert_eq!(hec_event_problem(&bad), Some(refusal), "{bad}");
    }
    let mut bad = good;
    bad.as_object_mut().unwrap().remove("event");
    assert_eq!(
        hec_event_problem(&bad),
        Some(HecRefusal::EventRequired),
        "{bad}"
    );
}

#[test]
fn every_record_kind_parses_as_cef_with_its_values_intact() {
    let mut records = every_kind();
    // Values that CEF must escape: `=` and `\` in extensions, `|` and `\` in headers (the
    // name carries the method), line breaks.
    let mut hostile = records[0].clone();
    if let Event::Decision(d) = &mut hostile.event {
        d.path = Some("/a=b\\c|d\ne x=y".to_owned());
        d.policies = vec!["p=1".to_owned(), "q\\r w".to_owned()];
        d.action = "GE|T\\".to_owned();
    }
    records.push(hostile);
    let out = exported(&records, |record, _| signet_audit::export::cef(record));
    let parsed = signet_tests::validators::cef(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(parsed.len(), records.len(), "{out}");
    for (record, event) in records.iter().zip(&parsed) {
        assert_eq!(event["DeviceVendor"], "Signet", "{event}");
        assert_eq!(event["DeviceProduct"], "signet", "{event}");
        let severity: u8 = event["Severity"].as_str().unwrap().parse().unwrap();
        assert!(severity <= 10, "{event}");
        let ext = &event["Extensions"];
        assert_eq!(ext["rt"], (record.time / 1_000_000).to_string(), "{event}");
        assert_eq!(ext["cs1"], record.writer.as_str(), "{event}");
        assert_eq!(ext["cn1"], record.seq.to_string(), "{event}");
        match &record.event {
            Event::Decision(d) => {
                assert_eq!(
                    event["Name"],
                    format!("{} {}", d.action, d.decision),
                    "{event}"
                );
                assert_eq!(ext["act"], d.decision.as_str(), "{event}");
                assert_eq!(ext["suser"], d.principal.as_str(), "{event}");
                assert_eq!(ext["requestMethod"], d.action.as_str(), "{event}");
                assert_eq!(ext["cs2"], format!("{}/{}", d.namespace, d.resource));
                if let Some(path) = &d.path {
                    assert_eq!(ext["request"], path.as_str(), "{event}");
                }
                if !d.policies.is_empty() {
                    assert_eq!(ext["cs3"], d.policies.join(","), "{event}");
                }
            }
            Event::Shadow(s) => {
                assert_eq!(ext["act"], format!("would-{}", s.would), "{event}");
                assert_eq!(ext["suser"], s.enforced.principal.as_str(), "{event}");
                if !s.candidate_policies.is_empty() {
                    assert_eq!(ext["cs3"], s.candidate_policies.join(","), "{event}");
                }
                assert!(
                    ext["msg"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("shadow: candidate")),
                    "{event}"
                );
            }
            Event::Operator(o) => assert_eq!(ext["suser"], o.principal.as_str()),
            Event::Certificate(c) => assert_eq!(ext["duser"], c.spiffe_id.as_str()),
            Event::Policy(p) => assert_eq!(ext["suser"], p.author.as_str()),
            Event::Config(_) | Event::Gap(_) => assert!(ext["msg"].is_string(), "{event}"),
        }
    }

    // The parser is strict enough to notice a broken line: an unescaped `=` in a value makes
    // a key of its own, and a header missing its fields is not CEF.
    let broken = signet_tests::validators::cef("CEF:0|Signet|signet|1|x\n").unwrap_err();
    assert!(broken.contains("line 1"), "{broken}");
    let split =
        signet_tests::validators::cef("CEF:0|Signet|signet|1|x|y|1|request=/a x=y act=deny\n")
            .unwrap();
    assert_eq!(split[0]["Extensions"]["request"], "/a", "{}", split[0]);
}
