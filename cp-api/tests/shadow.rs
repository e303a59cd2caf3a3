//! Shadow mode on live traffic: a candidate bundle installed with `authz apply --shadow` is
//! decided beside the enforced one on every proxy, only the enforced one acts, and every
//! disagreement is counted, audited and reported per flow; `shadow promote` goes through the
//! widening gate, `shadow clear` removes the candidate.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests: a failure is the test failing"
)]

use std::time::Duration;

use serde_json::Value;
use signet_tests::mesh::{FRONTEND, Mesh, policies};

/// The candidate: reads only under `/api/public/` (narrower than the enforced `/api/*`) and
/// under `/admin/` (wider).
fn candidate() -> String {
    format!(
        "{}\n@id(\"admin-reads\")\npermit (principal, action in Mesh::Action::\"read\", resource)\nwhen {{ context.path like \"/admin/*\" }};\n",
        policies("/api/public/*")
    )
}

fn shadow_report(mesh: &Mesh) -> Value {
    serde_json::from_str(
        &mesh
            .cp
            .meshctl_ok(&["authz", "shadow", "report", "-o", "json"]),
    )
    .unwrap()
}

fn flow<'a>(report: &'a Value, would: &str) -> Option<&'a Value> {
    report["flows"]
        .as_array()?
        .iter()
        .find(|f| f["would"] == would && f["principal"] == FRONTEND && f["action"] == "GET")
}

/// Waits until the report has a `would` flow of at least `count` decisions.
async fn reported(mesh: &Mesh, would: &str, count: u64) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = shadow_report(mesh);
        if flow(&last, would).is_some_and(|f| f["count"].as_u64() >= Some(count)) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no `{would}` flow of {count} in the report: {last:#}");
}

const DISAGREE_DENY: &str =
    "signet_proxy_authz_shadow_disagreements_total{service=\"cart\",would=\"deny\"}";
const DISAGREE_ALLOW: &str =
    "signet_proxy_authz_shadow_disagreements_total{service=\"cart\",would=\"allow\"}";

#[tokio::test]
async fn a_shadow_candidate_decides_beside_the_enforced_policies_without_acting() {
    let mesh = Mesh::start(&[]).await;
    let before = mesh.versions();
    let out = mesh.apply_with("candidate.cedar", &candidate(), &["--shadow"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("installed shadow candidate"), "{stdout}");
    assert!(stdout.contains("running on 2 of 2 proxies"), "{stdout}");
    assert_eq!(mesh.versions(), before, "installing a candidate applied it");
    assert_eq!(mesh.cart.metric("signet_proxy_shadow_version").await, 1);

    // Only the enforced policies act.
    for _ in 0..5 {
        assert_eq!(mesh.call("/api/items").await.0, 200);
    }
    let (status, denied_by) = mesh.call("/admin/panel").await;
    assert_eq!(status, 403, "the candidate acted");
    assert_eq!(denied_by.as_deref(), Some("default-deny"));
    assert_eq!(mesh.call("/api/public/x").await.0, 200);

    // Counted by what the candidate would do; agreement is not counted.
    assert_eq!(mesh.cart.metric_reaching(DISAGREE_DENY, 5).await, 5);
    assert_eq!(mesh.cart.metric(DISAGREE_ALLOW).await, 1);

    // Reported per flow with examples naming both decisions' policies, from the audit
    // records the cart's proxy shipped.
    let report = reported(&mesh, "deny", 5).await;
    let newly_denied = flow(&report, "deny").unwrap();
    assert_eq!(newly_denied["service"], "cart");
    assert_eq!(newly_denied["count"], 5, "{report:#}");
    let example = &newly_denied["examples"][0];
    assert_eq!(example["path"], "/api/items", "{example}");
    assert_eq!(example["enforced"], "allow");
    assert_eq!(
        example["enforced_policies"],
        serde_json::json!(["frontend-reads-cart"])
    );
    assert_eq!(example["candidate_policies"], serde_json::json!([]));
    let report = reported(&mesh, "allow", 1).await;
    let newly_allowed = flow(&report, "allow").unwrap();
    assert_eq!(newly_allowed["examples"][0]["path"], "/admin/panel");
    assert_eq!(
        newly_allowed["examples"][0]["candidate_policies"],
        serde_json::json!(["admin-reads"])
    );
    assert_eq!(report["would_deny"], 5);
    assert_eq!(report["would_allow"], 1);
    assert_eq!(report["running_on"]["running"], 2);
    let table = mesh.cp.meshctl_ok(&["authz", "shadow", "report"]);
    assert!(
        table.contains("newly denied") && table.contains("/api/items"),
        "{table}"
    );

    // The audit query keeps shadow records apart from decisions that were made.
    let denies = mesh.cp.meshctl_ok(&[
        "audit",
        "tail",
        "--decision",
        "deny",
        "-n",
        "100",
        "-o",
        "json",
    ]);
    assert!(!denies.contains("\"shadow\""), "{denies}");

    // A candidate that does not validate is refused whole; the installed one stays.
    let out = mesh.apply_with(
        "broken.cedar",
        "permit (principal, action, resource",
        &["--shadow"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(report_candidate(&mesh), 1);

    // Clear: the proxies stop deciding with it.
    let out = mesh.cp.meshctl_ok(&["authz", "shadow", "clear"]);
    assert!(out.contains("cleared shadow candidate 1"), "{out}");
    assert_eq!(mesh.cart.metric("signet_proxy_shadow_version").await, 0);
    assert!(shadow_report(&mesh)["candidate"].is_null());
    mesh.call("/api/items").await;
    assert_eq!(
        mesh.cart.metric(DISAGREE_DENY).await,
        5,
        "a cleared candidate still decided"
    );
    let out = mesh.cp.meshctl(&["authz", "shadow", "clear"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("no shadow candidate is installed"),
        "{stderr}"
    );
}

fn report_candidate(mesh: &Mesh) -> u64 {
    shadow_report(mesh)["candidate"]["id"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn promoting_a_candidate_goes_through_the_widening_gate() {
    let mut mesh = Mesh::start(&[]).await;
    let applied = mesh.versions();
    let out = mesh.apply_with("candidate.cedar", &candidate(), &["--shadow"]);
    assert!(out.status.success());

    // Installing takes `policy.shadow`: an operator who may apply may not install.
    const DEPLOYER: &str = "spiffe://mesh.test/signet/operator/deployer";
    mesh.cp.add_operator_policies(&format!(
        r#"
@id("deployer-applies")
permit (principal == Signet::Operator::"{DEPLOYER}",
        action in [Signet::Action::"policy.apply", Signet::Action::"read"], resource);
"#
    ));
    let deployer = mesh.cp.enroll(mesh.dir.path(), DEPLOYER);
    let file = mesh.dir.path().join("candidate.cedar");
    let out = mesh.cp.meshctl_as(
        &deployer,
        &["authz", "apply", "--shadow", "-f", file.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("may not `policy.shadow`"), "{stderr}");

    // The candidate opens /admin/: not a terminal, so refused with exit 3, nothing applied.
    let out = mesh.cp.meshctl(&["authz", "shadow", "promote"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("GET /admin/"), "{stdout}");
    assert_eq!(mesh.versions(), applied);
    assert_eq!(report_candidate(&mesh), 1);

    // A client skipping the review meets the control plane's gate.
    let reply = mesh
        .cp
        .rest(
            "POST",
            "/v1/policies/shadow/promote",
            None,
            Some(br#"{"candidate":1,"wait_seconds":0}"#.to_vec()),
        )
        .await;
    assert_eq!(reply.status, 409, "{reply:?}");
    // Promoting a candidate other than the installed one is refused.
    let reply = mesh
        .cp
        .rest(
            "POST",
            "/v1/policies/shadow/promote",
            None,
            Some(br#"{"candidate":7,"allow_widening":true}"#.to_vec()),
        )
        .await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert_eq!(mesh.versions(), applied);

    let out = mesh
        .cp
        .meshctl_ok(&["authz", "shadow", "promote", "--allow-widening"]);
    assert!(out.contains("promoted shadow candidate 1"), "{out}");
    assert_eq!(mesh.versions().len(), applied.len() + 1);
    assert!(shadow_report(&mesh)["candidate"].is_null());
    mesh.wait_for(200, "/admin/panel", Duration::from_secs(10))
        .await;
    mesh.wait_for(403, "/api/items", Duration::from_secs(10))
        .await;
    assert_eq!(mesh.cart.metric("signet_proxy_shadow_version").await, 0);
    let history = mesh.cp.meshctl_ok(&["authz", "history"]);
    assert!(history.contains("promoted shadow candidate 1"), "{history}");
}
