//! `/ui/ca`: the issuing chain, the trust bundle's roots and their states, a rotation's
//! progress and the proxies it waits for, and the JWT-SVID signing keys (`meshctl ca
//! status`).

use axum::extract::State;
use serde_json::Value;

use super::html::{self, Nav, badge, esc, facts, table};
use super::{Page, PageResult, Signed};
use crate::server::rest::{Api, ca_describe};

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        Value::Null => "-".to_owned(),
        other => esc(&other.to_string()),
    }
}

fn list(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn when(v: &Value, now: i64) -> String {
    v.as_i64()
        .map_or_else(|| "-".to_owned(), |ms| html::countdown(ms, now))
}

fn state(s: &str) -> String {
    badge(
        match s {
            "active" => "ok",
            "staged" => "warn",
            _ => "muted",
        },
        s,
    )
}

pub(super) async fn page(State(api): State<Api>, signed: Signed) -> PageResult {
    signed.read(&api, "ca").await?;
    let ca = ca_describe(&api.hub);
    let now = html::now_ms();
    let mut body = facts(&[
        ("Trust domain", text(&ca["trust_domain"])),
        ("Backend", text(&ca["backend"])),
        ("Bundle sequence", text(&ca["bundle_sequence"])),
        (
            "SVID lifetime",
            format!("{}s", text(&ca["svid_ttl_seconds"])),
        ),
        (
            "Next renewal of the issuing CA",
            when(&ca["next_renewal"], now),
        ),
    ]);
    let warnings: Vec<String> = list(&ca["warnings"]).map(text).collect();
    if !warnings.is_empty() {
        body.push_str("<ul class=\"warnings\">");
        for w in &warnings {
            body.push_str(&format!("<li>{w}</li>"));
        }
        body.push_str("</ul>");
    }
    let chain: Vec<Vec<String>> = list(&ca["chain"])
        .map(|c| {
            vec![
                text(&c["role"]),
                text(&c["subject"]),
                format!("<span class=\"mono\">{}</span>", text(&c["sha256"])),
                when(&c["not_after"], now),
            ]
        })
        .collect();
    body.push_str(&table(
        "The issuing chain",
        &["Role", "Subject", "SHA-256", "Expires"],
        &chain,
        "chain",
    ));
    let roots: Vec<Vec<String>> = list(&ca["roots"])
        .map(|r| {
            vec![
                text(&r["subject"]),
                format!("<span class=\"mono\">{}</span>", text(&r["sha256"])),
                state(r["state"].as_str().unwrap_or("?")),
                when(&r["not_after"], now),
                r["retire_at"]
                    .as_i64()
                    .map_or_else(|| "-".to_owned(), html::time_el),
            ]
        })
        .collect();
    body.push_str(&table(
        "Roots in the trust bundle",
        &[
            "Subject",
            "SHA-256",
            "State",
            "Expires",
            "Leaves the bundle",
        ],
        &roots,
        "roots",
    ));
    body.push_str("<h2>Rotation</h2>");
    let rotation = &ca["rotation"];
    if rotation.is_null() {
        body.push_str("<p data-testid=\"rotation\">No rotation in progress.</p>");
    } else {
        let waiting: Vec<String> = list(&rotation["waiting_for"])
            .map(|w| match w {
                Value::String(s) => esc(s),
                other => text(&other["instance"]).to_string() + " " + &text(&other["spiffe_id"]),
            })
            .collect();
        body.push_str(&facts(&[
            ("Phase", text(&rotation["phase"])),
            ("To", text(&rotation["to"])),
            (
                "Since",
                rotation["since"]
                    .as_i64()
                    .map_or_else(|| "-".to_owned(), html::time_el),
            ),
            ("Promoted at the latest", when(&rotation["promote_by"], now)),
            ("Not before", when(&rotation["not_before"], now)),
            ("Waiting for", format!("{} proxies", waiting.len())),
        ]));
        if !waiting.is_empty() {
            body.push_str("<ul data-testid=\"waiting\">");
            for w in &waiting {
                body.push_str(&format!("<li class=\"mono\">{w}</li>"));
            }
            body.push_str("</ul>");
        }
    }
    let jwt = &ca["jwt"];
    let keys: Vec<Vec<String>> = list(&jwt["keys"])
        .map(|k| {
            vec![
                format!("<span class=\"mono\">{}</span>", text(&k["kid"])),
                text(&k["algorithm"]),
                state(k["state"].as_str().unwrap_or("?")),
                k["created"]
                    .as_i64()
                    .map_or_else(|| "-".to_owned(), html::time_el),
                k["retire_at"]
                    .as_i64()
                    .map_or_else(|| "-".to_owned(), html::time_el),
            ]
        })
        .collect();
    body.push_str(&table(
        "JWT-SVID signing keys",
        &["Key ID", "Algorithm", "State", "Created", "Removed at"],
        &keys,
        "jwt-keys",
    ));
    Ok(Page::ok(html::page(
        "Certificate authority",
        Nav::Ca,
        Some(&signed.viewer(&api)),
        &body,
    )))
}
