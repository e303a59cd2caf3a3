//! `/ui/policies`: every version with who applied it and what the gate found it widened and
//! narrowed, a side-by-side diff between any two, and rollback (for operators the policies
//! allow to roll back: the form is only shown to them, and the action is authorized again
//! when it is sent, through the same code and gate as `meshctl authz rollback`).

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::diff::{Row, side_by_side};
use super::html::{self, Nav, badge, csrf_field, esc, table};
use super::{Page, PageResult, Refusal, Signed};
use crate::model::PolicyRollbackRequest;
use crate::server::operators::Act;
use crate::server::rest::{Api, rollback_to};
use crate::server::store::StoredFile;

/// Versions listed on the page.
const SHOWN: usize = 200;

pub(super) async fn history(State(api): State<Api>, signed: Signed) -> PageResult {
    signed.read(&api, "policies").await?;
    let mut versions = api.hub.store.policy_history().await.map_err(from_store)?;
    versions.sort_by_key(|v| std::cmp::Reverse(v.version));
    let current = api.hub.applied().meta.as_ref().map_or(0, |m| m.version);
    let may_roll_back = |version: u64| {
        signed.may(
            &api,
            &Act::PolicyRollback {
                version,
                expected_version: Some(current),
            },
        )
    };
    let rows: Vec<Vec<String>> = versions
        .iter()
        .take(SHOWN)
        .map(|v| {
            let gate = match (v.widened, v.narrowed) {
                (Some(w), Some(n)) => format!(
                    "{} {}",
                    if w > 0 {
                        badge("warn", &format!("+{w} widened"))
                    } else {
                        badge("muted", "+0")
                    },
                    if n > 0 {
                        badge("ok", &format!("-{n} narrowed"))
                    } else {
                        badge("muted", "-0")
                    }
                ),
                _ => badge("muted", "not gated"),
            };
            let mut actions = String::new();
            if v.version > 1 {
                actions.push_str(&format!(
                    "<a href=\"/ui/policies/diff?from={}&amp;to={}\">diff from {}</a> ",
                    v.version - 1,
                    v.version,
                    v.version - 1
                ));
            }
            if v.version == current {
                actions.push_str(&badge("ok", "applied"));
            } else if may_roll_back(v.version) {
                actions.push_str(&format!(
                    "<form class=\"inline\" method=\"post\" action=\"/ui/policies/rollback\" \
                     data-testid=\"rollback-{0}\">{1}\
                     <input type=\"hidden\" name=\"version\" value=\"{0}\">\
                     <input type=\"hidden\" name=\"expected_version\" value=\"{2}\">\
                     <label class=\"inline\"><input type=\"checkbox\" name=\"allow_widening\" \
                     value=\"true\"> accept widening</label>\
                     <button type=\"submit\" class=\"danger\">Roll back to {0}</button></form>",
                    v.version,
                    csrf_field(&signed.session.csrf),
                    current
                ));
            }
            vec![
                v.version.to_string(),
                html::time_el(v.created_at),
                format!("<span class=\"mono\">{}</span>", esc(&v.author)),
                esc(&v.message),
                v.rolled_back_from
                    .map_or_else(String::new, |f| format!("rollback to {f}")),
                gate,
                v.policies.to_string(),
                actions,
            ]
        })
        .collect();
    let options: String = versions
        .iter()
        .take(SHOWN)
        .map(|v| format!("<option value=\"{0}\">{0}</option>", v.version))
        .collect();
    let mut body = table(
        &format!(
            "{} versions (the newest {SHOWN} shown); applied: {current}",
            versions.len()
        ),
        &[
            "Version",
            "Applied at",
            "By",
            "Message",
            "Origin",
            "Gate",
            "Policies",
            "",
        ],
        &rows,
        "versions",
    );
    body.push_str(
        "<p><a href=\"/ui/policies/explain\">Explain a request</a> under the applied policies \
         (and the shadow candidate's report)</p>",
    );
    body.push_str(&format!(
        "<h2>Compare two versions</h2><form method=\"get\" action=\"/ui/policies/diff\" class=\"filters\">\
         <div><label for=\"from\">From</label><select id=\"from\" name=\"from\">{options}</select></div>\
         <div><label for=\"to\">To</label><select id=\"to\" name=\"to\">{options}</select></div>\
         <button type=\"submit\">Show the diff</button></form>"
    ));
    Ok(Page::ok(html::page(
        "Policies",
        Nav::Policies,
        Some(&signed.viewer(&api)),
        &body,
    )))
}

fn from_store(e: crate::server::store::StoreError) -> Refusal {
    crate::server::rest::ApiError::from(e).into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DiffQuery {
    from: u64,
    to: u64,
}

/// All of a version's files as one text, each under a header line naming it.
fn joined(files: &[StoredFile]) -> String {
    let mut files: Vec<&StoredFile> = files.iter().collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
        .iter()
        .map(|f| format!("// ── {} ──\n{}", f.name, f.text))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) async fn diff(
    State(api): State<Api>,
    signed: Signed,
    query: Result<Query<DiffQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let Ok(Query(q)) = query else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "name two versions: ?from=N&to=M",
        ));
    };
    signed.read(&api, "policies").await?;
    let (_, old) = api
        .hub
        .store
        .policy_version(q.from)
        .await
        .map_err(from_store)?;
    let (_, new) = api
        .hub
        .store
        .policy_version(q.to)
        .await
        .map_err(from_store)?;
    let (old, new) = (joined(&old), joined(&new));
    let rows = side_by_side(&old, &new);
    let changes = rows
        .iter()
        .filter(|r| matches!(r, Row::Changed(..)))
        .count();
    let mut body = format!(
        "<p data-testid=\"diff-summary\">{changes} lines differ between version {} and version {}. \
         <a href=\"/ui/policies\">All versions</a></p>\
         <table class=\"diff\" data-testid=\"diff\"><caption>Side by side: removed lines on the \
         left, added lines on the right</caption><thead><tr><th scope=\"col\">Version {}</th>\
         <th scope=\"col\">Version {}</th></tr></thead><tbody>",
        q.from, q.to, q.from, q.to
    );
    let cell = |line: Option<&str>, kind: &str| match line {
        Some(l) => format!("<td class=\"{kind}\"><pre>{}</pre></td>", esc(l)),
        None => "<td class=\"pad\"></td>".to_owned(),
    };
    for row in &rows {
        body.push_str("<tr>");
        match row {
            Row::Same(l) => {
                body.push_str(&cell(Some(l), "same"));
                body.push_str(&cell(Some(l), "same"));
            }
            Row::Changed(a, b) => {
                body.push_str(&cell(*a, "del"));
                body.push_str(&cell(*b, "add"));
            }
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table>");
    Ok(Page::ok(html::page(
        &format!("Policies: version {} → {}", q.from, q.to),
        Nav::Policies,
        Some(&signed.viewer(&api)),
        &body,
    )))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackForm {
    #[serde(default)]
    csrf: String,
    version: u64,
    #[serde(default)]
    expected_version: Option<u64>,
    #[serde(default)]
    allow_widening: Option<String>,
}

/// `POST /ui/policies/rollback`.
pub(super) async fn rollback(
    State(api): State<Api>,
    signed: Signed,
    headers: HeaderMap,
    form: Result<Form<RollbackForm>, axum::extract::rejection::FormRejection>,
) -> PageResult {
    let Ok(Form(form)) = form else {
        // Checked before the body's meaning: a form without a valid token gets the CSRF
        // refusal, whatever else is wrong with it.
        signed.check_form(&headers, "")?;
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "the rollback form was malformed",
        ));
    };
    signed.check_form(&headers, &form.csrf)?;
    let outcome = rollback_to(
        &api,
        &signed.op,
        PolicyRollbackRequest {
            version: form.version,
            expected_version: form.expected_version,
            wait_seconds: Some(10),
            allow_widening: form.allow_widening.as_deref() == Some("true"),
        },
    )
    .await
    .map_err(Refusal::from)?;
    let applied = outcome.0;
    let e = &applied.enforcement;
    let body = format!(
        "<p role=\"status\" data-testid=\"rollback-result\">Version {} (the policies of version {}) \
         is applied. <span data-testid=\"enforced-by\">{} of {}</span> proxies enforce it.</p>\
         <p><a href=\"/ui/policies\">All versions</a></p>",
        applied.version, form.version, e.enforced_by, e.proxies
    );
    Ok(Page::ok(html::page(
        "Rolled back",
        Nav::Policies,
        Some(&signed.viewer(&api)),
        &body,
    )))
}
