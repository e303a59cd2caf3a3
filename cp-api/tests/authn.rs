//! End-user JWTs configured on the control plane: `meshctl authn apply` with providers whose
//! keys are given in a file or fetched from an identity provider's HTTPS endpoint (refreshed,
//! so a key rotation reaches the proxies), tokens minted by PyJWT, verified by the real
//! proxies, their claims read by Cedar policies; what cannot work is refused whole.
#![expect(clippy::unwrap_used, reason = "tests: a failure is the test failing")]

use std::path::Path;
use std::time::Duration;

use signet_tests::client::Http;
use signet_tests::jwt::Idp;
use signet_tests::mesh::{Mesh, policies};

/// Tokens minted by PyJWT, the JWKS written into `dir`.
fn mint(dir: &Path) -> serde_json::Value {
    signet_tests::jwt::mint(dir, "https://idp.mesh.test", "shop")
}

const USER_POLICIES: &str = r#"
@id("acme-admins-read-reports")
permit (principal == Mesh::Workload::"spiffe://mesh.test/ns/shop/sa/frontend",
        action in Mesh::Action::"read", resource == Mesh::Service::"cart")
when { context.path like "/reports/*" && context has user &&
       context.user.groups.contains("admins") &&
       context.user.hasTag("tenant") && context.user.getTag("tenant") == "acme" };
"#;

async fn get(mesh: &Mesh, path: &str, token: Option<&str>) -> (u16, Option<String>) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    let mut http = Http::h1(mesh.cart_port()).await;
    let reply = http.get("cart", path, &headers).await;
    (reply.status.as_u16(), reply.header("www-authenticate"))
}

fn yaml(mesh: &Mesh, name: &str, text: &str) -> String {
    let file = mesh.dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    file.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn providers_applied_on_the_control_plane_are_verified_by_the_proxies() {
    let mesh = Mesh::start(&[]).await;
    let out = mesh.apply(
        "users.cedar",
        &format!("{}{USER_POLICIES}", policies("/api/*")),
    );
    assert!(out.status.success());
    let keys = mesh.dir.path().join("keys");
    let tokens = mint(&keys);
    let token = |name: &str| tokens[name].as_str().unwrap().to_owned();

    // Before any provider: the token is not looked at.
    assert_eq!(
        get(&mesh, "/reports/q3", Some(&token("es256"))).await.0,
        403
    );

    let file = yaml(
        &mesh,
        "providers.yaml",
        "providers:\n  - name: acme\n    issuer: https://idp.mesh.test\n    audiences: [shop]\n    jwks_file: keys/jwks.json\nservices:\n  - service: cart\n    namespace: shop\n    providers: [acme]\n",
    );
    let out = mesh.cp.meshctl_ok(&["authn", "apply", "-f", &file]);
    assert!(
        out.contains("applied end-user authentication version 1"),
        "{out}"
    );
    assert!(out.contains("enforced by 1 of 1 proxies"), "{out}");

    assert_eq!(
        get(&mesh, "/reports/q3", Some(&token("es256"))).await.0,
        200
    );
    assert_eq!(
        get(&mesh, "/reports/q3", Some(&token("rs256"))).await.0,
        403
    );
    let (status, challenge) = get(&mesh, "/api/items", Some(&token("expired"))).await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer realm=\"signet\", error=\"invalid_token\"")
    );
    assert_eq!(
        get(&mesh, "/api/items", Some(&token("alg_none"))).await.0,
        401
    );
    assert_eq!(get(&mesh, "/api/items", None).await.0, 200, "optional");
    assert_eq!(
        mesh.cart
            .metric("signet_proxy_authn_refusals_total{reason=\"expired\"}")
            .await,
        1
    );
    let shown = mesh.cp.meshctl_ok(&["authn", "get"]);
    assert!(
        shown.contains("acme") && shown.contains("shop/cart"),
        "{shown}"
    );

    // What cannot work is refused whole, one line, exit 1; version 1 stays.
    for (text, expected) in [
        (
            "providers:\n  - name: acme\n    issuer: https://idp.mesh.test\n    audiences: [shop]\n    jwks_file: keys/jwks.json\n    algorithms: [HS256]\n",
            "algorithm `HS256` is not allowed",
        ),
        (
            "providers:\n  - name: acme\n    issuer: https://idp.mesh.test\n    audiences: [shop]\n    jwks_file: keys/jwks.json\nservices:\n  - service: cart\n    namespace: shop\n    providers: [other]\n",
            "no provider `other`",
        ),
        (
            "providers:\n  - name: acme\n    issuer: https://idp.mesh.test\n    audiences: [shop]\n    jwks_uri: http://127.0.0.1:1/jwks.json\n",
            "jwks_uri must be an https URL",
        ),
        (
            "providers:\n  - name: acme\n    issuer: https://idp.mesh.test\n    audiences: [shop]\n    jwks_uri: https://127.0.0.1:1/jwks.json\n",
            "fetching https://127.0.0.1:1/jwks.json",
        ),
        (
            "providers:\n  - name: acme\n    issuer: https://idp.mesh.test\n    audiences: [shop]\n    jwks_file: keys/jwks.json\n    jwsk_typo: 1\n",
            "unknown field `jwsk_typo`",
        ),
    ] {
        let out = mesh
            .cp
            .meshctl(&["authn", "apply", "-f", &yaml(&mesh, "bad.yaml", text)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    let current: serde_json::Value =
        serde_json::from_str(&mesh.cp.meshctl_ok(&["authn", "get", "-o", "json"])).unwrap();
    assert_eq!(current["version"], 1);
    assert_eq!(
        get(&mesh, "/reports/q3", Some(&token("es256"))).await.0,
        200
    );
}

#[tokio::test]
async fn keys_fetched_from_the_identity_provider_follow_its_rotation() {
    let mesh = Mesh::start(&[]).await;
    assert!(
        mesh.apply(
            "users.cedar",
            &format!("{}{USER_POLICIES}", policies("/api/*"))
        )
        .status
        .success()
    );
    let idp_dir = mesh.dir.path().join("idp");
    let first = mint(&mesh.dir.path().join("first"));
    std::fs::create_dir_all(&idp_dir).unwrap();
    std::fs::copy(
        mesh.dir.path().join("first/jwks.json"),
        idp_dir.join("jwks.json"),
    )
    .unwrap();
    let idp = Idp::start(&idp_dir);
    let file = yaml(
        &mesh,
        "providers.yaml",
        &format!(
            "providers:\n  - name: acme\n    issuer: https://idp.mesh.test\n    audiences: [shop]\n    jwks_uri: https://127.0.0.1:{}/jwks.json\n    jwks_ca_file: idp/idp-ca.pem\n    refresh_seconds: 1\nservices:\n  - service: cart\n    namespace: shop\n    providers: [acme]\n    required: true\n",
            idp.port
        ),
    );
    let out = mesh.cp.meshctl_ok(&["authn", "apply", "-f", &file]);
    assert!(out.contains("enforced by 1 of 1 proxies"), "{out}");
    let first_token = first["es256"].as_str().unwrap().to_owned();
    assert_eq!(get(&mesh, "/reports/q3", Some(&first_token)).await.0, 200);
    let (status, challenge) = get(&mesh, "/api/items", None).await;
    assert_eq!(status, 401, "a token is required");
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"signet\""));

    // Without the provider's CA the control plane cannot trust the endpoint.
    let untrusted = yaml(
        &mesh,
        "untrusted.yaml",
        &format!(
            "providers:\n  - name: acme\n    issuer: https://idp.mesh.test\n    audiences: [shop]\n    jwks_uri: https://127.0.0.1:{}/jwks.json\n",
            idp.port
        ),
    );
    let out = mesh.cp.meshctl(&["authn", "apply", "-f", &untrusted]);
    assert_eq!(out.status.code(), Some(1));

    // The provider rotates its keys: new tokens verify, old ones no longer do.
    let second = mint(&mesh.dir.path().join("second"));
    std::fs::copy(
        mesh.dir.path().join("second/jwks.json"),
        idp_dir.join("jwks.json"),
    )
    .unwrap();
    let second_token = second["es256"].as_str().unwrap().to_owned();
    let mut rotated = false;
    for _ in 0..100 {
        if get(&mesh, "/reports/q3", Some(&second_token)).await.0 == 200 {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rotated, "the rotated keys never reached the proxy");
    assert_eq!(get(&mesh, "/reports/q3", Some(&first_token)).await.0, 401);
    let shown: serde_json::Value =
        serde_json::from_str(&mesh.cp.meshctl_ok(&["authn", "get", "-o", "json"])).unwrap();
    assert_eq!(shown["providers"][0]["keys"], 3, "{shown}");
    assert!(shown["providers"][0]["error"].is_null(), "{shown}");

    // The endpoint goes away: the last good keys stay, the error is shown.
    drop(idp);
    let mut error = serde_json::Value::Null;
    for _ in 0..50 {
        let shown: serde_json::Value =
            serde_json::from_str(&mesh.cp.meshctl_ok(&["authn", "get", "-o", "json"])).unwrap();
        error = shown["providers"][0]["error"].clone();
        if !error.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        error.as_str().is_some_and(|e| e.contains("fetching")),
        "{error}"
    );
    assert_eq!(get(&mesh, "/reports/q3", Some(&second_token)).await.0, 200);
}
