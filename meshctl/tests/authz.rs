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
        "authz test --principal spiffe://acme.internal/ns/shop/sa/frontend --action read \
         --resource c x.cedar",
        "authz explain --principal spiffe://acme.internal/ns/shop/sa/frontend --action BREW \
         --resource c x.cedar",
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

fn entities() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples/entities.yaml")
        .display()
        .to_string()
}

#[test]
fn explain_names_the_deciding_policy_and_the_closest_permits() {
    let examples = examples();
    let explain = |action: &str, resource: &str, path: &str| {
        meshctl(&[
            "authz",
            "explain",
            "--principal",
            FRONTEND,
            "--action",
            action,
            "--resource",
            resource,
            "--path",
            path,
            &examples,
        ])
    };
    let out = explain("connect", "payments", "/");
    assert_eq!(out.status.code(), Some(2));
    let shown = text(&out.stdout);
    assert!(shown.starts_with("DENY  spiffe://acme.internal/ns/shop/sa/frontend -> payments"));
    assert!(shown.contains("forbidden by:"), "{shown}");
    assert!(shown.contains("only-cart-reaches-payments ("), "{shown}");
    assert!(shown.contains("guardrails.cedar:4:1)"), "{shown}");
    assert!(
        shown.contains("unless { principal == Mesh::Workload"),
        "{shown}"
    );

    let out = explain("GET", "cart", "/internal/stats");
    assert_eq!(out.status.code(), Some(2));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("no policy permits this (default deny)"),
        "{shown}"
    );
    let near: Vec<&str> = shown.lines().filter(|l| l.starts_with("  - ")).collect();
    assert_eq!(near.len(), 3, "{shown}");
    assert!(near[0].contains("frontend-reads-cart-api") && near[0].ends_with("condition is false"));
    assert!(near[1].contains("frontend-writes-cart-items") && near[1].ends_with("for POST only"));

    let out = meshctl(&[
        "authz",
        "explain",
        "--principal",
        FRONTEND,
        "--action",
        "GET",
        "--resource",
        "cart",
        "--path",
        "/api/items",
        "-o",
        "json",
        &examples,
    ]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["decision"], "allow");
    assert_eq!(json["determining"][0]["id"], "frontend-reads-cart-api");
    assert_eq!(json["determining"][0]["line"], 12);
    assert_eq!(json["closest"], serde_json::json!([]));
}

/// `meshctl authz diff --old <old> --new <new> --entities <entities> <extra>...`
fn diff(old: &str, new: &str, entities: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "authz",
        "diff",
        "--old",
        old,
        "--new",
        new,
        "--entities",
        entities,
    ];
    args.extend_from_slice(extra);
    meshctl(&args)
}

/// A copy of the example policies with `change` applied to `file`.
fn changed_examples(dir: &std::path::Path, file: &str, change: impl Fn(String) -> String) {
    for name in ["shop.cedar", "guardrails.cedar"] {
        let text = std::fs::read_to_string(PathBuf::from(examples()).join(name))
            .expect("read example policies");
        let text = if name == file { change(text) } else { text };
        std::fs::write(dir.join(name), text).expect("write changed policies");
    }
}

#[test]
fn diff_marks_widened_and_narrowed_access_and_exits_3_on_widening() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().display().to_string();
    // Let the blog's web workload connect to the cart.
    changed_examples(dir.path(), "shop.cedar", |t| {
        t + "\n@id(\"blog-to-cart\")\npermit (\n  principal == Mesh::Workload::\"spiffe://acme.internal/ns/blog/sa/web\",\n  action == Mesh::Action::\"connect\",\n  resource == Mesh::Service::\"cart\"\n);\n"
    });
    let out = diff(&examples(), &new, &entities(), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 2, "{shown}");
    assert!(
        lines[0].starts_with("+ WIDENED   spiffe://acme.internal/ns/blog/sa/web -> cart: connect")
    );
    assert!(
        lines[0].contains("(was DENY (default-deny), now ALLOW (blog-to-cart))"),
        "{shown}"
    );
    assert!(lines[1].starts_with("1 change in 112 decisions: 1 widened, 0 narrowed"));

    // Drop the frontend's read access: narrowing only, exit 0.
    changed_examples(dir.path(), "shop.cedar", |t| {
        t.replace(
            "context.path like \"/api/*\"",
            "context.path like \"/api/v2/*\"",
        )
    });
    let out = diff(&examples(), &new, &entities(), &["-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["widened"], 0);
    assert_eq!(json["narrowed"], 1, "{json}");
    assert_eq!(json["changes"][0]["kind"], "narrowed");
    assert_eq!(
        json["changes"][0]["before"]["policies"][0],
        "frontend-reads-cart-api"
    );

    // No change at all.
    let out = diff(&examples(), &examples(), &entities(), &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("0 changes in 112 decisions"));
}

#[test]
fn diff_refuses_bad_entities_and_bad_policies_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.display().to_string()
    };
    let unknown_field = write("a.yaml", "services: []\nworkloads: []\nfrobs: 1\n");
    let bad_id = write(
        "b.yaml",
        "services: [{name: cart, namespace: shop}]\nworkloads: [{spiffe_id: not-an-id}]\n",
    );
    let bad_method = write(
        "c.yaml",
        "services: [{name: cart, namespace: shop}]\nworkloads: [{spiffe_id: spiffe://a.b/c}]\nrequests: [{method: BREW, path: /}]\n",
    );
    let not_yaml = write("d.yaml", "services: [\n");
    let broken = write("broken.cedar", "permit (principal, action, resource);\n");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![examples(), examples(), unknown_field],
            "unknown field `frobs`",
        ),
        (
            vec![examples(), examples(), bad_id],
            "SPIFFE ID must start with",
        ),
        (
            vec![examples(), examples(), bad_method],
            "`BREW` is not an HTTP method",
        ),
        (vec![examples(), examples(), not_yaml], "entities"),
        (
            vec![examples(), examples(), "/nonexistent.yaml".into()],
            "reading entities",
        ),
        (
            vec![examples(), broken.clone(), entities()],
            "--new: policies are invalid",
        ),
        (
            vec![broken, examples(), entities()],
            "--old: policies are invalid",
        ),
    ];
    for (args, expected) in cases {
        let out = diff(&args[0], &args[1], &args[2], &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("meshctl: error: ") && err.contains(expected),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
}
