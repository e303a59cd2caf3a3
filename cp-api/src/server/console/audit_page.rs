//! `/ui/audit`: the decisions the proxies shipped, filtered, each with its place in its
//! writer's hash chain and how far it is verified; a live tail (console.js polls
//! `/ui/audit/rows`); and an export of the filtered records as their exact signed lines,
//! which `meshctl audit verify` and a SIEM read.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::html::{self, Nav, esc, query_value, table};
use super::{Page, PageResult, Refusal, Signed};
use crate::server::rest::Api;
use crate::server::store::{AuditQuery, AuditRow};

/// Records on the page; the export takes up to the store's own limit.
const SHOWN: u32 = 200;
const EXPORTED: u32 = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Filters {
    #[serde(default)]
    decision: Option<String>,
    #[serde(default)]
    principal: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    policy: Option<String>,
    /// Only the last this many minutes.
    #[serde(default)]
    minutes: Option<u64>,
    /// Only after this index position (the live tail).
    #[serde(default)]
    after: Option<i64>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl Filters {
    fn check(&self) -> Result<(), Refusal> {
        if let Some(d) = nonempty(&self.decision)
            && d != "allow"
            && d != "deny"
        {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "decision must be allow or deny",
            ));
        }
        for v in [&self.principal, &self.service, &self.policy] {
            if v.as_ref().is_some_and(|s| s.len() > 512) {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "a filter is too long",
                ));
            }
        }
        if self.minutes.is_some_and(|m| m == 0 || m > 7 * 24 * 60) {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "minutes must be between 1 and 10080",
            ));
        }
        Ok(())
    }

    fn query(&self, limit: u32) -> AuditQuery {
        let since = self.minutes.map(|m| {
            u64::try_from(html::now_ms())
                .unwrap_or(0)
                .saturating_sub(m * 60_000)
                .saturating_mul(1_000_000)
        });
        AuditQuery {
            after: self.after,
            decision: nonempty(&self.decision),
            principal: nonempty(&self.principal),
            resource: nonempty(&self.service),
            policy: nonempty(&self.policy),
            since,
            limit: Some(limit),
            // The tail pages forwards from where it stands; a page shows the newest.
            oldest: self.after.is_some(),
            ..AuditQuery::default()
        }
    }

    /// The filters as a query string (without `after`).
    fn to_query(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("decision", &self.decision),
            ("principal", &self.principal),
            ("service", &self.service),
            ("policy", &self.policy),
        ] {
            if let Some(v) = nonempty(v) {
                parts.push(format!("{k}={}", query_value(&v)));
            }
        }
        if let Some(m) = self.minutes {
            parts.push(format!("minutes={m}"));
        }
        parts.join("&")
    }
}

/// A record as the page and the tail show it.
#[derive(Debug, Serialize)]
struct Shown {
    id: i64,
    time: String,
    writer: String,
    seq: u64,
    decision: String,
    principal: String,
    resource: String,
    path: String,
    policies: String,
    verified: String,
}

/// Each record's verification: every batch was kept only after its hash chain continued
/// the stored tip and its signatures verified; records past the last signed checkpoint
/// are chained but not yet signed.
async fn shown(api: &Api, rows: Vec<AuditRow>) -> Vec<Shown> {
    let mut tips: HashMap<String, Option<u64>> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if !tips.contains_key(&r.writer) {
            let tip = api.hub.store.audit_tip(&r.writer).await.ok().flatten();
            tips.insert(r.writer.clone(), tip.map(|t| t.signed_through));
        }
        let signed_through = tips.get(&r.writer).copied().flatten().unwrap_or(0);
        out.push(Shown {
            id: r.id,
            time: html::time_ms(i64::try_from(r.time / 1_000_000).unwrap_or(i64::MAX)),
            writer: r.writer,
            seq: r.seq,
            decision: r.decision.unwrap_or_default(),
            principal: r.principal.unwrap_or_default(),
            resource: r.resource.unwrap_or_default(),
            path: r.path.unwrap_or_default(),
            policies: r.policies.unwrap_or_default(),
            verified: if r.seq <= signed_through {
                "chained and signed".to_owned()
            } else {
                "chained; checkpoint pending".to_owned()
            },
        });
    }
    out
}

type FilterQuery = Result<Query<Filters>, axum::extract::rejection::QueryRejection>;

/// The filters checked, the operator's `read` of `audit` authorized and recorded, then up to
/// `limit` matching records (with the filters, for the page to show).
async fn matching(
    api: &Api,
    signed: &Signed,
    filters: FilterQuery,
    limit: u32,
) -> Result<(Filters, Vec<AuditRow>), Refusal> {
    let Ok(Query(filters)) = filters else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "unknown or malformed filter",
        ));
    };
    filters.check()?;
    signed.read(api, "audit").await?;
    let rows = api
        .hub
        .store
        .query_audit(filters.query(limit))
        .await
        .map_err(|e| Refusal::from(crate::server::rest::ApiError::from(e)))?;
    Ok((filters, rows))
}

pub(super) async fn page(
    State(api): State<Api>,
    signed: Signed,
    filters: FilterQuery,
) -> PageResult {
    let (filters, rows) = matching(&api, &signed, filters, SHOWN).await?;
    let last = rows.last().map_or(0, |r| r.id);
    let shown = shown(&api, rows).await;
    let cells: Vec<Vec<String>> = shown
        .iter()
        .map(|r| {
            vec![
                esc(&r.time),
                format!("<span class=\"mono\">{} #{}</span>", esc(&r.writer), r.seq),
                esc(&r.decision),
                format!("<span class=\"mono\">{}</span>", esc(&r.principal)),
                esc(&r.resource),
                esc(&r.path),
                format!("<span class=\"mono\">{}</span>", esc(&r.policies)),
                esc(&r.verified),
            ]
        })
        .collect();
    let f = &filters;
    let value = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let selected = |d: &str| {
        if f.decision.as_deref() == Some(d) {
            " selected"
        } else {
            ""
        }
    };
    let query = filters.to_query();
    let mut body = format!(
        "<form method=\"get\" action=\"/ui/audit\" class=\"filters\" aria-label=\"Filters\">\
         <div><label for=\"decision\">Decision</label><select id=\"decision\" name=\"decision\">\
         <option value=\"\">any</option><option value=\"allow\"{}>allow</option>\
         <option value=\"deny\"{}>deny</option></select></div>\
         <div><label for=\"principal\">Principal</label><input type=\"text\" id=\"principal\" name=\"principal\" value=\"{}\"></div>\
         <div><label for=\"service\">Service</label><input type=\"text\" id=\"service\" name=\"service\" value=\"{}\"></div>\
         <div><label for=\"policy\">Policy</label><input type=\"text\" id=\"policy\" name=\"policy\" value=\"{}\"></div>\
         <div><label for=\"minutes\">Last minutes</label><input type=\"number\" min=\"1\" max=\"10080\" id=\"minutes\" name=\"minutes\" value=\"{}\"></div>\
         <button type=\"submit\">Filter</button></form>\
         <p><a href=\"/ui/audit/export?{}\" data-testid=\"export\">Export these records (JSON lines, as signed)</a> \
         <span id=\"tail-status\" role=\"status\"></span></p>",
        selected("allow"),
        selected("deny"),
        value(&f.principal),
        value(&f.service),
        value(&f.policy),
        f.minutes.map_or_else(String::new, |m| m.to_string()),
        esc(&query),
    );
    let table = table(
        &format!("The newest {} records matching", shown.len()),
        &[
            "Time",
            "Chain position",
            "Decision",
            "Principal",
            "Service",
            "Path",
            "Policies",
            "Verified",
        ],
        &cells,
        "audit",
    );
    // The live tail's starting point and filters ride on the table.
    body.push_str(&table.replacen(
        "<table ",
        &format!(
            "<table data-tail=\"{}\" data-after=\"{last}\" ",
            esc(&query)
        ),
        1,
    ));
    Ok(Page::ok(html::page(
        "Audit",
        Nav::Audit,
        Some(&signed.viewer(&api)),
        &body,
    )))
}

/// `GET /ui/audit/rows?after=N&...`: records after `N`, for the live tail.
pub(super) async fn rows(
    State(api): State<Api>,
    signed: Signed,
    filters: FilterQuery,
) -> Result<Response, Refusal> {
    // Only ever a tail: without `after` the page itself is the way in.
    if !matches!(&filters, Ok(Query(f)) if f.after.is_some()) {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "after is required"));
    }
    let (_, rows) = matching(&api, &signed, filters, SHOWN).await?;
    let shown = shown(&api, rows).await;
    Ok(Json(serde_json::json!({ "rows": shown })).into_response())
}

/// `GET /ui/audit/export?...`: the matching records' exact lines.
pub(super) async fn export(
    State(api): State<Api>,
    signed: Signed,
    filters: FilterQuery,
) -> Result<Response, Refusal> {
    let (_, rows) = matching(&api, &signed, filters, EXPORTED).await?;
    let mut body = String::new();
    for r in rows {
        body.push_str(&r.line);
        if !r.line.ends_with('\n') {
            body.push('\n');
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"signet-audit.jsonl\"",
            ),
        ],
        body,
    )
        .into_response())
}
