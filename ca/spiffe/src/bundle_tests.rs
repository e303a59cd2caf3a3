use super::*;
use crate::test_pki::TestCa;

fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap()
}

#[test]
fn pem_round_trip_with_several_roots() {
    let (a, b) = (TestCa::new("acme.internal"), TestCa::new("acme.internal"));
    let mut bundle = a.bundle();
    assert!(bundle.add_root(b.root().clone()).unwrap());
    assert!(
        !bundle.add_root(b.root().clone()).unwrap(),
        "duplicate root is a no-op"
    );
    assert_eq!(bundle.roots().len(), 2);

    let pem = bundle.to_pem();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
    let back = TrustBundle::from_pem(td("acme.internal"), &pem).unwrap();
    assert_eq!(back, bundle);
    assert_eq!(back.anchors().len(), 2);
}

#[test]
fn jwks_round_trip_keeps_roots_sequence_and_key_material() {
    let (a, b) = (TestCa::new("acme.internal"), TestCa::new("acme.internal"));
    let mut bundle = TrustBundle::from_roots(td("acme.internal"), [a.root().clone()]).unwrap();
    bundle.add_root(b.root().clone()).unwrap();
    bundle.set_sequence(42);
    let json = bundle.to_jwks().unwrap();

    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["spiffe_sequence"], 42);
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for k in keys {
        assert_eq!(k["use"], "x509-svid");
        assert_eq!(k["kty"], "EC");
        assert_eq!(k["crv"], "P-256");
        assert_eq!(k["x"].as_str().unwrap().len(), 43, "32 bytes base64url");
        assert_eq!(k["x5c"].as_array().unwrap().len(), 1);
    }

    let back = TrustBundle::from_jwks(td("acme.internal"), &json).unwrap();
    assert_eq!(back, bundle);
    assert_eq!(back.sequence(), 42);
}

#[test]
fn jwks_reads_jwt_keys_beside_roots_skips_other_uses_and_rejects_bad_x509_keys() {
    let ca = TestCa::new("acme.internal");
    let good = serde_json::from_str::<serde_json::Value>(&ca.bundle().to_jwks().unwrap()).unwrap();
    let x509_key = good["keys"][0].clone();
    let signer =
        crate::jwt::JwtSigner::from_pkcs8(&crate::jwt::JwtSigner::generate_pkcs8().unwrap())
            .unwrap();
    let jwt_key: serde_json::Value =
        serde_json::from_str(&signer.authority().to_jwk_json()).unwrap();

    let mixed = serde_json::json!({
        "keys": [
            jwt_key,
            {"use": "something-else", "kty": "EC", "crv": "P-256", "kid": "k1", "x": "AA", "y": "AA"},
            x509_key,
        ],
        "spiffe_refresh_hint": 300
    });
    let b = TrustBundle::from_jwks(td("acme.internal"), &mixed.to_string()).unwrap();
    assert_eq!(b.roots().len(), 1);
    assert_eq!(b.jwt_authorities(), [signer.authority().clone()]);
    assert_eq!(b.refresh_hint_secs(), Some(300));

    let mut two = x509_key.clone();
    two["x5c"] = serde_json::json!([x509_key["x5c"][0], x509_key["x5c"][0]]);
    let err = TrustBundle::from_jwks(
        td("acme.internal"),
        &serde_json::json!({"keys": [two]}).to_string(),
    )
    .unwrap_err();
    assert!(matches!(err, BundleError::X5cCount { index: 0 }), "{err}");

    let mut bad64 = x509_key.clone();
    bad64["x5c"] = serde_json::json!(["***"]);
    let err = TrustBundle::from_jwks(
        td("acme.internal"),
        &serde_json::json!({"keys": [bad64]}).to_string(),
    )
    .unwrap_err();
    assert!(matches!(err, BundleError::X5cBase64 { index: 0 }), "{err}");

    let other = TestCa::new("acme.internal");
    let other_key = serde_json::from_str::<serde_json::Value>(&other.bundle().to_jwks().unwrap())
        .unwrap()["keys"][0]
        .clone();
    let mut mismatched = x509_key.clone();
    mismatched["x"] = other_key["x"].clone();
    let err = TrustBundle::from_jwks(
        td("acme.internal"),
        &serde_json::json!({"keys": [mismatched]}).to_string(),
    )
    .unwrap_err();
    assert!(
        matches!(err, BundleError::KeyMismatch { index: 0 }),
        "{err}"
    );

    assert!(matches!(
        TrustBundle::from_jwks(td("acme.internal"), "{not json"),
        Err(BundleError::Json(_))
    ));
}

#[test]
fn roots_must_be_ca_certificates() {
    let ca = TestCa::new("acme.internal");
    let (leaf_chain, _) = ca.svid("spiffe://acme.internal/ns/a/sa/b");
    let err = TrustBundle::from_roots(td("acme.internal"), [leaf_chain[0].clone()]).unwrap_err();
    assert!(matches!(err, BundleError::NotCa { index: 0 }), "{err}");

    let err = TrustBundle::from_roots(td("acme.internal"), [CertificateDer::from(vec![1, 2, 3])])
        .unwrap_err();
    assert!(
        matches!(err, BundleError::BadCertificate { index: 0, .. }),
        "{err}"
    );
}

#[test]
fn pem_errors_are_clear() {
    assert!(matches!(
        TrustBundle::from_pem(td("a"), ""),
        Err(BundleError::NoCertificates)
    ));
    assert!(matches!(
        TrustBundle::from_pem(
            td("a"),
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"
        ),
        Err(BundleError::Pem(_))
    ));
}

#[test]
fn remove_root_bumps_sequence() {
    let (a, b) = (TestCa::new("acme.internal"), TestCa::new("acme.internal"));
    let mut bundle = a.bundle();
    bundle.add_root(b.root().clone()).unwrap();
    let seq = bundle.sequence();
    assert!(bundle.remove_root(a.root()));
    assert!(!bundle.remove_root(a.root()));
    assert_eq!(bundle.sequence(), seq + 1);
    assert!(!bundle.contains(a.root()));
    assert!(bundle.contains(b.root()));
}
