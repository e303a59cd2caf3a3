//! The published JSON Schema and the loader agree: every document the schema refuses, the
//! loader refuses too, and every document the loader takes, the schema takes. (The loader
//! checks more than a schema can say: unique names, regex syntax, timeouts that fit.)
//! Validated with Python's `jsonschema`, an implementation independent of ours.

use std::io::Write;
use std::process::{Command, Stdio};

const GOOD: &[&str] = &[
    "",
    "services: []",
    "services:\n  - service: cart",
    include_str!("../../deploy/examples/traffic.yaml"),
    "services:\n  - service: a\n    routes:\n      - name: r\n        match:\n          headers: [{name: x-canary, regex: 'v[0-9]+'}]\n          path: {regex: '/u/[0-9]+'}\n",
    "{\"services\": [{\"service\": \"a\", \"balancer\": \"least-request\", \"retry_budget\": {\"ratio\": 1}}]}",
    "services:\n  - service: a\n    health_check: {http: {path: /healthz}, interval: 2s, timeout: 500ms}",
    "services:\n  - service: a\n    health_check: {grpc: {}, unhealthy_threshold: 3}",
    "services:\n  - service: a\n    health_check: {tcp: {}}",
    "services:\n  - service: a\n    rate_limit: {overall: {requests_per_second: 100, burst: 20}, per_caller: {requests_per_second: 0.5}}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        rate_limit: {per_caller: {requests_per_second: 5, burst: 5}}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        fault: {delay: {fixed: 200ms, percent: 10}, abort: {percent: 5, http_status: 500}, callers: ['spiffe://td.example/ns/shop/sa/x'], namespaces: [shop]}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        fault: {abort: {percent: 100, grpc_status: 8}}",
    "services:\n  - service: a\n    subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n    routes:\n      - name: canary\n        match: {headers: [{name: x-canary, exact: '1'}]}\n        split: [{subset: v2, weight: 100}]\n      - name: all\n        split: [{subset: v1, weight: 90}, {subset: v2, weight: 10}]\n        mirror: {subset: v2, percent: 5}",
];

const BAD: &[&str] = &[
    "services:\n  - balancer: round-robin",
    "services:\n  - service: a\n    balancer: random",
    "services:\n  - service: a\n    timeout: 10",
    "services:\n  - service: a\n    timeout: 1.5s",
    "services:\n  - service: a\n    retries: 3",
    "services:\n  - service: a\n    retry: {max_retries: 11}",
    "services:\n  - service: a\n    retry: {on: [timeout]}",
    "services:\n  - service: a\n    retry: {statuses: [600]}",
    "services:\n  - service: a\n    retry: {grpc: [not-found]}",
    "services:\n  - service: a\n    retry_budget: {ratio: 2}",
    "services:\n  - service: a\n    breaker: {max_requests: 0}",
    "services:\n  - service: a\n    outlier: {max_ejected_percent: 101}",
    "services:\n  - service: a\n    routes:\n      - match: {}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        match: {path: {prefix: api}}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        match: {path: {prefix: /a, exact: /b}}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        match: {path: {}}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        match: {methods: [get]}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        match: {headers: [{name: x}]}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        match: {headers: [{name: x, exact: '1', present: true}]}",
    "services:\n  - service: Cart",
    "services:\n  - service: a\n    health_check: {interval: 2s}",
    "services:\n  - service: a\n    health_check: {http: {path: /h}, tcp: {}}",
    "services:\n  - service: a\n    health_check: {http: {path: /h}, bogus: 1}",
    "services:\n  - service: a\n    health_check: {http: {path: /h, port: 1}}",
    "services:\n  - service: a\n    health_check: {tcp: {}, healthy_threshold: 0}",
    "services:\n  - service: a\n    health_check: {http: {path: healthz}}",
    "others: []",
    "services:\n  - service: a\n    rate_limit: {}",
    "services:\n  - service: a\n    rate_limit: {overall: {requests_per_second: 0}}",
    "services:\n  - service: a\n    rate_limit: {overall: {requests_per_second: 10, burst: 0}}",
    "services:\n  - service: a\n    rate_limit: {overall: {burst: 3}}",
    "services:\n  - service: a\n    rate_limit: {per_host: {requests_per_second: 1}}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        fault: {}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        fault: {callers: ['spiffe://td/x']}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        fault: {abort: {percent: 101}}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        fault: {abort: {percent: 5, http_status: 200}}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        fault: {abort: {percent: 5, grpc_status: 0}}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        fault: {delay: {percent: 5}}",
    "services:\n  - service: a\n    routes:\n      - name: r\n        fault: {abort: {percent: 5}, callers: [frontend]}",
    "services:\n  - service: a\n    subsets: [{name: v1, labels: {}}]",
    "services:\n  - service: a\n    subsets: [{name: v1}]",
    "services:\n  - service: a\n    subsets: [{name: v1, labels: {version: 'v 1'}}]",
    "services:\n  - service: a\n    subsets: [{name: v1, labels: {version: v1}}]\n    routes:\n      - name: r\n        split: [{subset: v1, weight: 10001}]",
    "services:\n  - service: a\n    subsets: [{name: v1, labels: {version: v1}}]\n    routes:\n      - name: r\n        split: [{subset: v1}]",
    "services:\n  - service: a\n    subsets: [{name: v1, labels: {version: v1}}]\n    routes:\n      - name: r\n        mirror: {subset: v1, percent: 200}",
];

/// For each instance (JSON text), whether Python's `jsonschema` accepts it.
#[expect(
    clippy::expect_used,
    reason = "a test helper: failing is the test failing"
)]
fn schema_accepts(instances: &[String]) -> Vec<bool> {
    let script = "import json, sys, jsonschema\n\
        schema = json.loads(sys.argv[1])\n\
        jsonschema.Draft202012Validator.check_schema(schema)\n\
        v = jsonschema.Draft202012Validator(schema)\n\
        print(json.dumps([v.is_valid(json.loads(i)) for i in json.load(sys.stdin)]))\n";
    let mut child = Command::new("python3")
        .args(["-c", script, signet_traffic::SCHEMA])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test.sh installs jsonschema)");
    let input = serde_json::to_string(instances).expect("JSON");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3 ran");
    assert!(out.status.success(), "jsonschema failed");
    serde_json::from_slice(&out.stdout).expect("a list of booleans")
}

#[expect(
    clippy::expect_used,
    reason = "a test helper: failing is the test failing"
)]
fn as_json(yaml: &str) -> String {
    if yaml.trim().is_empty() {
        return "{}".to_owned();
    }
    let value: serde_json::Value = serde_norway::from_str(yaml).expect("YAML");
    value.to_string()
}

#[test]
fn the_schema_and_the_loader_agree() {
    let mut instances = Vec::new();
    for doc in GOOD {
        let loaded = signet_traffic::load(doc, "good.yaml");
        assert!(loaded.is_ok(), "loader refused {doc}: {loaded:?}");
        instances.push(as_json(doc));
        // What the loader writes back (every default filled) is valid too.
        instances.push(loaded.expect("loads").to_json());
    }
    for doc in BAD {
        assert!(
            signet_traffic::load(doc, "bad.yaml").is_err(),
            "loader took {doc}"
        );
        instances.push(as_json(doc));
    }
    let verdicts = schema_accepts(&instances);
    let (good, bad) = verdicts.split_at(GOOD.len() * 2);
    for (i, ok) in good.iter().enumerate() {
        assert!(
            ok,
            "schema refused {} of {}",
            if i % 2 == 0 {
                "the text"
            } else {
                "the canonical form"
            },
            GOOD[i / 2]
        );
    }
    for (doc, ok) in BAD.iter().zip(bad) {
        assert!(!ok, "schema took {doc}");
    }
}
