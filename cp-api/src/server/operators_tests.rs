use super::*;

fn td() -> TrustDomain {
    TrustDomain::new("t.test").unwrap()
}

fn id(text: &str) -> SpiffeId {
    text.parse().unwrap()
}

/// One act of every action, touching `target`.
fn every_act(target: &SpiffeId) -> Vec<Act<'_>> {
    vec![
        Act::Read {
            collection: "policies",
        },
        Act::PolicyApply {
            files: 1,
            dry_run: false,
            expected_version: Some(3),
        },
        Act::PolicyRollback {
            version: 2,
            expected_version: None,
        },
        Act::PolicyWidening {
            widened: 3,
            narrowed: 1,
            rollback: false,
        },
        Act::PolicyShadow {
            operation: "install",
            files: 1,
        },
        Act::AuthnApply {
            providers: 1,
            services: 2,
        },
        Act::TrafficApply {
            operation: "apply",
            services: 1,
            changes: 3,
        },
        Act::ServiceLabel {
            service: "cart",
            namespace: "shop",
        },
        Act::WorkloadAttest {
            service: "cart",
            namespace: "shop",
            selectors: 2,
        },
        Act::TokenCreate {
            id: target,
            operator: false,
            ttl_seconds: 600,
        },
        Act::TokenCreate {
            id: target,
            operator: true,
            ttl_seconds: 600,
        },
        Act::DenyId { id: target },
        Act::DenySerial { serial: "0a1b" },
        Act::CaManage {
            operation: "rotate",
        },
        Act::FederationManage {
            operation: "add",
            trust_domain: "partner.example",
        },
    ]
}

#[test]
fn the_default_policies_let_the_admin_do_everything_and_no_one_else_anything() {
    let policies =
        OperatorPolicies::parse("operators.cedar", &default_policies(&td()).unwrap()).unwrap();
    let admin = admin_id(&td()).unwrap();
    let workload = id("spiffe://t.test/ns/shop/sa/cart");
    let acts = every_act(&workload);
    let mut actions: Vec<&str> = acts.iter().map(Act::action).collect();
    actions.dedup();
    assert_eq!(actions, ACTIONS, "every action is exercised");
    for act in &acts {
        let d = policies.decide(&admin, act);
        assert!(d.allowed, "{act:?}");
        assert_eq!(d.policies, ["admin-may-do-everything"]);
        assert!(!policies.decide(&workload, act).allowed, "{act:?}");
    }
}

#[test]
fn a_read_only_role_reads_and_nothing_more() {
    let text = r#"
        @id("auditors-read-audit")
        permit (principal == Signet::Operator::"spiffe://t.test/signet/operator/auditor",
                action == Signet::Action::"read", resource)
        when { context.collection == "audit" };
    "#;
    let policies = OperatorPolicies::parse("operators.cedar", text).unwrap();
    let auditor = id("spiffe://t.test/signet/operator/auditor");
    let read = |collection| Act::Read { collection };
    assert!(policies.decide(&auditor, &read("audit")).allowed);
    assert!(!policies.decide(&auditor, &read("policies")).allowed);
    for act in every_act(&auditor).iter().skip(1) {
        assert!(!policies.decide(&auditor, act).allowed, "{act:?}");
    }
}

/// A role allowed `token.create` cannot mint a token for an operator, admin included: that
/// is `operator.enroll`, which only a policy naming it grants.
#[test]
fn token_create_does_not_reach_operator_identities() {
    let text = r#"
        @id("shop-onboarding")
        permit (principal == Signet::Operator::"spiffe://t.test/signet/operator/ci",
                action == Signet::Action::"token.create", resource)
        when { context.path like "/ns/shop/*" && context.ttl_seconds <= 3600 };
    "#;
    let policies = OperatorPolicies::parse("operators.cedar", text).unwrap();
    let ci = id("spiffe://t.test/signet/operator/ci");
    let token = |target: &SpiffeId, ttl_seconds| {
        let operator = is_operator_identity(target, &td());
        policies
            .decide(
                &ci,
                &Act::TokenCreate {
                    id: target,
                    operator,
                    ttl_seconds,
                },
            )
            .allowed
    };
    assert!(token(&id("spiffe://t.test/ns/shop/sa/cart"), 600));
    assert!(!token(&id("spiffe://t.test/ns/shop/sa/cart"), 7200));
    assert!(!token(&id("spiffe://t.test/ns/bank/sa/vault"), 600));
    assert!(!token(&admin_id(&td()).unwrap(), 600));
    assert!(!token(&id("spiffe://t.test/signet/operator/ci"), 600));
    // Even a policy with no conditions on token.create grants no operator identity.
    let broad = r#"
        @id("any-token")
        permit (principal, action == Signet::Action::"token.create", resource);
    "#;
    let policies = OperatorPolicies::parse("operators.cedar", broad).unwrap();
    let admin = admin_id(&td()).unwrap();
    let enroll = Act::TokenCreate {
        id: &admin,
        operator: true,
        ttl_seconds: 60,
    };
    assert!(!policies.decide(&ci, &enroll).allowed);
}

#[test]
fn deny_and_rollback_can_be_limited_by_what_they_touch() {
    let text = r#"
        @id("oncall-denies-shop-workloads")
        permit (principal == Signet::Operator::"spiffe://t.test/signet/operator/oncall",
                action == Signet::Action::"deny.add", resource is Signet::Identity)
        when { context.value like "spiffe://t.test/ns/shop/*" };
        @id("oncall-rolls-back-to-recent")
        permit (principal == Signet::Operator::"spiffe://t.test/signet/operator/oncall",
                action == Signet::Action::"policy.rollback", resource)
        when { context.version >= 10 };
    "#;
    let policies = OperatorPolicies::parse("operators.cedar", text).unwrap();
    let oncall = id("spiffe://t.test/signet/operator/oncall");
    let shop = id("spiffe://t.test/ns/shop/sa/cart");
    let admin = admin_id(&td()).unwrap();
    assert!(policies.decide(&oncall, &Act::DenyId { id: &shop }).allowed);
    assert!(
        !policies
            .decide(&oncall, &Act::DenyId { id: &admin })
            .allowed
    );
    assert!(
        !policies
            .decide(&oncall, &Act::DenySerial { serial: "ab" })
            .allowed
    );
    let rollback = |version| Act::PolicyRollback {
        version,
        expected_version: None,
    };
    assert!(policies.decide(&oncall, &rollback(12)).allowed);
    assert!(!policies.decide(&oncall, &rollback(3)).allowed);
}

#[test]
fn operator_identities_are_those_under_signet() {
    assert!(is_operator_identity(&admin_id(&td()).unwrap(), &td()));
    assert!(is_operator_identity(&id("spiffe://t.test/signet"), &td()));
    assert!(is_operator_identity(
        &id("spiffe://t.test/signet/control-plane"),
        &td()
    ));
    assert!(!is_operator_identity(
        &id("spiffe://t.test/signets/x"),
        &td()
    ));
    assert!(!is_operator_identity(
        &id("spiffe://other.test/signet/operator/admin"),
        &td()
    ));
}

#[test]
fn recorded_targets_are_bounded() {
    let serial = "a".repeat(10_000);
    assert_eq!(
        Act::DenySerial { serial: &serial }.target().len(),
        MAX_TARGET
    );
    let short = Act::DenySerial { serial: "0a" };
    assert_eq!(short.target(), "0a");
}

#[test]
fn bad_operator_policies_are_refused_with_the_file_name() {
    let no_id = "permit (principal, action, resource);";
    assert!(
        OperatorPolicies::parse("ops.cedar", no_id)
            .unwrap_err()
            .contains("@id")
    );
    let unknown = r#"@id("x") permit (principal, action == Signet::Action::"brew", resource);"#;
    assert!(
        OperatorPolicies::parse("ops.cedar", unknown)
            .unwrap_err()
            .starts_with("ops.cedar: ")
    );
    // Before actions named what they touch, token.create's resource was the control plane;
    // such a policy is refused now rather than silently granting nothing.
    let stale = r#"@id("x") permit (principal, action == Signet::Action::"token.create",
                                      resource == Signet::ControlPlane::"cp");"#;
    assert!(OperatorPolicies::parse("ops.cedar", stale).is_err());
}
