//! `/ui/ca`: the issuing chain, the trust bundle's roots and their states, a rotation's
//! progress and the proxies it waits for, and the JWT-SVID signing keys (`meshctl ca
//! status`).

use axum::extract::State;

use super::html::{self, Nav, badge, esc, facts, table};
use super::{Page, PageResult, Signed};
use crate::model::{JwtKeyState, RootState};
use crate::server::rest::{Api, ca_describe};

fn when(ms: Option<i64>, now: i64) -> String {
    ms.map_or_else(|| "-".to_owned(), |ms| html::countdown(ms, now))
}

fn at(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_owned(), html::time_el)
}

fn root_state(s: RootState) -> String {
    match s {
        RootState::Active => badge("ok", "active"),
        RootState::Staged => badge("warn", "staged"),
        RootState::Retiring => badge("muted", "retiring"),
    }
}

fn key_state(s: JwtKeyState) -> String {
    match s {
        JwtKeyState::Active => badge("ok", "active"),
        JwtKeyState::Staged => badge("warn", "staged"),
        JwtKeyState::Retiring => badge("muted", "retiring"),
    }
}

pub(super) async fn page(State(api): State<Api>, signed: Signed) -> PageResult {
    signed.read(&api, "ca").await?;
    let ca = ca_describe(&api.hub);
    let now = html::now_ms();
    let mut body = facts(&[
        ("Trust domain", esc(&ca.trust_domain)),
        ("Backend", esc(&ca.backend)),
        ("Bundle sequence", ca.bundle_sequence.to_string()),
        ("SVID lifetime", format!("{}s", ca.svid_ttl_seconds)),
        ("Next renewal of the issuing CA", when(ca.next_renewal, now)),
    ]);
    if !ca.warnings.is_empty() {
        body.push_str("<ul class=\"warnings\">");
        for w in &ca.warnings {
            body.push_str(&format!("<li>{}</li>", esc(w)));
        }
        body.push_str("</ul>");
    }
    let chain: Vec<Vec<String>> = ca
        .chain
        .iter()
        .map(|c| {
            vec![
                esc(&c.role),
                esc(&c.subject),
                format!("<span class=\"mono\">{}</span>", esc(&c.sha256)),
                when(Some(c.not_after), now),
            ]
        })
        .collect();
    body.push_str(&table(
        "The issuing chain",
        &["Role", "Subject", "SHA-256", "Expires"],
        &chain,
        "chain",
    ));
    let roots: Vec<Vec<String>> = ca
        .roots
        .iter()
        .map(|r| {
            vec![
                esc(&r.subject),
                format!("<span class=\"mono\">{}</span>", esc(&r.sha256)),
                root_state(r.state),
                when(r.not_after, now),
                at(r.retire_at),
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
    match &ca.rotation {
        None => body.push_str("<p data-testid=\"rotation\">No rotation in progress.</p>"),
        Some(r) => {
            body.push_str(&facts(&[
                ("Phase", esc(&r.phase)),
                ("To", esc(&r.to)),
                ("Since", at(Some(r.since))),
                ("Promoted at the latest", when(Some(r.promote_by), now)),
                ("Not before", when(Some(r.not_before), now)),
                ("Waiting for", format!("{} proxies", r.waiting_for.len())),
            ]));
            if !r.waiting_for.is_empty() {
                body.push_str("<ul data-testid=\"waiting\">");
                for w in &r.waiting_for {
                    body.push_str(&format!("<li class=\"mono\">{}</li>", esc(w)));
                }
                body.push_str("</ul>");
            }
        }
    }
    let keys: Vec<Vec<String>> = ca
        .jwt
        .keys
        .iter()
        .map(|k| {
            vec![
                format!("<span class=\"mono\">{}</span>", esc(&k.kid)),
                esc(&k.algorithm),
                key_state(k.state),
                at(Some(k.created)),
                at(k.retire_at),
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
