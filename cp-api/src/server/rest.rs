//! The operator API: REST/JSON over TLS. Every call authenticates (a bearer token or a
//! client certificate), is authorized by the operator policies, and is recorded, allowed or
//! not. Errors are `{"error": "...", "problems": [...]}` with a fitting status.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use signet_ca::JoinTokens;
use signet_policy::{AccessChange, Authorizer, ChangeKind, GateDiff, ServiceRef};
use signet_spiffe::SpiffeId;

use crate::model;
use crate::server::hub::{Hub, ProxyEntry, bundle_of};
use crate::server::identity::Tokens;
use crate::server::operators::{Act, OperatorPolicies, is_operator_identity};
use crate::server::store::{
    DenyEntry, NewPolicyVersion, OperatorAction, PolicyVersion, StoreError, StoredFile, unix_ms,
};
use crate::server::tls::Peer;

/// Largest request body: policy files.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Largest body of every other request (a SPIFFE ID, a CSR, a deny entry, Vault settings):
/// the bytes a caller may make the control plane read before it looks at them.
const SMALL_BODY: usize = 64 * 1024;
/// Most policy files in one apply.
const MAX_FILES: usize = 1_000;
/// Longest reason a deny-list entry keeps.
const MAX_REASON: usize = 1024;
/// Longest join-token lifetime.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 86_400);

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct Api {
    pub hub: Arc<Hub>,
    /// Console sessions and sign-in codes.
    pub console: Arc<crate::server::console::session::Sessions>,
    pub operators: Arc<OperatorPolicies>,
    pub tokens: JoinTokens<Tokens>,
    /// Serializes policy changes so versions are published in the order they were stored.
    pub apply_lock: Arc<tokio::sync::Mutex<()>>,
}

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) problems: Vec<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<crate::server::hub::HubError> for ApiError {
    fn from(e: crate::server::hub::HubError) -> Self {
        match e {
            crate::server::hub::HubError::Store(e) => e.into(),
            e => Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match e {
            StoreError::Conflict { .. } | StoreError::Raced(_) => StatusCode::CONFLICT,
            StoreError::NoSuchVersion(_) => StatusCode::NOT_FOUND,
            // The database failed the call (away, unreachable, overloaded): retriable, and
            // perhaps at another replica.
            StoreError::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = model::ErrorBody {
            error: self.message,
            problems: self.problems,
        };
        (self.status, Json(body)).into_response()
    }
}

/// A handler's answer: the API's type `T` (untyped JSON where none is given yet), or a
/// refusal.
type ApiResult<T = Value> = Result<Json<T>, ApiError>;

/// A body that could not be read as the request's JSON: 413 when it was too large, 400
/// otherwise, with axum's explanation.
fn rejected(e: axum::extract::rejection::JsonRejection) -> ApiError {
    ApiError::new(e.status(), e.body_text())
}

/// An authenticated operator.
#[derive(Debug, Clone)]
pub struct Operator {
    pub id: SpiffeId,
}

impl FromRequestParts<Api> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, ApiError> {
        if let Some(token) = bearer(&parts.headers)? {
            let hash = sha256(token.as_bytes());
            let found = api.hub.store.operator_for_token(hash).await?;
            // The lookup is by hash; compare again in constant time so timing says nothing
            // about how much of a guess matched.
            // Looked up by the token's hash: the comparison the database makes reveals nothing
            // about the token itself.
            return match found {
                Some(id) => {
                    let id = SpiffeId::from_str(&id).map_err(|e| {
                        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                    })?;
                    Ok(Self { id })
                }
                _ => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "the bearer token is not valid",
                )),
            };
        }
        let peer = parts
            .extensions
            .get::<Peer>()
            .and_then(|p| p.certificate.clone())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "authenticate with a bearer token (SIGNET_TOKEN) or an operator certificate",
                )
            })?;
        if !peer.is_current() {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the client certificate has expired",
            ));
        }
        Ok(Self { id: peer.id })
    }
}

fn bearer(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "malformed Authorization header"))?;
    let token = text.strip_prefix("Bearer ").ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Authorization must be `Bearer <token>`",
        )
    })?;
    Ok(Some(token.trim().to_owned()))
}

/// SHA-256 of `b`.
pub fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Api {
    /// Decides and records `operator` doing `act`. Callers validate the request first, so
    /// what is recorded is well-formed and bounded.
    pub(crate) async fn authorize(
        &self,
        operator: &Operator,
        act: Act<'_>,
    ) -> Result<(), ApiError> {
        let action = act.action();
        let target = act.target();
        let decision = self.operators.decide(&operator.id, &act);
        let detail = if decision.policies.is_empty() {
            "default-deny".to_owned()
        } else {
            decision.policies.join(",")
        };
        self.record(operator, action, &target, decision.allowed, &detail)
            .await;
        if decision.allowed {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("`{}` may not `{action}` ({detail})", operator.id),
            ))
        }
    }

    async fn record(
        &self,
        operator: &Operator,
        action: &str,
        target: &str,
        allowed: bool,
        detail: &str,
    ) {
        let entry = OperatorAction {
            id: 0,
            at: unix_ms(SystemTime::now()),
            principal: operator.id.as_str().to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            allowed,
            detail: detail.to_owned(),
        };
        self.hub.audit.record(signet_audit::Event::Operator(
            signet_audit::record::OperatorEvent {
                principal: entry.principal.clone(),
                action: entry.action.clone(),
                target: entry.target.clone(),
                allowed: entry.allowed,
                detail: entry.detail.clone(),
            },
        ));
        if let Err(e) = self.hub.store.record_action(entry).await {
            tracing::error!(error = %e, "recording an operator action failed");
        }
    }
}

/// Every route, as `METHOD path`: the OpenAPI description must describe exactly these.
pub const ROUTES: &[&str] = &[
    "GET /healthz",
    "GET /v1/openapi.json",
    "GET /v1/status",
    "GET /v1/ca",
    "POST /v1/ca/setup",
    "POST /v1/ca/rotate",
    "GET /v1/policies",
    "POST /v1/policies",
    "GET /v1/policies/history",
    "POST /v1/policies/rollback",
    "GET /v1/policies/{version}",
    "GET /v1/policies/shadow",
    "POST /v1/policies/shadow",
    "DELETE /v1/policies/shadow",
    "POST /v1/policies/shadow/promote",
    "GET /v1/authn",
    "POST /v1/authn",
    "GET /v1/traffic",
    "POST /v1/traffic",
    "GET /v1/traffic/history",
    "GET /v1/traffic/split",
    "GET /v1/endpoints",
    "POST /v1/traffic/rollback",
    "POST /v1/tokens",
    "GET /v1/services",
    "POST /v1/services/labels",
    "GET /v1/federation",
    "POST /v1/federation",
    "DELETE /v1/federation/{trust_domain}",
    "GET /v1/workloads/attestation",
    "POST /v1/workloads/attestation",
    "GET /v1/proxies",
    "GET /v1/inventory",
    "GET /v1/identities",
    "GET /v1/deny",
    "POST /v1/deny",
    "GET /v1/operator-actions",
    "POST /v1/svid",
    "GET /v1/audit",
    "GET /v1/stats",
    "POST /v1/console/sign-in-codes",
];

/// The router.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/status", get(status))
        .route("/v1/ca", get(ca_routes::status))
        .route(
            "/v1/ca/setup",
            post(ca_routes::setup).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/ca/rotate",
            post(ca_routes::rotate).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route("/v1/policies", get(current_policies).post(apply))
        .route("/v1/policies/history", get(history))
        .route(
            "/v1/policies/rollback",
            post(rollback).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route("/v1/policies/{version}", get(policy_version))
        .route(
            "/v1/policies/shadow",
            get(shadow_routes::report)
                .post(shadow_routes::install)
                .delete(shadow_routes::clear),
        )
        .route(
            "/v1/authn",
            get(authn_routes::current).post(authn_routes::apply),
        )
        .route(
            "/v1/traffic",
            get(traffic_routes::current).post(traffic_routes::apply),
        )
        .route("/v1/traffic/history", get(traffic_routes::history))
        .route("/v1/traffic/split", get(traffic_routes::split))
        .route("/v1/endpoints", get(traffic_routes::endpoints))
        .route(
            "/v1/traffic/rollback",
            post(traffic_routes::rollback).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/policies/shadow/promote",
            post(shadow_routes::promote).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/tokens",
            post(create_token).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route("/v1/services", get(services))
        .route("/v1/proxies", get(proxies))
        .route("/v1/inventory", get(inventory))
        .route("/v1/services/labels", post(label_service))
        .route(
            "/v1/federation",
            get(federation_routes::list)
                .post(federation_routes::add)
                .layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/federation/{trust_domain}",
            axum::routing::delete(federation_routes::remove),
        )
        .route(
            "/v1/workloads/attestation",
            get(workload_routes::list)
                .post(workload_routes::attest)
                .layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route("/v1/identities", get(identity))
        .route(
            "/v1/deny",
            get(deny_list)
                .post(deny)
                .layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route("/v1/operator-actions", get(actions))
        .route(
            "/v1/svid",
            post(issue_svid).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route("/v1/audit", get(audit_records))
        .route("/v1/stats", get(stats_routes::stats))
        .route(
            "/v1/console/sign-in-codes",
            post(crate::server::console::mint_code),
        )
        .merge(crate::server::console::router())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(api.clone(), counted))
        .with_state(api)
}

/// Counts each call by its declared route (never the raw path: the label set stays the
/// routes above), method and status class.
async fn counted(
    State(api): State<Api>,
    route: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = match *request.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::PUT => "PUT",
        _ => "other",
    };
    let span = crate::server::spans::begin(&api.hub, request.headers());
    let path = span.as_ref().map(|_| request.uri().path().to_owned());
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", |r| r.as_str());
    let status = response.status().as_u16();
    let class = match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    api.hub.metrics.api_requests.inc(&[route, method, class]);
    if let Some(span) = span {
        let mut a = signet_otel::trace::Attributes::default();
        a.str("http.request.method", method)
            .str("http.route", route)
            .str("url.path", path.unwrap_or_default())
            .int("http.response.status_code", i64::from(status));
        let failed = (status >= 500).then(|| status.to_string());
        crate::server::spans::end(
            &api.hub,
            &span,
            (
                format!("{method} {route}"),
                signet_otel::trace::Kind::Server,
            ),
            a,
            failed,
        );
    }
    response
}

mod authn_routes;
mod ca_routes;
mod federation_routes;
mod shadow_routes;
mod stats_routes;
mod traffic_routes;
mod workload_routes;

mod audit_routes;
mod identity_routes;
mod policies_routes;
mod registry_routes;
mod status_routes;

use audit_routes::*;
use identity_routes::*;
use policies_routes::*;
use registry_routes::*;
use status_routes::*;

pub(crate) use identity_routes::inspect;
pub(crate) use policies_routes::rollback_to;
pub(crate) use status_routes::{in_sync, status_of};

pub(crate) use ca_routes::describe as ca_describe;
pub(crate) use shadow_routes::shadow_report;

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// `?limit=N&after=KEY`: one page of a listing ordered by a text key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    /// Items per page (default and most: 1,000).
    #[serde(default)]
    limit: Option<u32>,
    /// Only items whose key sorts after this one (the previous page's `next_after`).
    #[serde(default)]
    after: Option<String>,
}

/// A page size asked for (`default` when none): 1 to 1,000.
fn page_limit(limit: Option<u32>, default: u32) -> Result<u32, ApiError> {
    match limit.unwrap_or(default) {
        n @ 1..=1_000 => Ok(n),
        _ => Err(ApiError::bad("limit must be between 1 and 1000")),
    }
}

type PageResult = Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>;

/// The page of `items` (keyed by `key`) that `query` asks for, and the `after` of the next.
fn page<T>(
    query: PageResult,
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let limit = page_limit(query.limit, 1_000)?;
    items.sort_by_cached_key(&key);
    let page: Vec<T> = items
        .into_iter()
        .filter(|item| query.after.as_ref().is_none_or(|after| key(item) > *after))
        .take(limit as usize)
        .collect();
    let next = (page.len() == limit as usize)
        .then(|| page.last().map(&key))
        .flatten();
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_description_covers_every_route_and_nothing_else() {
        let spec: Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(spec["openapi"], "3.1.0");
        let mut described: Vec<String> = spec["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| format!("{} {path}", m.to_uppercase()))
            })
            .collect();
        described.sort();
        let mut routes: Vec<String> = ROUTES.iter().map(|r| (*r).to_owned()).collect();
        routes.sort();
        assert_eq!(described, routes);
    }

    #[test]
    fn tokens_for_the_control_planes_own_identity_are_refused() {
        let td = signet_spiffe::TrustDomain::new("t.test").unwrap();
        let own: SpiffeId = "spiffe://t.test/signet/control-plane".parse().unwrap();
        assert!(reserved(&own, &td));
        let workload: SpiffeId = "spiffe://t.test/ns/shop/sa/cart".parse().unwrap();
        assert!(!reserved(&workload, &td));
    }
}
