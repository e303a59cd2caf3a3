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
use serde_json::{Value, json};
use signet_ca::JoinTokens;
use signet_policy::{AccessChange, Authorizer, ChangeKind, GateDiff, ServiceRef};
use signet_spiffe::SpiffeId;

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
        let body = if self.problems.is_empty() {
            json!({ "error": self.message })
        } else {
            json!({ "error": self.message, "problems": self.problems })
        };
        (self.status, Json(body)).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

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

pub(crate) use ca_routes::describe as ca_describe;
pub(crate) use shadow_routes::shadow_report;

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

fn der_not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp() * 1000)
}

fn der_subject(der: &[u8]) -> String {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_default()
}

/// Whether a proxy enforces the current configuration: its last heartbeat names the current
/// policy version and came within three heartbeat intervals.
pub(crate) fn in_sync(hub: &Hub, p: &ProxyEntry, policy_version: u64) -> bool {
    let fresh = p
        .last_seen
        .elapsed()
        .is_ok_and(|age| age < hub.heartbeat_interval * 3);
    fresh && p.policy_version == policy_version
}

async fn status(State(api): State<Api>, op: Operator) -> ApiResult {
    api.authorize(
        &op,
        Act::Read {
            collection: "status",
        },
    )
    .await?;
    let hub = &api.hub;
    let applied = hub.applied();
    let version = applied.meta.as_ref().map_or(0, |m| m.version);
    let proxies = hub.proxies();
    // Versions are known for the proxies connected here; those of other replicas are
    // counted apart.
    let local: Vec<_> = proxies.iter().filter(|p| p.local).collect();
    let synced = local.iter().filter(|p| in_sync(hub, p, version)).count();
    let now = crate::server::store::unix_ms(std::time::SystemTime::now());
    let own = hub.replica.get().map(|r| r.id.clone()).unwrap_or_default();
    // The database away: status still answers from memory, and says so.
    let mut store_error = None;
    let rows = hub
        .store
        .replicas(now - REPLICAS_SHOWN_MS)
        .await
        .unwrap_or_else(|e| {
            store_error = Some(e.to_string());
            Vec::new()
        });
    let replicas: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "grpc": r.grpc,
                "api": r.api,
                "version": r.version,
                "started_at": r.started_at,
                "last_seen": r.last_seen,
                "alive": now - r.last_seen <= REPLICA_ALIVE_MS,
                "this": r.id == own,
            })
        })
        .collect();
    let leases = hub.store.duties().await.unwrap_or_else(|e| {
        store_error.get_or_insert(e.to_string());
        Vec::new()
    });
    let duties: Vec<Value> = crate::server::duties::ALL
        .iter()
        .map(|name| {
            let lease = leases
                .iter()
                .find(|l| l.name == *name && l.expires_at >= now);
            json!({
                "name": name,
                "holder": lease.map(|l| l.holder.clone()),
                "since": lease.map(|l| l.since),
                "this": lease.is_some_and(|l| l.holder == own),
            })
        })
        .collect();
    Ok(Json(json!({
        "healthy": store_error.is_none(),
        "store_error": store_error,
        "trust_domain": hub.trust_domain.as_str(),
        "uptime_seconds": hub.started.elapsed().map_or(0, |d| d.as_secs()),
        "ca": ca_routes::describe(hub),
        "policy": {
            "version": version,
            "hash": applied.bundle.hash(),
            "policies": applied.bundle.len(),
        },
        "proxies": {
            "total": proxies.len(),
            "in_sync": synced,
            "stale": local.len() - synced,
            "on_other_replicas": proxies.len() - local.len(),
        },
        "replicas": replicas,
        "duties": duties,
    })))
}

/// A replica that renewed its row this recently is alive (it renews every second).
const REPLICA_ALIVE_MS: i64 = 5_000;
/// Replicas seen in this long are listed (the dead ones too, marked so).
const REPLICAS_SHOWN_MS: i64 = 10 * 60 * 1_000;

fn files_json(files: &[StoredFile]) -> Value {
    json!(files)
}

async fn current_policies(State(api): State<Api>, op: Operator) -> ApiResult {
    api.authorize(
        &op,
        Act::Read {
            collection: "policies",
        },
    )
    .await?;
    let applied = api.hub.applied();
    Ok(Json(json!({
        "version": applied.meta.as_ref().map_or(0, |m| m.version),
        "meta": applied.meta,
        "hash": applied.bundle.hash(),
        "policies": applied.bundle.len(),
        "files": files_json(&applied.files),
    })))
}

/// `GET /v1/policies/history?limit=N&before=V`: a page of versions, newest first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Versions per page (default and most: 1,000).
    #[serde(default)]
    limit: Option<u32>,
    /// Only versions older than this one (the previous page's `next_before`).
    #[serde(default)]
    before: Option<u64>,
}

async fn history(
    State(api): State<Api>,
    op: Operator,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let limit = page_limit(query.limit, 1_000)?;
    api.authorize(
        &op,
        Act::Read {
            collection: "policies",
        },
    )
    .await?;
    let mut versions = api.hub.store.policy_history().await?;
    versions.sort_by_key(|v| std::cmp::Reverse(v.version));
    let page: Vec<PolicyVersion> = versions
        .into_iter()
        .filter(|v| query.before.is_none_or(|before| v.version < before))
        .take(limit as usize)
        .collect();
    let next_before = (page.len() == limit as usize)
        .then(|| page.last().map(|v| v.version))
        .flatten();
    Ok(Json(
        json!({ "versions": page, "next_before": next_before }),
    ))
}

async fn policy_version(
    State(api): State<Api>,
    op: Operator,
    Path(version): Path<String>,
) -> ApiResult {
    api.authorize(
        &op,
        Act::Read {
            collection: "policies",
        },
    )
    .await?;
    let version: u64 = version
        .parse()
        .map_err(|_| ApiError::bad(format!("`{version}` is not a version number")))?;
    let (meta, files) = api.hub.store.policy_version(version).await?;
    Ok(Json(
        json!({ "version": meta.version, "meta": meta, "files": files_json(&files) }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
    files: Vec<StoredFile>,
    #[serde(default)]
    message: String,
    /// Apply only if this is still the latest version (what the caller reviewed against).
    #[serde(default)]
    expected_version: Option<u64>,
    #[serde(default)]
    dry_run: bool,
    /// Apply even if the control plane's access diff finds the change opens access (the
    /// operator also needs `policy.apply_widening`).
    #[serde(default)]
    allow_widening: bool,
    /// How long to wait for every proxy to report it enforces the new version (default
    /// [`DEFAULT_WAIT`]; 0: do not wait).
    #[serde(default)]
    wait_seconds: Option<u64>,
}

/// How long `apply`, `rollback` and `deny` wait for proxies by default.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);

fn wait_of(seconds: Option<u64>) -> Duration {
    seconds.map_or(DEFAULT_WAIT, Duration::from_secs)
}

/// Refuses a bundle whose slice for some service could not be sent to its proxies in one
/// configuration message: such a version would be stored and never enforced.
fn check_slice_size(bundle: &signet_policy::PolicyBundle) -> Result<(), ApiError> {
    let largest = bundle.largest_slice_bytes();
    if largest > crate::api::MAX_SLICE_BYTES {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "the policies were rejected; nothing was applied".to_owned(),
            problems: vec![format!(
                "one service's share of these policies could reach {largest} bytes; a proxy \
                 can be sent at most {} bytes of policies (split them by service with \
                 `resource == Mesh::Service::\"...\"` or `resource in Mesh::Namespace::\"...\"`)",
                crate::api::MAX_SLICE_BYTES
            )],
        });
    }
    Ok(())
}

/// Parses and validates `files` off the async workers (a large bundle takes seconds, and
/// must not hold up every proxy's heartbeat meanwhile), and checks its slices' size.
async fn validated(
    files: Vec<StoredFile>,
    refusal: &str,
) -> Result<(signet_policy::PolicyBundle, Vec<StoredFile>), ApiError> {
    let (parsed, files) = tokio::task::spawn_blocking(move || (bundle_of(&files, 0), files))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let bundle = parsed.map_err(|problems| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: refusal.to_owned(),
        problems: problems.lines().map(str::to_owned).collect(),
    })?;
    check_slice_size(&bundle)?;
    Ok((bundle, files))
}

fn check_files(files: &[StoredFile]) -> Result<(), ApiError> {
    if files.is_empty() {
        return Err(ApiError::bad("no policy files given"));
    }
    if files.len() > MAX_FILES {
        return Err(ApiError::bad(format!("at most {MAX_FILES} policy files")));
    }
    let mut names = BTreeSet::new();
    for f in files {
        if f.name.is_empty() || f.name.len() > 256 || f.name.chars().any(char::is_control) {
            return Err(ApiError::bad(format!(
                "bad policy file name `{}`",
                f.name.escape_debug()
            )));
        }
        if !names.insert(&f.name) {
            return Err(ApiError::bad(format!(
                "policy file `{}` given twice",
                f.name
            )));
        }
    }
    Ok(())
}

/// A policy change to store and publish.
struct Change {
    files: Vec<StoredFile>,
    message: String,
    expected: Option<u64>,
    rolled_back_from: Option<u64>,
    wait: Duration,
    /// The operator accepts that the change opens access (`policy.apply_widening` is still
    /// asked).
    allow_widening: bool,
}

/// How many changes a refused or dry-run response lists.
const GATE_CHANGES_SHOWN: usize = 50;

/// The control plane's own access diff of `new` against what is applied, over its registry
/// (every registered workload and service, `connect` and every HTTP method on every path
/// class the two bundles name). Computed off the async workers.
async fn gate(api: &Api, new: &signet_policy::PolicyBundle) -> Result<GateDiff, ApiError> {
    let old = Authorizer::new(Arc::clone(&api.hub.applied().bundle));
    let new = Authorizer::new(Arc::new(new.clone()));
    let inventory = api.hub.inventory();
    tokio::task::spawn_blocking(move || signet_policy::gate_diff(&old, &new, inventory))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn gate_json(diff: &GateDiff) -> Value {
    json!({
        "checked": diff.checked,
        "widened": diff.widened,
        "narrowed": diff.narrowed,
        "changes": diff.changes.iter().take(GATE_CHANGES_SHOWN).map(|c| c.to_json()).collect::<Vec<_>>(),
    })
}

/// Lets a change through the gate: one that narrows or changes nothing passes; one that
/// widens needs the caller's `allow_widening` and the `policy.apply_widening` permission.
async fn pass_gate(
    api: &Api,
    op: &Operator,
    diff: &GateDiff,
    allow_widening: bool,
    rollback: bool,
) -> Result<(), ApiError> {
    if diff.widened == 0 {
        return Ok(());
    }
    if !allow_widening {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!(
                "this change widens access ({} decisions newly allowed, {} newly denied); \
                 nothing was applied: send allow_widening (meshctl: --allow-widening) to apply it",
                diff.widened, diff.narrowed
            ),
            problems: diff
                .changes
                .iter()
                .filter(|c| c.kind == ChangeKind::Widened)
                .take(GATE_CHANGES_SHOWN)
                .map(AccessChange::row)
                .collect(),
        });
    }
    api.authorize(
        op,
        Act::PolicyWidening {
            widened: diff.widened as u64,
            narrowed: diff.narrowed as u64,
            rollback,
        },
    )
    .await
}

async fn publish(api: &Api, op: &Operator, change: Change) -> ApiResult {
    let Change {
        files,
        message,
        expected,
        rolled_back_from,
        wait,
        allow_widening,
    } = change;
    let (bundle, files) =
        validated(files, "the policies were rejected; nothing was applied").await?;
    let guard = api.apply_lock.lock().await;
    // Against what is applied now, under the lock: no other change can slip in between the
    // diff and the write.
    let diff = gate(api, &bundle).await?;
    pass_gate(api, op, &diff, allow_widening, rolled_back_from.is_some()).await?;
    let version = api
        .hub
        .store
        .apply_policies(NewPolicyVersion {
            hash: bundle.hash().to_owned(),
            policies: bundle.len() as u64,
            author: op.id.as_str().to_owned(),
            message,
            rolled_back_from,
            files,
            expected,
            widened: Some(diff.widened as u64),
            narrowed: Some(diff.narrowed as u64),
        })
        .await?;
    let (meta, files) = api.hub.store.policy_version(version).await?;
    api.hub.publish_bundle(meta.clone(), bundle, files);
    api.hub.audit.record(signet_audit::Event::Policy(
        signet_audit::record::PolicyEvent {
            version,
            hash: meta.hash.clone(),
            author: op.id.as_str().to_owned(),
            rolled_back_from: meta.rolled_back_from,
            widened: meta.widened,
            narrowed: meta.narrowed,
        },
    ));
    tracing::info!(version, hash = %meta.hash, author = %op.id, "policies applied");
    drop(guard);
    let acks =
        crate::server::acks::wait(&api.hub, wait, |_| true, |p| p.policy_version >= version).await;
    Ok(Json(json!({
        "version": version,
        "hash": meta.hash,
        "policies": meta.policies,
        "gate": gate_json(&diff),
        "enforcement": acks.to_json(|p| p.policy_version),
    })))
}

async fn apply(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<ApplyBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(rejected)?;
    check_files(&body.files)?;
    api.authorize(
        &op,
        Act::PolicyApply {
            files: body.files.len(),
            dry_run: body.dry_run,
            expected_version: body.expected_version,
        },
    )
    .await?;
    if body.dry_run {
        let (bundle, _) = validated(body.files, "the policies were rejected").await?;
        let diff = gate(&api, &bundle).await?;
        return Ok(Json(json!({
            "dry_run": true,
            "hash": bundle.hash(),
            "policies": bundle.len(),
            "gate": gate_json(&diff),
        })));
    }
    publish(
        &api,
        &op,
        Change {
            files: body.files,
            message: body.message,
            expected: body.expected_version,
            rolled_back_from: None,
            wait: wait_of(body.wait_seconds),
            allow_widening: body.allow_widening,
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackBody {
    pub version: u64,
    #[serde(default)]
    pub expected_version: Option<u64>,
    #[serde(default)]
    pub wait_seconds: Option<u64>,
    #[serde(default)]
    pub allow_widening: bool,
}

async fn rollback(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<RollbackBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(rejected)?;
    rollback_to(&api, &op, body).await
}

/// A rollback as `POST /v1/policies/rollback` and the console make it: authorized, through
/// the widening gate, published, and waited for.
pub(crate) async fn rollback_to(api: &Api, op: &Operator, body: RollbackBody) -> ApiResult {
    api.authorize(
        op,
        Act::PolicyRollback {
            version: body.version,
            expected_version: body.expected_version,
        },
    )
    .await?;
    let (_, files) = api.hub.store.policy_version(body.version).await?;
    publish(
        api,
        op,
        Change {
            files,
            message: format!("rollback to version {}", body.version),
            expected: body.expected_version,
            rolled_back_from: Some(body.version),
            wait: wait_of(body.wait_seconds),
            allow_widening: body.allow_widening,
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    spiffe_id: String,
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

async fn create_token(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<TokenBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(rejected)?;
    // Validated before it is authorized and recorded: nothing unchecked reaches the log.
    let id = SpiffeId::from_str(&body.spiffe_id).map_err(|e| ApiError::bad(e.to_string()))?;
    if !id.is_member_of(&api.hub.trust_domain) {
        return Err(ApiError::bad(format!(
            "`{id}` is not in this control plane's trust domain `{}`",
            api.hub.trust_domain
        )));
    }
    if reserved(&id, &api.hub.trust_domain) {
        return Err(ApiError::bad(format!(
            "`{id}` is the control plane's own identity; no token can grant it"
        )));
    }
    if id.path().is_empty() {
        return Err(ApiError::bad(format!(
            "`{id}` has no path: an SVID names a workload (spiffe://{}/ns/NS/sa/NAME)",
            api.hub.trust_domain
        )));
    }
    let ttl = Duration::from_secs(body.ttl_seconds.unwrap_or(600));
    if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
        return Err(ApiError::bad("ttl must be between 1 second and 7 days"));
    }
    api.authorize(
        &op,
        Act::TokenCreate {
            id: &id,
            operator: is_operator_identity(&id, &api.hub.trust_domain),
            ttl_seconds: ttl.as_secs(),
        },
    )
    .await?;
    let new = api
        .tokens
        .create(id, ttl)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({
        "token": new.token,
        "id": new.record.id,
        "spiffe_id": new.record.spiffe_id.as_str(),
        "expires_at": unix_ms(new.record.expires_at),
    })))
}

/// Identities no join token may grant: the control plane's own.
fn reserved(id: &SpiffeId, td: &signet_spiffe::TrustDomain) -> bool {
    id.is_member_of(td) && id.path() == "/signet/control-plane"
}

/// `unknown`, `healthy` or `unhealthy`.
fn health_name(h: crate::api::v1::AppHealth) -> &'static str {
    match h {
        crate::api::v1::AppHealth::Unknown => "unknown",
        crate::api::v1::AppHealth::Healthy => "healthy",
        crate::api::v1::AppHealth::Unhealthy => "unhealthy",
    }
}

fn proxy_json(hub: &Hub, p: &ProxyEntry, policy_version: u64) -> Value {
    json!({
        "instance": p.instance,
        "spiffe_id": p.spiffe_id.as_str(),
        "service": p.service,
        "namespace": p.namespace,
        "endpoint": p.endpoint,
        "weight": p.weight,
        "labels": &p.labels,
        "admin": p.admin,
        "serial": p.serial,
        "config_version": p.config_version,
        "policy_version": p.policy_version,
        "traffic_version": p.traffic_version,
        "app_health": health_name(p.app_health),
        "registered_at": unix_ms(p.registered_at),
        "last_heartbeat": unix_ms(p.last_seen),
        "in_sync": in_sync(hub, p, policy_version),
        // Connected to the replica answering (its versions are known here), or to another.
        "connected_here": p.local,
        "trust_bundle": p.trust_bundle,
    })
}

async fn proxies(State(api): State<Api>, op: Operator, query: PageResult) -> ApiResult {
    api.authorize(
        &op,
        Act::Read {
            collection: "proxies",
        },
    )
    .await?;
    let version = api.hub.applied().meta.as_ref().map_or(0, |m| m.version);
    let (proxies, next_after) = page(query, api.hub.proxies(), |p| {
        format!("{}/{}", p.service, p.instance)
    })?;
    let list: Vec<Value> = proxies
        .iter()
        .map(|p| proxy_json(&api.hub, p, version))
        .collect();
    Ok(Json(json!({ "proxies": list, "next_after": next_after })))
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

fn services_of(proxies: &[ProxyEntry]) -> BTreeMap<(String, String), Vec<&ProxyEntry>> {
    let mut by: BTreeMap<(String, String), Vec<&ProxyEntry>> = BTreeMap::new();
    for p in proxies {
        by.entry((p.service.clone(), p.namespace.clone()))
            .or_default()
            .push(p);
    }
    by
}

async fn services(State(api): State<Api>, op: Operator, query: PageResult) -> ApiResult {
    api.authorize(
        &op,
        Act::Read {
            collection: "services",
        },
    )
    .await?;
    let proxies = api.hub.proxies();
    let (services, next_after) = page(
        query,
        services_of(&proxies).into_iter().collect(),
        |((name, namespace), _)| format!("{name}/{namespace}"),
    )?;
    let list: Vec<Value> = services
        .into_iter()
        .map(|((name, namespace), members)| {
            let identities: BTreeSet<&str> = members.iter().map(|p| p.spiffe_id.as_str()).collect();
            json!({
                "name": name,
                "namespace": namespace,
                "endpoints": members.iter().map(|p| p.endpoint.as_str()).collect::<Vec<_>>(),
                "identities": identities,
            })
        })
        .collect();
    Ok(Json(json!({ "services": list, "next_after": next_after })))
}

async fn inventory(State(api): State<Api>, op: Operator) -> ApiResult {
    api.authorize(
        &op,
        Act::Read {
            collection: "inventory",
        },
    )
    .await?;
    let inventory = api.hub.inventory();
    let workloads: Vec<Value> = inventory
        .workloads
        .iter()
        .map(|w| json!({ "spiffe_id": w.spiffe_id.as_str(), "service": w.service, "labels": w.labels }))
        .collect();
    let services: Vec<Value> = inventory
        .services
        .iter()
        .map(|s| json!({ "name": s.name, "namespace": s.namespace, "port": s.port, "labels": s.labels }))
        .collect();
    Ok(Json(
        json!({ "workloads": workloads, "services": services, "trust_domain": inventory.trust_domain }),
    ))
}

/// Most labels one service may carry.
const MAX_LABELS: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelBody {
    service: String,
    namespace: String,
    /// Labels to set (replacing a key's value).
    #[serde(default)]
    set: BTreeMap<String, String>,
    /// Keys to remove.
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    wait_seconds: Option<u64>,
}

fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "{what} `{}` must be 1-253 letters, digits, `-`, `_` or `.`",
            name.escape_debug()
        )))
    }
}

/// Sets and removes labels of one service; every proxy receives them as the tags of that
/// service's workloads (when they call) and of the service (when it is called).
async fn label_service(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<LabelBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    use crate::api::convert::{MAX_LABEL_KEY, MAX_LABEL_VALUE, valid_label_key, valid_label_value};
    let Json(body) = body.map_err(rejected)?;
    check_name("service", &body.service)?;
    check_name("namespace", &body.namespace)?;
    for key in body.set.keys().chain(&body.remove) {
        if !valid_label_key(key) {
            return Err(ApiError::bad(format!(
                "label key `{}` must be 1-{MAX_LABEL_KEY} of a-z, 0-9, `-`, `_`, `.`, `/`, starting with a letter or digit",
                key.escape_debug()
            )));
        }
    }
    if let Some((key, _)) = body.set.iter().find(|(_, v)| !valid_label_value(v)) {
        return Err(ApiError::bad(format!(
            "label `{key}`: a value is at most {MAX_LABEL_VALUE} visible ASCII characters"
        )));
    }
    if let Some(key) = body.remove.iter().find(|k| body.set.contains_key(*k)) {
        return Err(ApiError::bad(format!(
            "label `{key}` is both set and removed"
        )));
    }
    api.authorize(
        &op,
        Act::ServiceLabel {
            service: &body.service,
            namespace: &body.namespace,
        },
    )
    .await?;
    let _guard = api.apply_lock.lock().await;
    let service = ServiceRef::new(body.service.clone(), body.namespace.clone());
    let mut labels = api.hub.labels_of(&service);
    for key in &body.remove {
        labels.remove(key);
    }
    labels.extend(body.set);
    if labels.len() > MAX_LABELS {
        return Err(ApiError::bad(format!(
            "a service carries at most {MAX_LABELS} labels"
        )));
    }
    let target = api
        .hub
        .set_labels(crate::server::store::ServiceLabels {
            namespace: body.namespace.clone(),
            name: body.service.clone(),
            labels: labels.clone(),
            updated_at: unix_ms(SystemTime::now()),
            author: op.id.as_str().to_owned(),
        })
        .await?;
    drop(_guard);
    tracing::info!(service = %body.service, namespace = %body.namespace, ?labels, author = %op.id, "labels set");
    let acks = crate::server::acks::wait(
        &api.hub,
        wait_of(body.wait_seconds),
        |_| true,
        |p| p.config_version >= target,
    )
    .await;
    Ok(Json(json!({
        "service": body.service,
        "namespace": body.namespace,
        "labels": labels,
        "enforcement": acks.to_json(|p| p.config_version),
    })))
}

#[derive(Debug, Deserialize)]
struct IdentityQuery {
    id: String,
}

async fn identity(
    State(api): State<Api>,
    op: Operator,
    Query(q): Query<IdentityQuery>,
) -> ApiResult {
    api.authorize(
        &op,
        Act::Read {
            collection: "identity",
        },
    )
    .await?;
    inspect(&api, &q.id).await.map(Json)
}

/// What `meshctl identity inspect` and the console's service page show of an identity (a
/// SPIFFE ID, or a service running under one identity): its SVIDs, proxies, the
/// authorization it has under the applied policies, and its trust material.
pub(crate) async fn inspect(api: &Api, name: &str) -> Result<Value, ApiError> {
    let q = IdentityQuery {
        id: name.to_owned(),
    };
    let hub = &api.hub;
    let proxies = hub.proxies();
    let id = if q.id.starts_with("spiffe://") {
        SpiffeId::from_str(&q.id).map_err(|e| ApiError::bad(format!("`{}`: {e}", q.id)))?
    } else {
        let ids: BTreeSet<&SpiffeId> = proxies
            .iter()
            .filter(|p| p.service == q.id)
            .map(|p| &p.spiffe_id)
            .collect();
        match ids.len() {
            1 => ids
                .into_iter()
                .next()
                .cloned()
                .ok_or_else(|| ApiError::bad("unreachable"))?,
            0 => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no proxy of service `{}` is registered; name its SPIFFE ID instead",
                        q.id
                    ),
                ));
            }
            _ => {
                return Err(ApiError::bad(format!(
                    "service `{}` runs under several identities ({}); name one",
                    q.id,
                    ids.iter()
                        .map(|i| i.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    };
    let certificates = hub.store.certificates_for(id.as_str(), 10).await?;
    let holders: Vec<&ProxyEntry> = proxies.iter().filter(|p| p.spiffe_id == id).collect();
    let current = holders
        .iter()
        .filter_map(|p| certificates.iter().find(|c| c.serial == p.serial))
        .max_by_key(|c| c.issued_at)
        .or_else(|| certificates.first());
    // The chain of the backend issuing now (during a rotation, an SVID issued before it was
    // promoted chains to the previous one).
    let issuer_chain: Vec<Value> = hub
        .ca
        .active()
        .authority
        .status()
        .chain
        .iter()
        .map(|c| {
            json!({
                "subject": c.subject,
                "not_after": i64::try_from(c.not_after).unwrap_or(i64::MAX).saturating_mul(1000),
            })
        })
        .collect();
    let current_json = current.map(|c| {
        let refresh_at = c.not_before + (c.not_after - c.not_before) / 2;
        json!({
            "serial": c.serial,
            "not_before": c.not_before,
            "not_after": c.not_after,
            "refresh_at": refresh_at,
            "issued_at": c.issued_at,
            "kind": c.kind,
            "issuer_chain": issuer_chain,
        })
    });
    let version = hub.applied().meta.as_ref().map_or(0, |m| m.version);
    let holders_json: Vec<Value> = holders
        .iter()
        .map(|p| {
            let renewed = certificates
                .iter()
                .find(|c| c.serial == p.serial)
                .map(|c| c.issued_at);
            let mut v = proxy_json(hub, p, version);
            v["last_renewed"] = json!(renewed);
            v
        })
        .collect();
    // Every caller and service, each action on every path class: CPU work, kept off the
    // async workers.
    let authorization = {
        let (hub, id) = (Arc::clone(&api.hub), id.clone());
        tokio::task::spawn_blocking(move || effective_authorization(&hub, &id))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    Ok(json!({
        "spiffe_id": id.as_str(),
        "service": id.namespace_and_account().map(|(ns, sa)| json!({ "name": sa, "namespace": ns })),
        "certificate": current_json,
        "certificates": certificates,
        "proxies": holders_json,
        "authorization": authorization,
        "jwt": ca_routes::jwt_keys(hub, &mut Vec::new()),
        "federated_bundles": hub
            .federations()
            .iter()
            .map(|f| json!({
                "trust_domain": f.record.trust_domain,
                "roots": f.bundle.roots().len(),
                "jwt_keys": f.bundle.jwt_authorities().len(),
                "sequence": f.bundle.sequence(),
            }))
            .collect::<Vec<_>>(),
        "workload_selectors": id
            .namespace_and_account()
            .and_then(|(ns, sa)| hub.selectors_of(&ServiceRef::new(sa, ns))),
    }))
}

/// Who may call `id`'s service and what it may call, under the applied policies, over every
/// identity and service the registry knows: per caller and service, `connect` and each
/// request action (groups when their methods agree), allowed, denied or depending on the
/// request, with the deciding policies. Callers are built from the registry's directory,
/// as the proxies build them.
fn effective_authorization(hub: &Hub, id: &SpiffeId) -> Value {
    let applied = hub.applied();
    let authorizer = Authorizer::new(Arc::clone(&applied.bundle));
    let paths = signet_policy::path_classes(&[&applied.bundle]);
    let inventory = hub.inventory();
    let directory = inventory.directory();
    let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let own_service = id
        .namespace_and_account()
        .map(|(ns, sa)| ServiceRef::new(sa, ns));
    let actions = |caller: &SpiffeId, service: &signet_policy::KnownService| {
        let labels: Vec<(String, String)> = service
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let target = signet_policy::Target {
            name: &service.name,
            namespace: &service.namespace,
            port: service.port,
            labels: &labels,
        };
        let rows = signet_policy::access_between(
            &authorizer,
            &directory.caller(caller),
            &target,
            source,
            &paths,
        );
        let connect = rows
            .first()
            .is_some_and(|r| matches!(r.access, signet_policy::Access::Allowed(_)));
        let json: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut v = r.access.to_json();
                v["action"] = json!(r.action);
                v
            })
            .collect();
        (connect, json)
    };
    let own = own_service.as_ref().and_then(|svc| {
        inventory
            .services
            .iter()
            .find(|s| s.name == svc.name && s.namespace == svc.namespace)
    });
    let inbound: Vec<Value> = own
        .map(|svc| {
            directory
                .iter()
                .filter(|(c, _)| *c != id)
                .map(|(c, entry)| {
                    let (connect, actions) = actions(c, svc);
                    json!({ "spiffe_id": c.as_str(), "service": entry.service, "connect": connect, "actions": actions })
                })
                .collect()
        })
        .unwrap_or_default();
    let outbound: Vec<Value> = inventory
        .services
        .iter()
        .filter(|s| own_service.as_ref().is_none_or(|o| !(o.name == s.name && o.namespace == s.namespace)))
        .map(|s| {
            let (connect, actions) = actions(id, s);
            json!({ "service": s.name, "namespace": s.namespace, "connect": connect, "actions": actions })
        })
        .collect();
    json!({
        "policy_version": applied.meta.as_ref().map_or(0, |m| m.version),
        "registered": directory.get(id).is_some(),
        "paths": paths,
        "inbound": inbound,
        "outbound": outbound,
    })
}

async fn deny_list(State(api): State<Api>, op: Operator, query: PageResult) -> ApiResult {
    api.authorize(&op, Act::Read { collection: "deny" }).await?;
    let (entries, next_after) = page(query, api.hub.store.deny_list().await?, |e| {
        format!("{}/{}", e.kind, e.value)
    })?;
    Ok(Json(
        json!({ "entries": entries, "next_after": next_after }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DenyBody {
    #[serde(default)]
    spiffe_id: Option<String>,
    #[serde(default)]
    serial: Option<String>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    wait_seconds: Option<u64>,
}

async fn deny(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<DenyBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let Json(body) = body.map_err(rejected)?;
    if body.reason.len() > MAX_REASON {
        return Err(ApiError::bad(format!(
            "the reason is longer than {MAX_REASON} bytes"
        )));
    }
    let (kind, value) = match (body.spiffe_id, body.serial) {
        (Some(id), None) => {
            let id = SpiffeId::from_str(&id).map_err(|e| ApiError::bad(e.to_string()))?;
            if reserved(&id, &api.hub.trust_domain) {
                return Err(ApiError::bad(format!(
                    "`{id}` is the control plane's own identity; denying it would cut every \
                     proxy off from the control plane"
                )));
            }
            api.authorize(&op, Act::DenyId { id: &id }).await?;
            ("spiffe_id", id.as_str().to_owned())
        }
        (None, Some(serial)) => {
            let serial = serial.to_ascii_lowercase();
            if signet_spiffe::Serial::from_hex(&serial).is_none() || serial.len() > 64 {
                return Err(ApiError::bad(format!(
                    "serial `{}` is not hex (at most 64 digits)",
                    serial.chars().take(64).collect::<String>()
                )));
            }
            api.authorize(&op, Act::DenySerial { serial: &serial })
                .await?;
            ("serial", serial)
        }
        _ => return Err(ApiError::bad("give exactly one of spiffe_id and serial")),
    };
    {
        use prost::Message as _;
        let size = api.hub.deny_list().encoded_len() + value.len() + 8;
        if size > crate::api::MAX_DENY_BYTES {
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                format!(
                    "the deny-list is full ({} bytes at most): deny by serial, or let short-lived \
                     SVIDs expire",
                    crate::api::MAX_DENY_BYTES
                ),
            ));
        }
    }
    api.hub
        .store
        .deny(DenyEntry {
            kind: kind.to_owned(),
            value: value.clone(),
            reason: body.reason,
            created_at: unix_ms(SystemTime::now()),
        })
        .await?;
    api.hub.audit.record(signet_audit::Event::Certificate(
        signet_audit::record::CertificateEvent {
            kind: "revoke".to_owned(),
            spiffe_id: if kind == "spiffe_id" {
                value.clone()
            } else {
                String::new()
            },
            serial: if kind == "serial" {
                value.clone()
            } else {
                String::new()
            },
            not_after: 0,
        },
    ));
    api.hub
        .reload_deny_list()
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let target = api.hub.deny_generation();
    // The denied identity's own proxies cannot report any more (the control plane refuses
    // them too): they are not waited for.
    let revoked = |p: &ProxyEntry| match kind {
        "spiffe_id" => p.spiffe_id.as_str() == value,
        _ => p.serial.eq_ignore_ascii_case(&value),
    };
    let acks = crate::server::acks::wait(
        &api.hub,
        wait_of(body.wait_seconds),
        |p| !revoked(p),
        |p| p.trust_version >= target,
    )
    .await;
    Ok(Json(json!({
        "denied": { kind: value },
        "enforcement": acks.to_json(|p| p.trust_version),
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SvidBody {
    join_token: String,
    /// PKCS#10 CSR, PEM.
    csr: String,
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// Redeems a join token for an SVID, as `Identity.Issue` does, for clients that speak
/// REST: operators obtaining a client certificate (`meshctl identity issue`). The token is
/// the authorization; no operator policy is consulted.
async fn issue_svid(
    State(api): State<Api>,
    body: Result<Json<SvidBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    use rustls_pki_types::pem::PemObject as _;
    let Json(body) = body.map_err(rejected)?;
    let csr = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(body.csr.as_bytes())
        .map_err(|e| ApiError::bad(format!("csr: {e}")))?;
    let id = api
        .tokens
        .redeem(&body.join_token)
        .await
        .map_err(|e| match e {
            // The database away: worth a retry, as the status says.
            signet_ca::TokenError::Store(e) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            other => ApiError::new(StatusCode::UNAUTHORIZED, other.to_string()),
        })?;
    let ttl = api
        .hub
        .ca
        .profile()
        .workload_request(body.ttl_seconds.map(Duration::from_secs));
    let svid = api
        .hub
        .ca
        .sign(signet_ca::SignRequest {
            csr: &csr,
            id: &id,
            ttl,
        })
        .await
        .map_err(|e| ApiError::bad(e.to_string()))?;
    api.hub
        .store
        .record_certificate(crate::server::identity::record(&svid, "issue"))
        .await?;
    api.hub
        .audit
        .record(crate::server::identity::certificate_event(&svid, "issue"));
    tracing::info!(spiffe_id = %id, serial = %svid.serial(), "SVID issued over REST");
    Ok(Json(json!({
        "spiffe_id": id.as_str(),
        "chain": svid.to_pem(),
        "bundle": api.hub.ca.bundle().to_pem(),
        "not_after": unix_ms(svid.not_after()),
    })))
}

async fn audit_records(
    State(api): State<Api>,
    op: Operator,
    query: Result<
        Query<crate::server::store::AuditQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> ApiResult {
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    api.authorize(
        &op,
        Act::Read {
            collection: "audit",
        },
    )
    .await?;
    let rows = api.hub.store.query_audit(query).await?;
    Ok(Json(json!({ "records": rows })))
}

/// `GET /v1/operator-actions?limit=N&before=ID`: a page of the log, newest first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionsQuery {
    /// Entries per page (default 200, at most 1,000).
    #[serde(default)]
    limit: Option<u32>,
    /// Only entries older than this `id` (the previous page's `next_before`).
    #[serde(default)]
    before: Option<i64>,
}

async fn actions(
    State(api): State<Api>,
    op: Operator,
    query: Result<Query<ActionsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let limit = page_limit(query.limit, 200)?;
    api.authorize(
        &op,
        Act::Read {
            collection: "operator-actions",
        },
    )
    .await?;
    let page = api.hub.store.actions(limit, query.before).await?;
    // A full page may have more behind it.
    let next_before = (page.len() == limit as usize)
        .then(|| page.last().map(|a| a.id))
        .flatten();
    Ok(Json(json!({ "actions": page, "next_before": next_before })))
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
