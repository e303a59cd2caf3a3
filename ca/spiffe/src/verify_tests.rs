use super::*;
use crate::test_pki::{LeafSpec, TestCa};
use rcgen::ExtendedKeyUsagePurpose;

const ID: &str = "spiffe://acme.internal/ns/shop/sa/cart";

fn now() -> UnixTime {
    UnixTime::now()
}

fn check(
    bundle: &TrustBundle,
    chain: &[CertificateDer<'static>],
    usage: Usage,
) -> Result<VerifiedPeer, PeerError> {
    verify_peer(bundle, &chain[0], &chain[1..], now(), usage)
}

#[test]
fn a_good_chain_yields_the_spiffe_id_both_ways() {
    let ca = TestCa::new("acme.internal");
    let (chain, _) = ca.svid(ID);
    for usage in [Usage::Client, Usage::Server] {
        let peer = check(&ca.bundle(), &chain, usage).unwrap();
        assert_eq!(peer.id.as_str(), ID);
        assert_eq!(peer.serial.as_bytes().len(), 16);
    }
}

#[test]
fn a_peer_of_a_domain_not_federated_is_refused_and_a_forged_one_is_an_unknown_issuer() {
    let ours = TestCa::new("acme.internal");
    let theirs = TestCa::new("evil.example");
    let (chain, _) = theirs.svid("spiffe://evil.example/ns/shop/sa/cart");
    assert!(matches!(
        check(&ours.bundle(), &chain, Usage::Client),
        Err(PeerError::WrongTrustDomain { .. })
    ));
    // Their CA naming one of ours: our roots do not know it.
    let (chain, _) = theirs.svid(ID);
    assert_eq!(
        check(&ours.bundle(), &chain, Usage::Client),
        Err(PeerError::UnknownIssuer)
    );

    // Same trust domain and same CA names, different keys: the signature gives it away.
    let impostor = TestCa::new("acme.internal");
    let (chain, _) = impostor.svid(ID);
    assert_eq!(
        check(&ours.bundle(), &chain, Usage::Client),
        Err(PeerError::BadSignature)
    );
}

#[test]
fn a_federated_domains_peers_verify_against_its_roots_and_only_theirs() {
    let ours = TestCa::new("acme.internal");
    let partner = TestCa::new("partner.example");
    let federated = ours.bundle().with_federated([partner.bundle()]);
    assert_eq!(federated.federated().len(), 1);
    let (chain, _) = partner.svid("spiffe://partner.example/ns/shop/sa/frontend");
    for usage in [Usage::Client, Usage::Server] {
        let peer = check(&federated, &chain, usage).unwrap();
        assert_eq!(
            peer.id.as_str(),
            "spiffe://partner.example/ns/shop/sa/frontend"
        );
    }
    // Our own peers still verify.
    let (own, _) = ours.svid(ID);
    check(&federated, &own, Usage::Client).unwrap();
    // The partner's CA cannot vouch for one of ours, nor ours for one of theirs.
    let (forged, _) = partner.svid(ID);
    assert_eq!(
        check(&federated, &forged, Usage::Client),
        Err(PeerError::UnknownIssuer)
    );
    let (forged, _) = ours.svid("spiffe://partner.example/ns/shop/sa/frontend");
    assert_eq!(
        check(&federated, &forged, Usage::Client),
        Err(PeerError::UnknownIssuer)
    );
    // Unfederated again: refused.
    let alone = federated.clone().with_federated([]);
    assert!(matches!(
        check(&alone, &chain, Usage::Client),
        Err(PeerError::WrongTrustDomain { .. })
    ));
    assert_ne!(alone, federated);
    // A bundle never federates with its own domain.
    let same = ours
        .bundle()
        .with_federated([TestCa::new("acme.internal").bundle()]);
    assert!(same.federated().is_empty());
}

#[test]
fn leaf_signed_by_an_unknown_intermediate_is_refused() {
    let ours = TestCa::new("acme.internal");
    let rogue = TestCa::new("acme.internal");
    let (mut chain, _) = rogue.svid(ID);
    // Present our real intermediate: the leaf's signature does not verify under it.
    chain[1] = ours.intermediate().clone();
    let err = check(&ours.bundle(), &chain, Usage::Client).unwrap_err();
    assert!(
        matches!(err, PeerError::UnknownIssuer | PeerError::BadSignature),
        "{err}"
    );
    // No intermediate at all.
    let err = check(&ours.bundle(), &chain[..1], Usage::Client).unwrap_err();
    assert_eq!(err, PeerError::UnknownIssuer);
}

#[test]
fn bundle_of_another_trust_domain_with_the_same_root_is_refused() {
    // A root trusted for one trust domain must not vouch for IDs of another.
    let ca = TestCa::new("acme.internal");
    let (chain, _) = ca.svid("spiffe://other.internal/ns/a/sa/b");
    let err = check(&ca.bundle(), &chain, Usage::Client).unwrap_err();
    assert!(matches!(err, PeerError::WrongTrustDomain { .. }), "{err}");
}

#[test]
fn expired_and_future_leaves_are_refused() {
    let ca = TestCa::new("acme.internal");
    let t = SystemTime::now();
    let mut expired = LeafSpec::for_id(ID);
    expired.not_before = t - Duration::from_secs(600);
    expired.not_after = t - Duration::from_secs(60);
    let (chain, _) = ca.issue(&expired);
    assert_eq!(
        check(&ca.bundle(), &chain, Usage::Client),
        Err(PeerError::Expired)
    );

    let mut future = LeafSpec::for_id(ID);
    future.not_before = t + Duration::from_secs(600);
    future.not_after = t + Duration::from_secs(1200);
    let (chain, _) = ca.issue(&future);
    assert_eq!(
        check(&ca.bundle(), &chain, Usage::Client),
        Err(PeerError::NotYetValid)
    );
}

#[test]
fn leaf_without_uri_san_or_with_ca_flag_is_not_an_svid() {
    let ca = TestCa::new("acme.internal");
    let mut no_uri = LeafSpec::for_id(ID);
    no_uri.uris.clear();
    no_uri.dns = vec!["cart.local".into()];
    let (chain, _) = ca.issue(&no_uri);
    assert_eq!(
        check(&ca.bundle(), &chain, Usage::Client),
        Err(PeerError::NotSvid(SvidError::NoUriSan))
    );

    let mut is_ca = LeafSpec::for_id(ID);
    is_ca.is_ca = true;
    let (chain, _) = ca.issue(&is_ca);
    // The test intermediate has pathLen 0, so webpki may report the CA leaf either way.
    let err = check(&ca.bundle(), &chain, Usage::Client).unwrap_err();
    assert!(
        matches!(
            err,
            PeerError::NotSvid(SvidError::LeafIsCa) | PeerError::InvalidChain(_)
        ),
        "{err}"
    );
}

#[test]
fn eku_must_allow_the_role() {
    let ca = TestCa::new("acme.internal");
    let mut server_only = LeafSpec::for_id(ID);
    server_only.eku = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let (chain, _) = ca.issue(&server_only);
    assert!(check(&ca.bundle(), &chain, Usage::Server).is_ok());
    assert_eq!(
        check(&ca.bundle(), &chain, Usage::Client),
        Err(PeerError::WrongUsage(Usage::Client))
    );
}

#[test]
fn empty_bundle_trusts_nothing() {
    let ca = TestCa::new("acme.internal");
    let (chain, _) = ca.svid(ID);
    let empty = TrustBundle::new(ca.trust_domain().clone());
    assert!(matches!(
        check(&empty, &chain, Usage::Client),
        Err(PeerError::NoRoots(_))
    ));
}

#[test]
fn rotation_overlap_trusts_old_and_new_roots() {
    let old = TestCa::new("acme.internal");
    let new = TestCa::new("acme.internal");
    let mut bundle = old.bundle();
    bundle.add_root(new.root().clone()).unwrap();
    let (a, _) = old.svid(ID);
    let (b, _) = new.svid(ID);
    assert!(check(&bundle, &a, Usage::Client).is_ok());
    assert!(check(&bundle, &b, Usage::Client).is_ok());
    bundle.remove_root(old.root());
    // Both roots carry the same name, so the old chain now fails on the new root's key.
    assert_eq!(
        check(&bundle, &a, Usage::Client),
        Err(PeerError::BadSignature)
    );
}

#[test]
fn filters_refuse_by_id_and_serial() {
    let ca = TestCa::new("acme.internal");
    let bundle = ca.bundle();
    let (chain, _) = ca.svid(ID);
    let peer = check(&bundle, &chain, Usage::Client).unwrap();
    let run = |f: &dyn PeerFilter| {
        verify_and_admit(&bundle, f, &chain[0], &chain[1..], now(), Usage::Client)
    };

    let deny = DenyList::new();
    assert!(run(&deny).is_ok());
    deny.replace([peer.id.clone()], []);
    let err = run(&deny).unwrap_err();
    assert_eq!(err.reason(), "refused");
    assert!(err.to_string().contains("deny-list"), "{err}");
    assert!(deny.denies(&peer.id, &Serial::from_bytes(&[1])));

    deny.replace([], [peer.serial.clone()]);
    assert!(
        run(&deny)
            .unwrap_err()
            .to_string()
            .contains(&peer.serial.to_string())
    );
    deny.replace([], []);
    assert!(run(&deny).is_ok());

    let allow = AllowList::new(["spiffe://acme.internal/ns/shop/sa/other".parse().unwrap()]);
    assert!(run(&allow).is_err());
    let allow = AllowList::new([peer.id.clone()]);
    assert!(run(&allow).is_ok());

    let both = AllOf(vec![Arc::new(allow), Arc::new(DenyList::new())]);
    assert!(run(&both).is_ok());
    let denying = DenyList::new();
    denying.replace([peer.id.clone()], []);
    let both = AllOf(vec![Arc::new(AdmitAll), Arc::new(denying)]);
    assert!(run(&both).is_err());
}

#[test]
fn leaves_that_break_the_x509_svid_profile_are_refused_and_what_it_allows_is_not() {
    use rcgen::KeyUsagePurpose as Ku;
    let ca = TestCa::new("acme.internal");
    let refused = |spec: &LeafSpec| {
        let (chain, _) = ca.issue(spec);
        match check(&ca.bundle(), &chain, Usage::Client) {
            Err(PeerError::NotSvid(e)) => e,
            other => panic!("{spec:?}: {other:?}"),
        }
    };
    // An ID without a path names a trust domain, not a workload.
    let no_path = LeafSpec::for_id("spiffe://acme.internal");
    assert!(matches!(refused(&no_path), SvidError::NoPath(_)));
    // Key usages a leaf must not have, or lacks.
    for ku in [
        vec![Ku::DigitalSignature, Ku::KeyCertSign],
        vec![Ku::DigitalSignature, Ku::CrlSign],
        vec![Ku::KeyEncipherment],
    ] {
        let mut spec = LeafSpec::for_id(ID);
        spec.ku = ku.clone();
        assert!(matches!(refused(&spec), SvidError::KeyUsage(_)), "{ku:?}");
    }
    let mut spec = LeafSpec::for_id(ID);
    spec.without_key_usage = true;
    assert_eq!(refused(&spec), SvidError::KeyUsage("is missing"));
    // What other SPIFFE implementations issue is fine.
    let mut spec = LeafSpec::for_id(ID);
    spec.ku = vec![Ku::DigitalSignature, Ku::KeyEncipherment, Ku::KeyAgreement];
    let (chain, _) = ca.issue(&spec);
    assert_eq!(
        check(&ca.bundle(), &chain, Usage::Server)
            .unwrap()
            .id
            .as_str(),
        ID
    );
}
