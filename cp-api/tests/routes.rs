//! The route table, checked from one place against a real `signet-cp`: every route
//! `ROUTES` lists (which `openapi.json` must describe exactly, see `rest.rs`) is served with
//! its method and refuses callers without credentials with the API's one error body; no
//! other method is served on those paths; and what each listing answers an operator reads
//! back as its `signet_cp::model` type.
#![expect(clippy::panic, reason = "tests: a failure is the test failing")]

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use signet_cp::model;
use signet_cp::server::rest::ROUTES;
use signet_tests::control::{ControlPlane, RestReply};

/// A concrete path for a route's template.
fn concrete(template: &str) -> String {
    template
        .replace("{version}", "1")
        .replace("{trust_domain}", "other.test")
}

fn typed<T: DeserializeOwned>(path: &str, reply: &RestReply) -> T {
    assert_eq!(reply.status, 200, "{path}: {}", reply.json);
    serde_json::from_value(reply.json.clone()).unwrap_or_else(|e| {
        panic!(
            "{path} does not read as its model type: {e}: {}",
            reply.json
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_served_guarded_and_typed() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &["--trust-domain", "routes.test"]);
    let mut methods: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for route in ROUTES {
        let (method, template) = route.split_once(' ').unwrap();
        methods
            .entry(template.to_owned())
            .or_default()
            .insert(method.to_owned());
        let path = concrete(template);
        let reply = cp.rest(method, &path, Some(""), Some(b"{}".to_vec())).await;
        match template {
            "/healthz" | "/v1/openapi.json" => assert_eq!(reply.status, 200, "{route}"),
            // The join token in the body is the authorization; an empty body is refused
            // for what it lacks.
            "/v1/svid" => assert_eq!(reply.status, 422, "{route}: {}", reply.json),
            _ => assert_eq!(reply.status, 401, "{route}: {}", reply.json),
        }
        if reply.status >= 400 {
            let error: model::ErrorBody = serde_json::from_value(reply.json.clone())
                .unwrap_or_else(|e| {
                    panic!("{route}: not the API's error body ({e}): {}", reply.json)
                });
            assert!(!error.error.is_empty(), "{route}");
        }
    }
    // Nothing else is served on those paths, and nothing at all elsewhere.
    for (template, served) in &methods {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if served.contains(method) {
                continue;
            }
            let reply = cp.rest(method, &concrete(template), None, None).await;
            assert_eq!(reply.status, 405, "{method} {template} is not a route");
        }
    }
    assert_eq!(cp.rest("GET", "/v1/nothing", None, None).await.status, 404);

    // Each listing, as the admin reads it, is its model type.
    let get = |path: &'static str| {
        let cp = &cp;
        async move { (path, cp.rest("GET", path, None, None).await) }
    };
    let (p, r) = get("/v1/status").await;
    let status: model::Status = typed(p, &r);
    assert_eq!(status.trust_domain, "routes.test");
    let (p, r) = get("/v1/ca").await;
    let ca: model::CaStatus = typed(p, &r);
    assert!(ca.roots.iter().any(|r| r.state == model::RootState::Active));
    let (p, r) = get("/v1/policies").await;
    assert_eq!(typed::<model::PolicySet>(p, &r).version, 0);
    let (p, r) = get("/v1/policies/history").await;
    typed::<model::PolicyHistory>(p, &r);
    let (p, r) = get("/v1/policies/shadow").await;
    assert!(typed::<model::ShadowReport>(p, &r).candidate.is_none());
    let (p, r) = get("/v1/traffic").await;
    assert_eq!(typed::<model::TrafficSettings>(p, &r).version, 0);
    let (p, r) = get("/v1/traffic/history").await;
    typed::<model::TrafficHistory>(p, &r);
    let (p, r) = get("/v1/authn").await;
    assert!(typed::<model::AuthnState>(p, &r).config.is_none());
    let (p, r) = get("/v1/federation").await;
    assert_eq!(
        typed::<model::FederationList>(p, &r).trust_domain,
        "routes.test"
    );
    let (p, r) = get("/v1/workloads/attestation").await;
    typed::<model::WorkloadSelectorsList>(p, &r);
    let (p, r) = get("/v1/proxies").await;
    typed::<model::ProxyList>(p, &r);
    let (p, r) = get("/v1/services").await;
    typed::<model::ServiceList>(p, &r);
    let (p, r) = get("/v1/inventory").await;
    typed::<model::Inventory>(p, &r);
    let (p, r) = get("/v1/deny").await;
    typed::<model::DenyList>(p, &r);
    let (p, r) = get("/v1/operator-actions").await;
    assert!(!typed::<model::OperatorActions>(p, &r).actions.is_empty());
    let (p, r) = get("/v1/audit").await;
    typed::<model::AuditPage>(p, &r);
    let (p, r) = get("/v1/stats").await;
    assert_eq!(typed::<model::Stats>(p, &r).by, model::StatsBy::Service);
    let (p, r) = get("/v1/identities?id=spiffe://routes.test/ns/shop/sa/cart").await;
    let identity: model::IdentityReport = typed(p, &r);
    assert!(identity.certificate.is_none());
    // A query that is wrong is one clear error in the same body.
    let bad = cp.rest("GET", "/v1/stats?by=nonsense", None, None).await;
    assert_eq!(bad.status, 400);
    let error: model::ErrorBody = serde_json::from_value(bad.json).unwrap();
    assert!(error.error.contains("nonsense"), "{}", error.error);
}
