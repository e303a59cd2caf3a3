//! `/ui/topology`: services as a graph over a chosen window. An edge is a caller -> service
//! pair that either sent requests (golden signals from the proxies' heartbeats) or was
//! decided (the decisions the proxies shipped to the audit index); an edge with denials is
//! drawn apart. Choosing an edge shows its deciding policies. The same edges are listed
//! in a table below the picture, for keyboards and screen readers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::html::{self, Nav, badge, esc, query_value, table};
use super::{Page, PageResult, Refusal, Signed};
use crate::server::rest::Api;
use crate::server::stats::{By, MAX_WINDOW};
use crate::server::store::AuditQuery;

/// Decisions read per view (the newest).
const DECISIONS_READ: u32 = 10_000;
const NODE_W: i64 = 170;
const NODE_H: i64 = 34;
const COLUMN: i64 = 300;
const ROW: i64 = 56;
const MARGIN: i64 = 20;
/// Columns in a band: the picture stays about a screen wide however deep the mesh.
const BAND_COLUMNS: i64 = 4;
/// Most edges drawn with their numbers on the picture.
const LABELLED_EDGES: usize = 24;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TopologyQuery {
    /// Seconds (default 300).
    #[serde(default)]
    window: Option<u64>,
    /// `caller->service`: the edge to explain.
    #[serde(default)]
    edge: Option<String>,
}

/// What is known of one caller -> service edge.
#[derive(Debug, Default)]
struct Edge {
    requests_per_second: f64,
    success_rate: Option<f64>,
    allowed: u64,
    denied: u64,
    /// Refused by the traffic settings, not by policy: injected faults and rate limits.
    by_settings: u64,
    /// (decision, policies) -> count.
    policies: BTreeMap<(String, String), u64>,
}

impl Edge {
    fn class(&self) -> &'static str {
        match (self.allowed, self.denied) {
            (_, 0) => "allowed",
            (0, _) => "denied",
            _ => "mixed",
        }
    }
}

/// The service a decision's resource names (`Mesh::Service::"cart"`, or `cart`).
fn service_of(resource: &str) -> String {
    let s = resource
        .rsplit_once("::")
        .map_or(resource, |(_, id)| id)
        .trim_matches('"');
    s.rsplit('/').next().unwrap_or(s).to_owned()
}

/// The service a principal's SPIFFE ID runs as, else the ID itself.
fn caller_of(principal: &str) -> String {
    let id = principal
        .rsplit_once("::")
        .map_or(principal, |(_, id)| id)
        .trim_matches('"');
    id.parse::<signet_spiffe::SpiffeId>()
        .ok()
        .and_then(|id| id.namespace_and_account().map(|(_, sa)| sa.to_owned()))
        .unwrap_or_else(|| id.to_owned())
}

pub(super) async fn page(
    State(api): State<Api>,
    signed: Signed,
    query: Result<Query<TopologyQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let Ok(Query(q)) = query else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "unknown or malformed query",
        ));
    };
    let window = q.window.unwrap_or(300);
    if window == 0 || window > MAX_WINDOW.as_secs() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            &format!(
                "window must be between 1 and {} seconds",
                MAX_WINDOW.as_secs()
            ),
        ));
    }
    signed.read(&api, "stats").await?;
    signed.read(&api, "audit").await?;
    let hub = &api.hub;
    let mut nodes: BTreeSet<String> = hub.proxies().iter().map(|p| p.service.clone()).collect();
    let mut edges: BTreeMap<(String, String), Edge> = BTreeMap::new();
    for row in hub.stats.rows(Duration::from_secs(window), By::Edge, None) {
        let Some(caller) = row.caller else { continue };
        let e = edges.entry((caller, row.service)).or_default();
        e.requests_per_second = row.requests_per_second;
        e.success_rate = row.success_rate;
    }
    let since = u64::try_from(html::now_ms())
        .unwrap_or(0)
        .saturating_sub(window * 1000)
        .saturating_mul(1_000_000);
    let decisions = hub
        .store
        .query_audit(AuditQuery {
            since: Some(since),
            limit: Some(DECISIONS_READ),
            ..AuditQuery::default()
        })
        .await
        .map_err(|e| Refusal::from(crate::server::rest::ApiError::from(e)))?;
    for d in decisions.iter().filter(|d| d.kind == "decision") {
        let (Some(principal), Some(resource), Some(decision)) =
            (&d.principal, &d.resource, &d.decision)
        else {
            continue;
        };
        let e = edges
            .entry((caller_of(principal), service_of(resource)))
            .or_default();
        let policies = d.policies.clone().unwrap_or_default();
        let settings = policies == "fault-injected" || policies.starts_with("rate-limit-");
        if settings {
            e.by_settings += 1;
        } else if decision == "allow" {
            // A connection let in says nothing of the requests on it: an edge whose every
            // request is refused is a denied edge.
            if d.action.as_deref() != Some("connect") {
                e.allowed += 1;
            }
        } else {
            e.denied += 1;
        }
        *e.policies.entry((decision.clone(), policies)).or_default() += 1;
    }
    for (caller, service) in edges.keys() {
        nodes.insert(caller.clone());
        nodes.insert(service.clone());
    }
    let mut body = format!(
        "<form method=\"get\" action=\"/ui/topology\" class=\"filters\"><div>\
         <label for=\"window\">Window</label><select id=\"window\" name=\"window\">{}</select></div>\
         <button type=\"submit\">Show</button></form>\
         <p class=\"legend\"><span class=\"allowed\">━ allowed</span>\
         <span class=\"denied\">╍ denied</span><span class=\"mixed\">┅ some denied</span></p>",
        [60, 300, 900]
            .iter()
            .filter(|w| **w <= MAX_WINDOW.as_secs())
            .map(|w| format!(
                "<option value=\"{w}\"{}>{} min</option>",
                if *w == window { " selected" } else { "" },
                w / 60
            ))
            .collect::<String>()
    );
    body.push_str(&svg(&nodes, &edges, window));
    if let Some(chosen) = &q.edge {
        body.push_str(&explain(chosen, &edges));
    }
    let rows: Vec<Vec<String>> = edges
        .iter()
        .map(|((caller, service), e)| {
            vec![
                format!(
                    "<a href=\"/ui/topology?window={window}&amp;edge={}\">{} → {}</a>",
                    query_value(&format!("{caller}->{service}")),
                    esc(caller),
                    esc(service)
                ),
                format!("{:.2}/s", e.requests_per_second),
                e.success_rate
                    .map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0)),
                e.allowed.to_string(),
                if e.denied > 0 {
                    badge("bad", &e.denied.to_string())
                } else {
                    "0".to_owned()
                },
                e.by_settings.to_string(),
            ]
        })
        .collect();
    body.push_str(&table(
        &format!("Edges over the last {} s", window),
        &[
            "Edge",
            "Requests",
            "Success",
            "Allowed",
            "Denied",
            "Injected or rate-limited",
        ],
        &rows,
        "edges",
    ));
    Ok(Page::ok(html::page(
        "Topology",
        Nav::Topology,
        Some(&signed.viewer(&api)),
        &body,
    )))
}

/// Each node's column: the longest chain of callers before it (cycles cut).
fn columns(
    nodes: &BTreeSet<String>,
    edges: &BTreeMap<(String, String), Edge>,
) -> BTreeMap<String, i64> {
    let mut depth: BTreeMap<String, i64> = nodes.iter().map(|n| (n.clone(), 0)).collect();
    // At most as many passes as nodes: a longest path visits each node once.
    for _ in 0..nodes.len() {
        let mut changed = false;
        for (caller, service) in edges.keys() {
            if caller == service {
                continue;
            }
            let from = depth.get(caller).copied().unwrap_or(0);
            let to = depth.entry(service.clone()).or_insert(0);
            if *to < from + 1 && from + 1 < i64::try_from(nodes.len()).unwrap_or(i64::MAX) {
                *to = from + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

/// Where each node is drawn: its column is its depth, four columns to a band and bands
/// stacked downwards, so a deep mesh grows down the page instead of past its width; nodes
/// with no edge in the window fill a grid under the bands. Also the picture's size.
fn place<'a>(
    nodes: &'a BTreeSet<String>,
    edges: &BTreeMap<(String, String), Edge>,
) -> (BTreeMap<&'a str, (i64, i64)>, i64, i64) {
    let depth = columns(nodes, edges);
    let linked: BTreeSet<&str> = edges
        .keys()
        .flat_map(|(a, b)| [a.as_str(), b.as_str()])
        .collect();
    // Rows used in each (band, column).
    let mut rows: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    let mut slot: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
    // Depth by depth, each node goes next to the mean place of its callers already placed
    // (the barycenter heuristic): siblings sit together and edges cross less.
    let mut by_depth: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for n in nodes.iter().filter(|n| linked.contains(n.as_str())) {
        by_depth
            .entry(depth.get(n).copied().unwrap_or(0))
            .or_default()
            .push(n);
    }
    let mut order: BTreeMap<&str, i64> = BTreeMap::new();
    for (d, members) in &mut by_depth {
        let mean = |n: &str| -> i64 {
            let places: Vec<i64> = edges
                .keys()
                .filter(|(_, service)| service == n)
                .filter_map(|(caller, _)| order.get(caller.as_str()).copied())
                .collect();
            if places.is_empty() {
                i64::MAX
            } else {
                places.iter().sum::<i64>() * 1000 / places.len() as i64
            }
        };
        let mut keyed: Vec<(i64, &str)> = members.iter().map(|n| (mean(n), *n)).collect();
        keyed.sort();
        let (band, col) = (*d / BAND_COLUMNS, *d % BAND_COLUMNS);
        for (_, n) in keyed {
            let row = rows.entry((band, col)).or_insert(0);
            slot.insert(n, (band, col, *row));
            order.insert(n, *d * 100_000 + *row);
            *row += 1;
        }
    }
    // Each band is as tall as its fullest column, plus room for edges bowing under it.
    let mut band_top: BTreeMap<i64, i64> = BTreeMap::new();
    let mut y = MARGIN;
    let bands = rows.keys().map(|(b, _)| *b).max().map_or(0, |b| b + 1);
    for band in 0..bands {
        band_top.insert(band, y);
        let tallest = rows
            .iter()
            .filter(|((b, _), _)| *b == band)
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(0);
        y += tallest * ROW + NODE_H + 30 * BAND_COLUMNS;
    }
    let mut at: BTreeMap<&str, (i64, i64)> = slot
        .iter()
        .map(|(n, (band, col, row))| {
            (
                *n,
                (
                    MARGIN + col * COLUMN,
                    band_top.get(band).copied().unwrap_or(MARGIN) + row * ROW,
                ),
            )
        })
        .collect();
    let idle: Vec<&String> = nodes
        .iter()
        .filter(|n| !linked.contains(n.as_str()))
        .collect();
    for (i, n) in idle.iter().enumerate() {
        let i = i as i64;
        at.insert(
            n,
            (
                MARGIN + (i % BAND_COLUMNS) * COLUMN,
                y + (i / BAND_COLUMNS) * ROW,
            ),
        );
    }
    let idle_rows = (idle.len() as i64 + BAND_COLUMNS - 1) / BAND_COLUMNS;
    let used_columns = if idle.is_empty() {
        rows.keys().map(|(_, c)| *c + 1).max().unwrap_or(1)
    } else {
        BAND_COLUMNS
            .min(idle.len() as i64)
            .max(rows.keys().map(|(_, c)| *c + 1).max().unwrap_or(1))
    };
    (
        at,
        used_columns * COLUMN + MARGIN,
        y + idle_rows * ROW + MARGIN,
    )
}

fn svg(nodes: &BTreeSet<String>, edges: &BTreeMap<(String, String), Edge>, window: u64) -> String {
    let (at, width, height) = place(nodes, edges);
    let mut out = format!(
        "<svg class=\"topology\" data-testid=\"topology\" viewBox=\"0 0 {} {}\" \
         aria-labelledby=\"topology-title\"><title id=\"topology-title\">Services and the calls \
         between them</title>",
        width.max(400),
        height.max(120)
    );
    // Past a couple of dozen edges the numbers on the picture would overlap: they stay in
    // each edge's tooltip and in the table below.
    let labelled = edges.len() <= LABELLED_EDGES;
    for ((caller, service), e) in edges {
        let (Some(&(x1, y1)), Some(&(x2, y2))) =
            (at.get(caller.as_str()), at.get(service.as_str()))
        else {
            continue;
        };
        let (sx, sy, tx, ty) = (x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2);
        // An edge to the next column runs straight across; one that skips columns, or runs
        // back or within a column, bows below the nodes it would cross, deeper the longer.
        let span = (x2 - x1) / COLUMN;
        let (c1, c2) = if span == 1 {
            ((sx + 60, sy), (tx - 60, ty))
        } else {
            let bow = NODE_H + 30 * span.abs().max(1);
            ((sx + 40, sy + bow), (tx - 40, ty + bow))
        };
        // The label sits on the curve's midpoint.
        let (mx, my) = (
            (sx + 3 * c1.0 + 3 * c2.0 + tx) / 8,
            (sy + 3 * c1.1 + 3 * c2.1 + ty) / 8,
        );
        let label = format!(
            "{caller} → {service}: {:.1}/s, {} allowed, {} denied",
            e.requests_per_second, e.allowed, e.denied
        );
        let _ = write!(
            out,
            "<a href=\"/ui/topology?window={window}&amp;edge={}\" aria-label=\"{}\" \
             data-edge=\"{}\" data-class=\"{}\"><path class=\"edge {}\" \
             d=\"M{sx} {sy} C{} {}, {} {}, {tx} {ty}\"><title>{}</title></path>{}</a>",
            query_value(&format!("{caller}->{service}")),
            esc(&label),
            esc(&format!("{caller}->{service}")),
            e.class(),
            e.class(),
            c1.0,
            c1.1,
            c2.0,
            c2.1,
            esc(&label),
            if labelled {
                format!(
                    "<text class=\"edge-label\" x=\"{mx}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                    my - 6,
                    esc(&format!(
                        "{:.1}/s{} ✓{} ✗{}",
                        e.requests_per_second,
                        e.success_rate
                            .map_or_else(String::new, |r| format!(" {:.0}%", r * 100.0)),
                        e.allowed,
                        e.denied
                    ))
                )
            } else {
                String::new()
            },
        );
    }
    for (name, (x, y)) in &at {
        let _ = write!(
            out,
            "<g class=\"node\"><rect x=\"{x}\" y=\"{y}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"6\"></rect>\
             <text x=\"{}\" y=\"{}\">{}</text></g>",
            x + 10,
            y + 22,
            esc(name)
        );
    }
    out.push_str("</svg>");
    out
}

fn explain(chosen: &str, edges: &BTreeMap<(String, String), Edge>) -> String {
    let Some((caller, service)) = chosen.split_once("->") else {
        return "<p class=\"error\">An edge is named caller-&gt;service.</p>".to_owned();
    };
    let Some(e) = edges.get(&(caller.to_owned(), service.to_owned())) else {
        return format!(
            "<p data-testid=\"edge-detail\">No calls from {} to {} in this window.</p>",
            esc(caller),
            esc(service)
        );
    };
    let rows: Vec<Vec<String>> = e
        .policies
        .iter()
        .map(|((decision, policies), n)| {
            vec![
                badge(if decision == "allow" { "ok" } else { "bad" }, decision),
                if policies == "fault-injected" || policies.starts_with("rate-limit-") {
                    format!("{} (traffic settings, not policy)", esc(policies))
                } else if policies.is_empty() {
                    "no policy matched (default deny)".to_owned()
                } else {
                    format!("<span class=\"mono\">{}</span>", esc(policies))
                },
                n.to_string(),
            ]
        })
        .collect();
    format!(
        "<section data-testid=\"edge-detail\"><h2>{} → {}</h2>{}</section>",
        esc(caller),
        esc(service),
        table(
            "The deciding policies of the decisions shipped in this window",
            &["Decision", "Policies", "Decisions"],
            &rows,
            "edge-policies",
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_name_services_and_callers_by_their_short_names() {
        assert_eq!(service_of("Mesh::Service::\"payments\""), "payments");
        assert_eq!(service_of("shop/payments"), "payments");
        assert_eq!(caller_of("spiffe://t.test/ns/shop/sa/frontend"), "frontend");
        assert_eq!(
            caller_of("Mesh::Workload::\"spiffe://t.test/ns/shop/sa/frontend\""),
            "frontend"
        );
        assert_eq!(caller_of("spiffe://t.test/ops"), "spiffe://t.test/ops");
    }

    #[test]
    fn callers_sit_left_of_what_they_call_even_in_a_cycle() {
        let nodes: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| (*s).to_owned()).collect();
        let mut edges = BTreeMap::new();
        for (x, y) in [("a", "b"), ("b", "c"), ("c", "b")] {
            edges.insert((x.to_owned(), y.to_owned()), Edge::default());
        }
        let d = columns(&nodes, &edges);
        assert_eq!(d["a"], 0);
        assert!(d["b"] >= 1 && d["c"] >= 1);
        assert!(d.values().all(|v| *v < 3));
    }

    #[test]
    fn a_deep_mesh_grows_down_not_across_and_idle_services_are_placed_too() {
        let names: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();
        let mut nodes: BTreeSet<String> = names.iter().cloned().collect();
        nodes.insert("idle".to_owned());
        let mut edges = BTreeMap::new();
        for w in names.windows(2) {
            edges.insert((w[0].clone(), w[1].clone()), Edge::default());
        }
        let (at, width, height) = place(&nodes, &edges);
        assert_eq!(at.len(), nodes.len());
        assert!(width <= BAND_COLUMNS * COLUMN + MARGIN, "{width}");
        // Twelve deep: three bands, each below the one before.
        assert!(at["s04"].1 > at["s03"].1 && at["s08"].1 > at["s07"].1);
        assert_eq!(at["s00"].0, at["s04"].0);
        assert!(at["idle"].1 > at["s11"].1 && height > at["idle"].1);
        let distinct: BTreeSet<(i64, i64)> = at.values().copied().collect();
        assert_eq!(distinct.len(), at.len(), "no two nodes on one spot");
    }

    #[test]
    fn an_edge_with_denials_is_drawn_apart() {
        let mut e = Edge {
            allowed: 3,
            ..Edge::default()
        };
        assert_eq!(e.class(), "allowed");
        e.denied = 1;
        assert_eq!(e.class(), "mixed");
        e.allowed = 0;
        assert_eq!(e.class(), "denied");
    }
}
