//! The traffic document: per destination service, its routes and how requests to it are
//! timed out, retried, balanced, limited and ejected. Every field has a default, so an empty
//! entry (or none at all) means [`ServiceTraffic::defaults`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::pattern::Pattern;

/// The mesh's traffic configuration: one entry per destination service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficDoc {
    /// Destination services with settings other than the defaults.
    #[serde(default)]
    pub services: Vec<ServiceTraffic>,
}

/// How callers reach one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTraffic {
    /// The destination service.
    pub service: String,
    /// How an endpoint is chosen for each request.
    #[serde(default)]
    pub balancer: BalancerKind,
    /// Longest a whole request may take, retries included, for routes without their own.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Retries for routes without their own policy.
    #[serde(default)]
    pub retry: Retry,
    /// How many retries the service may see, over all routes.
    #[serde(default)]
    pub retry_budget: RetryBudget,
    /// Limits that fail fast instead of queueing without end.
    #[serde(default)]
    pub breaker: Breaker,
    /// Passive health: endpoints that keep failing are taken out for a while.
    #[serde(default)]
    pub outlier: Outlier,
    /// Requests the service's own proxies let in, each counting alone (a local limit):
    /// overall and per calling identity. Routes may add their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Active health: each of the service's own proxies probes its local app; an endpoint
    /// whose app fails leaves every caller's endpoint set until it passes again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Routes, matched in order; the first match wins. A request no route matches uses the
    /// service's settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Named sets of the service's endpoints, by the labels their proxies registered
    /// (`version: v2`), that routes split traffic between.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
}

/// Endpoints whose labels include all of `labels`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subset {
    pub name: String,
    pub labels: crate::labels::Labels,
}

/// A share of a route's requests for one subset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitTo {
    pub subset: String,
    /// Relative to the route's other entries (90 and 10: nine requests in ten to the
    /// first); 0 sends none, for a switch made by editing one number.
    pub weight: u32,
}

impl ServiceTraffic {
    /// What a service without an entry gets.
    pub fn defaults(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            balancer: BalancerKind::default(),
            timeout: default_timeout(),
            retry: Retry::default(),
            retry_budget: RetryBudget::default(),
            breaker: Breaker::default(),
            outlier: Outlier::default(),
            rate_limit: None,
            health_check: None,
            routes: Vec::new(),
            subsets: Vec::new(),
        }
    }
}

/// A local rate limit: each of the service's proxies lets in at most `requests_per_second`
/// on average, with up to `burst` at once, overall and (with `per_caller`) for each calling
/// identity, so one noisy caller cannot use up what the others need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Overall, for every caller together; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overall: Option<Rate>,
    /// For each calling SPIFFE ID; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_caller: Option<Rate>,
}

/// A rate with a burst (a GCRA / token bucket of `burst` tokens refilled at
/// `requests_per_second`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub requests_per_second: f64,
    /// Requests let in at once after a quiet time; at least 1.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_burst() -> u32 {
    1
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Endpoint choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BalancerKind {
    /// Power of two random choices, the one with the lower peak-EWMA latency times
    /// outstanding requests (Linkerd's default): slow endpoints get few requests.
    #[default]
    P2cEwma,
    /// Each endpoint in turn.
    RoundRobin,
    /// Power of two random choices, the one with fewer requests in flight.
    LeastRequest,
}

/// A set of requests with their own timeout and retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique within the service; names the route in metrics and errors.
    pub name: String,
    /// Which requests; empty matches all.
    #[serde(rename = "match", default)]
    pub when: RouteMatch,
    /// Longest a whole request may take, retries included.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Retries; the service's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// A local rate limit of the route's own, on the service's proxies, on top of the
    /// service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Faults the service's proxies inject into the route's requests, to test callers'
    /// resilience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Shares of the route's requests per subset (canary 90/10, blue-green 100/0);
    /// every endpoint of the service when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<SplitTo>,
    /// A copy of a share of the route's requests for a subset, its answers discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,
}

/// Mirroring: copies of `percent` of a route's requests go to `subset` too; their answers
/// are dropped and the original never waits for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    pub subset: String,
    /// 0 to 100.
    pub percent: f64,
}

/// Injected faults: a delay, an abort, or both (the delay first), each for a share of the
/// route's requests, optionally only from some callers. The route's match (headers
/// included) says which requests; `callers` and `namespaces` say whose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
    /// Only requests from these SPIFFE IDs (any caller when both lists are empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callers: Vec<String>,
    /// Only requests from workloads in these namespaces (by their SPIFFE ID's `/ns/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// Hold a share of requests this long before sending them on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultDelay {
    #[serde(with = "duration")]
    pub fixed: Duration,
    /// Share of the matching requests, 0 to 100.
    pub percent: f64,
}

/// Answer a share of requests at once instead of sending them on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultAbort {
    /// The status plain HTTP callers get (default 503).
    #[serde(default = "default_abort_status")]
    pub http_status: u16,
    /// The `grpc-status` gRPC callers get (default 14, UNAVAILABLE).
    #[serde(default = "default_abort_grpc")]
    pub grpc_status: u32,
    /// Share of the matching requests, 0 to 100.
    pub percent: f64,
}

fn default_abort_status() -> u16 {
    503
}

fn default_abort_grpc() -> u32 {
    14
}

/// What a request must look like for a route to take it; every given part must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// The path (without the query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Methods, upper case; any when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Headers, all of which must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

/// A path condition, written `{exact: /x}`, `{prefix: /api}` or `{regex: "/u/[0-9]+"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PathFields", into = "PathFields")]
pub enum PathMatch {
    /// The whole path.
    Exact(String),
    /// A prefix at a segment boundary: `/api` takes `/api` and `/api/x`, not `/apix`.
    Prefix(String),
    /// A regular expression the whole path must match.
    Regex(Pattern),
}

/// [`PathMatch`] as written: one field of three.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<Pattern>,
}

impl TryFrom<PathFields> for PathMatch {
    type Error = String;

    fn try_from(f: PathFields) -> Result<Self, String> {
        match (f.exact, f.prefix, f.regex) {
            (Some(p), None, None) => Ok(PathMatch::Exact(p)),
            (None, Some(p), None) => Ok(PathMatch::Prefix(p)),
            (None, None, Some(p)) => Ok(PathMatch::Regex(p)),
            _ => Err("a path match needs exactly one of exact, prefix and regex".to_owned()),
        }
    }
}

impl From<PathMatch> for PathFields {
    fn from(m: PathMatch) -> Self {
        match m {
            PathMatch::Exact(p) => PathFields {
                exact: Some(p),
                ..PathFields::default()
            },
            PathMatch::Prefix(p) => PathFields {
                prefix: Some(p),
                ..PathFields::default()
            },
            PathMatch::Regex(p) => PathFields {
                regex: Some(p),
                ..PathFields::default()
            },
        }
    }
}

/// A header condition, written `{name: x-canary, exact: "1"}`, `{name: .., regex: ..}` or
/// `{name: .., present: true|false}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "HeaderFields", into = "HeaderFields")]
pub struct HeaderMatch {
    /// The header's name (any case).
    pub name: String,
    /// What its value must be.
    pub value: ValueMatch,
}

/// A header value condition.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueMatch {
    /// The value, exactly.
    Exact(String),
    /// A regular expression the whole value must match.
    Regex(Pattern),
    /// The header is there (true) or absent (false).
    Present(bool),
}

/// [`HeaderMatch`] as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderFields {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<Pattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    present: Option<bool>,
}

impl TryFrom<HeaderFields> for HeaderMatch {
    type Error = String;

    fn try_from(f: HeaderFields) -> Result<Self, String> {
        let value = match (f.exact, f.regex, f.present) {
            (Some(v), None, None) => ValueMatch::Exact(v),
            (None, Some(p), None) => ValueMatch::Regex(p),
            (None, None, Some(b)) => ValueMatch::Present(b),
            _ => {
                return Err(format!(
                    "header `{}` needs exactly one of exact, regex and present",
                    f.name
                ));
            }
        };
        Ok(HeaderMatch {
            name: f.name,
            value,
        })
    }
}

impl From<HeaderMatch> for HeaderFields {
    fn from(m: HeaderMatch) -> Self {
        let mut f = HeaderFields {
            name: m.name,
            exact: None,
            regex: None,
            present: None,
        };
        match m.value {
            ValueMatch::Exact(v) => f.exact = Some(v),
            ValueMatch::Regex(p) => f.regex = Some(p),
            ValueMatch::Present(b) => f.present = Some(b),
        }
        f
    }
}

/// When and how often a failed request is sent again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts after the first; 0 turns retries off.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Failures that are retried.
    #[serde(default = "default_retry_on")]
    pub on: Vec<RetryOn>,
    /// Response statuses that are retried besides those `on` names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<u16>,
    /// gRPC statuses that are retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grpc: Vec<GrpcCode>,
    /// Methods retried once the request was sent (a connection that failed before the
    /// request left is retried for any method).
    #[serde(default = "idempotent_methods")]
    pub methods: Vec<String>,
    /// Longest one attempt may take; an attempt that runs out is retried on another endpoint.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub per_try_timeout: Option<Duration>,
    /// First pause between attempts; doubles up to `backoff_max`, with jitter.
    #[serde(default = "default_backoff_base", with = "duration")]
    pub backoff_base: Duration,
    /// Longest pause between attempts.
    #[serde(default = "default_backoff_max", with = "duration")]
    pub backoff_max: Duration,
    /// Bodies up to this size are kept so the request can be sent again; a larger body is
    /// sent once and never retried.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            on: default_retry_on(),
            statuses: Vec::new(),
            grpc: Vec::new(),
            methods: idempotent_methods(),
            per_try_timeout: None,
            backoff_base: default_backoff_base(),
            backoff_max: default_backoff_max(),
            max_body_bytes: default_max_body(),
        }
    }
}

fn default_max_retries() -> u32 {
    2
}

fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::ConnectFailure, RetryOn::RefusedStream]
}

/// RFC 9110's idempotent methods.
fn idempotent_methods() -> Vec<String> {
    ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]
        .map(str::to_owned)
        .to_vec()
}

fn default_backoff_base() -> Duration {
    Duration::from_millis(25)
}

fn default_backoff_max() -> Duration {
    Duration::from_millis(250)
}

fn default_max_body() -> u32 {
    64 * 1024
}

/// A failure that may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// No connection to the endpoint (refused, handshake failed): the request never left.
    ConnectFailure,
    /// HTTP/2 REFUSED_STREAM: the endpoint did not process the request.
    RefusedStream,
    /// The connection broke or an attempt timed out after the request was sent.
    Reset,
    /// 502, 503 or 504.
    GatewayError,
    /// Any 5xx.
    #[serde(rename = "5xx")]
    ServerError,
}

/// gRPC statuses that may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrpcCode {
    /// CANCELLED (1).
    Cancelled,
    /// DEADLINE_EXCEEDED (4).
    DeadlineExceeded,
    /// RESOURCE_EXHAUSTED (8).
    ResourceExhausted,
    /// INTERNAL (13).
    Internal,
    /// UNAVAILABLE (14).
    Unavailable,
}

impl GrpcCode {
    /// The numeric code in `grpc-status`.
    pub fn code(self) -> u32 {
        match self {
            GrpcCode::Cancelled => 1,
            GrpcCode::DeadlineExceeded => 4,
            GrpcCode::ResourceExhausted => 8,
            GrpcCode::Internal => 13,
            GrpcCode::Unavailable => 14,
        }
    }
}

/// Retries allowed, over a sliding window: at most `ratio` of the requests plus
/// `min_per_second`, so a failing service never sees its load multiplied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries per request, 0 to 1.
    #[serde(default = "default_ratio")]
    pub ratio: f64,
    /// Retries always allowed per second, however few requests there were.
    #[serde(default = "default_min_per_second")]
    pub min_per_second: u32,
    /// How far back requests count.
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            ratio: default_ratio(),
            min_per_second: default_min_per_second(),
            window: default_window(),
        }
    }
}

fn default_ratio() -> f64 {
    0.2
}

fn default_min_per_second() -> u32 {
    10
}

fn default_window() -> Duration {
    Duration::from_secs(10)
}

/// Per-caller limits toward the service; past them a request fails at once with 503.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Breaker {
    /// Connections open to all its endpoints.
    #[serde(default = "default_limit")]
    pub max_connections: u32,
    /// Requests waiting for a connection.
    #[serde(default = "default_limit")]
    pub max_pending: u32,
    /// Requests in flight.
    #[serde(default = "default_limit")]
    pub max_requests: u32,
    /// Retries in flight.
    #[serde(default = "default_max_concurrent_retries")]
    pub max_retries: u32,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            max_connections: default_limit(),
            max_pending: default_limit(),
            max_requests: default_limit(),
            max_retries: default_max_concurrent_retries(),
        }
    }
}

fn default_limit() -> u32 {
    1024
}

fn default_max_concurrent_retries() -> u32 {
    3
}

/// Passive outlier detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outlier {
    /// Consecutive 5xx responses that eject an endpoint; 0 turns this off.
    #[serde(default = "default_consecutive")]
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors (connect failures, 502, 503, 504) that eject an endpoint;
    /// 0 turns this off.
    #[serde(default = "default_consecutive")]
    pub consecutive_gateway_errors: u32,
    /// The first ejection's length; each further one is this times the ejection count.
    #[serde(default = "default_base_ejection", with = "duration")]
    pub base_ejection: Duration,
    /// The longest ejection.
    #[serde(default = "default_max_ejection", with = "duration")]
    pub max_ejection: Duration,
    /// Most endpoints out at once, in percent (at least one may always be ejected, and the
    /// last one never is).
    #[serde(default = "default_max_ejected_percent")]
    pub max_ejected_percent: u32,
}

impl Default for Outlier {
    fn default() -> Self {
        Self {
            consecutive_5xx: default_consecutive(),
            consecutive_gateway_errors: default_consecutive(),
            base_ejection: default_base_ejection(),
            max_ejection: default_max_ejection(),
            max_ejected_percent: default_max_ejected_percent(),
        }
    }
}

fn default_consecutive() -> u32 {
    5
}

fn default_base_ejection() -> Duration {
    Duration::from_secs(30)
}

fn default_max_ejection() -> Duration {
    Duration::from_secs(300)
}

fn default_max_ejected_percent() -> u32 {
    50
}

/// How a proxy probes its local app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// What a probe does: `http: {path: /healthz}`, `grpc: {service: ""}` or `tcp: {}`.
    #[serde(flatten)]
    pub probe: Probe,
    /// Time between probes.
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// Longest a probe may take.
    #[serde(default = "default_probe_timeout", with = "duration")]
    pub timeout: Duration,
    /// Passing probes in a row that make an unhealthy app healthy.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// Failing probes in a row that make a healthy app unhealthy.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_probe_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_healthy_threshold() -> u32 {
    1
}

fn default_unhealthy_threshold() -> u32 {
    2
}

/// A probe of the local app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ProbeFields", into = "ProbeFields")]
pub enum Probe {
    /// `GET path`; healthy on 2xx or 3xx.
    Http {
        /// The path, with any query.
        path: String,
    },
    /// `grpc.health.v1.Health/Check` for `service` ("" for the whole server); healthy on
    /// SERVING.
    Grpc {
        /// The service name asked about.
        service: String,
    },
    /// A TCP connection; healthy when it opens.
    Tcp,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProbeFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<HttpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grpc: Option<GrpcProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcp: Option<TcpProbe>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpProbe {
    path: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrpcProbe {
    #[serde(default)]
    service: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TcpProbe {}

impl TryFrom<ProbeFields> for Probe {
    type Error = String;

    fn try_from(f: ProbeFields) -> Result<Self, String> {
        match (f.http, f.grpc, f.tcp) {
            (Some(h), None, None) => Ok(Probe::Http { path: h.path }),
            (None, Some(g), None) => Ok(Probe::Grpc { service: g.service }),
            (None, None, Some(_)) => Ok(Probe::Tcp),
            _ => Err("a health check needs exactly one of http, grpc and tcp".to_owned()),
        }
    }
}

impl From<Probe> for ProbeFields {
    fn from(p: Probe) -> Self {
        match p {
            Probe::Http { path } => ProbeFields {
                http: Some(HttpProbe { path }),
                ..ProbeFields::default()
            },
            Probe::Grpc { service } => ProbeFields {
                grpc: Some(GrpcProbe { service }),
                ..ProbeFields::default()
            },
            Probe::Tcp => ProbeFields {
                tcp: Some(TcpProbe {}),
                ..ProbeFields::default()
            },
        }
    }
}
