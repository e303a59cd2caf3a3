//! The web console's own security, over real HTTPS to a real `signet-cp`: sign-in by
//! token, client certificate and one-time code; the cookies' attributes; login CSRF,
//! cross-site requests and CSRF on every change; headers that forbid inline script and
//! framing; escaping of what a request echoes; sign-out ending the session on the server;
//! and the operator policies deciding every page and sign-in. (The pages themselves, in a
//! browser, are `meshctl/tests/console.rs`.)
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failure is the test failing"
)]

use std::sync::Arc;

use signet_spiffe::tls::SvidResolver;
use signet_tests::control::{ControlPlane, HttpsReply};

const TD: &str = "console.test";
const ADMIN: &str = "spiffe://console.test/signet/operator/admin";
const INTERN: &str = "spiffe://console.test/signet/operator/intern";

fn none() -> Arc<SvidResolver> {
    Arc::new(SvidResolver::new())
}

/// The value `name=` sets in a `Set-Cookie` header of `reply`, with the header.
fn set_cookie(reply: &HttpsReply, name: &str) -> Option<(String, String)> {
    reply.all("set-cookie").into_iter().find_map(|h| {
        let value = h
            .strip_prefix(&format!("{name}="))?
            .split(';')
            .next()?
            .to_owned();
        Some((value, h))
    })
}

/// The hidden `name` field's value in a page.
fn field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no `{name}` in {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

/// A sign-in form: its double-submit value, and the cookie carrying it.
async fn sign_in_form(cp: &ControlPlane, client: Arc<SvidResolver>) -> (String, String) {
    let page = cp
        .https(client, "GET", "/ui/sign-in", &[], Vec::new())
        .await;
    assert_eq!(page.status, 200, "{}", page.text());
    let (cookie, header) = set_cookie(&page, "__Host-signet-sign-in").expect("a sign-in cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(header.contains(attribute), "{header}");
    }
    assert_eq!(field(&page.text(), "sign_in"), cookie);
    (field(&page.text(), "sign_in"), cookie)
}

async fn post_form(
    cp: &ControlPlane,
    client: Arc<SvidResolver>,
    path: &str,
    cookies: &str,
    extra: &[(&str, String)],
    form: &str,
) -> HttpsReply {
    let mut headers = vec![
        (
            "content-type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("cookie", cookies.to_owned()),
    ];
    headers.extend(extra.iter().cloned());
    cp.https(client, "POST", path, &headers, form.as_bytes().to_vec())
        .await
}

/// Signs in with `form` fields; the session cookie on success.
async fn sign_in(
    cp: &ControlPlane,
    client: Arc<SvidResolver>,
    form: &str,
) -> (HttpsReply, Option<String>) {
    let (token, cookie) = sign_in_form(cp, client.clone()).await;
    let reply = post_form(
        cp,
        client,
        "/ui/sign-in",
        &format!("__Host-signet-sign-in={cookie}"),
        &[],
        &format!("sign_in={token}&{form}"),
    )
    .await;
    let session = set_cookie(&reply, "__Host-signet-session").map(|(v, _)| v);
    (reply, session.filter(|v| !v.is_empty()))
}

async fn get(cp: &ControlPlane, path: &str, session: &str) -> HttpsReply {
    cp.https(
        none(),
        "GET",
        path,
        &[("cookie", format!("__Host-signet-session={session}"))],
        Vec::new(),
    )
    .await
}

#[tokio::test]
async fn the_console_signs_in_only_operators_and_guards_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), &["--trust-domain", TD]);
    let admin_token = cp.setting("SIGNET_TOKEN");

    // No session: pages send to sign-in, changes are refused.
    let page = cp
        .https(none(), "GET", "/ui/policies", &[], Vec::new())
        .await;
    assert_eq!(
        (page.status, page.header("location")),
        (303, "/ui/sign-in".to_owned())
    );
    let change = post_form(&cp, none(), "/ui/policies/rollback", "", &[], "version=1").await;
    assert_eq!(change.status, 401, "{}", change.text());

    // Every response forbids inline script, framing and caching.
    let signin = cp
        .https(none(), "GET", "/ui/sign-in", &[], Vec::new())
        .await;
    let csp = signin.header("content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(signin.header("x-frame-options"), "DENY");
    assert_eq!(signin.header("x-content-type-options"), "nosniff");
    assert_eq!(signin.header("cache-control"), "no-store");
    let text = signin.text();
    assert!(
        !text.contains("<script>") && !text.contains(" style="),
        "{text}"
    );
    assert!(!text.contains(&admin_token));

    // Login CSRF: without the form's cookie, or from another site, nothing signs in.
    let (token, _) = sign_in_form(&cp, none()).await;
    let forged = post_form(
        &cp,
        none(),
        "/ui/sign-in",
        "",
        &[],
        &format!("sign_in={token}&method=token&token={admin_token}"),
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.text());
    assert!(set_cookie(&forged, "__Host-signet-session").is_none());
    let (token, cookie) = sign_in_form(&cp, none()).await;
    let cross = post_form(
        &cp,
        none(),
        "/ui/sign-in",
        &format!("__Host-signet-sign-in={cookie}"),
        &[("origin", "https://evil.example".to_owned())],
        &format!("sign_in={token}&method=token&token={admin_token}"),
    )
    .await;
    assert_eq!(cross.status, 403, "{}", cross.text());
    assert!(set_cookie(&cross, "__Host-signet-session").is_none());

    // A wrong token: refused, no session.
    let (reply, session) = sign_in(&cp, none(), "method=token&token=not-a-token").await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert!(session.is_none());

    // The admin's token: a session cookie only a same-site HTTPS request carries.
    let (reply, session) = sign_in(&cp, none(), &format!("method=token&token={admin_token}")).await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert_eq!(reply.header("location"), "/ui");
    let session = session.expect("a session");
    let (_, header) = set_cookie(&reply, "__Host-signet-session").unwrap();
    for attribute in [
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=3600",
    ] {
        assert!(header.contains(attribute), "{header}");
    }
    let overview = get(&cp, "/ui", &session).await;
    assert_eq!(overview.status, 200);
    assert!(overview.text().contains(ADMIN), "{}", overview.text());

    // What a request echoes is escaped.
    let echoed = get(
        &cp,
        "/ui/audit?principal=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &session,
    )
    .await;
    assert_eq!(echoed.status, 200);
    assert!(
        echoed.text().contains("&lt;script&gt;alert(1)"),
        "{}",
        echoed.text()
    );
    assert!(!echoed.text().contains("<script>alert"));
    assert_eq!(
        get(&cp, "/ui/audit?decision=maybe", &session).await.status,
        400
    );
    // Every other malformed page request is one clear 400 page, never a 500.
    for (path, says) in [
        ("/ui/audit?minutes=0", "minutes must be between"),
        ("/ui/audit?nonsense=1", "unknown or malformed filter"),
        ("/ui/audit/rows?decision=deny", "after is required"),
        ("/ui/topology?window=0", "window must be between"),
        ("/ui/policies/diff?from=one&to=2", "name two versions"),
        (
            "/ui/policies/explain?principal=cart&service=cart&action=GET",
            "is not a SPIFFE ID",
        ),
        (
            "/ui/policies/explain?principal=spiffe%3A%2F%2Fconsole.test%2Fa&service=cart&action=FETCH",
            "is not an action",
        ),
    ] {
        let page = get(&cp, path, &session).await;
        assert_eq!(page.status, 400, "{path}: {}", page.text());
        assert!(page.text().contains(says), "{path}: {}", page.text());
    }
    let missing = get(&cp, "/ui/policies/diff?from=1&to=99", &session).await;
    assert_eq!(missing.status, 404, "{}", missing.text());

    // Changes need the session's CSRF token and a same-site origin.
    let csrf = field(&overview.text(), "csrf");
    let jar = format!("__Host-signet-session={session}");
    let without = post_form(&cp, none(), "/ui/sign-out", &jar, &[], "csrf=wrong").await;
    assert_eq!(without.status, 403, "{}", without.text());
    let cross = post_form(
        &cp,
        none(),
        "/ui/sign-out",
        &jar,
        &[("sec-fetch-site", "cross-site".to_owned())],
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(cross.status, 403, "{}", cross.text());
    assert_eq!(
        get(&cp, "/ui", &session).await.status,
        200,
        "still signed in"
    );

    // Sign-out ends the session on the server: the cookie, replayed, is worthless.
    let out = post_form(
        &cp,
        none(),
        "/ui/sign-out",
        &jar,
        &[],
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(out.status, 303, "{}", out.text());
    let replayed = get(&cp, "/ui", &session).await;
    assert_eq!(
        (replayed.status, replayed.header("location")),
        (303, "/ui/sign-in".to_owned())
    );

    // A one-time code from the API signs in once.
    let code = cp
        .rest(
            "POST",
            "/v1/console/sign-in-codes",
            None,
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(code.status, 200, "{code:?}");
    let path = code.json["path"].as_str().unwrap();
    let code = path
        .strip_prefix("/ui/sign-in#code=")
        .expect(path)
        .to_owned();
    let (reply, session) = sign_in(&cp, none(), &format!("method=code&code={code}")).await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert!(session.is_some());
    let (again, session) = sign_in(&cp, none(), &format!("method=code&code={code}")).await;
    assert_eq!(again.status, 401, "{}", again.text());
    assert!(session.is_none());

    // A client certificate signs in its own identity: the admin's...
    let admin_cert = cp.resolver_over_rest(ADMIN).await;
    let form = cp
        .https(admin_cert.clone(), "GET", "/ui/sign-in", &[], Vec::new())
        .await;
    assert!(
        form.text().contains(&format!("Continue as {ADMIN}")),
        "{}",
        form.text()
    );
    let (reply, session) = sign_in(&cp, admin_cert, "method=certificate").await;
    assert_eq!(reply.status, 303, "{}", reply.text());
    assert!(
        get(&cp, "/ui/ca", &session.unwrap())
            .await
            .text()
            .contains(ADMIN)
    );
    // ...and no certificate, no sign-in.
    let (reply, _) = sign_in(&cp, none(), "method=certificate").await;
    assert_eq!(reply.status, 401, "{}", reply.text());

    // An operator the policies do not let read the console is refused at sign-in and
    // cannot ask for a code; both refusals are recorded.
    let intern = cp.resolver_over_rest(INTERN).await;
    let (reply, session) = sign_in(&cp, intern.clone(), "method=certificate").await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(session.is_none());
    let code = cp
        .rest_as(
            intern,
            "POST",
            "/v1/console/sign-in-codes",
            Some(""),
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(code.status, 403, "{code:?}");
    let actions = cp.rest("GET", "/v1/operator-actions", None, None).await;
    let refused = actions.json["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["principal"] == INTERN && a["target"] == "console" && a["allowed"] == false)
        .count();
    assert_eq!(refused, 2, "{}", actions.json);
}

#[tokio::test]
async fn a_read_only_operator_sees_no_write_controls_and_cannot_post_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut cp = ControlPlane::start(dir.path(), &["--trust-domain", TD]);
    cp.add_operator_policies(&format!(
        "\n@id(\"intern-reads\")\npermit (principal == Signet::Operator::\"{INTERN}\", \
         action == Signet::Action::\"read\", resource);\n"
    ));
    let file = dir.path().join("p.cedar");
    for (n, text) in [
        (
            1,
            "@id(\"a\") permit (principal, action == Mesh::Action::\"connect\", resource);",
        ),
        (
            2,
            "@id(\"b\") forbid (principal, action == Mesh::Action::\"connect\", resource);",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        cp.meshctl_ok(&[
            "authz",
            "apply",
            "-f",
            file.to_str().unwrap(),
            "--allow-widening",
            "-m",
            &n.to_string(),
        ]);
    }
    let intern = cp.resolver_over_rest(INTERN).await;
    let (_, session) = sign_in(&cp, intern, "method=certificate").await;
    let session = session.expect("the intern may read the console");
    let page = get(&cp, "/ui/policies", &session).await;
    assert_eq!(page.status, 200);
    assert!(
        !page.text().contains("/ui/policies/rollback"),
        "{}",
        page.text()
    );
    let csrf = field(&page.text(), "csrf");
    let jar = format!("__Host-signet-session={session}");
    let posted = post_form(
        &cp,
        none(),
        "/ui/policies/rollback",
        &jar,
        &[],
        &format!("csrf={csrf}&version=1&allow_widening=true"),
    )
    .await;
    assert_eq!(posted.status, 403, "{}", posted.text());
    assert!(
        posted.text().contains("may not `policy.rollback`"),
        "{}",
        posted.text()
    );
    // Nothing changed.
    let history = cp.rest("GET", "/v1/policies/history", None, None).await;
    assert_eq!(history.json["versions"][0]["version"], 2, "{history:?}");

    // The admin sees the control, and the same post rolls back (the widening gate, which
    // needs registered workloads to find anything, is exercised by the browser test).
    let (_, admin) = sign_in(
        &cp,
        none(),
        &format!("method=token&token={}", cp.setting("SIGNET_TOKEN")),
    )
    .await;
    let admin = admin.unwrap();
    let page = get(&cp, "/ui/policies", &admin).await;
    assert!(
        page.text().contains("data-testid=\"rollback-1\""),
        "{}",
        page.text()
    );
    let csrf = field(&page.text(), "csrf");
    let jar = format!("__Host-signet-session={admin}");
    let done = post_form(
        &cp,
        none(),
        "/ui/policies/rollback",
        &jar,
        &[],
        &format!("csrf={csrf}&version=1"),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let history = cp.rest("GET", "/v1/policies/history", None, None).await;
    assert_eq!(history.json["versions"][0]["version"], 3, "{history:?}");
    assert_eq!(
        history.json["versions"][0]["rolled_back_from"], 1,
        "{history:?}"
    );
}
