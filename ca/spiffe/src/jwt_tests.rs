use super::*;
use crate::TrustDomain;

fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap()
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn signer() -> JwtSigner {
    JwtSigner::from_pkcs8(&JwtSigner::generate_pkcs8().unwrap()).unwrap()
}

fn bundle_with(trust_domain: &str, authorities: &[&JwtAuthority]) -> TrustBundle {
    let mut bundle = TrustBundle::new(td(trust_domain));
    for a in authorities {
        bundle.add_jwt_authority((*a).clone()).unwrap();
    }
    bundle
}

fn aud(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

const CART: &str = "spiffe://acme.internal/ns/shop/sa/cart";

fn now() -> SystemTime {
    SystemTime::now()
}

/// A token with `header` and `claims` as given, signed by `key` as ES256.
fn forged(key: &JwtSigner, header: &Value, claims: &Value) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let sig = key.pair.sign(&key.rng, token.as_bytes()).unwrap();
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
    token
}

fn claims_for(sub: &str, audience: &str, exp: u64) -> Value {
    serde_json::json!({"sub": sub, "aud": audience, "exp": exp})
}

#[test]
fn a_signed_token_validates_for_each_of_its_audiences_and_carries_its_claims() {
    let key = signer();
    let bundle = bundle_with("acme.internal", &[key.authority()]);
    let minted = key
        .sign(
            &id(CART),
            &aud(&["billing", "queue"]),
            now(),
            Duration::from_secs(300),
            "j1",
        )
        .unwrap();
    for audience in ["billing", "queue"] {
        let svid = JwtSvid::validate(
            &minted.token,
            audience,
            std::slice::from_ref(&bundle),
            now(),
        )
        .unwrap();
        assert_eq!(svid.id(), &id(CART));
        assert_eq!(svid.audience(), ["billing", "queue"]);
        assert_eq!(svid.claims()["jti"], "j1");
        assert_eq!(unix(svid.expires()), unix(minted.expires));
    }
    let header: Value =
        serde_json::from_slice(&part(minted.token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], key.key_id());
    assert_eq!(header["typ"], "JWT");
}

#[test]
fn one_audience_is_a_string_and_the_audience_asked_for_must_be_named() {
    let key = signer();
    let bundle = [bundle_with("acme.internal", &[key.authority()])];
    let minted = key
        .sign(
            &id(CART),
            &aud(&["billing"]),
            now(),
            Duration::from_secs(60),
            "j",
        )
        .unwrap();
    let claims: Value =
        serde_json::from_slice(&part(minted.token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["aud"], "billing");
    assert_eq!(
        JwtSvid::validate(&minted.token, "payments", &bundle, now()).unwrap_err(),
        JwtError::Audience("payments".into())
    );
}

#[test]
fn signing_refuses_bad_audiences() {
    let key = signer();
    let sign = |a: Vec<String>| key.sign(&id(CART), &a, now(), Duration::from_secs(60), "j");
    assert!(matches!(sign(vec![]), Err(JwtError::BadAudience(_))));
    assert!(matches!(sign(aud(&[""])), Err(JwtError::BadAudience(_))));
    assert!(matches!(
        sign(vec!["a".repeat(MAX_AUDIENCE_LEN + 1)]),
        Err(JwtError::BadAudience(_))
    ));
    assert!(matches!(
        sign(vec!["a".to_owned(); MAX_AUDIENCES + 1]),
        Err(JwtError::BadAudience(_))
    ));
}

#[test]
fn expired_and_future_tokens_are_refused() {
    let key = signer();
    let bundle = [bundle_with("acme.internal", &[key.authority()])];
    let issued = now() - Duration::from_secs(120);
    let minted = key
        .sign(
            &id(CART),
            &aud(&["b"]),
            issued,
            Duration::from_secs(60),
            "j",
        )
        .unwrap();
    assert!(matches!(
        JwtSvid::validate(&minted.token, "b", &bundle, now()),
        Err(JwtError::Expired(_))
    ));
    let later = key
        .sign(
            &id(CART),
            &aud(&["b"]),
            now() + Duration::from_secs(600),
            Duration::from_secs(60),
            "j",
        )
        .unwrap();
    assert!(matches!(
        JwtSvid::validate(&later.token, "b", &bundle, now()),
        Err(JwtError::NotYetValid(_))
    ));
}

#[test]
fn only_the_bundle_of_the_subjects_trust_domain_and_its_key_id_verify() {
    let (ours, theirs) = (signer(), signer());
    let minted = ours
        .sign(&id(CART), &aud(&["b"]), now(), Duration::from_secs(60), "j")
        .unwrap();
    // The key is published, but by another trust domain.
    let other = [bundle_with("partner.example", &[ours.authority()])];
    assert_eq!(
        JwtSvid::validate(&minted.token, "b", &other, now()).unwrap_err(),
        JwtError::NoBundle("acme.internal".into())
    );
    // The trust domain publishes another key.
    let rotated = [bundle_with("acme.internal", &[theirs.authority()])];
    assert!(matches!(
        JwtSvid::validate(&minted.token, "b", &rotated, now()),
        Err(JwtError::UnknownKey { .. })
    ));
    // Another key under our key ID: the signature is checked against the published key.
    let impostor = JwtAuthority::new(ours.key_id(), theirs.authority().key().clone()).unwrap();
    let swapped = [bundle_with("acme.internal", &[&impostor])];
    assert_eq!(
        JwtSvid::validate(&minted.token, "b", &swapped, now()).unwrap_err(),
        JwtError::Signature
    );
}

#[test]
fn altered_tokens_fail_their_signature() {
    let key = signer();
    let bundle = [bundle_with("acme.internal", &[key.authority()])];
    let minted = key
        .sign(&id(CART), &aud(&["b"]), now(), Duration::from_secs(60), "j")
        .unwrap();
    let parts: Vec<&str> = minted.token.split('.').collect();
    let admin = URL_SAFE_NO_PAD.encode(
        claims_for(
            "spiffe://acme.internal/ns/shop/sa/admin",
            "b",
            unix(now()) + 60,
        )
        .to_string(),
    );
    let altered = format!("{}.{admin}.{}", parts[0], parts[2]);
    assert_eq!(
        JwtSvid::validate(&altered, "b", &bundle, now()).unwrap_err(),
        JwtError::Signature
    );
    for bad in [
        "",
        "a.b",
        "a.b.c.d",
        &format!("{}.{}.%%%", parts[0], parts[1]),
    ] {
        assert!(
            JwtSvid::validate(bad, "b", &bundle, now()).is_err(),
            "{bad}"
        );
    }
    assert_eq!(
        JwtSvid::validate(&"a".repeat(MAX_TOKEN_LEN + 1), "b", &bundle, now()).unwrap_err(),
        JwtError::TooLong
    );
}

#[test]
fn headers_the_specification_forbids_are_refused() {
    let key = signer();
    let bundle = [bundle_with("acme.internal", &[key.authority()])];
    let claims = claims_for(CART, "b", unix(now()) + 60);
    let kid = key.key_id();
    let cases = [
        (serde_json::json!({"alg": "none", "kid": kid}), "none"),
        (serde_json::json!({"alg": "HS256", "kid": kid}), "HMAC"),
        (serde_json::json!({"alg": "ES256"}), "no kid"),
        (
            serde_json::json!({"alg": "ES256", "kid": kid, "typ": "at+jwt"}),
            "other typ",
        ),
        (
            serde_json::json!({"alg": "ES256", "kid": kid, "crit": ["exp"]}),
            "crit",
        ),
        (
            serde_json::json!({"alg": "ES384", "kid": kid}),
            "alg for another curve",
        ),
        (
            serde_json::json!({"alg": "RS256", "kid": kid}),
            "alg for RSA",
        ),
    ];
    for (header, why) in cases {
        let token = forged(&key, &header, &claims);
        assert!(
            JwtSvid::validate(&token, "b", &bundle, now()).is_err(),
            "{why} was accepted"
        );
    }
    // The same forge with a proper header passes: the refusals above are the header's.
    let fine = forged(
        &key,
        &serde_json::json!({"alg": "ES256", "kid": kid, "typ": "JOSE"}),
        &claims,
    );
    JwtSvid::validate(&fine, "b", &bundle, now()).unwrap();
}

#[test]
fn claims_the_specification_requires_must_be_there() {
    let key = signer();
    let bundle = [bundle_with("acme.internal", &[key.authority()])];
    let header = serde_json::json!({"alg": "ES256", "kid": key.key_id()});
    let exp = unix(now()) + 60;
    let cases = [
        serde_json::json!({"aud": "b", "exp": exp}),
        serde_json::json!({"sub": "not-a-spiffe-id", "aud": "b", "exp": exp}),
        serde_json::json!({"sub": CART, "exp": exp}),
        serde_json::json!({"sub": CART, "aud": [], "exp": exp}),
        serde_json::json!({"sub": CART, "aud": [1], "exp": exp}),
        serde_json::json!({"sub": CART, "aud": "b"}),
        serde_json::json!({"sub": CART, "aud": "b", "exp": "soon"}),
    ];
    for claims in cases {
        let token = forged(&key, &header, &claims);
        assert!(
            JwtSvid::validate(&token, "b", &bundle, now()).is_err(),
            "{claims} was accepted"
        );
    }
}

#[test]
fn key_ids_are_thumbprints_stable_for_a_key() {
    let pkcs8 = JwtSigner::generate_pkcs8().unwrap();
    let (a, b) = (
        JwtSigner::from_pkcs8(&pkcs8).unwrap(),
        JwtSigner::from_pkcs8(&pkcs8).unwrap(),
    );
    assert_eq!(a.key_id(), b.key_id());
    assert_eq!(a.key_id().len(), 43, "a base64url SHA-256");
    assert_ne!(a.key_id(), signer().key_id());
    assert!(JwtSigner::from_pkcs8(b"not a key").is_err());
}

fn rsa_pair() -> signature::RsaKeyPair {
    let b64: String = include_str!("../testdata/jwt-rsa2048.pkcs1.b64")
        .split_whitespace()
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    signature::RsaKeyPair::from_der(&der).unwrap()
}

#[test]
fn tokens_of_other_implementations_signed_with_rsa_and_p384_validate() {
    let rng = SystemRandom::new();
    let claims = claims_for(CART, "b", unix(now()) + 60);
    let sign_with = |alg: &str, kid: &str, sign: &dyn Fn(&[u8]) -> Vec<u8>| {
        let mut token =
            URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": alg, "kid": kid}).to_string());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = sign(token.as_bytes());
        format!("{token}.{}", URL_SAFE_NO_PAD.encode(sig))
    };

    let rsa = rsa_pair();
    let public: signature::RsaPublicKeyComponents<Vec<u8>> = rsa.public().into();
    let rsa_key = JwtAuthority::new(
        "rsa-1",
        JwtKey::Rsa {
            n: public.n,
            e: public.e,
        },
    )
    .unwrap();
    let p384 = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref(),
        &rng,
    )
    .unwrap();
    let p384_key = JwtAuthority::new(
        "ec-384",
        JwtKey::Ec {
            curve: Curve::P384,
            point: p384.public_key().as_ref().to_vec(),
        },
    )
    .unwrap();
    // Through the JWKS form, as a foreign bundle arrives.
    let jwks = bundle_with("acme.internal", &[&rsa_key, &p384_key])
        .to_jwks()
        .unwrap();
    let bundle = [TrustBundle::from_jwks(td("acme.internal"), &jwks).unwrap()];

    for (alg, padding) in [
        (
            "RS256",
            &signature::RSA_PKCS1_SHA256 as &dyn signature::RsaEncoding,
        ),
        ("RS512", &signature::RSA_PKCS1_SHA512),
        ("PS256", &signature::RSA_PSS_SHA256),
    ] {
        let token = sign_with(alg, "rsa-1", &|m| {
            let mut sig = vec![0; rsa.public().modulus_len()];
            rsa.sign(padding, &rng, m, &mut sig).unwrap();
            sig
        });
        JwtSvid::validate(&token, "b", &bundle, now()).unwrap();
    }
    let token = sign_with("ES384", "ec-384", &|m| {
        p384.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    JwtSvid::validate(&token, "b", &bundle, now()).unwrap();
    // An RSA key does not verify an EC algorithm, nor the reverse.
    let mixed = sign_with("ES384", "rsa-1", &|m| {
        p384.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    assert!(matches!(
        JwtSvid::validate(&mixed, "b", &bundle, now()),
        Err(JwtError::WrongKeyType { .. })
    ));
}

#[test]
fn jwt_authorities_travel_in_the_bundle_and_a_reused_key_id_is_refused() {
    let (a, b) = (signer(), signer());
    let mut bundle = bundle_with("acme.internal", &[a.authority()]);
    bundle.set_sequence(7);
    assert!(!bundle.add_jwt_authority(a.authority().clone()).unwrap());
    assert_eq!(bundle.sequence(), 7, "re-adding changes nothing");
    assert!(bundle.add_jwt_authority(b.authority().clone()).unwrap());
    assert_eq!(bundle.sequence(), 8);
    let clash = JwtAuthority::new(a.key_id(), b.authority().key().clone()).unwrap();
    assert!(matches!(
        bundle.add_jwt_authority(clash),
        Err(crate::BundleError::JwtKeyIdReused(_))
    ));

    let json = bundle.to_jwks().unwrap();
    let doc: Value = serde_json::from_str(&json).unwrap();
    let key = &doc["keys"][0];
    assert_eq!(key["use"], "jwt-svid");
    assert_eq!(key["kid"], a.key_id());
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    let back = TrustBundle::from_jwks(td("acme.internal"), &json).unwrap();
    assert_eq!(back, bundle);
    assert_eq!(back.jwt_authorities().len(), 2);

    let only_jwt: Value = serde_json::from_str(&bundle.jwt_jwks().unwrap()).unwrap();
    assert_eq!(only_jwt["keys"].as_array().unwrap().len(), 2);
    let one = JwtAuthority::from_jwk_json(&a.authority().to_jwk_json()).unwrap();
    assert_eq!(&one, a.authority());
}

#[test]
fn bad_jwt_keys_in_a_bundle_are_refused_with_their_reason() {
    let cases = [
        serde_json::json!({"use": "jwt-svid", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
        serde_json::json!({"use": "jwt-svid", "kid": "k", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
        serde_json::json!({"use": "jwt-svid", "kid": "k", "kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
        serde_json::json!({"use": "jwt-svid", "kid": "k", "kty": "RSA", "n": "AQAB", "e": "AQAB"}),
        serde_json::json!({"use": "jwt-svid", "kid": "k", "kty": "oct", "k": "c2VjcmV0"}),
    ];
    for key in cases {
        let doc = serde_json::json!({"keys": [key]}).to_string();
        assert!(
            matches!(
                TrustBundle::from_jwks(td("acme.internal"), &doc),
                Err(crate::BundleError::JwtKey { index: 0, .. })
            ),
            "{key} was accepted"
        );
    }
}
