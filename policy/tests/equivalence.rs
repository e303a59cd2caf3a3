//! Property tests: the index, the slices and the lazily built context decide exactly like
//! Cedar over the whole bundle; `forbid` always wins; an invalid bundle never replaces a valid
//! one. Bundles are drawn from every scope form the schema allows and conditions that read
//! each part of the context, including one that fails to evaluate.

#![expect(clippy::unwrap_used, reason = "tests: a failure is the test failing")]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use proptest::prelude::*;
use signet_policy::synthetic;
use signet_policy::{
    Authorizer, Caller, Claims, Effect, Enforced, HttpRequest, PolicyBundle, PolicySource,
    ServiceRef, Target,
};
use signet_spiffe::SpiffeId;

const WORKLOADS: [&str; 5] = [
    "spiffe://acme.internal/ns/shop/sa/frontend",
    "spiffe://acme.internal/ns/shop/sa/cart",
    "spiffe://acme.internal/ns/blog/sa/web",
    "spiffe://acme.internal/batch/nightly",
    "spiffe://other.example/ns/shop/sa/frontend",
];
const SERVICES: [(&str, &str); 3] = [("cart", "shop"), ("payments", "shop"), ("posts", "blog")];
const NAMESPACES: [&str; 3] = ["shop", "blog", "nowhere"];
const ACTIONS: [&str; 5] = ["connect", "GET", "HEAD", "POST", "DELETE"];
const PATHS: [&str; 4] = ["/api/items", "/admin/x", "/shop.Payments/Charge", "/"];

fn principal() -> impl Strategy<Value = String> {
    let w = 0..WORKLOADS.len();
    let ns = 0..NAMESPACES.len();
    prop_oneof![
        Just("principal".to_owned()),
        w.clone()
            .prop_map(|w| format!("principal == Mesh::Workload::\"{}\"", WORKLOADS[w])),
        w.prop_map(|w| format!("principal in Mesh::Workload::\"{}\"", WORKLOADS[w])),
        ns.clone()
            .prop_map(|n| format!("principal in Mesh::Namespace::\"{}\"", NAMESPACES[n])),
        Just("principal is Mesh::Workload".to_owned()),
        ns.prop_map(|n| format!(
            "principal is Mesh::Workload in Mesh::Namespace::\"{}\"",
            NAMESPACES[n]
        )),
    ]
}

/// An action scope, and whether it admits only HTTP actions (so HTTP-only context reads
/// validate).
fn action() -> impl Strategy<Value = (String, bool)> {
    prop_oneof![
        Just(("action".to_owned(), false)),
        Just(("action == Mesh::Action::\"connect\"".to_owned(), false)),
        Just(("action == Mesh::Action::\"GET\"".to_owned(), true)),
        Just(("action == Mesh::Action::\"POST\"".to_owned(), true)),
        Just(("action in Mesh::Action::\"read\"".to_owned(), true)),
        Just(("action in Mesh::Action::\"write\"".to_owned(), true)),
        Just((
            "action in [Mesh::Action::\"GET\", Mesh::Action::\"write\"]".to_owned(),
            true
        )),
        Just((
            "action in [Mesh::Action::\"connect\", Mesh::Action::\"read\"]".to_owned(),
            false
        )),
    ]
}

fn resource() -> impl Strategy<Value = String> {
    let s = 0..SERVICES.len();
    let ns = 0..NAMESPACES.len();
    prop_oneof![
        Just("resource".to_owned()),
        s.clone()
            .prop_map(|s| format!("resource == Mesh::Service::\"{}\"", SERVICES[s].0)),
        s.prop_map(|s| format!("resource in Mesh::Service::\"{}\"", SERVICES[s].0)),
        ns.clone()
            .prop_map(|n| format!("resource in Mesh::Namespace::\"{}\"", NAMESPACES[n])),
        Just("resource is Mesh::Service".to_owned()),
        ns.prop_map(|n| format!(
            "resource is Mesh::Service in Mesh::Namespace::\"{}\"",
            NAMESPACES[n]
        )),
    ]
}

/// Conditions valid for every action.
const ANY_ACTION: [&str; 8] = [
    "",
    " when { context.source_ip.isInRange(ip(\"10.0.0.0/8\")) }",
    " when { principal.service == \"cart\" }",
    " when { resource.port == 8080 }",
    " when { resource.hasTag(\"env\") && resource.getTag(\"env\") == \"prod\" }",
    " unless { principal.namespace == \"shop\" }",
    " when { context.peer_spiffe_id like \"*frontend\" }",
    // Overflows whenever the port is not 0 or 1: an evaluation error.
    " when { resource.port * 9223372036854775807 > 1 }",
];

/// Conditions only HTTP actions can have.
const HTTP_ONLY: [&str; 5] = [
    " when { context.path like \"/api/*\" }",
    " when { context.headers.hasTag(\"x-debug\") }",
    " when { context has user && context.user.groups.contains(\"admins\") }",
    " when { context has grpc_service && context.grpc_service == \"shop.Payments\" }",
    " unless { context.host == \"cart\" && context.query == \"\" }",
];

fn policy() -> impl Strategy<Value = (bool, String, String, String, usize)> {
    (
        any::<bool>(),
        principal(),
        action(),
        resource(),
        0..ANY_ACTION.len() + HTTP_ONLY.len(),
    )
        .prop_map(|(permit, p, (a, http), r, c)| {
            let condition = if c < ANY_ACTION.len() {
                ANY_ACTION[c]
            } else if http {
                HTTP_ONLY[c - ANY_ACTION.len()]
            } else {
                ""
            };
            let effect = if permit { "permit" } else { "forbid" };
            (
                permit,
                effect.to_owned(),
                format!("{p}, {a}, {r}"),
                condition.to_owned(),
                c,
            )
        })
}

fn bundle_text(policies: &[(bool, String, String, String, usize)]) -> String {
    policies
        .iter()
        .enumerate()
        .map(|(n, (_, effect, scope, condition, _))| {
            format!("@id(\"p{n}\")\n{effect} ({scope}){condition};\n")
        })
        .collect()
}

fn bundle(text: &str) -> Option<PolicyBundle> {
    PolicyBundle::from_sources(&[PolicySource {
        name: "gen.cedar".to_owned(),
        text: text.to_owned(),
    }])
    .ok()
}

#[derive(Debug, Clone)]
struct Req {
    workload: usize,
    service: usize,
    action: usize,
    path: usize,
    debug_header: bool,
    admin_user: Option<bool>,
    source: bool,
    caller_service: bool,
    prod: bool,
    port: u16,
}

fn req() -> impl Strategy<Value = Req> {
    (
        (0..WORKLOADS.len(), 0..SERVICES.len(), 0..ACTIONS.len()),
        (
            0..PATHS.len(),
            any::<bool>(),
            proptest::option::of(any::<bool>()),
        ),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop_oneof![Just(8080u16), Just(9090), Just(0)],
    )
        .prop_map(
            |((workload, service, action), (path, debug_header, admin_user), rest, port)| Req {
                workload,
                service,
                action,
                path,
                debug_header,
                admin_user,
                source: rest.0,
                caller_service: rest.1,
                prod: rest.2,
                port,
            },
        )
}

/// Decides `r` with `a`, building every input from scratch.
fn decide(a: &Authorizer, r: &Req) -> signet_policy::Decision {
    let peer: SpiffeId = WORKLOADS[r.workload].parse().unwrap();
    let caller = Caller {
        id: Some(&peer),
        service: r.caller_service.then_some("cart"),
        labels: &[],
        foreign: false,
    };
    let prod = [("env".to_owned(), "prod".to_owned())];
    let (name, namespace) = SERVICES[r.service];
    let target = Target {
        name,
        namespace,
        port: r.port,
        labels: if r.prod { &prod } else { &[] },
    };
    let source = if r.source {
        IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1))
    };
    if ACTIONS[r.action] == "connect" {
        return a.connect(&caller, &target, source);
    }
    let headers = if r.debug_header {
        vec![("X-Debug".to_owned(), "1".to_owned())]
    } else {
        Vec::new()
    };
    let claims = r.admin_user.map(|admin| Claims {
        sub: "alice".into(),
        iss: "https://idp".into(),
        groups: if admin {
            vec!["admins".into()]
        } else {
            Vec::new()
        },
        ..Claims::default()
    });
    a.request(
        &caller,
        &target,
        &HttpRequest {
            method: ACTIONS[r.action],
            path: PATHS[r.path],
            host: name,
            query: "",
            headers: (&headers).into(),
            source_ip: source,
            claims: claims.as_ref(),
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn index_and_slices_decide_like_the_whole_bundle(
        policies in proptest::collection::vec(policy(), 1..14),
        requests in proptest::collection::vec(req(), 1..24),
    ) {
        let text = bundle_text(&policies);
        let Some(b) = bundle(&text) else {
            // Strict validation refused a combination; nothing to compare.
            return Ok(());
        };
        let b = Arc::new(b);
        let whole = Authorizer::exhaustive(Arc::clone(&b));
        let indexed = Authorizer::new(Arc::clone(&b));
        for r in &requests {
            let expected = decide(&whole, r);
            // Twice: the second decision comes from the caches.
            prop_assert_eq!(&decide(&indexed, r), &expected, "indexed, request {:?}\n{}", r, text);
            prop_assert_eq!(&decide(&indexed, r), &expected, "cached, request {:?}\n{}", r, text);
            let (name, ns) = SERVICES[r.service];
            let slice = Authorizer::new(Arc::new(b.slice_for(&ServiceRef::new(name, ns))));
            prop_assert_eq!(&decide(&slice, r), &expected, "slice, request {:?}\n{}", r, text);
        }
    }

    #[test]
    fn forbid_always_wins(
        policies in proptest::collection::vec(policy(), 1..10),
        requests in proptest::collection::vec(req(), 1..12),
    ) {
        let mut text = bundle_text(&policies);
        text.push_str("@id(\"deny-all\")\nforbid (principal, action, resource);\n");
        let Some(b) = bundle(&text) else { return Ok(()); };
        let a = Authorizer::new(Arc::new(b));
        for r in &requests {
            let d = decide(&a, r);
            prop_assert_eq!(d.effect, Effect::Deny);
            prop_assert!(
                !d.errors.is_empty() || d.policies.contains(&"deny-all".to_owned()),
                "{:?}", d
            );
        }
    }

    #[test]
    fn an_invalid_bundle_never_replaces_a_valid_one(
        steps in proptest::collection::vec(
            (proptest::collection::vec(policy(), 1..5), 0..4usize),
            1..8,
        ),
    ) {
        let first = bundle("@id(\"start\")\npermit (principal, action == Mesh::Action::\"connect\", resource);")
            .unwrap();
        let enforced = Enforced::new(first);
        let mut expected = enforced.current().bundle().hash().to_owned();
        for (version, (policies, breakage)) in steps.iter().enumerate() {
            let mut text = bundle_text(policies);
            match breakage {
                0 => {}
                1 => text.push_str("permit (principal, action, resource);\n"),
                2 => text.push_str("@id(\"bad\")\npermit (principal, action, resource) when { context.nope };\n"),
                _ => text.push_str("@id(\"p0\")\nforbid (principal, action, resource"),
            }
            let sources = [PolicySource { name: "step.cedar".into(), text }];
            match enforced.replace_with(&sources, version as u64 + 1) {
                Ok(b) => {
                    prop_assert_eq!(*breakage, 0);
                    expected = b.hash().to_owned();
                }
                Err(e) => prop_assert!(!e.problems.is_empty()),
            }
            let current = enforced.current();
            prop_assert_eq!(current.bundle().hash(), expected.as_str());
        }
    }
}

/// The same equivalence on the benchmark's synthetic mesh: 1,000 policies over 100 services.
#[test]
fn the_index_decides_like_cedar_on_a_large_synthetic_mesh() {
    let mesh = synthetic::mesh(1_000, 400, 11);
    let b = Arc::new(PolicyBundle::from_sources(&mesh.sources).unwrap());
    let whole = Authorizer::exhaustive(Arc::clone(&b));
    let indexed = Authorizer::new(Arc::clone(&b));
    let mut allowed = 0;
    for r in &mesh.requests {
        let expected = mesh.decide(&whole, r);
        assert_eq!(mesh.decide(&indexed, r), expected, "{r:?}");
        allowed += usize::from(expected.is_allowed());
    }
    // The requests must exercise both outcomes for the comparison to mean anything.
    assert!(allowed > 50 && allowed < 350, "{allowed} of 400 allowed");
    let (name, ns) = &mesh.services[7];
    let slice = b.slice_for(&ServiceRef::new(name, ns));
    assert!(
        slice.len() < b.len() / 10,
        "slice of {} from {}",
        slice.len(),
        b.len()
    );
    let sliced = Authorizer::new(Arc::new(slice));
    for r in mesh.requests.iter().filter(|r| r.service == 7) {
        assert_eq!(mesh.decide(&sliced, r), mesh.decide(&whole, r), "{r:?}");
    }
}
