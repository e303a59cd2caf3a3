//! `/ui/services`: every registered service, and per service what `meshctl identity
//! inspect` shows: its identity's SVIDs (counting down to expiry), its proxies, who may
//! call it and what it may call.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;

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

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        Value::Null => "-".to_owned(),
        other => esc(&other.to_string()),
    }
}

fn identity(view: &Value, now: i64) -> String {
    let mut out = format!(
        "<h2>Identity <span class=\"mono\">{}</span></h2>",
        text(&view["spiffe_id"])
    );
    let cert = &view["certificate"];
    out.push_str(&facts(&[
        (
            "SVID serial",
            format!("<span class=\"mono\">{}</span>", text(&cert["serial"])),
        ),
        (
            "SVID expires",
            cert["not_after"]
                .as_i64()
                .map_or_else(|| "-".to_owned(), |ms| html::countdown(ms, now)),
        ),
        (
            "Renewal due",
            cert["refresh_at"]
                .as_i64()
                .map_or_else(|| "-".to_owned(), |ms| html::countdown(ms, now)),
        ),
        (
            "Issued by",
            cert["issuer_chain"][0]["subject"]
                .as_str()
                .map_or_else(|| "-".to_owned(), esc),
        ),
    ]));
    let proxies: Vec<Vec<String>> = view["proxies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                format!("<span class=\"mono\">{}</span>", text(&p["instance"])),
                text(&p["endpoint"]),
                format!("<span class=\"mono\">{}</span>", text(&p["serial"])),
                p["last_renewed"]
                    .as_i64()
                    .map_or_else(|| "-".to_owned(), html::time_el),
                if p["in_sync"].as_bool() == Some(true) {
                    badge("ok", "in sync")
                } else {
                    badge("warn", "behind")
                },
                text(&p["app_health"]),
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
    let authz = &view["authorization"];
    let access = |entry: &Value| -> String {
        entry["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let kind = match a["decision"].as_str() {
                    Some("allow") => "ok",
                    Some("deny") => "bad",
                    _ => "warn",
                };
                let policies: Vec<String> = a["policies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(esc)
                    .collect();
                format!(
                    "{} {}{}",
                    esc(a["action"].as_str().unwrap_or("?")),
                    badge(kind, a["decision"].as_str().unwrap_or("?")),
                    if policies.is_empty() {
                        String::new()
                    } else {
                        format!(" <span class=\"mono\">{}</span>", policies.join(", "))
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("<br>")
    };
    let connect = |entry: &Value| {
        if entry["connect"].as_bool() == Some(true) {
            badge("ok", "may connect")
        } else {
            badge("bad", "refused")
        }
    };
    let inbound: Vec<Vec<String>> = authz["inbound"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            vec![
                format!("<span class=\"mono\">{}</span>", text(&c["spiffe_id"])),
                connect(c),
                access(c),
            ]
        })
        .collect();
    out.push_str(&table(
        &format!(
            "Who may call it (policy version {})",
            text(&authz["policy_version"])
        ),
        &["Caller", "Connect", "Requests"],
        &inbound,
        "inbound",
    ));
    let outbound: Vec<Vec<String>> = authz["outbound"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                esc(&format!(
                    "{}/{}",
                    s["namespace"].as_str().unwrap_or("?"),
                    s["service"].as_str().unwrap_or("?")
                )),
                connect(s),
                access(s),
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
