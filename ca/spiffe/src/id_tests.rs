use super::*;
use proptest::prelude::*;

fn parse(s: &str) -> Result<SpiffeId, IdError> {
    s.parse()
}

#[test]
fn valid_ids_round_trip() {
    for s in [
        "spiffe://trust-domain-name/path",
        "spiffe://example.org",
        "spiffe://example.org/service",
        "spiffe://acme.internal/ns/shop/sa/frontend",
        "spiffe://a_b-c.d0/UPPER/Mixed.Case-seg_1",
        "spiffe://td/.../a..b/.hidden",
    ] {
        let id = parse(s).unwrap();
        assert_eq!(id.to_string(), s);
        assert_eq!(parse(&id.to_string()).unwrap(), id);
    }
}

#[test]
fn parts_are_exposed() {
    let id = parse("spiffe://acme.internal/ns/shop/sa/frontend").unwrap();
    assert_eq!(id.trust_domain_str(), "acme.internal");
    assert_eq!(id.trust_domain().as_str(), "acme.internal");
    assert_eq!(id.path(), "/ns/shop/sa/frontend");
    assert_eq!(
        id.segments().collect::<Vec<_>>(),
        ["ns", "shop", "sa", "frontend"]
    );
    assert_eq!(id.namespace_and_account(), Some(("shop", "frontend")));

    let root = parse("spiffe://acme.internal").unwrap();
    assert_eq!(root.path(), "");
    assert_eq!(root.segments().count(), 0);
    assert_eq!(root.namespace_and_account(), None);
    assert_eq!(
        parse("spiffe://td/ns/a/sa/b/extra")
            .unwrap()
            .namespace_and_account(),
        None
    );
    assert_eq!(
        parse("spiffe://td/ns/a/xx/b")
            .unwrap()
            .namespace_and_account(),
        None
    );
}

#[test]
fn service_account_helper_builds_the_conventional_form() {
    let td = TrustDomain::new("acme.internal").unwrap();
    let id = td.service_account("shop", "cart").unwrap();
    assert_eq!(id.as_str(), "spiffe://acme.internal/ns/shop/sa/cart");
    assert!(id.is_member_of(&td));
    assert_eq!(
        td.service_account("sh/op", "cart"),
        parse("spiffe://acme.internal/ns/sh/op/sa/cart")
    );
    assert_eq!(td.service_account("", "cart"), Err(IdError::EmptySegment));
    assert_eq!(
        td.service_account("shop", "c@rt"),
        Err(IdError::PathChar('@'))
    );
    assert_eq!(td.workload("relative"), Err(IdError::RelativePath));
    assert_eq!(td.workload(""), Ok(td.id()));
}

#[test]
fn spec_invalid_examples_name_what_is_wrong() {
    let cases: &[(&str, IdError)] = &[
        ("", IdError::Empty),
        ("http://example.org/path", IdError::WrongScheme),
        ("SPIFFE://example.org/path", IdError::WrongScheme),
        ("spiffe:/example.org", IdError::WrongScheme),
        ("example.org/path", IdError::WrongScheme),
        ("spiffe://", IdError::MissingTrustDomain),
        ("spiffe:///path", IdError::MissingTrustDomain),
        ("spiffe://Example.org/path", IdError::TrustDomainChar('E')),
        ("spiffe://exa mple.org", IdError::TrustDomainChar(' ')),
        ("spiffe://examplé.org", IdError::TrustDomainChar('é')),
        ("spiffe://ex%41mple.org", IdError::TrustDomainChar('%')),
        ("spiffe://example.org:8080/path", IdError::Port),
        ("spiffe://user:pass@example.org/path", IdError::Port),
        ("spiffe://user@example.org/path", IdError::UserInfo),
        ("spiffe://example.org/path?query=1", IdError::Query),
        ("spiffe://example.org?x", IdError::Query),
        ("spiffe://example.org/path#frag", IdError::Fragment),
        ("spiffe://example.org#frag", IdError::Fragment),
        ("spiffe://example.org/", IdError::TrailingSlash),
        ("spiffe://example.org/path/", IdError::TrailingSlash),
        ("spiffe://example.org//path", IdError::EmptySegment),
        ("spiffe://example.org/a//b", IdError::EmptySegment),
        ("spiffe://example.org/./path", IdError::DotSegment),
        ("spiffe://example.org/path/..", IdError::DotSegment),
        ("spiffe://example.org/pa th", IdError::PathChar(' ')),
        ("spiffe://example.org/p%41th", IdError::PathChar('%')),
        ("spiffe://example.org/päth", IdError::PathChar('ä')),
        ("spiffe://example.org/a:b", IdError::PathChar(':')),
    ];
    for (input, want) in cases {
        assert_eq!(parse(input).err().as_ref(), Some(want), "input {input:?}");
    }
}

#[test]
fn length_limits_are_bytes() {
    let td = "a".repeat(255);
    assert!(parse(&format!("spiffe://{td}")).is_ok());
    let td_long = "a".repeat(256);
    assert_eq!(
        parse(&format!("spiffe://{td_long}")),
        Err(IdError::TrustDomainTooLong(256))
    );

    let base = "spiffe://example.org/";
    let fits = format!("{base}{}", "a".repeat(MAX_ID_LEN - base.len()));
    assert_eq!(fits.len(), 2048);
    assert!(parse(&fits).is_ok());
    let over = format!("{fits}b");
    assert_eq!(parse(&over), Err(IdError::TooLong(2049)));
}

#[test]
fn trust_domain_accepts_bare_name_or_id_form() {
    assert_eq!(
        TrustDomain::new("acme.internal").unwrap().as_str(),
        "acme.internal"
    );
    assert_eq!(
        TrustDomain::new("spiffe://acme.internal").unwrap().as_str(),
        "acme.internal"
    );
    assert_eq!(
        TrustDomain::new("spiffe://acme.internal/x"),
        Err(IdError::TrustDomainWithPath)
    );
    assert_eq!(TrustDomain::new(""), Err(IdError::MissingTrustDomain));
    assert_eq!(TrustDomain::new("ACME"), Err(IdError::TrustDomainChar('A')));
    assert_eq!(TrustDomain::new("acme:443"), Err(IdError::Port));
    assert_eq!(
        TrustDomain::new("acme/x"),
        Err(IdError::TrustDomainChar('/'))
    );
    assert_eq!(
        TrustDomain::new("acme.internal").unwrap().id().as_str(),
        "spiffe://acme.internal"
    );
}

#[test]
fn errors_read_as_one_clear_line() {
    let e = parse("spiffe://Example.org").unwrap_err().to_string();
    assert_eq!(
        e,
        "trust domain may only contain lowercase letters, digits, `.`, `-` and `_`; found `E`"
    );
    assert!(
        !parse("spiffe://td/a b")
            .unwrap_err()
            .to_string()
            .contains('\n')
    );
}

#[test]
fn serde_uses_the_text_form_and_validates() {
    let id = parse("spiffe://td/ns/a/sa/b").unwrap();
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, "\"spiffe://td/ns/a/sa/b\"");
    assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
    assert!(serde_json::from_str::<SpiffeId>("\"spiffe://TD/x\"").is_err());
    assert!(serde_json::from_str::<TrustDomain>("\"td\"").is_ok());
    assert!(serde_json::from_str::<TrustDomain>("\"t d\"").is_err());
}

fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,12}".prop_filter("no dot segments", |s| s != "." && s != "..")
}

proptest! {
    #[test]
    fn generated_valid_ids_round_trip(
        td in "[a-z0-9._-]{1,40}",
        segs in proptest::collection::vec(segment(), 0..6),
    ) {
        let path: String = segs.iter().map(|s| format!("/{s}")).collect();
        let text = format!("spiffe://{td}{path}");
        let id = parse(&text).unwrap();
        prop_assert_eq!(id.as_str(), text.as_str());
        prop_assert_eq!(id.trust_domain_str(), td.as_str());
        prop_assert_eq!(id.path(), path.as_str());
        prop_assert_eq!(id.segments().collect::<Vec<_>>(), segs.iter().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn parsing_never_panics_and_accepted_ids_round_trip(s in "\\PC{0,64}") {
        if let Ok(id) = parse(&s) {
            prop_assert_eq!(id.to_string(), s);
        }
    }
}
