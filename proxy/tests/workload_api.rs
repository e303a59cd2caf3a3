//! The SPIFFE Workload API of a real proxy joined to a real control plane, called over its
//! Unix socket as applications would: by py-spiffe (PyPI `spiffe`, on gRPC C-core), with no
//! Signet code, and by a tonic client. They get the proxy's SVID, key and bundle, follow
//! rotations on one stream, and are refused when they are not the process the selectors
//! describe; a request without the specification's security header is refused, as the
//! specification requires.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failure is the test failing"
)]

use std::path::Path;

use signet_tests::app::EchoApp;
use signet_tests::control::{ControlPlane, workspace_binary};
use signet_tests::mesh::{CART, TD, proxy_toml};
use signet_tests::process::ProxyProcess;
use signet_tests::workload::{uid, with_header};

/// py-spiffe, run as this process's user.
fn py_spiffe(socket: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/workload_api_client.py"))
        .arg(socket)
        .args(args)
        .output()
        .expect("python3 with py-spiffe (scripts/test.sh installs it)")
}

/// The executable `python3` really runs (past pyenv's or a distribution's wrappers), as
/// the kernel reports it in `/proc/<pid>/exe`.
fn python_executable() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import os; print(os.readlink('/proc/self/exe'))"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_spiffe_gets_the_identity_follows_rotations_and_is_refused_as_another_program() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(
        &dir.path().join("cp"),
        &["--trust-domain", TD, "--svid-ttl", "12s"],
    );
    let app = EchoApp::start().await;
    // Python, as this user: the service's workload.
    let cart_dir = dir.path().join("python");
    std::fs::create_dir(&cart_dir).unwrap();
    let _cart = start(
        &cart_dir,
        &cp,
        app.addr,
        &format!(
            "\"unix:uid:{}\", \"unix:path:{}\"",
            uid(),
            python_executable()
        ),
    );
    let socket = cart_dir.join("workload.sock");
    let out = py_spiffe(&socket, &["fetch"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["spiffe_id"], CART, "{got}");
    assert_eq!(got["chain"], 2, "leaf and intermediate: {got}");
    assert!(
        got["key"].as_str().unwrap().contains("EC"),
        "an EC key: {got}"
    );
    assert_eq!(got["bundles"][TD], 1, "the trust domain's root: {got}");
    assert_eq!(got["bundle_set"], serde_json::json!([TD]), "{got}");
    // A JWT-SVID, checked by py-spiffe with the JWT bundle the API sent, and by
    // ValidateJWTSVID; another audience is refused; a second fetch is the cached token.
    let out = py_spiffe(&socket, &["jwt", "billing"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["spiffe_id"], CART, "{got}");
    assert_eq!(got["local"], CART, "{got}");
    assert_eq!(got["remote"], CART, "{got}");
    assert_eq!(got["audience"], serde_json::json!(["billing"]), "{got}");
    assert_eq!(got["other_audience"], "ValidateJwtSvidError", "{got}");
    assert_eq!(got["cached"], true, "{got}");
    assert_eq!(got["jwt_authorities"], 1, "{got}");
    assert_eq!(got["bundle_set"], serde_json::json!([TD]), "{got}");
    let lifetime = got["lifetime"].as_i64().unwrap();
    assert!(
        (200..=300).contains(&lifetime),
        "the 5 minute default: {got}"
    );
    let token = got["token"].as_str().unwrap().to_owned();
    // The token's signature covers its claims: one changed character is refused.
    let mut altered = token.clone().into_bytes();
    let at = token.find('.').unwrap() + 5;
    altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
    let out = py_spiffe(
        &socket,
        &[
            "validate",
            "billing",
            std::str::from_utf8(&altered).unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "an altered token was accepted");

    let out = py_spiffe(&socket, &["watch", "3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got["serials"].as_array().unwrap().len(),
        3,
        "three SVIDs on one stream: {got}"
    );

    // The same user running another program is not the workload.
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let _other = start(
        &other_dir,
        &cp,
        app.addr,
        &format!("\"unix:uid:{}\", \"unix:path:/usr/local/bin/cart\"", uid()),
    );
    let out = py_spiffe(&other_dir.join("workload.sock"), &["fetch"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PERMISSION_DENIED") || stderr.contains("not a workload"),
        "{stderr}"
    );
}

/// A Workload API client on `socket` (the authority a Go or Rust client sends).
async fn connect(
    socket: &Path,
) -> signet_cp::api::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient<
    tonic::transport::Channel,
> {
    signet_cp::api::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient::new(
        signet_tests::workload::channel(socket).await,
    )
}

/// Selectors that match this test process (its uid and executable).
fn this_process() -> String {
    let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    format!("\"unix:uid:{}\", \"unix:path:{}\"", uid(), exe.display())
}

/// `api`'s JWT-SVID for the one audience `audience`.
async fn jwt_svid(
    api: &signet_cp::api::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient<
        tonic::transport::Channel,
    >,
    audience: &str,
) -> Result<signet_cp::api::workload::Jwtsvid, tonic::Status> {
    api.clone()
        .fetch_jwtsvid(with_header(signet_cp::api::workload::JwtsvidRequest {
            audience: vec![audience.to_owned()],
            spiffe_id: String::new(),
        }))
        .await
        .map(|r| r.into_inner().svids.remove(0))
}

fn start(
    dir: &Path,
    cp: &ControlPlane,
    app: std::net::SocketAddr,
    selectors: &str,
) -> ProxyProcess {
    let toml = format!(
        "{}\n[workload_api]\nsocket = \"{}\"\nselectors = [{selectors}]\n",
        proxy_toml(cp, "cart", Some(&cp.token(CART)), app, &[]),
        dir.join("workload.sock").display()
    );
    ProxyProcess::start(&workspace_binary("signet-proxy"), dir, "cart", &toml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workload_gets_its_identity_and_follows_its_rotation() {
    use rustls::pki_types::CertificateDer;
    let dir = tempfile::tempdir().unwrap();
    // SVIDs of 12 s: the proxy renews every few seconds.
    let cp = ControlPlane::start(
        &dir.path().join("cp"),
        &["--trust-domain", TD, "--svid-ttl", "12s"],
    );
    let app = EchoApp::start().await;
    let _cart = start(dir.path(), &cp, app.addr, &this_process());
    let mut api = connect(&dir.path().join("workload.sock")).await;
    let mut stream = api
        .fetch_x509svid(with_header(signet_cp::api::workload::X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let td = signet_spiffe::TrustDomain::new(TD).unwrap();
    let mut serials = Vec::new();
    while serials.len() < 3 {
        let response = tokio::time::timeout(std::time::Duration::from_secs(20), stream.message())
            .await
            .expect("a rotation within 20 s")
            .unwrap()
            .unwrap();
        let svid = &response.svids[0];
        assert_eq!(svid.spiffe_id, CART);
        // The chain, the key and the bundle are what any SPIFFE library expects: DER
        // certificates concatenated, and PKCS#8.
        let chain: Vec<CertificateDer<'static>> = split_der(&svid.x509_svid);
        assert_eq!(chain.len(), 2, "leaf and intermediate");
        let parsed =
            signet_spiffe::X509Svid::parse(chain, &td, std::time::SystemTime::now()).unwrap();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(svid.x509_svid_key.clone());
        let signing = rustls::crypto::ring::sign::any_ecdsa_type(&key.into()).unwrap();
        assert!(signing.public_key().is_some());
        let roots = split_der(&svid.bundle);
        signet_spiffe::TrustBundle::from_roots(td.clone(), roots).unwrap();
        let serial = parsed.serial().to_string();
        if !serials.contains(&serial) {
            serials.push(serial);
        }
    }

    let bundles = api
        .fetch_x509_bundles(with_header(signet_cp::api::workload::X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        bundles.bundles.keys().collect::<Vec<_>>(),
        [&format!("spiffe://{TD}")]
    );
    jwt_calls(&mut api).await;
}

/// The JWT calls' wire forms and refusals.
async fn jwt_calls(
    api: &mut signet_cp::api::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient<
        tonic::transport::Channel,
    >,
) {
    use signet_cp::api::workload as w;
    let request = |audience: &[&str], spiffe_id: &str| {
        with_header(w::JwtsvidRequest {
            audience: audience.iter().map(|a| (*a).to_owned()).collect(),
            spiffe_id: spiffe_id.to_owned(),
        })
    };
    let svids = api
        .fetch_jwtsvid(request(&["queue", "billing"], CART))
        .await
        .unwrap()
        .into_inner()
        .svids;
    assert_eq!(svids.len(), 1);
    assert_eq!(svids[0].spiffe_id, CART);
    let token = svids[0].svid.clone();

    let bundles = api
        .fetch_jwt_bundles(with_header(w::JwtBundlesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let jwks = String::from_utf8(bundles.bundles[&format!("spiffe://{TD}")].clone()).unwrap();
    let td = signet_spiffe::TrustDomain::new(TD).unwrap();
    let bundle = signet_spiffe::TrustBundle::from_jwks(td, &jwks).unwrap();
    assert_eq!(bundle.jwt_authorities().len(), 1);
    for audience in ["queue", "billing"] {
        let svid = signet_spiffe::jwt::JwtSvid::validate(
            &token,
            audience,
            std::slice::from_ref(&bundle),
            std::time::SystemTime::now(),
        )
        .unwrap();
        assert_eq!(svid.id().as_str(), CART);
    }

    let validated = api
        .validate_jwtsvid(with_header(w::ValidateJwtsvidRequest {
            audience: "queue".into(),
            svid: token.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(validated.spiffe_id, CART);
    let claims = validated.claims.unwrap().fields;
    assert!(
        claims.contains_key("exp") && claims.contains_key("jti"),
        "{claims:?}"
    );

    // Refusals: no audience, another workload's ID, a token for another audience, no token.
    let refused = api.fetch_jwtsvid(request(&[], "")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    let refused = api
        .fetch_jwtsvid(request(
            &["queue"],
            "spiffe://acme.internal/ns/shop/sa/payments",
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    for (audience, svid) in [("payments", token.as_str()), ("queue", "")] {
        let refused = api
            .validate_jwtsvid(with_header(w::ValidateJwtsvidRequest {
                audience: audience.into(),
                svid: svid.into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    }
}

/// DER certificates, concatenated, apart.
fn split_der(mut bytes: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        // A SEQUENCE with a long-form length: 0x30 0x82 HI LO for anything over 255 bytes.
        assert_eq!(&bytes[..2], [0x30, 0x82], "a DER certificate");
        let len = 4 + usize::from(bytes[2]) * 256 + usize::from(bytes[3]);
        out.push(rustls::pki_types::CertificateDer::from(
            bytes[..len].to_vec(),
        ));
        bytes = &bytes[len..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_is_refused_and_so_is_a_request_without_the_security_header() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&dir.path().join("cp"), &["--trust-domain", TD]);
    let app = EchoApp::start().await;
    // The service's workload runs as another user: this process is not it.
    let other = uid() + 1;
    let _cart = start(dir.path(), &cp, app.addr, &format!("\"unix:uid:{other}\""));
    let mut api = connect(&dir.path().join("workload.sock")).await;
    let refused = api
        .fetch_x509svid(with_header(signet_cp::api::workload::X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("not a workload of `cart`"),
        "{refused:?}"
    );

    // Without `workload.spiffe.io: true`: refused before anything else.
    let refused = api
        .fetch_x509svid(signet_cp::api::workload::X509svidRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("security header"), "{refused:?}");

    // Nor does another process get a JWT-SVID or the JWT bundles.
    let refused = api
        .fetch_jwtsvid(with_header(signet_cp::api::workload::JwtsvidRequest {
            audience: vec!["queue".into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let refused = api
        .fetch_jwt_bundles(with_header(signet_cp::api::workload::JwtBundlesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
}

/// The key ID a token names.
fn kid(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_svids_follow_the_signing_keys_rotation_and_old_tokens_still_validate() {
    use signet_cp::api::workload as w;
    let dir = tempfile::tempdir().unwrap();
    // Keys that sign for 4 s, tokens of 20 s (re-minted after 10 s).
    let cp = ControlPlane::start(
        &dir.path().join("cp"),
        &[
            "--trust-domain",
            TD,
            "--jwt-key-lifetime",
            "4s",
            "--jwt-svid-ttl",
            "20s",
        ],
    );
    let app = EchoApp::start().await;
    let _cart = start(dir.path(), &cp, app.addr, &this_process());
    let mut api = connect(&dir.path().join("workload.sock")).await;
    let first = jwt_svid(&api, "billing").await.unwrap().svid;
    let mut bundles = api
        .fetch_jwt_bundles(with_header(w::JwtBundlesRequest {}))
        .await
        .unwrap()
        .into_inner();
    // The bundle stream shows a second key once one is staged.
    let mut most = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while most < 2 {
        let message = tokio::time::timeout_at(deadline, bundles.message())
            .await
            .expect("a staged key within 30 s")
            .unwrap()
            .unwrap();
        let jwks: serde_json::Value =
            serde_json::from_slice(&message.bundles[&format!("spiffe://{TD}")]).unwrap();
        most = most.max(jwks["keys"].as_array().unwrap().len());
    }
    // A token minted after its half-life comes from a newer key.
    let newer = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no token from a newer key within 30 s"
        );
        let token = jwt_svid(&api, "billing").await.unwrap().svid;
        if kid(&token) != kid(&first) {
            break token;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    // Both verify: the old key stays published until its last token has expired.
    for token in [&first, &newer] {
        let validated = api
            .validate_jwtsvid(with_header(w::ValidateJwtsvidRequest {
                audience: "billing".into(),
                svid: token.clone(),
            }))
            .await;
        assert_eq!(validated.unwrap().into_inner().spiffe_id, CART);
    }
    // Operators see the keys and their states; the first one is retiring or gone.
    let status: serde_json::Value =
        serde_json::from_str(&cp.meshctl_ok(&["ca", "status", "-o", "json"])).unwrap();
    let keys = status["jwt"]["keys"].as_array().unwrap();
    let state_of = |kid: &str| {
        keys.iter()
            .find(|k| k["kid"] == kid)
            .map(|k| k["state"].as_str().unwrap().to_owned())
    };
    assert!(
        matches!(state_of(&kid(&first)).as_deref(), Some("retiring")),
        "{status}"
    );
    assert_ne!(status["jwt"]["signing_kid"], kid(&first), "{status}");
    let text = cp.meshctl_ok(&["ca", "status"]);
    assert!(
        text.contains("jwt-svids      ES256, lifetime 20s"),
        "{text}"
    );
    assert!(
        text.contains(&format!("retiring     kid {}", kid(&first))),
        "{text}"
    );
}

const ATTEST_CART: [&str; 6] = ["workload", "attest", "--service", "cart", "-n", "shop"];

/// `meshctl workload attest` for the shop's cart with `rest`; its output.
fn attest(cp: &ControlPlane, rest: &[&str]) -> String {
    let mut args = ATTEST_CART.to_vec();
    args.extend_from_slice(rest);
    cp.meshctl_ok(&args)
}

/// The code `api`'s JWT-SVID request is refused with.
async fn denied_code(
    api: &signet_cp::api::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient<
        tonic::transport::Channel,
    >,
) -> tonic::Code {
    jwt_svid(api, "billing").await.unwrap_err().code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_set_who_is_answered_with_meshctl_workload_attest() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(&dir.path().join("cp"), &["--trust-domain", TD]);
    let app = EchoApp::start().await;
    // The proxy's own configuration names another user: this process is not the workload.
    let _cart = start(
        dir.path(),
        &cp,
        app.addr,
        &format!("\"unix:uid:{}\"", uid() + 1),
    );
    let api = connect(&dir.path().join("workload.sock")).await;
    assert_eq!(denied_code(&api).await, tonic::Code::PermissionDenied);

    // Operators name this user and this program; the proxy applies it before meshctl returns.
    let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    let uid_selector = format!("unix:uid:{}", uid());
    let path_selector = format!("unix:path:{}", exe.display());
    let out = attest(
        &cp,
        &["--selector", &uid_selector, "--selector", &path_selector],
    );
    assert!(out.contains("answers processes matching"), "{out}");
    assert_eq!(
        jwt_svid(&api, "billing")
            .await
            .map(|s| s.spiffe_id)
            .unwrap(),
        CART
    );
    let listed = cp.meshctl_ok(&["workload", "list"]);
    assert!(listed.contains(&uid_selector), "{listed}");
    let inspected = cp.meshctl_ok(&["identity", "inspect", CART]);
    assert!(
        inspected.contains(&format!("answers processes matching {uid_selector} and")),
        "{inspected}"
    );

    // Another program of the same user is not the workload.
    attest(&cp, &["--selector", "unix:path:/usr/local/bin/cart"]);
    assert_eq!(denied_code(&api).await, tonic::Code::PermissionDenied);

    // Bad input is one line and changes nothing.
    for bad in [
        vec!["--selector", "uid:1000"],
        vec!["--selector", "unix:path:relative"],
        vec![],
    ] {
        let mut args = ATTEST_CART.to_vec();
        args.extend(bad.iter().copied());
        let out = cp.meshctl(&args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.trim().is_empty(), "{args:?}");
    }
    let listed = cp.meshctl_ok(&["workload", "list", "-o", "json"]);
    assert!(listed.contains("/usr/local/bin/cart"), "{listed}");

    // Cleared: the proxy's own configuration decides again.
    attest(&cp, &["--clear"]);
    assert_eq!(denied_code(&api).await, tonic::Code::PermissionDenied);
    let listed = cp.meshctl_ok(&["workload", "list"]);
    assert!(listed.contains("no selectors set"), "{listed}");
}
