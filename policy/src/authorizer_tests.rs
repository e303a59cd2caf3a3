use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use super::*;
use crate::bundle::PolicySource;

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));

fn examples() -> Authorizer {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/policies");
    Authorizer::new(Arc::new(PolicyBundle::load(&[dir]).unwrap()))
}

fn with(text: &str) -> Authorizer {
    let source = PolicySource {
        name: "t.cedar".to_owned(),
        text: text.to_owned(),
    };
    Authorizer::new(Arc::new(PolicyBundle::from_sources(&[source]).unwrap()))
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn shop(sa: &str) -> SpiffeId {
    id(&format!("spiffe://acme.internal/ns/shop/sa/{sa}"))
}

fn svc(name: &str) -> Target<'static> {
    Target {
        name: Box::leak(name.to_owned().into_boxed_str()),
        namespace: "shop",
        port: 8080,
        labels: &[],
    }
}

fn get<'a>(path: &'a str, headers: &'a [(String, String)]) -> HttpRequest<'a> {
    HttpRequest {
        method: "GET",
        path,
        host: "cart",
        query: "",
        headers: headers.into(),
        source_ip: IP,
        claims: None,
    }
}

fn caller(id: &SpiffeId) -> Caller<'_> {
    Caller {
        id: Some(id),
        ..Caller::default()
    }
}

#[test]
fn a_permit_allows_and_names_itself() {
    let a = examples();
    let frontend = shop("frontend");
    let d = a.request(&caller(&frontend), &svc("cart"), &get("/api/items", &[]));
    assert_eq!(d.effect, Effect::Allow);
    assert_eq!(d.policies, ["frontend-reads-cart-api"]);
    assert_eq!(d.to_string(), "ALLOW (frontend-reads-cart-api)");
}

#[test]
fn no_permit_is_a_default_deny() {
    let a = examples();
    let frontend = shop("frontend");
    let d = a.request(
        &caller(&frontend),
        &svc("cart"),
        &get("/internal/stats", &[]),
    );
    assert_eq!(d.effect, Effect::Deny);
    assert!(d.policies.is_empty() && d.errors.is_empty());
    assert_eq!(d.reason(), "default-deny");

    let empty = with(
        "@id(\"only-connect\")\npermit (principal, action == Mesh::Action::\"connect\", resource == Mesh::Service::\"x\");",
    );
    let d = empty.request(&caller(&frontend), &svc("cart"), &get("/", &[]));
    assert_eq!(d.reason(), "default-deny");
}

#[test]
fn connect_is_decided_by_namespace() {
    let a = examples();
    let frontend = shop("frontend");
    let d = a.connect(&caller(&frontend), &svc("cart"), IP);
    assert_eq!(d.policies, ["shop-connect-within-namespace"]);
    assert!(d.is_allowed());

    let outsider = id("spiffe://acme.internal/ns/blog/sa/web");
    assert!(!a.connect(&caller(&outsider), &svc("cart"), IP).is_allowed());
}

#[test]
fn forbid_wins_over_permit() {
    let a = examples();
    let frontend = shop("frontend");
    // The namespace rule permits the connection; the guardrail forbids it.
    let d = a.connect(&caller(&frontend), &svc("payments"), IP);
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.policies, ["only-cart-reaches-payments"]);

    let cart = shop("cart");
    assert!(a.connect(&caller(&cart), &svc("payments"), IP).is_allowed());
}

#[test]
fn headers_labels_and_claims_are_readable() {
    let a = examples();
    let frontend = shop("frontend");
    let prod = [("env".to_owned(), "prod".to_owned())];
    let target = Target {
        labels: &prod,
        ..svc("cart")
    };
    let debug = [("X-Debug".to_owned(), "1".to_owned())];
    let d = a.request(&caller(&frontend), &target, &get("/api/items", &debug));
    assert_eq!(d.policies, ["no-debug-header-in-prod"]);
    assert!(
        a.request(&caller(&frontend), &svc("cart"), &get("/api/items", &debug))
            .is_allowed()
    );

    let admin_policy = with(
        "@id(\"admins\")\npermit (principal, action == Mesh::Action::\"GET\", resource)\n  when { context has user && context.user.groups.contains(\"admins\") };",
    );
    let mut req = get("/admin", &[]);
    assert!(
        !admin_policy
            .request(&caller(&frontend), &svc("cart"), &req)
            .is_allowed()
    );
    let claims = Claims {
        sub: "alice".into(),
        iss: "https://idp".into(),
        groups: vec!["admins".into()],
        ..Claims::default()
    };
    req.claims = Some(&claims);
    assert!(
        admin_policy
            .request(&caller(&frontend), &svc("cart"), &req)
            .is_allowed()
    );
}

#[test]
fn grpc_service_and_method_come_from_the_path() {
    let a = examples();
    let cart = shop("cart");
    let mut req = get("/shop.Payments/Charge", &[]);
    req.method = "POST";
    let d = a.request(&caller(&cart), &svc("payments"), &req);
    assert_eq!(d.policies, ["cart-charges-payments"]);
    req.path = "/shop.Refunds/Issue";
    assert!(
        !a.request(&caller(&cart), &svc("payments"), &req)
            .is_allowed()
    );
    assert_eq!(grpc_parts("/a.B/C"), Some(("a.B", "C")));
    assert_eq!(grpc_parts("/api/items"), None);
    assert_eq!(grpc_parts("/a.B/C/D"), None);
}

#[test]
fn errors_deny_and_say_why() {
    let a = examples();
    let frontend = shop("frontend");
    let mut req = get("/api/items", &[]);
    req.method = "BREW";
    let d = a.request(&caller(&frontend), &svc("cart"), &req);
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.errors, ["unknown action `BREW`"]);

    let no_peer = Caller::default();
    assert_eq!(
        a.connect(&no_peer, &svc("cart"), IP).errors,
        ["no verified peer identity"]
    );

    // A forbid whose evaluation fails (strict validation cannot rule out overflow) must not
    // be skipped: Cedar alone would ignore it and let the broad permit allow the request.
    let risky = with(concat!(
        "@id(\"broad\")\npermit (principal, action == Mesh::Action::\"GET\", resource);\n",
        "@id(\"overflowing\")\nforbid (principal, action == Mesh::Action::\"GET\", resource)\n",
        "  when { resource.port * 9223372036854775807 > 1 };\n",
    ));
    let d = risky.request(&caller(&frontend), &svc("cart"), &get("/", &[]));
    assert_eq!(d.effect, Effect::Deny, "{d:?}");
    assert_eq!(d.policies, ["overflowing"]);
    assert_eq!(d.errors.len(), 1);
    assert!(d.errors[0].contains("overflow"), "{:?}", d.errors);
    let port_zero = Target {
        port: 0,
        ..svc("cart")
    };
    assert!(
        risky
            .request(&caller(&frontend), &port_zero, &get("/", &[]))
            .is_allowed()
    );
}

#[test]
fn ids_outside_the_ns_sa_form_still_work() {
    let a = with(
        "@id(\"job\")\npermit (principal == Mesh::Workload::\"spiffe://acme.internal/batch/nightly\", action == Mesh::Action::\"connect\", resource);",
    );
    let job = id("spiffe://acme.internal/batch/nightly");
    assert!(a.connect(&caller(&job), &svc("cart"), IP).is_allowed());
}

#[test]
fn cedar_inputs_fit_the_schema() {
    // Decisions skip Cedar's schema checks for speed; this is where they are made instead.
    let schema = crate::MeshSchema::embedded().schema();
    let table = ActionTable::get();
    let frontend = shop("frontend");
    let job = id("spiffe://acme.internal/batch/nightly");
    let labels = [("env".to_owned(), "prod".to_owned())];
    let headers = [
        ("X-A".to_owned(), "1".to_owned()),
        ("x-a".to_owned(), "2".to_owned()),
    ];
    let claims = Claims {
        sub: "alice".into(),
        iss: "https://idp".into(),
        groups: vec!["admins".into()],
        roles: vec!["reader".into()],
        other: vec![("email".into(), "a@example.com".into())],
    };
    let mut req = get("/shop.Payments/Charge", &headers);
    req.claims = Some(&claims);
    let other_ns = Target {
        namespace: "blog",
        labels: &labels,
        ..svc("posts")
    };
    for peer in [&frontend, &job] {
        let caller = Caller {
            id: Some(peer),
            service: Some("frontend"),
            labels: &labels,
            foreign: false,
        };
        for target in [svc("cart"), other_ns] {
            let (principal, resource, mut entities) = base_entities(peer, &caller, &target);
            let mut context = Vec::new();
            entities.extend(http_context(&req, Needs::ALL, &mut context));
            entities.extend(
                table
                    .entities(table.request_action("GET").unwrap())
                    .to_vec(),
            );
            Entities::from_entities(entities, Some(schema)).unwrap();
            let prepared = Prepared::new(peer, &caller, &target, IP).unwrap();
            context.push(("peer_spiffe_id".to_owned(), prepared.peer.clone()));
            context.push(("source_ip".to_owned(), prepared.source_ip.clone()));
            for action in ["connect", "GET", "DELETE"] {
                let action = table.request_action(action).unwrap();
                let ctx = if action == table.request_action("connect").unwrap() {
                    context[context.len() - 2..].to_vec()
                } else {
                    context.clone()
                };
                Request::new(
                    principal.clone(),
                    table.uid(action).clone(),
                    resource.clone(),
                    Context::from_pairs(ctx).unwrap(),
                    Some(schema),
                )
                .unwrap();
            }
        }
    }
    assert!(
        table.request_action("read").is_none(),
        "groups are not request actions"
    );
}

#[test]
fn a_decision_is_reused_only_while_no_candidate_reads_the_request() {
    let frontend = shop("frontend");
    let headers_made = std::cell::Cell::new(0);
    let debug = || {
        headers_made.set(headers_made.get() + 1);
        vec![("X-Debug".to_owned(), "1".to_owned())]
    };
    let request = |path| HttpRequest {
        headers: Headers::Lazy(&debug),
        ..get(path, &[])
    };

    // Nothing per request is read: one answer for every GET, and the headers are never made.
    let open = with(r#"@id("all") permit (principal, action, resource);"#);
    for path in ["/api", "/admin", "/api"] {
        let d = open.request(&caller(&frontend), &svc("cart"), &request(path));
        assert_eq!(d.policies, ["all"], "{path}");
    }
    assert_eq!(headers_made.get(), 0);

    // A candidate reading the path: each request is decided on its own path.
    let guarded = with(
        r#"@id("all") permit (principal, action, resource);
           @id("no-admin") forbid (principal, action == Mesh::Action::"GET", resource) when { context.path like "/admin*" };"#,
    );
    let decide = |path| guarded.request(&caller(&frontend), &svc("cart"), &request(path));
    assert!(decide("/api").is_allowed());
    assert_eq!(decide("/admin").policies, ["no-admin"]);
    assert!(decide("/api").is_allowed());
    assert_eq!(headers_made.get(), 0);

    // A candidate reading headers gets them, made once per decision.
    let no_debug = with(
        r#"@id("all") permit (principal, action, resource);
           @id("no-debug") forbid (principal, action == Mesh::Action::"GET", resource) when { context.headers.hasTag("x-debug") };"#,
    );
    let d = no_debug.request(&caller(&frontend), &svc("cart"), &request("/api"));
    assert_eq!(d.policies, ["no-debug"]);
    assert_eq!(headers_made.get(), 1);
    let plain = get("/api", &[]);
    assert!(
        no_debug
            .request(&caller(&frontend), &svc("cart"), &plain)
            .is_allowed()
    );

    // The connection-level context (source address) is part of what a reused answer is for.
    let local_only = with(
        r#"@id("local") permit (principal, action, resource) when { context.source_ip.isLoopback() };"#,
    );
    let from = |ip| HttpRequest {
        source_ip: ip,
        ..get("/api", &[])
    };
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert!(
        local_only
            .request(&caller(&frontend), &svc("cart"), &from(loopback))
            .is_allowed()
    );
    assert!(
        !local_only
            .request(&caller(&frontend), &svc("cart"), &from(IP))
            .is_allowed()
    );
    assert!(
        local_only
            .request(&caller(&frontend), &svc("cart"), &from(loopback))
            .is_allowed()
    );
}

#[test]
fn a_federated_domains_caller_is_in_no_local_namespace_and_allowed_only_where_named() {
    let partner = id("spiffe://partner.example/ns/shop/sa/frontend");
    let local = shop("frontend");
    let directory = crate::Directory::new()
        .with_trust_domain(signet_spiffe::TrustDomain::new("acme.internal").unwrap());
    let foreign = directory.caller(&partner);
    assert!(foreign.foreign);
    assert!(!directory.caller(&local).foreign);
    // The offline tools' inventory says the same once it names the mesh's trust domain.
    let inventory = crate::Inventory {
        trust_domain: Some("acme.internal".to_owned()),
        ..crate::Inventory::default()
    };
    inventory.check().unwrap();
    assert!(inventory.directory().caller(&partner).foreign);
    assert!(
        !crate::Inventory::default()
            .directory()
            .caller(&partner)
            .foreign
    );
    let bad = crate::Inventory {
        trust_domain: Some("Not A Domain".to_owned()),
        ..crate::Inventory::default()
    };
    assert!(bad.check().is_err());
    let connect = |a: &Authorizer, c: &Caller<'_>| a.connect(c, &svc("cart"), IP);
    for text in [
        // Written for this mesh's own workloads: another mesh's `/ns/shop/` is not `shop`.
        "@id(\"shop-connects\") permit (principal in Mesh::Namespace::\"shop\", action == Mesh::Action::\"connect\", resource);",
        "@id(\"shop-by-attr\") permit (principal, action == Mesh::Action::\"connect\", resource) when { principal.namespace == \"shop\" };",
        // Open to everyone: still not to a domain it does not name.
        "@id(\"anyone\") permit (principal, action == Mesh::Action::\"connect\", resource);",
    ] {
        for a in [
            with(text),
            Authorizer::exhaustive(Arc::clone(with(text).bundle())),
        ] {
            let d = connect(&a, &foreign);
            assert!(!d.is_allowed(), "{text}: {d:?}");
            assert!(connect(&a, &caller(&local)).is_allowed(), "{text}");
        }
    }
    let d = connect(
        &with("@id(\"anyone\") permit (principal, action == Mesh::Action::\"connect\", resource);"),
        &foreign,
    );
    assert!(d.errors[0].contains("names that domain"), "{d:?}");
    for text in [
        "@id(\"partner-frontend\") permit (principal == Mesh::Workload::\"spiffe://partner.example/ns/shop/sa/frontend\", action == Mesh::Action::\"connect\", resource == Mesh::Service::\"cart\");",
        "@id(\"partner-domain\") permit (principal, action == Mesh::Action::\"connect\", resource) when { principal.trust_domain == \"partner.example\" };",
    ] {
        for a in [
            with(text),
            Authorizer::exhaustive(Arc::clone(with(text).bundle())),
        ] {
            let d = connect(&a, &foreign);
            assert!(d.is_allowed(), "{text}: {d:?}");
        }
    }
    // Naming another federated domain does not let this one in.
    let other = with(
        "@id(\"other\") permit (principal, action == Mesh::Action::\"connect\", resource) when { principal.trust_domain == \"other.example\" || true };",
    );
    assert!(!connect(&other, &foreign).is_allowed());
    // A forbid still wins over a naming permit.
    let both = with(
        "@id(\"partner-domain\") permit (principal, action == Mesh::Action::\"connect\", resource) when { principal.trust_domain == \"partner.example\" };\n\
         @id(\"no-partner\") forbid (principal == Mesh::Workload::\"spiffe://partner.example/ns/shop/sa/frontend\", action, resource);",
    );
    assert_eq!(connect(&both, &foreign).policies, ["no-partner"]);
}
