//! `/ui`: the mesh at a glance, and what needs attention.

use axum::extract::State;

use super::html::{self, Nav, badge, esc, facts};
use super::{Page, PageResult, Signed};
use crate::server::rest::{Api, status_of};
use crate::server::store::AuditQuery;

/// The window the deny rate is measured over.
const DENY_WINDOW_SECS: u64 = 300;

pub(super) async fn page(State(api): State<Api>, signed: Signed) -> PageResult {
    signed.read(&api, "status").await?;
    let hub = &api.hub;
    let now = html::now_ms();
    let status = status_of(hub).await;
    let version = status.policy.version;
    let proxies = hub.proxies();
    let mut warnings = status.ca.warnings.clone();
    if status.proxies.stale > 0 {
        warnings.push(format!(
            "{} proxies do not enforce policy version {version} yet",
            status.proxies.stale
        ));
    }
    if let Some(e) = &status.store_error {
        warnings.push(format!("the store does not answer: {e}"));
    }
    // The deny rate, from the decisions the proxies shipped.
    let since = u64::try_from(now)
        .unwrap_or(0)
        .saturating_sub(DENY_WINDOW_SECS * 1000)
        * 1_000_000;
    let denies = hub
        .store
        .query_audit(AuditQuery {
            decision: Some("deny".to_owned()),
            since: Some(since),
            limit: Some(10_000),
            ..AuditQuery::default()
        })
        .await
        // Policy's denials only: injected faults and rate limits are the traffic settings'.
        .map(|rows| {
            rows.iter()
                .filter(|r| {
                    r.kind == "decision"
                        && r.policies
                            .as_deref()
                            .is_none_or(|p| p != "fault-injected" && !p.starts_with("rate-limit-"))
                })
                .count()
        })
        .unwrap_or(0);
    let issuing_expiry = status
        .ca
        .intermediate
        .as_ref()
        .map(|c| c.not_after)
        .or_else(|| status.ca.chain.first().map(|c| c.not_after));
    let traffic = hub.traffic();
    let counts = &status.proxies;
    let mut body = String::new();
    body.push_str(&facts(&[
        (
            "Control plane",
            if status.healthy {
                badge("ok", "healthy")
            } else {
                badge("bad", "store unreachable")
            },
        ),
        ("Trust domain", esc(&status.trust_domain)),
        ("CA backend", esc(&status.ca.backend)),
        (
            "Issuing CA expires",
            issuing_expiry.map_or_else(|| "-".to_owned(), |ms| html::countdown(ms, now)),
        ),
        (
            "Policy version",
            format!(
                "<a href=\"/ui/policies\" data-testid=\"policy-version\">{version}</a> ({} policies)",
                status.policy.policies
            ),
        ),
        ("Traffic version", traffic.version.to_string()),
        (
            "Proxies",
            format!(
                "<span data-testid=\"proxies\">{}</span> connected, {} in sync{}",
                counts.total,
                counts.in_sync,
                if counts.on_other_replicas > 0 {
                    format!(", {} at other replicas", counts.on_other_replicas)
                } else {
                    String::new()
                }
            ),
        ),
        (
            "Denied requests",
            format!(
                "<span data-testid=\"deny-rate\">{:.2}/s</span> over {} min",
                denies as f64 / DENY_WINDOW_SECS as f64,
                DENY_WINDOW_SECS / 60
            ),
        ),
        ("Replicas", status.replicas.iter().filter(|r| r.alive).count().to_string()),
        ("Console sessions", api.console.open_count().to_string()),
    ]));
    body.push_str("<h2>Warnings</h2>");
    if warnings.is_empty() {
        body.push_str("<p data-testid=\"warnings\">None.</p>");
    } else {
        body.push_str("<ul class=\"warnings\" data-testid=\"warnings\">");
        for w in &warnings {
            body.push_str(&format!("<li>{}</li>", esc(w)));
        }
        body.push_str("</ul>");
    }
    body.push_str(&audit_chains(&api, &proxies).await);
    Ok(Page::ok(html::page(
        "Overview",
        Nav::Overview,
        Some(&signed.viewer(&api)),
        &body,
    )))
}

/// Chains listed on the overview; past it, only those needing attention are.
const CHAINS_LISTED: usize = 20;

/// Each connected proxy's shipped audit chain as the store holds it: how far it reaches
/// and how much of it is covered by a signed checkpoint. A batch is kept only if its hash
/// chain continues the stored tip and its signatures verify, so what is here was verified
/// on receipt.
async fn audit_chains(api: &Api, proxies: &[crate::server::hub::ProxyEntry]) -> String {
    let tips: std::collections::HashMap<String, signet_audit::receiver::Tip> =
        match api.hub.store.audit_tips().await {
            Ok(tips) => tips.into_iter().collect(),
            Err(e) => {
                return format!(
                    "<h2>Audit chains</h2><p class=\"error\">The store does not answer: {}</p>",
                    esc(&e.to_string())
                );
            }
        };
    let (mut signed, mut pending, mut empty) = (0, 0, 0);
    let mut rows = Vec::new();
    for p in proxies {
        // A proxy ships as its identity and instance (one chain per process).
        let writer = format!("{}#{}", p.spiffe_id, p.instance);
        let (records, through, state, attention) = match tips.get(&writer) {
            Some(t) if t.signed_through >= t.seq => {
                signed += 1;
                (
                    t.seq,
                    t.signed_through,
                    badge("ok", "verified, signed to the tip"),
                    false,
                )
            }
            Some(t) => {
                pending += 1;
                (
                    t.seq,
                    t.signed_through,
                    badge("ok", "verified; tail awaits its checkpoint"),
                    false,
                )
            }
            None => {
                empty += 1;
                (0, 0, badge("muted", "nothing shipped yet"), true)
            }
        };
        if proxies.len() <= CHAINS_LISTED || (attention && rows.len() < CHAINS_LISTED) {
            rows.push(vec![
                format!("<span class=\"mono\">{}</span>", esc(&writer)),
                esc(&format!("{}/{}", p.namespace, p.service)),
                records.to_string(),
                through.to_string(),
                state,
            ]);
        }
    }
    let caption = if proxies.len() <= CHAINS_LISTED {
        "Each proxy's decisions, as shipped to the control plane".to_owned()
    } else {
        format!(
            "Chains of {} proxies; those that shipped nothing yet (at most {CHAINS_LISTED})",
            proxies.len()
        )
    };
    format!(
        "<h2>Audit chains</h2><p data-testid=\"chains\">{signed} signed to the tip, {pending} \
         with a tail awaiting its checkpoint, {empty} with nothing shipped yet.</p>{}",
        html::table(
            &caption,
            &["Writer", "Service", "Records", "Signed through", "State"],
            &rows,
            "audit-chains",
        )
    )
}
