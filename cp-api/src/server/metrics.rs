//! The control plane's own metrics, served as Prometheus text on `--metrics-listen` (plain
//! HTTP: bind it to loopback or a scrape network): API and gRPC calls by outcome, SVID
//! issuance latency, connected proxies and config streams, config pushes and their lag
//! behind the change, store latency, CA expiry, audit ingest.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use signet_metrics::{Family, Histograms};

use crate::server::hub::Hub;

/// Everything the control plane counts.
#[derive(Debug)]
pub struct CpMetrics {
    /// REST calls by route (as declared, never the raw path), method and status class.
    pub api_requests: Family,
    /// gRPC calls by method and status code (a stream by its opening).
    pub grpc_requests: Family,
    /// SVIDs signed: by kind (`issue`, `renew`) and outcome.
    pub issuance: Histograms,
    /// Messages sent on config and trust streams, by stream, and how long after the change
    /// that caused them.
    pub push_lag: Histograms,
    /// Config and trust streams open now.
    pub streams_open: AtomicI64,
    /// Store round trips, by operation.
    pub store: Histograms,
    /// Audit lines received from proxies, by outcome (`stored`, `refused`).
    pub audit_lines: Family,
}

impl Default for CpMetrics {
    fn default() -> Self {
        Self {
            api_requests: Family::default(),
            grpc_requests: Family::default(),
            issuance: Histograms::new(&["kind", "outcome"], &[]),
            push_lag: Histograms::new(&["stream"], &[]),
            streams_open: AtomicI64::new(0),
            store: Histograms::new(&["operation"], &[]),
            audit_lines: Family::default(),
        }
    }
}

/// Counts a stream open while it lives.
#[derive(Debug)]
pub struct OpenStream<'a>(&'a CpMetrics);

impl<'a> OpenStream<'a> {
    pub fn new(metrics: &'a CpMetrics) -> Self {
        metrics.streams_open.fetch_add(1, Ordering::Relaxed);
        Self(metrics)
    }
}

impl Drop for OpenStream<'_> {
    fn drop(&mut self) {
        self.0.streams_open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn gauge(out: &mut String, name: &str, help: &str, series: &[(String, f64)]) {
    signet_metrics::family(out, (name, "gauge", help), series);
}

impl CpMetrics {
    /// The whole exposition.
    pub fn render(&self, hub: &Hub) -> String {
        let mut out = String::new();
        self.api_requests.render(
            &mut out,
            "signet_cp_api_requests_total",
            "REST API calls, by route, method and status class.",
            &["route", "method", "class"],
        );
        self.grpc_requests.render(
            &mut out,
            "signet_cp_grpc_requests_total",
            "gRPC calls, by method and status code (streams as opened).",
            &["method", "code"],
        );
        self.issuance.render(
            &mut out,
            (
                "signet_cp_svid_issuance_duration_seconds",
                "Time to sign an SVID (token checks and the CA), by kind and outcome.",
            ),
            None,
        );
        self.push_lag.render(
            &mut out,
            (
                "signet_cp_config_push_lag_seconds",
                "How long after a change its update was sent on a proxy's stream, by stream; the count is the pushes.",
            ),
            None,
        );
        self.store.render(
            &mut out,
            (
                "signet_cp_store_duration_seconds",
                "Store round trips, by operation.",
            ),
            None,
        );
        self.audit_lines.render(
            &mut out,
            "signet_cp_audit_lines_received_total",
            "Audit lines proxies shipped, by outcome.",
            &["outcome"],
        );
        let proxies = hub.proxies();
        let mut by_health: std::collections::BTreeMap<String, f64> = Default::default();
        for p in &proxies {
            *by_health
                .entry(format!("{{app_health=\"{}\"}}", health(p.app_health)))
                .or_default() += 1.0;
        }
        gauge(
            &mut out,
            "signet_cp_proxies",
            "Proxies in the registry, by their app's health.",
            &by_health.into_iter().collect::<Vec<_>>(),
        );
        gauge(
            &mut out,
            "signet_cp_streams_open",
            "Config, trust and bundle streams open to proxies now.",
            &[(
                String::new(),
                self.streams_open.load(Ordering::Relaxed) as f64,
            )],
        );
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let chain: Vec<(String, f64)> = hub
            .ca
            .active()
            .authority
            .status()
            .chain
            .iter()
            .map(|c| {
                (
                    format!(
                        "{{role=\"{}\",subject=\"{}\"}}",
                        signet_metrics::escape(&c.role),
                        signet_metrics::escape(&c.subject)
                    ),
                    c.not_after as f64 - now as f64,
                )
            })
            .collect();
        gauge(
            &mut out,
            "signet_cp_ca_expiry_seconds",
            "Seconds until each certificate of the active CA chain expires.",
            &chain,
        );
        let applied = hub.applied().meta.as_ref().map_or(0, |m| m.version);
        gauge(
            &mut out,
            "signet_cp_policy_version",
            "The policy version in force.",
            &[(String::new(), applied as f64)],
        );
        out
    }

    /// Times one store round trip.
    pub async fn store_call<T>(
        &self,
        operation: &str,
        call: impl std::future::Future<Output = T>,
    ) -> T {
        let started = std::time::Instant::now();
        let result = call.await;
        self.store.observe(&[operation], started.elapsed(), 0, 0);
        result
    }

    /// Counts a push made `lag` after its change.
    pub fn pushed(&self, stream: &str, lag: Duration) {
        self.push_lag.observe(&[stream], lag, 0, 0);
    }
}

fn health(h: crate::server::pb::AppHealth) -> &'static str {
    match h {
        crate::server::pb::AppHealth::Healthy => "healthy",
        crate::server::pb::AppHealth::Unhealthy => "unhealthy",
        crate::server::pb::AppHealth::Unknown => "unknown",
    }
}

/// Largest request head the metrics listener reads.
const MAX_HEAD: usize = 8 * 1024;
/// Connections the metrics listener serves at once (scrapers are few).
const MAX_CONNECTIONS: usize = 16;

/// Serves `GET /metrics`, `/healthz` (the process answers) and `/ready` (and its store
/// does) over plain HTTP/1.1 until shutdown: bounded
/// before anything is read (a few connections, a small head, a read deadline), since
/// nothing on it is authenticated.
pub async fn serve(
    listener: tokio::net::TcpListener,
    hub: std::sync::Arc<Hub>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use hyper::service::service_fn;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok(permit) = std::sync::Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let hub = std::sync::Arc::clone(&hub);
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request: axum::http::Request<hyper::body::Incoming>| {
                let hub = std::sync::Arc::clone(&hub);
                async move {
                    let (status, body) = match (request.method().as_str(), request.uri().path()) {
                        ("GET", "/metrics") => (200, hub.metrics.render(&hub)),
                        ("GET", "/healthz") => (200, "ok\n".to_owned()),
                        // Ready while the store answers: a replica whose database is away
                        // says so, and a balancer in front of the replicas skips it.
                        ("GET", "/ready") => {
                            let ping =
                                tokio::time::timeout(Duration::from_secs(2), hub.store.ping());
                            match ping.await {
                                Ok(Ok(())) => (200, "ready\n".to_owned()),
                                Ok(Err(e)) => (503, format!("not ready: {e}\n")),
                                Err(_) => (
                                    503,
                                    "not ready: the store did not answer within 2s\n".to_owned(),
                                ),
                            }
                        }
                        _ => (404, "not found: try /metrics or /ready\n".to_owned()),
                    };
                    let response = axum::http::Response::builder()
                        .status(status)
                        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                        .body(axum::body::Body::from(body));
                    Ok::<_, std::convert::Infallible>(response.unwrap_or_default())
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .max_buf_size(MAX_HEAD);
            let _ = builder
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// The gRPC methods served, as `/package.Service/Method`: the only values the `method` label
/// takes (anything else a client sends is `unknown`).
pub const GRPC_METHODS: [&str; 9] = [
    "/signet.v1.Identity/Issue",
    "/signet.v1.Identity/Renew",
    "/signet.v1.Identity/WatchBundle",
    "/signet.v1.Identity/MintJwtSvid",
    "/signet.v1.Config/Watch",
    "/signet.v1.Config/WatchTrust",
    "/signet.v1.Registry/Register",
    "/signet.v1.Registry/Heartbeat",
    "/signet.v1.Audit/Ship",
];

/// A tower layer counting each gRPC call by method and the status its response headers
/// carry (a trailers-only error names it there; an answer with a body is counted as `0`,
/// and a stream by its opening).
#[derive(Debug, Clone)]
pub struct GrpcCounted<S> {
    inner: S,
    hub: std::sync::Arc<Hub>,
}

impl<S> GrpcCounted<S> {
    pub fn layer(hub: std::sync::Arc<Hub>) -> impl tower::Layer<S, Service = Self> + Clone {
        tower::layer::layer_fn(move |inner| GrpcCounted {
            inner,
            hub: std::sync::Arc::clone(&hub),
        })
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<axum::http::Request<B>> for GrpcCounted<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<RB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        // The call's span; its context rides in the request for the handler's own spans.
        let span = crate::server::spans::begin(&self.hub, request.headers());
        if let Some(span) = &span {
            request.extensions_mut().insert(span.context.clone());
        }
        let path = request.uri().path();
        let method = GRPC_METHODS
            .iter()
            .find(|m| **m == path)
            .copied()
            .unwrap_or("unknown");
        // The ready service answers this call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let hub = std::sync::Arc::clone(&self.hub);
        let answer = inner.call(request);
        Box::pin(async move {
            let result = answer.await;
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .filter(|c| c.len() <= 2 && c.bytes().all(|b| b.is_ascii_digit()))
                    .unwrap_or("0")
                    .to_owned(),
                Err(_) => "transport".to_owned(),
            };
            hub.metrics.grpc_requests.inc(&[method, &code]);
            if let Some(span) = span {
                let (service, name) = method
                    .trim_start_matches('/')
                    .split_once('/')
                    .unwrap_or(("unknown", "unknown"));
                let mut a = signet_otel::trace::Attributes::default();
                a.str("rpc.system", "grpc")
                    .str("rpc.service", service)
                    .str("rpc.method", name)
                    .str("rpc.grpc.status_code", code.clone());
                let failed = (code != "0").then(|| format!("grpc-status {code}"));
                crate::server::spans::end(
                    &hub,
                    &span,
                    (
                        method.trim_start_matches('/').to_owned(),
                        signet_otel::trace::Kind::Server,
                    ),
                    a,
                    failed,
                );
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_rpc_of_the_proto_is_a_known_method() {
        let proto = include_str!("../../proto/signet/v1/mesh.proto");
        let mut service = "";
        let mut declared = Vec::new();
        for line in proto.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.split_whitespace().next().unwrap_or("");
            }
            if let Some(rest) = line.strip_prefix("rpc ") {
                let name = rest.split('(').next().unwrap_or("").trim();
                declared.push(format!("/signet.v1.{service}/{name}"));
            }
        }
        let known: Vec<String> = super::GRPC_METHODS
            .iter()
            .map(|m| (*m).to_owned())
            .collect();
        assert_eq!(declared, known);
    }
}
