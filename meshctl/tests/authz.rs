//! `meshctl authz validate|test` run as a user runs them: the real binary, real files.

#![expect(
    clippy::expect_used,
    reason = "test helper: failing to start the binary is the test failing"
)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn meshctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .output()
        .expect("run meshctl")
}

fn examples() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples/policies")
        .display()
        .to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const FRONTEND: &str = "spiffe://acme.internal/ns/shop/sa/frontend";

#[test]
fn validate_accepts_the_examples() {
    let out = meshctl(&["authz", "validate", &examples()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("OK: 7 policies valid"));
}

#[test]
fn validate_reports_each_problem_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        "@id(\"a\")\npermit (principal, action == Mesh::Action::\"FETCH\", resource);\n\
         @id(\"a\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    let out = meshctl(&["authz", "validate", &examples(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let at = |l: usize| format!("{}:{l}:", bad.display());
    assert!(lines[0].starts_with(&at(3)), "{err}");
    assert!(lines[0].contains("duplicate policy id `a`"), "{err}");
    assert_eq!(
        lines.last(),
        Some(&"meshctl: error: 1 problem found"),
        "{err}"
    );

    // Fix the duplicate; the unknown action is then reported by the schema check.
    std::fs::write(
        &bad,
        "@id(\"a\")\npermit (principal, action == Mesh::Action::\"FETCH\", resource);\n",
    )
    .unwrap();
    let out = meshctl(&["authz", "validate", bad.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(err.starts_with(&at(2)), "{err}");
    assert!(err.contains("FETCH"), "{err}");
}

/// `meshctl authz test` as the frontend against the example policies.
fn decide(action: &str, resource: &str, extra: &[&str]) -> Output {
    let examples = examples();
    let mut args = vec![
        "authz",
        "test",
        "--principal",
        FRONTEND,
        "--action",
        action,
        "--resource",
        resource,
    ];
    args.extend_from_slice(extra);
    args.push(&examples);
    meshctl(&args)
}

#[test]
fn test_allows_with_exit_0_and_denies_with_exit_2() {
    let out = decide("GET", "cart", &["--path", "/api/items"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "ALLOW  frontend-reads-cart-api\n");

    let out = decide("connect", "payments", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "DENY  only-cart-reaches-payments\n");

    let out = decide("DELETE", "cart", &["-o", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["decision"], "deny");
    assert_eq!(json["policies"], serde_json::json!([]));
}

#[test]
fn test_reads_headers_labels_and_claims() {
    let dir = tempfile::tempdir().unwrap();
    let claims = dir.path().join("claims.json");
    std::fs::write(
        &claims,
        r#"{"sub": "alice", "iss": "https://idp", "groups": ["ops"]}"#,
    )
    .unwrap();
    let code = |extra: &[&str]| decide("GET", "cart", extra).status.code();
    assert_eq!(
        code(&[
            "--path",
            "/api/x",
            "--header",
            "X-Debug=1",
            "--label",
            "env=prod"
        ]),
        Some(2)
    );
    assert_eq!(
        code(&["--path", "/api/x", "--header", "X-Debug=1"]),
        Some(0)
    );
    assert_eq!(
        code(&["--path", "/admin/x", "--claims", claims.to_str().unwrap()]),
        Some(2)
    );
}

#[test]
fn bad_input_is_one_line_and_exit_1() {
    let cases = [
        "authz test --principal spiffe://ACME/x --action GET --resource c x.cedar",
        "authz test --principal spiffe://acme.internal/ns/shop/sa/frontend --action GET \
         --resource c /nonexistent.cedar",
        "authz test --principal spiffe://acme.internal/ns/shop/sa/frontend --action GET \
         --resource c --header nope x.cedar",
        "authz validate",
        "authz frobnicate",
    ];
    for case in cases {
        let args: Vec<&str> = case.split_whitespace().collect();
        let out = meshctl(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.starts_with("meshctl: "), "{args:?}: {err}");
        assert!(
            err.lines().next().is_some_and(|l| l.len() > 20),
            "{args:?}: {err}"
        );
    }
}
