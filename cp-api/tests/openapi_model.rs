//! `openapi.json` against the API's types (`signet_cp::model`): for each typed route, a
//! full example of its answer is checked against the route's documented schema both ways.
//! A field the server sends that the description lacks fails, as does a documented field it
//! does not send (every documented field, or those a schema lists as `required`), a wrong
//! type, or a value outside a documented `enum`. Each example also
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
        let departures = |s: &Value| {
            let mut p = Vec::new();
            check(spec, s, v, at, &mut p);
            p
        };
        // The closest variant's departures say what is wrong: one of the value's own type
        // first, then the one with the fewest.
        let wrong_type = format!("{at}: {}, documented as", type_of(v));
        if let Some(closest) = variants
            .iter()
            .map(departures)
            .min_by_key(|p| (p.iter().any(|x| x.starts_with(&wrong_type)), p.len()))
            && !closest.is_empty()
        {
            problems.push(format!("{at}: fits none of the documented variants"));
            problems.extend(closest);
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
                // Every documented field is sent, unless the schema lists what is required
                // (a document operators write, such as the authentication config).
                let required: Option<Vec<&str>> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect());
                for k in props.keys() {
                    let must = required.as_ref().is_none_or(|r| r.contains(&k.as_str()));
                    if must && !map.contains_key(k) {
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
    departures(&spec, schema, example, &format!("{method} {path} {status}"))
}

/// `example` is a body `method path` takes, as documented, and reads back unchanged (a
/// request's optional fields left out are left out of its JSON, so only `required` ones
/// must be there).
fn request_conforms<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    method: &str,
    path: &str,
    example: &T,
) -> Vec<String> {
    let spec: Value = serde_json::from_str(SPEC).unwrap();
    let schema =
        &spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path}: no documented request body"
    );
    departures(&spec, schema, example, &format!("{method} {path} request"))
}

/// How `example`, which must read back unchanged, departs from `schema`.
fn departures<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    spec: &Value,
    schema: &Value,
    example: &T,
    at: &str,
) -> Vec<String> {
    let json = serde_json::to_value(example).unwrap();
    let back: T = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(&back, example, "{at}: changed by a round trip");
    let mut problems = Vec::new();
    check(spec, schema, &json, at, &mut problems);
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
        changes: vec![GateChange {
            kind: ChangeKind::Widened,
            principal: "spiffe://t.test/ns/shop/sa/frontend".into(),
            action: "GET".into(),
            path: Some("/items".into()),
            resource: "cart".into(),
            namespace: "shop".into(),
            before: DecisionDetail {
                decision: Decision::Deny,
                policies: Vec::new(),
                errors: Vec::new(),
            },
            after: DecisionDetail {
                decision: Decision::Allow,
                policies: vec!["frontend-reads-cart".into()],
                errors: vec!["broken-policy".into()],
            },
        }],
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
            gate: gate.clone(),
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
    problems.extend(more_answers(&gate, &enforcement));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The answers typed after the first batch: traffic, shadow mode, identities,
/// authentication, federation, attestation, the registry's writes, the CA's, audit, stats.
fn more_answers(gate: &Gate, enforcement: &Enforcement) -> Vec<String> {
    let mut problems = Vec::new();
    problems.extend(conforms(
        "get",
        "/v1/traffic",
        "200",
        &TrafficSettings {
            version: 2,
            author: "spiffe://t.test/signet/operator/admin".into(),
            applied_at: 1_789_000_000_000,
            document: serde_json::json!({ "services": {} }),
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/traffic/history",
        "200",
        &TrafficHistory {
            versions: vec![TrafficVersion {
                version: 2,
                author: "spiffe://t.test/signet/operator/admin".into(),
                applied_at: 1_789_000_000_000,
                changes: 3,
                rollback_of: Some(1),
            }],
        },
    ));
    let traffic_applied = TrafficApplied {
        version: 3,
        applied: true,
        changes: vec![
            SettingChange {
                service: "cart".into(),
                setting: "timeout".into(),
                before: Some("\"1s\"".into()),
                after: None,
            },
            SettingChange {
                service: "cart".into(),
                setting: "routes[charge].retry.max_retries".into(),
                before: None,
                after: Some("2".into()),
            },
        ],
        enforcement: Some(enforcement.clone()),
    };
    problems.extend(conforms("post", "/v1/traffic", "200", &traffic_applied));
    problems.extend(conforms(
        "post",
        "/v1/traffic/rollback",
        "200",
        &TrafficApplied {
            applied: false,
            enforcement: None,
            ..traffic_applied
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/endpoints",
        "200",
        &EndpointList {
            service: "cart".into(),
            endpoints: vec![
                EndpointView {
                    endpoint: "127.0.0.1:8443".into(),
                    health: EndpointHealth::Healthy,
                    caller: Some("spiffe://t.test/ns/shop/sa/frontend".into()),
                    caller_instance: Some("00ff".into()),
                    ejected: true,
                    ejections: 2,
                    in_flight: 1,
                    latency_ewma_ms: Some(1.5),
                    weight: 100,
                    labels: BTreeMap::from([("version".into(), "v1".into())]),
                },
                EndpointView {
                    endpoint: "127.0.0.1:8444".into(),
                    health: EndpointHealth::Unregistered,
                    caller: None,
                    caller_instance: None,
                    ejected: false,
                    ejections: 0,
                    in_flight: 0,
                    latency_ewma_ms: None,
                    weight: 0,
                    labels: BTreeMap::new(),
                },
            ],
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/traffic/split",
        "200",
        &SplitReport {
            service: "cart".into(),
            version: 2,
            window_seconds: 60,
            routes: vec![SplitRoute {
                route: "default".into(),
                split: vec![SplitShare {
                    subset: "v2".into(),
                    weight: 10,
                    share: 0.1,
                }],
            }],
            observed: vec![
                ObservedShare {
                    subset: Some("v2".into()),
                    requests: 9,
                    share: Some(0.09),
                },
                ObservedShare {
                    subset: None,
                    requests: 0,
                    share: None,
                },
            ],
            requests: 100,
        },
    ));
    let candidate = ShadowCandidate {
        id: 4,
        hash: "ef".repeat(32),
        policies: 3,
        installed_at: 1_789_000_000_000,
        author: "spiffe://t.test/signet/operator/admin".into(),
        message: "try it".into(),
    };
    problems.extend(conforms(
        "post",
        "/v1/policies/shadow",
        "200",
        &ShadowInstalled {
            candidate: candidate.clone(),
            gate: gate.clone(),
            enforcement: enforcement.clone(),
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/policies/shadow",
        "200",
        &ShadowReport {
            candidate: Some(candidate),
            files: vec![PolicyFile {
                name: "next.cedar".into(),
                text: "permit (principal, action, resource);".into(),
            }],
            running_on: ShadowRunning {
                proxies: 4,
                running: 4,
            },
            would_allow: 7,
            would_deny: 0,
            flows: vec![ShadowFlow {
                principal: "spiffe://t.test/ns/shop/sa/frontend".into(),
                service: "payments".into(),
                action: "POST".into(),
                would: Decision::Allow,
                count: 7,
                first: 1_789_000_001_000,
                last: 1_789_000_009_000,
                examples: vec![ShadowExample {
                    time: 1_789_000_009_000,
                    writer: "spiffe://t.test/ns/shop/sa/payments#00aa".into(),
                    seq: 12,
                    path: Some("/charge".into()),
                    trace: None,
                    src: "127.0.0.1:50000".into(),
                    enforced: Decision::Deny,
                    enforced_policies: Vec::new(),
                    candidate_policies: vec!["frontend-charges".into()],
                }],
            }],
        },
    ));
    problems.extend(conforms(
        "delete",
        "/v1/policies/shadow",
        "200",
        &ShadowCleared {
            cleared: 4,
            enforcement: enforcement.clone(),
        },
    ));
    problems.extend(conforms(
        "post",
        "/v1/policies/shadow/promote",
        "200",
        &ShadowPromoted {
            applied: Applied {
                version: 5,
                hash: "ef".repeat(32),
                policies: 3,
                gate: gate.clone(),
                enforcement: enforcement.clone(),
            },
            promoted: 4,
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/identities",
        "200",
        &IdentityReport {
            spiffe_id: "spiffe://t.test/ns/shop/sa/cart".into(),
            service: Some(ServiceName {
                name: "cart".into(),
                namespace: "shop".into(),
            }),
            certificate: Some(CurrentSvid {
                serial: "0a1b".into(),
                not_before: 1_789_000_000_000,
                not_after: 1_789_003_600_000,
                refresh_at: 1_789_001_800_000,
                issued_at: 1_789_000_000_000,
                kind: IssueKind::Renew,
                issuer_chain: vec![IssuingCertificate {
                    subject: "CN=Signet intermediate CA".into(),
                    not_after: 1_800_000_000_000,
                }],
            }),
            certificates: vec![IssuedCertificate {
                serial: "0a1b".into(),
                spiffe_id: "spiffe://t.test/ns/shop/sa/cart".into(),
                not_before: 1_789_000_000_000,
                not_after: 1_789_003_600_000,
                issued_at: 1_789_000_000_000,
                kind: IssueKind::Issue,
            }],
            proxies: vec![Holder {
                proxy: proxy(),
                last_renewed: Some(1_789_000_000_000),
            }],
            authorization: EffectiveAuthorization {
                policy_version: 3,
                registered: true,
                paths: vec!["/items".into()],
                inbound: vec![InboundAccess {
                    spiffe_id: "spiffe://t.test/ns/shop/sa/frontend".into(),
                    service: "frontend".into(),
                    connect: true,
                    actions: vec![
                        ActionAccess {
                            action: "connect".into(),
                            access: Access::Allow {
                                policies: vec!["frontend-reads-cart".into()],
                            },
                        },
                        ActionAccess {
                            action: "GET".into(),
                            access: Access::Depends {
                                reads: vec!["headers".into()],
                                allowed: vec![PathAccess {
                                    path: "/items".into(),
                                    policies: vec!["frontend-reads-cart".into()],
                                }],
                                denied: Vec::new(),
                            },
                        },
                    ],
                }],
                outbound: vec![OutboundAccess {
                    service: "payments".into(),
                    namespace: "shop".into(),
                    connect: false,
                    actions: vec![ActionAccess {
                        action: "connect".into(),
                        access: Access::Deny {
                            policies: Vec::new(),
                        },
                    }],
                }],
            },
            jwt: ca().jwt,
            federated_bundles: vec![FederatedBundle {
                trust_domain: "partner.test".into(),
                roots: 1,
                jwt_keys: 2,
                sequence: 9,
            }],
            workload_selectors: Some(WorkloadSelectors {
                namespace: "shop".into(),
                name: "cart".into(),
                selectors: vec!["unix:uid:1000".into()],
                updated_at: 1_789_000_000_000,
                author: "spiffe://t.test/signet/operator/admin".into(),
            }),
        },
    ));
    problems.extend(conforms(
        "post",
        "/v1/svid",
        "200",
        &SvidIssued {
            spiffe_id: "spiffe://t.test/signet/operator/viewer".into(),
            chain: "-----BEGIN CERTIFICATE-----".into(),
            bundle: "-----BEGIN CERTIFICATE-----".into(),
            not_after: 1_789_003_600_000,
        },
    ));
    problems.extend(conforms(
        "post",
        "/v1/deny",
        "200",
        &Denied {
            denied: DenyEntry {
                kind: "spiffe_id".into(),
                value: "spiffe://t.test/ns/shop/sa/cart".into(),
                reason: "compromised".into(),
                created_at: 1_789_000_000_000,
            },
            enforcement: enforcement.clone(),
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/inventory",
        "200",
        &Inventory {
            trust_domain: Some("t.test".into()),
            workloads: vec![InventoryWorkload {
                spiffe_id: "spiffe://t.test/ns/shop/sa/cart".into(),
                service: Some("cart".into()),
                labels: BTreeMap::from([("tier".into(), "backend".into())]),
            }],
            services: vec![InventoryService {
                name: "cart".into(),
                namespace: "shop".into(),
                port: 8080,
                labels: BTreeMap::new(),
            }],
        },
    ));
    problems.extend(conforms(
        "post",
        "/v1/services/labels",
        "200",
        &ServiceLabels {
            service: "cart".into(),
            namespace: "shop".into(),
            labels: BTreeMap::from([("tier".into(), "backend".into())]),
            enforcement: enforcement.clone(),
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/authn",
        "200",
        &AuthnState {
            version: 1,
            author: "spiffe://t.test/signet/operator/admin".into(),
            applied_at: 1_789_000_000_000,
            config: Some(AuthnDoc {
                providers: vec![ProviderDoc {
                    name: "idp".into(),
                    issuer: "https://idp.test".into(),
                    audiences: vec!["shop".into()],
                    jwks: None,
                    jwks_uri: Some("https://idp.test/jwks".into()),
                    jwks_ca: None,
                    refresh_seconds: 300,
                    header: "authorization".into(),
                    prefix: "Bearer ".into(),
                    algorithms: vec!["ES256".into()],
                }],
                services: vec![ServiceAuthn {
                    service: "cart".into(),
                    namespace: "shop".into(),
                    providers: vec!["idp".into()],
                    required: true,
                }],
                max_token_bytes: 8192,
                clock_skew_seconds: 60,
            }),
            providers: vec![ProviderKeys {
                name: "idp".into(),
                issuer: "https://idp.test".into(),
                keys_from: "https://idp.test/jwks".into(),
                keys: 2,
                fetched_at: Some(1_789_000_000_000),
                error: None,
            }],
        },
    ));
    problems.extend(conforms(
        "post",
        "/v1/authn",
        "200",
        &AuthnApplied {
            version: 2,
            enforcement: enforcement.clone(),
        },
    ));
    let federation = Federation {
        trust_domain: "partner.test".into(),
        endpoint: "https://partner.test/bundle".into(),
        profile: FederationProfile::HttpsSpiffe,
        endpoint_spiffe_id: Some("spiffe://partner.test/bundle".into()),
        roots: 1,
        jwt_keys: vec!["kid-9".into()],
        sequence: 9,
        refreshed_at: Some(1_789_000_000_000),
        next_refresh: 1_789_000_300_000,
        last_error: Some("connection refused".into()),
        created_at: 1_788_000_000_000,
        author: "spiffe://t.test/signet/operator/admin".into(),
    };
    problems.extend(conforms(
        "get",
        "/v1/federation",
        "200",
        &FederationList {
            trust_domain: "t.test".into(),
            federations: vec![federation.clone()],
        },
    ));
    problems.extend(conforms(
        "post",
        "/v1/federation",
        "200",
        &FederationAdded {
            federation,
            enforcement: enforcement.clone(),
        },
    ));
    problems.extend(conforms(
        "delete",
        "/v1/federation/{trust_domain}",
        "200",
        &FederationRemoved {
            removed: "partner.test".into(),
            enforcement: enforcement.clone(),
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/workloads/attestation",
        "200",
        &WorkloadSelectorsList {
            services: vec![WorkloadSelectors {
                namespace: "shop".into(),
                name: "cart".into(),
                selectors: vec!["unix:uid:1000".into(), "unix:path:/usr/bin/cart".into()],
                updated_at: 1_789_000_000_000,
                author: "spiffe://t.test/signet/operator/admin".into(),
            }],
        },
    ));
    problems.extend(conforms(
        "post",
        "/v1/workloads/attestation",
        "200",
        &AttestationSet {
            service: "cart".into(),
            namespace: "shop".into(),
            selectors: Vec::new(),
            enforcement: enforcement.clone(),
        },
    ));
    let checks = vec![CaCheck {
        name: "mount".into(),
        ok: true,
        detail: "pki is a PKI mount".into(),
    }];
    problems.extend(conforms(
        "post",
        "/v1/ca/setup",
        "200",
        &CaSetup {
            checks: checks.clone(),
            switched: true,
            ca: Some(ca()),
        },
    ));
    problems.extend(conforms(
        "post",
        "/v1/ca/setup",
        "422",
        &CaSetupRefused {
            error: "check `mount` failed: no such mount".into(),
            checks,
        },
    ));
    problems.extend(conforms(
        "post",
        "/v1/ca/rotate",
        "200",
        &CaRotated { ca: ca() },
    ));
    problems.extend(conforms(
        "get",
        "/v1/audit",
        "200",
        &AuditPage {
            records: vec![AuditRecord {
                id: 41,
                writer: "spiffe://t.test/ns/shop/sa/payments#00aa".into(),
                seq: 12,
                time: 1_789_000_009_000_000_123,
                kind: AuditKind::Shadow,
                decision: Some("allow".into()),
                action: Some("POST".into()),
                principal: Some("spiffe://t.test/ns/shop/sa/frontend".into()),
                resource: Some("payments".into()),
                path: Some("/charge".into()),
                policies: Some("frontend-charges".into()),
                candidate: Some("ef".repeat(32)),
                line: "{}".into(),
            }],
        },
    ));
    problems.extend(conforms(
        "get",
        "/v1/stats",
        "200",
        &Stats {
            window_seconds: 60,
            by: StatsBy::Edge,
            rows: vec![StatsRow {
                service: "cart".into(),
                namespace: "shop".into(),
                caller: Some("frontend".into()),
                proxies: 2,
                requests: 100,
                requests_per_second: 1.67,
                success_rate: Some(0.99),
                latency_ms_p50: Some(1.2),
                latency_ms_p95: None,
                latency_ms_p99: None,
            }],
        },
    ));
    problems.extend(conforms(
        "post",
        "/v1/console/sign-in-codes",
        "200",
        &SignInCode {
            path: "/ui/sign-in#code=abc".into(),
            expires_in_seconds: 120,
        },
    ));
    problems
}

/// Every request body `meshctl` sends, with each optional field set (so each is checked
/// against its documented type) and, where they differ, with them left out.
#[test]
fn typed_requests_are_what_openapi_json_describes() {
    let files = vec![PolicyFile {
        name: "shop.cedar".into(),
        text: "permit (principal, action, resource);".into(),
    }];
    let mut problems = Vec::new();
    problems.extend(request_conforms(
        "post",
        "/v1/tokens",
        &TokenRequest {
            spiffe_id: "spiffe://t.test/ns/shop/sa/cart".into(),
            ttl_seconds: Some(600),
        },
    ));
    problems.extend(request_conforms(
        "post",
        "/v1/deny",
        &DenyRequest {
            spiffe_id: None,
            serial: Some("0a1b".into()),
            reason: "key leaked".into(),
            wait_seconds: Some(10),
        },
    ));
    problems.extend(request_conforms(
        "post",
        "/v1/svid",
        &SvidRequest {
            join_token: "secret".into(),
            csr: "-----BEGIN CERTIFICATE REQUEST-----".into(),
            ttl_seconds: Some(3600),
        },
    ));
    problems.extend(request_conforms(
        "post",
        "/v1/policies",
        &PolicyApplyRequest {
            files: files.clone(),
            message: "why".into(),
            expected_version: Some(2),
            dry_run: false,
            allow_widening: true,
            wait_seconds: Some(10),
        },
    ));
    problems.extend(request_conforms(
        "post",
        "/v1/policies/rollback",
        &PolicyRollbackRequest {
            version: 1,
            expected_version: Some(3),
            wait_seconds: None,
            allow_widening: false,
        },
    ));
    problems.extend(request_conforms(
        "post",
        "/v1/services/labels",
        &LabelsRequest {
            service: "cart".into(),
            namespace: "shop".into(),
            set: BTreeMap::from([("tier".into(), "backend".into())]),
            remove: vec!["team".into()],
            wait_seconds: Some(5),
        },
    ));
    problems.extend(request_conforms(
        "post",
        "/v1/policies/shadow",
        &ShadowInstallRequest {
            files,
            message: "try it".into(),
            wait_seconds: Some(10),
        },
    ));
    problems.extend(request_conforms(
        "post",
        "/v1/policies/shadow/promote",
        &ShadowPromoteRequest {
            candidate: 4,
            expected_version: Some(3),
            allow_widening: false,
            wait_seconds: Some(10),
        },
    ));
    problems.extend(request_conforms(
        "delete",
        "/v1/policies/shadow",
        &ShadowClearRequest {
            wait_seconds: Some(10),
        },
    ));
    problems.extend(request_conforms(
        "post",
        "/v1/traffic",
        &TrafficApplyRequest {
            document: "services: {}".into(),
            file: Some("traffic.yaml".into()),
            dry_run: true,
            wait_seconds: Some(0),
        },
    ));
    problems.extend(request_conforms(
        "post",
        "/v1/traffic/rollback",
        &TrafficRollbackRequest {
            version: 1,
            dry_run: false,
            wait_seconds: None,
        },
    ));
    problems.extend(request_conforms(
        "post",
        "/v1/workloads/attestation",
        &AttestRequest {
            service: "cart".into(),
            namespace: "shop".into(),
            selectors: vec!["unix:uid:1000".into()],
            wait_seconds: Some(10),
        },
    ));
    problems.extend(request_conforms(
        "post",
        "/v1/authn",
        &AuthnApplyRequest {
            config: AuthnDoc {
                providers: Vec::new(),
                services: Vec::new(),
                max_token_bytes: 8192,
                clock_skew_seconds: 60,
            },
            wait_seconds: Some(10),
        },
    ));
    problems.extend(request_conforms(
        "post",
        "/v1/federation",
        &FederationAddRequest {
            trust_domain: "partner.test".into(),
            endpoint: "https://partner.test/bundle".into(),
            profile: "https_spiffe".into(),
            endpoint_spiffe_id: Some("spiffe://partner.test/bundle".into()),
            bootstrap_bundle: Some("-----BEGIN CERTIFICATE-----".into()),
            endpoint_ca: Some("-----BEGIN CERTIFICATE-----".into()),
            wait_seconds: Some(10),
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
