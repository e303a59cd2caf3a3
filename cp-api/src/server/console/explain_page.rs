//! `/ui/policies/explain`: `meshctl authz explain --registry` in a form. The applied policies
//! decide a request from a caller to a service, as the proxies would (the caller and the
//! service looked up in the registry, as the proxies look them up), and the page shows the
//! decision, the text and place of each policy that made it, and for a default deny the
//! permits that came closest. The shadow candidate's report, when one is installed, follows.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use signet_policy::{Authorizer, Explanation, HttpRequest, Miss, Target};
use signet_spiffe::SpiffeId;

use super::html::{self, Nav, badge, esc, table};
use super::{Page, PageResult, Refusal, Signed};
use crate::server::rest::{Api, shadow_report};

/// Longest field accepted.
const MAX_FIELD: usize = 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExplainQuery {
    #[serde(default)]
    principal: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    path: String,
}

pub(super) async fn page(
    State(api): State<Api>,
    signed: Signed,
    query: Result<Query<ExplainQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let Ok(Query(q)) = query else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "unknown or malformed field",
        ));
    };
    if [&q.principal, &q.service, &q.action, &q.path]
        .iter()
        .any(|f| f.len() > MAX_FIELD)
    {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "a field is too long"));
    }
    signed.read(&api, "policies").await?;
    let actions: Vec<&str> = signet_policy::request_actions().collect();
    let mut body = format!(
        "<form method=\"get\" action=\"/ui/policies/explain\" class=\"filters\" aria-label=\"Request\">\
         <div><label for=\"principal\">Caller (SPIFFE ID)</label><input type=\"text\" id=\"principal\" name=\"principal\" value=\"{}\" required></div>\
         <div><label for=\"service\">Service</label><input type=\"text\" id=\"service\" name=\"service\" value=\"{}\" required></div>\
         <div><label for=\"action\">Action</label><select id=\"action\" name=\"action\">{}</select></div>\
         <div><label for=\"path\">Path</label><input type=\"text\" id=\"path\" name=\"path\" value=\"{}\"></div>\
         <button type=\"submit\">Explain</button></form>",
        esc(&q.principal),
        esc(&q.service),
        actions
            .iter()
            .map(|a| format!(
                "<option{}>{}</option>",
                if *a == q.action { " selected" } else { "" },
                esc(a)
            ))
            .collect::<String>(),
        esc(if q.path.is_empty() { "/" } else { &q.path }),
    );
    if !q.principal.is_empty() {
        body.push_str(&explained(&api, &q)?);
    }
    body.push_str(&shadow(&api).await?);
    Ok(Page::ok(html::page(
        "Explain a request",
        Nav::Policies,
        Some(&signed.viewer(&api)),
        &body,
    )))
}

fn explained(api: &Api, q: &ExplainQuery) -> Result<String, Refusal> {
    let bad = |m: String| Refusal::new(StatusCode::BAD_REQUEST, &m);
    let principal: SpiffeId = q
        .principal
        .trim()
        .parse()
        .map_err(|e| bad(format!("`{}` is not a SPIFFE ID: {e}", q.principal)))?;
    if !signet_policy::request_actions().any(|a| a == q.action) {
        return Err(bad(format!("`{}` is not an action", q.action)));
    }
    let applied = api.hub.applied();
    let inventory = api.hub.inventory();
    let service = q.service.trim();
    let known = inventory.service(service);
    let namespace = known.map_or_else(
        || {
            principal
                .namespace_and_account()
                .map_or("default", |(ns, _)| ns)
                .to_owned()
        },
        |s| s.namespace.clone(),
    );
    let labels: Vec<(String, String)> = known
        .map(|s| {
            s.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let target = Target {
        name: service,
        namespace: &namespace,
        port: known.map_or(8080, |s| s.port),
        labels: &labels,
    };
    let directory = inventory.directory();
    let caller = directory.caller(&principal);
    let authorizer = Authorizer::new(Arc::clone(&applied.bundle));
    let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let path = if q.path.is_empty() {
        "/"
    } else {
        q.path.as_str()
    };
    let explanation = if q.action == "connect" {
        authorizer.explain_connect(&caller, &target, source)
    } else {
        let no_headers: Vec<(String, String)> = Vec::new();
        authorizer.explain_request(
            &caller,
            &target,
            &HttpRequest {
                method: &q.action,
                path,
                host: service,
                query: "",
                headers: (&no_headers).into(),
                source_ip: source,
                claims: None,
            },
        )
    };
    Ok(render(
        &explanation,
        applied.meta.as_ref().map_or(0, |m| m.version),
        known.is_some(),
    ))
}

fn render(e: &Explanation, version: u64, known: bool) -> String {
    let allowed = e.decision.is_allowed();
    let mut out = format!(
        "<section data-testid=\"explanation\"><h2>{} <span class=\"muted\">under policy version \
         {version}</span></h2>",
        if allowed {
            badge("ok", "ALLOW")
        } else {
            badge("bad", "DENY")
        }
    );
    if !known {
        out.push_str("<p>The service is not in the registry: its namespace is the caller's, with no labels.</p>");
    }
    for error in &e.decision.errors {
        out.push_str(&format!(
            "<p class=\"error\">{}</p>",
            esc(&error.to_string())
        ));
    }
    if e.determining.is_empty() && e.decision.errors.is_empty() {
        out.push_str("<p>No policy permits this (default deny).</p>");
    }
    for cited in &e.determining {
        out.push_str(&cite(
            &cited.id,
            cited.origin.as_ref(),
            if allowed {
                "permitted by"
            } else {
                "forbidden by"
            },
        ));
    }
    if !e.closest.is_empty() {
        out.push_str("<h3>Permits that came closest</h3>");
        for near in &e.closest {
            let why = match &near.miss {
                Miss::ConditionFalse => "its conditions did not hold".to_owned(),
                Miss::OtherAction(actions) => format!("it is for {}", actions.join(", ")),
            };
            out.push_str(&cite(&near.policy.id, near.policy.origin.as_ref(), &why));
        }
    }
    out.push_str("</section>");
    out
}

fn cite(id: &str, origin: Option<&signet_policy::PolicyOrigin>, role: &str) -> String {
    match origin {
        Some(o) => format!(
            "<p>{} <strong class=\"mono\">{}</strong> ({}:{})</p><pre class=\"policy\">{}</pre>",
            esc(role),
            esc(id),
            esc(&o.file),
            o.line,
            esc(&o.text)
        ),
        None => format!(
            "<p>{} <strong class=\"mono\">{}</strong></p>",
            esc(role),
            esc(id)
        ),
    }
}

async fn shadow(api: &Api) -> Result<String, Refusal> {
    let report = shadow_report(api).await.map_err(Refusal::from)?;
    let Some(candidate) = &report.candidate else {
        return Ok(
            "<h2>Shadow candidate</h2><p data-testid=\"shadow\">None installed \
                   (<code>meshctl authz shadow install</code>).</p>"
                .to_owned(),
        );
    };
    let rows: Vec<Vec<String>> = report
        .flows
        .iter()
        .map(|f| {
            vec![
                format!("<span class=\"mono\">{}</span>", esc(&f.principal)),
                esc(&f.service),
                esc(&f.action),
                f.would.as_str().to_owned(),
                f.count.to_string(),
            ]
        })
        .collect();
    Ok(format!(
        "<h2>Shadow candidate {} by <span class=\"mono\">{}</span></h2>\
         <p data-testid=\"shadow\">Running on {} of {} proxies; where it disagreed with the \
         enforced policies, it would have allowed {} and denied {} requests.</p>{}",
        candidate.id,
        esc(&candidate.author),
        report.running_on.running,
        report.running_on.proxies,
        report.would_allow,
        report.would_deny,
        table(
            "Flows where the candidate disagrees",
            &["Caller", "Service", "Action", "Candidate would", "Requests"],
            &rows,
            "shadow-flows",
        )
    ))
}
