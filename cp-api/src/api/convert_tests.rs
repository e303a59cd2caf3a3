use super::*;

fn id(s: &str) -> SpiffeId {
    s.parse().expect("a SPIFFE ID")
}

#[test]
fn a_deny_list_converts_both_ways() {
    let deny = Deny {
        ids: vec![id("spiffe://acme.internal/ns/shop/sa/cart")],
        serials: vec![Serial::from_hex("0a1b2c").expect("hex")],
    };
    let message = pb::DenyList::from(&deny);
    assert_eq!(Deny::try_from(&message), Ok(deny));
}

#[test]
fn a_bad_deny_entry_is_refused_by_its_field() {
    let message = pb::DenyList {
        spiffe_ids: vec!["spiffe://acme.internal/a".into(), "not an id".into()],
        serials: vec![],
    };
    let e = Deny::try_from(&message).expect_err("refused");
    assert_eq!(e.field, "deny.spiffe_ids[1]");
    let message = pb::DenyList {
        spiffe_ids: vec![],
        serials: vec!["0a".into(), "zz".into()],
    };
    let e = Deny::try_from(&message).expect_err("refused");
    assert_eq!(e.field, "deny.serials[1]");
    assert!(e.to_string().starts_with("`deny.serials[1]`: "), "{e}");
}

#[test]
fn upstream_endpoints_and_identities_are_checked() {
    let good = pb::Upstream {
        service: "cart".into(),
        endpoints: vec!["127.0.0.1:8080".into()],
        identities: vec!["spiffe://acme.internal/ns/shop/sa/cart".into()],
        weights: vec![],
        labels: vec![],
        addresses: vec!["10.0.0.2:8080".into()],
    };
    let e = endpoints(0, &good).expect("valid");
    assert_eq!(e.addresses, vec!["10.0.0.2:8080".parse().unwrap()]);
    let bad = pb::Upstream {
        addresses: vec!["10.0.0.2:8080".into(), "cart:8080".into()],
        ..good.clone()
    };
    assert_eq!(
        endpoints(3, &bad).expect_err("refused").field,
        "upstreams[3].addresses[1]"
    );
    assert_eq!(e.labels, vec![Default::default()]);
    let labelled = pb::Upstream {
        labels: vec![pb::EndpointLabels {
            labels: [("version".to_owned(), "v2".to_owned())].into(),
        }],
        ..good.clone()
    };
    assert_eq!(
        endpoints(0, &labelled).expect("valid").labels[0]["version"],
        "v2"
    );
    for (labels, field) in [
        (
            vec![pb::EndpointLabels {
                labels: [("bad key".to_owned(), "x".to_owned())].into(),
            }],
            "upstreams[1].labels[0]",
        ),
        (
            vec![pb::EndpointLabels::default(), pb::EndpointLabels::default()],
            "upstreams[1].labels",
        ),
    ] {
        let bad = pb::Upstream {
            labels,
            ..good.clone()
        };
        assert_eq!(endpoints(1, &bad).expect_err("refused").field, field);
    }
    assert_eq!(e.endpoints.len(), 1);
    // No weights: every endpoint has the default.
    assert_eq!(e.weights, vec![100]);
    let weighted = pb::Upstream {
        weights: vec![300],
        ..good.clone()
    };
    assert_eq!(endpoints(0, &weighted).expect("valid").weights, vec![300]);
    for (weights, field) in [
        (vec![0], "upstreams[1].weights[0]"),
        (vec![10_001], "upstreams[1].weights[0]"),
        (vec![1, 2], "upstreams[1].weights"),
    ] {
        let bad = pb::Upstream {
            weights,
            ..good.clone()
        };
        assert_eq!(endpoints(1, &bad).expect_err("refused").field, field);
    }
    let bad = pb::Upstream {
        endpoints: vec!["127.0.0.1:8080".into(), "cart:http".into()],
        ..good.clone()
    };
    assert_eq!(
        endpoints(2, &bad).expect_err("refused").field,
        "upstreams[2].endpoints[1]"
    );
    let bad = pb::Upstream {
        identities: vec!["https://cart".into()],
        ..good
    };
    assert_eq!(
        endpoints(0, &bad).expect_err("refused").field,
        "upstreams[0].identities[0]"
    );
}

#[test]
fn a_workload_directory_round_trips_and_bad_entries_name_their_field() {
    let mut dir = Directory::new();
    dir.insert(
        id("spiffe://acme.internal/ns/shop/sa/cart"),
        "cart",
        [("team".to_owned(), "checkout".to_owned())],
    );
    dir.insert(id("spiffe://acme.internal/ns/shop/sa/web"), "web", []);
    let message = workloads_message(&dir);
    assert_eq!(directory(&message), Ok(dir));

    let mut twice = message.clone();
    twice.push(message[0].clone());
    assert_eq!(
        directory(&twice).expect_err("refused").field,
        "workloads[2].spiffe_id"
    );
    let mut bad_key = message.clone();
    bad_key[0].labels.push(pb::Label {
        key: "Team Name".into(),
        value: "x".into(),
    });
    assert_eq!(
        directory(&bad_key).expect_err("refused").field,
        "workloads[0].labels[1].key"
    );
    let mut bad_value = message;
    bad_value[1].labels.push(pb::Label {
        key: "tier".into(),
        value: "new\nline".into(),
    });
    assert_eq!(
        directory(&bad_value).expect_err("refused").field,
        "workloads[1].labels[0].value"
    );
}

#[test]
fn a_bundle_of_another_trust_domain_or_without_roots_is_refused() {
    let td: TrustDomain = "acme.internal".parse().expect("td");
    let other = pb::TrustBundle {
        trust_domain: "evil.example".into(),
        roots: vec![vec![1, 2, 3]],
        sequence: 1,
        jwt_authorities: vec![],
        federated: vec![],
    };
    assert_eq!(
        trust_bundle(&td, &other).expect_err("refused").field,
        "bundle.trust_domain"
    );
    let empty = pb::TrustBundle {
        trust_domain: "acme.internal".into(),
        roots: vec![],
        sequence: 1,
        jwt_authorities: vec![],
        federated: vec![],
    };
    assert_eq!(
        trust_bundle(&td, &empty).expect_err("refused").field,
        "bundle.roots"
    );
}

#[test]
fn jwt_authorities_convert_and_a_bad_or_mislabelled_one_is_refused() {
    let td: TrustDomain = "acme.internal".parse().expect("td");
    let ca = signet_spiffe::test_pki::TestCa::new("acme.internal");
    let signer = signet_spiffe::jwt::JwtSigner::from_pkcs8(
        &signet_spiffe::jwt::JwtSigner::generate_pkcs8().expect("key"),
    )
    .expect("signer");
    let good = pb::JwtAuthority {
        key_id: signer.key_id().to_owned(),
        jwk: signer.authority().to_jwk_json(),
    };
    let message = |authorities: Vec<pb::JwtAuthority>| pb::TrustBundle {
        trust_domain: "acme.internal".into(),
        roots: vec![ca.root().to_vec()],
        sequence: 9,
        jwt_authorities: authorities,
        federated: vec![],
    };
    let bundle = trust_bundle(&td, &message(vec![good.clone()])).expect("converts");
    assert_eq!(bundle.jwt_authorities(), [signer.authority().clone()]);
    assert_eq!(bundle.sequence(), 9);

    let mislabelled = pb::JwtAuthority {
        key_id: "another".into(),
        ..good.clone()
    };
    let broken = pb::JwtAuthority {
        key_id: good.key_id.clone(),
        jwk: "{}".into(),
    };
    for bad in [mislabelled, broken] {
        assert_eq!(
            trust_bundle(&td, &message(vec![bad]))
                .expect_err("refused")
                .field,
            "bundle.jwt_authorities[0]"
        );
    }
}

#[test]
fn policy_files_must_be_named_once() {
    let slice = pb::PolicySlice {
        version: 3,
        bundle_hash: "h".into(),
        files: vec![
            pb::PolicyFile {
                name: "a.cedar".into(),
                text: String::new(),
            },
            pb::PolicyFile {
                name: "a.cedar".into(),
                text: String::new(),
            },
        ],
    };
    assert_eq!(
        Slice::try_from(&slice).expect_err("refused").field,
        "policies.files[1].name"
    );
}

#[test]
fn label_keys_follow_the_kubernetes_shape() {
    for good in ["env", "app.kubernetes.io/name", "team_1", "9lives"] {
        assert!(valid_label_key(good), "{good}");
    }
    for bad in ["", "-x", "Env", "a b", &"k".repeat(64)] {
        assert!(!valid_label_key(bad), "{bad}");
    }
}
