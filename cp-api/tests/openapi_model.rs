//! `openapi.json` against the API's types (`signet_cp::model`): for each typed route, a
//! full example of its answer is checked against the route's documented schema both ways.
//! A field the server sends that the description lacks fails, as does a documented field it
//! does not send, a wrong type, or a value outside a documented `enum`. Each example also
//! round-trips through JSON unchanged, so what `meshctl` and the console read is what the
//! handlers write.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failure is the test failing"
)]

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use signet_cp::model::*;

const SPEC: &str = include_str!("../openapi.json");

/// The schema `$ref` names, resolved.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect(r);
            resolve(spec, &spec["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every way `v` (at `at`) departs from `schema`.
fn check(spec: &Value, schema: &Value, v: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(spec, schema);
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        let fits = |s: &Value| {
            let mut p = Vec::new();
            check(spec, s, v, at, &mut p);
            p.is_empty()
        };
        if !variants.iter().any(fits) {
            problems.push(format!("{at}: fits none of the documented variants"));
        }
        return;
    }
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let t = type_of(v);
        if !(allowed.contains(&t) || t == "integer" && allowed.contains(&"number")) {
            problems.push(format!("{at}: {t}, documented as {allowed:?}"));
            return;
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(v)
    {
        problems.push(format!("{at}: {v} is not one of the documented {values:?}"));
    }
    match v {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, child) in map {
                    match props.get(k) {
                        Some(s) => check(spec, s, child, &format!("{at}.{k}"), problems),
                        None => problems.push(format!("{at}.{k}: sent, not documented")),
                    }
                }
                for k in props.keys() {
                    if !map.contains_key(k) {
                        problems.push(format!("{at}.{k}: documented, not sent"));
                    }
                }
            } else if let Some(s) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for (k, child) in map {
                    check(spec, s, child, &format!("{at}[{k}]"), problems);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, child) in items.iter().enumerate() {
                    check(spec, s, child, &format!("{at}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
}

/// `example` is what `method path` answers with `status`, as documented, and reads back
/// unchanged.
fn conforms<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    method: &str,
    path: &str,
    status: &str,
    example: &T,
) -> Vec<String> {
    let spec: Value = serde_json::from_str(SPEC).unwrap();
    let json = serde_json::to_value(example).unwrap();
    let back: T = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(&back, example, "{method} {path}: changed by a round trip");
    let mut response = &spec["paths"][path][method]["responses"][status];
    if let Some(r) = response.get("$ref").and_then(Value::as_str) {
        response =
            &spec["components"]["responses"][r.strip_prefix("#/components/responses/").expect(r)];
    }
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path} {status}: no documented schema"
    );
    let mut problems = Vec::new();
    check(
        &spec,
        schema,
        &json,
        &format!("{method} {path} {status}"),
        &mut problems,
    );
    problems
}

fn ca() -> CaStatus {
    CaStatus {
        trust_domain: "t.test".into(),
        kind: "builtin".into(),
        backend: "builtin".into(),
        chain: vec![ChainCertificate {
            role: "intermediate".into(),
            subject: "CN=Signet intermediate CA".into(),
            sha256: "ab".repeat(32),
            not_after: 1_800_000_000_000,
        }],
        intermediate: Some(IssuingCertificate {
            subject: "CN=Signet intermediate CA".into(),
            not_after: 1_800_000_000_000,
        }),
        roots: vec![
            Root {
                subject: "CN=Signet root CA".into(),
                sha256: "cd".repeat(32),
                not_after: Some(1_900_000_000_000),
                state: RootState::Active,
                retire_at: None,
            },
            Root {
                subject: "CN=Signet old root CA".into(),
                sha256: "ef".repeat(32),
                not_after: Some(1_850_000_000_000),
                state: RootState::Retiring,
                retire_at: Some(1_790_000_000_000),
            },
        ],
        bundle_sequence: 3,
        vault: None,
        next_renewal: Some(1_795_000_000_000),
        last_error: None,
        rotation: Some(Rotation {
            phase: "staged".into(),
            to: "builtin".into(),
            since: 1_789_000_000_000,
            waiting_for: vec!["cart/0123456789abcdef".into()],
            promote_by: 1_789_000_600_000,
            not_before: 1_789_000_001_000,
        }),
        warnings: vec!["rotation to builtin waits for 1 proxies to receive the new bundle".into()],
        svid_ttl_seconds: 3600,
        jwt: JwtStatus {
            svid_ttl_seconds: 300,
            key_lifetime_seconds: 86_400,
            signing_kid: Some("kid-1".into()),
            keys: vec![JwtKey {
                kid: "kid-1".into(),
                algorithm: "ES256".into(),
                state: JwtKeyState::Active,
                created: 1_789_000_000_000,
                retire_at: None,
            }],
            rotation: Some(JwtRotation {
                since: 1_789_000_000_000,
                waiting_for: Vec::new(),
                promote_by: 1_789_000_600_000,
            }),
        },
    }
}

fn proxy() -> Proxy {
    Proxy {
        instance: "0123456789abcdef".into(),
        spiffe_id: "spiffe://t.test/ns/shop/sa/cart".into(),
        service: "cart".into(),
        namespace: "shop".into(),
        endpoint: "127.0.0.1:8443".into(),
        weight: 100,
        labels: BTreeMap::from([("version".into(), "v2".into())]),
        admin: "127.0.0.1:9901".into(),
        serial: "0a1b".into(),
        config_version: 7,
        policy_version: 3,
        traffic_version: 1,
        app_health: AppHealth::Healthy,
        registered_at: 1_789_000_000_000,
        last_heartbeat: 1_789_000_005_000,
        in_sync: true,
        connected_here: true,
        trust_bundle: 3,
    }
}

#[test]
fn typed_answers_are_what_openapi_json_describes() {
    let mut problems = Vec::new();
    problems.extend(conforms(
        "get",
        "/v1/status",
        "200",
        &Status {
            healthy: false,
            store_error: Some("the database is away".into()),
            trust_domain: "t.test".into(),
            uptime_seconds: 42,
            ca: ca(),
            policy: PolicySummary {
                version: 3,
                hash: "ab".repeat(32),
                policies: 4,
            },
            proxies: ProxyCounts {
                total: 4,
                in_sync: 3,
                stale: 0,
                on_other_replicas: 1,
            },
            replicas: vec![Replica {
                id: "00aa".into(),
                grpc: "127.0.0.1:8443".into(),
                api: "127.0.0.1:8444".into(),
                version: "0.1.0".into(),
                started_at: 1_789_000_000_000,
                last_seen: 1_789_000_009_000,
                alive: true,
                this: true,
            }],
            duties: vec![
                Duty {
                    name: "ca-rotation".into(),
                    holder: Some("00aa".into()),
                    since: Some(1_789_000_000_000),
                    this: true,
                },
                Duty {
                    name: "jwks-fetch".into(),
                    holder: None,
                    since: None,
                    this: false,
                },
            ],
        },
    ));
    problems.extend(conforms("get", "/v1/ca", "200", &ca()));
    problems.extend(conforms(
        "get",
        "/v1/proxies",
        "200",
        &ProxyList {
            proxies: vec![proxy()],
            next_after: Some("cart/0123456789abcdef".into()),
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/services",
        "200",
        &ServiceList {
            services: vec![Service {
                name: "cart".into(),
                namespace: "shop".into(),
                endpoints: vec!["127.0.0.1:8443".into()],
                identities: vec!["spiffe://t.test/ns/shop/sa/cart".into()],
            }],
            next_after: None,
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/policies/history",
        "200",
        &PolicyHistory {
            versions: vec![PolicyVersion {
                version: 2,
                hash: "ab".repeat(32),
                policies: 4,
                created_at: 1_789_000_000_000,
                author: "spiffe://t.test/signet/operator/admin".into(),
                message: "rollback to version 1".into(),
                rolled_back_from: Some(1),
                widened: Some(0),
                narrowed: Some(3),
            }],
            next_before: Some(2),
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/policies/history",
        "400",
        &ErrorBody {
            error: "the policies were rejected".into(),
            problems: vec!["a.cedar:1:1: unexpected token".into()],
        },
    ));
    let gate = Gate {
        checked: 120,
        widened: 1,
        narrowed: 0,
        changes: vec![
            serde_json::json!({ "kind": "widened", "principal": "spiffe://t.test/ns/shop/sa/frontend" }),
        ],
    };
    let enforcement = Enforcement {
        proxies: 4,
        enforced_by: 3,
        pending: vec![PendingProxy {
            instance: "0123456789abcdef".into(),
            spiffe_id: "spiffe://t.test/ns/shop/sa/cart".into(),
            service: "cart".into(),
            enforces: 2,
        }],
    };
    let applied = Applied {
        version: 3,
        hash: "ab".repeat(32),
        policies: 4,
        gate: gate.clone(),
        enforcement: enforcement.clone(),
    };
    problems.extend(conforms("post", "/v1/policies", "200", &applied));
    problems.extend(conforms("post", "/v1/policies/rollback", "200", &applied));
    problems.extend(conforms(
        "post",
        "/v1/policies",
        "200",
        &DryRun {
            dry_run: true,
            hash: "ab".repeat(32),
            policies: 4,
            gate,
        },
    ));
    let version = PolicyVersion {
        version: 1,
        hash: "cd".repeat(32),
        policies: 4,
        created_at: 1_789_000_000_000,
        author: "spiffe://t.test/signet/operator/admin".into(),
        message: "first".into(),
        rolled_back_from: None,
        widened: Some(5),
        narrowed: Some(0),
    };
    let files = vec![PolicyFile {
        name: "shop.cedar".into(),
        text: "permit (principal, action, resource);".into(),
    }];
    problems.extend(conforms(
        "get",
        "/v1/policies",
        "200",
        &PolicySet {
            version: 1,
            meta: Some(version.clone()),
            hash: "cd".repeat(32),
            policies: 4,
            files: files.clone(),
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/policies/{version}",
        "200",
        &PolicyVersionFiles {
            version: 1,
            meta: version,
            files,
        },
    ));
    problems.extend(conforms(
        "post",
        "/v1/tokens",
        "200",
        &TokenCreated {
            token: "secret".into(),
            id: "7".into(),
            spiffe_id: "spiffe://t.test/ns/shop/sa/cart".into(),
            expires_at: 1_789_000_600_000,
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/deny",
        "200",
        &DenyList {
            entries: vec![DenyEntry {
                kind: "serial".into(),
                value: "0a1b".into(),
                reason: "key leaked".into(),
                created_at: 1_789_000_000_000,
            }],
            next_after: None,
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/operator-actions",
        "200",
        &OperatorActions {
            actions: vec![OperatorAction {
                id: 12,
                at: 1_789_000_000_000,
                principal: "spiffe://t.test/signet/operator/admin".into(),
                action: "policy.rollback".into(),
                target: "policies/1".into(),
                allowed: false,
                detail: "default-deny".into(),
            }],
            next_before: Some(12),
        },
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_finds_undocumented_missing_and_mistyped_fields() {
    let spec: Value = serde_json::json!({ "components": { "schemas": {} } });
    let schema = serde_json::json!({
        "type": "object",
        "properties": { "a": { "type": "integer" }, "b": { "enum": ["x", "y"] } }
    });
    let mut problems = Vec::new();
    check(
        &spec,
        &schema,
        &serde_json::json!({ "a": "1", "b": "z", "c": 1 }),
        "r",
        &mut problems,
    );
    assert_eq!(problems.len(), 3, "{problems:?}");
    problems.clear();
    check(
        &spec,
        &schema,
        &serde_json::json!({ "a": 1 }),
        "r",
        &mut problems,
    );
    assert_eq!(problems, ["r.b: documented, not sent"]);
}
