//! `/ui/services`: every registered service, and per service what `meshctl identity
//! inspect` shows: its identity's SVIDs (counting down to expiry), its proxies, who may
//! call it and what it may call.

use std::collections::{BTreeMap, BTreeSet};

use crate::model;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::html::{self, Nav, badge, esc, facts, table};
use super::{Page, PageResult, Refusal, Signed};
use crate::server::hub::ProxyEntry;
use crate::server::rest::{Api, in_sync, inspect};

pub(super) async fn list(State(api): State<Api>, signed: Signed) -> PageResult {
    signed.read(&api, "services").await?;
    let hub = &api.hub;
    let version = hub.applied().meta.as_ref().map_or(0, |m| m.version);
    let proxies = hub.proxies();
    let mut by: BTreeMap<(&str, &str), Vec<&ProxyEntry>> = BTreeMap::new();
    for p in &proxies {
        by.entry((p.namespace.as_str(), p.service.as_str()))
            .or_default()
            .push(p);
    }
    let rows: Vec<Vec<String>> = by
        .iter()
        .map(|((ns, name), members)| {
            let ids: BTreeSet<&str> = members.iter().map(|p| p.spiffe_id.as_str()).collect();
            let synced = members
                .iter()
                .filter(|p| !p.local || in_sync(hub, p, version))
                .count();
            let unhealthy = members
                .iter()
                .filter(|p| p.app_health == crate::api::v1::AppHealth::Unhealthy)
                .count();
            vec![
                format!(
                    "<a href=\"/ui/services/{}/{}\">{}</a>",
                    html::query_value(ns),
                    html::query_value(name),
                    esc(name)
                ),
                esc(ns),
                ids.iter()
                    .map(|i| format!("<span class=\"mono\">{}</span>", esc(i)))
                    .collect::<Vec<_>>()
                    .join("<br>"),
                format!("{synced} of {}", members.len()),
                if unhealthy == 0 {
                    badge("ok", "healthy")
                } else {
                    badge("bad", &format!("{unhealthy} unhealthy"))
                },
            ]
        })
        .collect();
    let body = table(
        &format!("{} services, {} proxies", by.len(), proxies.len()),
        &[
            "Service",
            "Namespace",
            "Identities",
            "Proxies in sync",
            "App health",
        ],
        &rows,
        "services",
    );
    Ok(Page::ok(html::page(
        "Services and identities",
        Nav::Services,
        Some(&signed.viewer(&api)),
        &body,
    )))
}

pub(super) async fn one(
    State(api): State<Api>,
    signed: Signed,
    Path((namespace, name)): Path<(String, String)>,
) -> PageResult {
    signed.read(&api, "identity").await?;
    let ids: BTreeSet<String> = api
        .hub
        .proxies()
        .iter()
        .filter(|p| p.service == name && p.namespace == namespace)
        .map(|p| p.spiffe_id.as_str().to_owned())
        .collect();
    if ids.is_empty() {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            &format!("no proxy of service `{namespace}/{name}` is registered"),
        ));
    }
    let now = html::now_ms();
    let mut body = String::new();
    for id in &ids {
        let view = inspect(&api, id).await?;
        body.push_str(&identity(&view, now));
    }
    Ok(Page::ok(html::page(
        &format!("Service {namespace}/{name}"),
        Nav::Services,
        Some(&signed.viewer(&api)),
        &body,
    )))
}

fn identity(view: &model::IdentityReport, now: i64) -> String {
    let mut out = format!(
        "<h2>Identity <span class=\"mono\">{}</span></h2>",
        esc(&view.spiffe_id)
    );
    let cert = view.certificate.as_ref();
    let countdown =
        |ms: Option<i64>| ms.map_or_else(|| "-".to_owned(), |ms| html::countdown(ms, now));
    out.push_str(&facts(&[
        (
            "SVID serial",
            format!(
                "<span class=\"mono\">{}</span>",
                cert.map_or_else(|| "-".to_owned(), |c| esc(&c.serial))
            ),
        ),
        ("SVID expires", countdown(cert.map(|c| c.not_after))),
        ("Renewal due", countdown(cert.map(|c| c.refresh_at))),
        (
            "Issued by",
            cert.and_then(|c| c.issuer_chain.first())
                .map_or_else(|| "-".to_owned(), |i| esc(&i.subject)),
        ),
    ]));
    let proxies: Vec<Vec<String>> = view
        .proxies
        .iter()
        .map(|h| {
            let p = &h.proxy;
            vec![
                format!("<span class=\"mono\">{}</span>", esc(&p.instance)),
                esc(&p.endpoint),
                format!("<span class=\"mono\">{}</span>", esc(&p.serial)),
                h.last_renewed.map_or_else(|| "-".to_owned(), html::time_el),
                if p.in_sync {
                    badge("ok", "in sync")
                } else {
                    badge("warn", "behind")
                },
                p.app_health.as_str().to_owned(),
            ]
        })
        .collect();
    out.push_str(&table(
        "Proxies holding this identity",
        &[
            "Instance",
            "Endpoint",
            "SVID serial",
            "Renewed",
            "Policy",
            "App health",
        ],
        &proxies,
        "proxies",
    ));
    let authz = &view.authorization;
    let access = |actions: &[model::ActionAccess]| -> String {
        actions
            .iter()
            .map(|a| {
                let (kind, label, policies) = match &a.access {
                    model::Access::Allow { policies } => ("ok", "allow", policies.clone()),
                    model::Access::Deny { policies } => ("bad", "deny", policies.clone()),
                    model::Access::Depends { reads, .. } => {
                        ("warn", "depends", vec![format!("on {}", reads.join(", "))])
                    }
                };
                format!(
                    "{} {}{}",
                    esc(&a.action),
                    badge(kind, label),
                    if policies.is_empty() {
                        String::new()
                    } else {
                        format!(" <span class=\"mono\">{}</span>", esc(&policies.join(", ")))
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("<br>")
    };
    let connect = |allowed: bool| {
        if allowed {
            badge("ok", "may connect")
        } else {
            badge("bad", "refused")
        }
    };
    let inbound: Vec<Vec<String>> = authz
        .inbound
        .iter()
        .map(|c| {
            vec![
                format!("<span class=\"mono\">{}</span>", esc(&c.spiffe_id)),
                connect(c.connect),
                access(&c.actions),
            ]
        })
        .collect();
    out.push_str(&table(
        &format!("Who may call it (policy version {})", authz.policy_version),
        &["Caller", "Connect", "Requests"],
        &inbound,
        "inbound",
    ));
    let outbound: Vec<Vec<String>> = authz
        .outbound
        .iter()
        .map(|s| {
            vec![
                esc(&format!("{}/{}", s.namespace, s.service)),
                connect(s.connect),
                access(&s.actions),
            ]
        })
        .collect();
    out.push_str(&table(
        "What it may call",
        &["Service", "Connect", "Requests"],
        &outbound,
        "outbound",
    ));
    out
}
