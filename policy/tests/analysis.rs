//! Slices, explanations, shadow decisions and the access matrix on the example policies and
//! `deploy/examples/entities.yaml`.

#![expect(clippy::unwrap_used, reason = "tests: a failure is the test failing")]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use signet_policy::{
    Authorizer, Caller, ChangeKind, Divergence, HttpRequest, Inventory, Miss, PolicyBundle,
    PolicySource, ServiceRef, Shadow, Target, access_diff,
};
use signet_spiffe::SpiffeId;

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

fn examples() -> PolicyBundle {
    PolicyBundle::load(&[examples_dir().join("policies")]).unwrap()
}

fn inventory() -> Inventory {
    let text = std::fs::read_to_string(examples_dir().join("entities.yaml")).unwrap();
    let inventory: Inventory = serde_norway::from_str(&text).unwrap();
    inventory.check().unwrap();
    inventory
}

fn with_extra(extra: &str) -> PolicyBundle {
    let mut sources: Vec<PolicySource> = ["shop.cedar", "guardrails.cedar"]
        .iter()
        .map(|f| PolicySource {
            name: (*f).to_owned(),
            text: std::fs::read_to_string(examples_dir().join("policies").join(f)).unwrap(),
        })
        .collect();
    sources.push(PolicySource {
        name: "extra.cedar".to_owned(),
        text: extra.to_owned(),
    });
    PolicyBundle::from_sources(&sources).unwrap()
}

fn frontend() -> SpiffeId {
    "spiffe://acme.internal/ns/shop/sa/frontend"
        .parse()
        .unwrap()
}

fn cart() -> Target<'static> {
    Target {
        name: "cart",
        namespace: "shop",
        port: 8080,
        labels: &[],
    }
}

fn get(path: &str) -> HttpRequest<'_> {
    HttpRequest {
        method: "GET",
        path,
        host: "cart",
        query: "",
        headers: signet_policy::Headers::NONE,
        source_ip: IP,
        claims: None,
    }
}

#[test]
fn slices_keep_what_can_apply_and_nothing_else() {
    let bundle = examples();
    let ids = |s: &PolicyBundle| s.origins().keys().cloned().collect::<Vec<_>>();
    let cart = bundle.slice_for(&ServiceRef::new("cart", "shop"));
    assert_eq!(
        ids(&cart),
        [
            "admin-paths-need-admins",
            "frontend-reads-cart-api",
            "frontend-writes-cart-items",
            "no-debug-header-in-prod",
            "shop-connect-within-namespace",
        ]
    );
    let posts = bundle.slice_for(&ServiceRef::new("posts", "blog"));
    assert_eq!(
        ids(&posts),
        ["admin-paths-need-admins", "no-debug-header-in-prod"]
    );
    assert_ne!(cart.hash(), bundle.hash());
    let versioned = bundle.with_version(7);
    assert_eq!(
        versioned
            .slice_for(&ServiceRef::new("cart", "shop"))
            .version(),
        7
    );
}

#[test]
fn explain_cites_text_and_location() {
    let a = Authorizer::new(Arc::new(examples()));
    let peer = frontend();
    let caller = Caller {
        id: Some(&peer),
        ..Caller::default()
    };
    let e = a.explain_request(&caller, &cart(), &get("/api/items"));
    assert!(e.decision.is_allowed());
    assert_eq!(e.determining.len(), 1);
    let origin = e.determining[0].origin.as_ref().unwrap();
    assert_eq!(
        (origin.file.ends_with("shop.cedar"), origin.line),
        (true, 12)
    );
    assert!(origin.text.contains("context.path like \"/api/*\""));
    assert!(
        e.closest.is_empty(),
        "only a default deny lists near misses"
    );

    let e = a.explain_request(&caller, &cart(), &get("/other"));
    assert!(!e.decision.is_allowed() && e.determining.is_empty());
    let near: Vec<(&str, &Miss)> = e
        .closest
        .iter()
        .map(|n| (n.policy.id.as_str(), &n.miss))
        .collect();
    assert_eq!(near[0], ("frontend-reads-cart-api", &Miss::ConditionFalse));
    assert_eq!(
        near[1],
        (
            "frontend-writes-cart-items",
            &Miss::OtherAction(vec!["POST".to_owned()])
        )
    );
    assert_eq!(near.len(), 3);
}

#[test]
fn shadow_reports_differences_and_keeps_the_enforced_decision() {
    let enforced = Authorizer::new(Arc::new(examples()));
    let candidate = Authorizer::new(Arc::new(with_extra(
        "@id(\"frontend-reads-everything\")\npermit (principal == Mesh::Workload::\"spiffe://acme.internal/ns/shop/sa/frontend\", action in Mesh::Action::\"read\", resource == Mesh::Service::\"cart\");",
    )));
    let shadow = Shadow::new(enforced, candidate);
    let peer = frontend();
    let caller = Caller {
        id: Some(&peer),
        ..Caller::default()
    };
    let d = shadow.request(&caller, &cart(), &get("/other"));
    assert!(!d.enforced.is_allowed(), "the enforced decision stands");
    assert!(d.candidate.is_allowed());
    assert_eq!(d.divergence, Divergence::Widened);

    let d = shadow.request(&caller, &cart(), &get("/api/items"));
    assert_eq!(d.divergence, Divergence::OtherPolicies);
    assert_eq!(d.divergence.label(), "other-policies");
    let d = shadow.connect(&caller, &cart(), IP);
    assert_eq!(d.divergence, Divergence::None);
}

#[test]
fn the_access_matrix_shows_exactly_the_changed_decisions() {
    let inventory = inventory();
    let old = Authorizer::new(Arc::new(examples()));
    assert!(access_diff(&old, &old, &inventory).is_empty());

    let new = Authorizer::new(Arc::new(with_extra(
        "@id(\"blog-reads-cart\")\npermit (principal in Mesh::Namespace::\"blog\", action in [Mesh::Action::\"connect\", Mesh::Action::\"GET\"], resource == Mesh::Service::\"cart\");\n\
         @id(\"no-deletes\")\nforbid (principal, action == Mesh::Action::\"DELETE\", resource);",
    )));
    let changes = access_diff(&old, &new, &inventory);
    let summary: Vec<(ChangeKind, &str, &str, Option<&str>)> = changes
        .iter()
        .map(|c| {
            (
                c.kind,
                c.principal.as_str(),
                c.action.as_str(),
                c.path.as_deref(),
            )
        })
        .collect();
    let web = "spiffe://acme.internal/ns/blog/sa/web";
    // connect, GET /api/items, GET /admin/settings is forbidden by the admin guardrail, and
    // the debug-header GET is forbidden on the prod cart: two widened decisions.
    assert_eq!(
        summary,
        [
            (ChangeKind::Widened, web, "connect", None),
            (ChangeKind::Widened, web, "GET", Some("/api/items")),
        ]
    );
    assert_eq!(changes[0].after.policies, ["blog-reads-cart"]);
    assert_eq!(changes[0].before.reason(), "default-deny");
}

#[test]
fn inventories_with_mistakes_are_refused() {
    let bad = [
        (
            "requests: [{method: connect, path: /}]",
            "not an HTTP method",
        ),
        ("requests: [{method: read, path: /}]", "not an HTTP method"),
        (
            "services: [{name: a, namespace: x}, {name: a, namespace: y}]",
            "listed twice",
        ),
        (
            "workloads: [{spiffe_id: \"spiffe://a.b/c\"}, {spiffe_id: \"spiffe://a.b/c\"}]",
            "listed twice",
        ),
    ];
    for (text, expected) in bad {
        let inventory: Inventory = serde_norway::from_str(text).unwrap();
        let err = inventory.check().unwrap_err();
        assert!(err.contains(expected), "{text}: {err}");
    }
}
