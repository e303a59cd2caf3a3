//! Outbound: a local plain-text port per upstream service. Requests go through the traffic
//! stack ([`crate::traffic`]: routes, timeouts, retries, balancing, breaker, outlier
//! detection) to the upstream's endpoints over mTLS on pooled connections; TCP connections
//! are balanced the same way. The upstream must present one of the SPIFFE IDs configured
//! for it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use signet_spiffe::SpiffeId;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use signet_traffic::ServiceTraffic;
use signet_traffic::doc::RetryOn;

use crate::config::{OutboundConfig, Protocol, UpstreamHttp};
use crate::metrics::class;
use crate::pool::{Body, Pool, Transport, UseH2};
use crate::state::Proxy;
use crate::telemetry::{Direction, Exchange, TcpConnection};
use crate::traffic::Policy;
use crate::traffic::balance::{Endpoint, Endpoints};
use crate::traffic::outlier::{Health, may_eject};
use crate::traffic::weighted::WeightedAddr;

/// One upstream service.
pub struct Upstream {
    config: OutboundConfig,
    /// The endpoints by subset, for the settings and endpoints in force.
    subsets: ArcSwap<crate::traffic::subsets::Subsets>,
    /// The service name as metrics label it.
    label: Arc<str>,
    targets: ArcSwap<Targets>,
    policy: ArcSwap<Policy>,
    /// The addresses intercepted connections to which are for this upstream: the
    /// configured ones and those its endpoints register.
    addresses: ArcSwap<Vec<SocketAddr>>,
}

/// An upstream's endpoints and the identities they may present, with the connector that
/// checks them. Replaced whole when either changes; requests in flight keep the endpoints
/// they picked, and endpoints that stay keep their connections, latency and ejections.
struct Targets {
    endpoints: Endpoints,
    identities: Vec<SpiffeId>,
    connector: TlsConnector,
    transport: Transport,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("service", &self.config.service)
            .field("endpoints", &self.addrs())
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The upstream `config` describes, reached with `proxy`'s identity, with the default
    /// traffic settings until others are set.
    pub fn new(config: OutboundConfig, proxy: &Proxy) -> Result<Self, String> {
        let targets = Targets::new(
            &config,
            &config.endpoints,
            config.identities.clone(),
            None,
            proxy,
        )?;
        let policy = Policy::new(ServiceTraffic::defaults(&config.service));
        Ok(Self {
            subsets: ArcSwap::from_pointee(crate::traffic::subsets::Subsets::default()),
            addresses: ArcSwap::from_pointee(config.addresses.clone()),
            label: Arc::from(config.service.as_str()),
            config,
            targets: ArcSwap::from_pointee(targets),
            policy: ArcSwap::from_pointee(policy),
        })
    }

    /// The upstream's service name.
    pub fn service(&self) -> &str {
        &self.config.service
    }

    /// Whether the service is another trust domain's (its endpoints configured here).
    pub fn is_federated(&self) -> bool {
        self.config.trust_domain.is_some()
    }

    /// Whether a connection dialed at `address` is for this upstream.
    pub fn answers_for(&self, address: SocketAddr) -> bool {
        self.addresses.load().contains(&address)
    }

    /// The addresses it answers for.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.addresses.load().to_vec()
    }

    /// Sets the addresses its endpoints registered (the configured ones stay); false when
    /// nothing changed.
    pub fn set_registered_addresses(&self, registered: &[SocketAddr]) -> bool {
        let mut all = self.config.addresses.clone();
        all.extend(
            registered
                .iter()
                .filter(|a| !self.config.addresses.contains(a)),
        );
        if **self.addresses.load() == all {
            return false;
        }
        self.addresses.store(Arc::new(all));
        true
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.targets
            .load()
            .endpoints
            .list
            .iter()
            .map(|e| e.addr)
            .collect()
    }

    /// The endpoints now (for `/endpoints` and metrics).
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.targets.load().endpoints.list.clone()
    }

    /// The traffic settings in force.
    pub fn traffic(&self) -> ServiceTraffic {
        self.policy.load().settings.clone()
    }

    /// Switches to new endpoints, weights and identities (from the control plane); nothing
    /// happens if all are unchanged, so live pooled connections survive unrelated updates.
    pub fn update(
        &self,
        endpoints: Vec<WeightedAddr>,
        identities: Vec<SpiffeId>,
        proxy: &Proxy,
    ) -> Result<bool, String> {
        let current = self.targets.load();
        let now: Vec<WeightedAddr> = current
            .endpoints
            .list
            .iter()
            .map(|e| WeightedAddr {
                addr: e.addr,
                weight: e.weight(),
                labels: Arc::clone(&e.labels),
            })
            .collect();
        if now == endpoints && current.identities == identities {
            return Ok(false);
        }
        let keep = (current.identities == identities).then_some(&**current);
        let targets = Targets::new(&self.config, &endpoints, identities, keep, proxy)?;
        self.targets.store(Arc::new(targets));
        self.rebuild_subsets();
        Ok(true)
    }

    /// Sorts the endpoints in force into the subsets the settings in force name.
    fn rebuild_subsets(&self) {
        let subsets = crate::traffic::subsets::Subsets::build(
            &self.policy.load().settings,
            &self.targets.load().endpoints,
        );
        self.subsets.store(Arc::new(subsets));
    }

    /// Switches to new traffic settings; false when they are the ones in force (a new
    /// version that changed other services leaves this one's budget and breaker alone).
    pub fn set_traffic(&self, settings: ServiceTraffic) -> bool {
        if self.policy.load().settings == settings {
            return false;
        }
        self.policy.store(Arc::new(Policy::new(settings)));
        self.rebuild_subsets();
        true
    }
}

impl Targets {
    /// Targets for `endpoints`; with `keep`, endpoints it already has are carried over
    /// (their connections, latency and ejections), taking their new weights.
    fn new(
        config: &OutboundConfig,
        endpoints: &[WeightedAddr],
        identities: Vec<SpiffeId>,
        keep: Option<&Targets>,
        proxy: &Proxy,
    ) -> Result<Self, String> {
        let (connector, transport) = match keep {
            Some(kept) => (kept.connector.clone(), kept.transport.clone()),
            None => Self::transport(config, &identities, proxy)?,
        };
        let list = endpoints
            .iter()
            .map(|target| {
                // An endpoint is kept (its connections, latency, ejections) while its
                // address and labels stay; new labels make it a new endpoint.
                let kept = keep.and_then(|k| {
                    k.endpoints
                        .list
                        .iter()
                        .find(|e| e.addr == target.addr && e.labels == target.labels)
                });
                match kept {
                    Some(kept) => {
                        kept.set_weight(target.weight);
                        Arc::clone(kept)
                    }
                    None => Arc::new(
                        Endpoint::new(Pool::new(target.addr, transport.clone()), target.weight)
                            .with_labels(Arc::clone(&target.labels)),
                    ),
                }
            })
            .collect();
        Ok(Self {
            endpoints: Endpoints::new(list),
            identities,
            connector,
            transport,
        })
    }

    fn transport(
        config: &OutboundConfig,
        identities: &[SpiffeId],
        proxy: &Proxy,
    ) -> Result<(TlsConnector, Transport), String> {
        let connector = |http2| -> Result<TlsConnector, String> {
            let tls = proxy.outbound_tls(identities, config.protocol, http2)?;
            Ok(TlsConnector::from(Arc::new(tls)))
        };
        let h1 = connector(false)?;
        let (h2, use_h2) = match config.upstream_http {
            UpstreamHttp::Http1 => (None, UseH2::SameAsRequest),
            UpstreamHttp::SameAsApp => (Some(connector(true)?), UseH2::SameAsRequest),
            UpstreamHttp::Http2 => (Some(connector(true)?), UseH2::Always),
        };
        let transport = Transport::Tls {
            h1: h1.clone(),
            h2,
            use_h2,
        };
        Ok((h1, transport))
    }
}

/// Each upstream endpoint's state as callers on this proxy see it (`/endpoints`).
pub fn endpoints_json(upstreams: &[Arc<Upstream>]) -> serde_json::Value {
    let now = Instant::now();
    let list: Vec<serde_json::Value> = upstreams
        .iter()
        .map(|u| {
            let policy = u.policy.load();
            let endpoints: Vec<serde_json::Value> = u
                .endpoints()
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "address": e.addr.to_string(),
                        "ejected": e.outlier.is_ejected(now),
                        "ejections": e.outlier.ejections(),
                        "in_flight": e.outstanding(),
                        "weight": e.weight(),
                        "labels": &*e.labels,
                        "latency_ewma_ms": (e.latency_seconds(now) * 1e6).round() / 1e3,
                    })
                })
                .collect();
            let subsets: serde_json::Map<String, serde_json::Value> = u
                .subsets
                .load()
                .sizes()
                .into_iter()
                .map(|(name, n)| (name.to_string(), serde_json::json!({ "endpoints": n })))
                .collect();
            serde_json::json!({
                "service": u.service(),
                "balancer": policy.settings.balancer,
                "addresses": u.addresses().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "endpoints": endpoints,
                "subsets": subsets,
            })
        })
        .collect();
    serde_json::json!({ "upstreams": list })
}

/// Per-endpoint gauges for `/metrics`: latency estimate, requests in flight, ejected.
pub fn render_endpoint_gauges(upstreams: &[Arc<Upstream>], out: &mut String) {
    use std::fmt::Write as _;
    let now = Instant::now();
    type Gauge<'a> = &'a dyn Fn(&Endpoint) -> f64;
    let families: [(&str, &str, Gauge); 4] = [
        (
            "signet_proxy_upstream_endpoint_latency_ewma_seconds",
            "Peak-EWMA latency estimate of each upstream endpoint, as this proxy's balancer sees it.",
            &|e| e.latency_seconds(now),
        ),
        (
            "signet_proxy_upstream_endpoint_in_flight",
            "Attempts in flight to each upstream endpoint.",
            &|e| f64::from(e.outstanding()),
        ),
        (
            "signet_proxy_upstream_endpoint_ejected",
            "Whether outlier detection has ejected the endpoint now (1) or not (0).",
            &|e| f64::from(u8::from(e.outlier.is_ejected(now))),
        ),
        (
            "signet_proxy_upstream_endpoint_weight",
            "Each upstream endpoint's weight in this proxy's balancer (from the registry).",
            &|e| f64::from(e.weight()),
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for u in upstreams {
            for e in u.endpoints() {
                let _ = writeln!(
                    out,
                    "{name}{{service=\"{}\",endpoint=\"{}\"}} {}",
                    u.service(),
                    e.addr,
                    value(&e)
                );
            }
        }
    }
}

/// Accepts the local app's connections to `upstream` until shutdown.
pub async fn run(listener: TcpListener, upstream: Arc<Upstream>, proxy: Arc<Proxy>) {
    let limit = Arc::new(tokio::sync::Semaphore::new(
        proxy.config.limits.max_connections,
    ));
    let shared = Arc::clone(&proxy);
    crate::accept::serve(
        listener,
        proxy,
        "outbound",
        |_| {
            Arc::clone(&limit)
                .try_acquire_owned()
                .map_err(|_| "connection-limit")
        },
        move |tcp, _, permit| {
            let proxy = Arc::clone(&shared);
            let upstream = Arc::clone(&upstream);
            async move {
                let _permit = permit;
                serve(tcp, upstream, proxy).await;
            }
        },
    )
    .await;
}

/// Carries one connection of the local app's to `upstream`: its requests (HTTP) or its
/// bytes (TCP).
pub async fn serve(tcp: TcpStream, upstream: Arc<Upstream>, proxy: Arc<Proxy>) {
    match upstream.config.protocol {
        Protocol::Http => serve_http(tcp, upstream, proxy).await,
        Protocol::Tcp => forward_tcp(tcp, &upstream, &proxy).await,
    }
}

async fn serve_http(tcp: TcpStream, upstream: Arc<Upstream>, proxy: Arc<Proxy>) {
    let service = {
        let proxy = Arc::clone(&proxy);
        service_fn(move |request| {
            let proxy = Arc::clone(&proxy);
            let upstream = Arc::clone(&upstream);
            async move { Ok::<_, Infallible>(handle(request, &upstream, &proxy).await) }
        })
    };
    let limits = &proxy.config.limits;
    let builder = limits.http_server();
    let conn = builder.serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "outbound HTTP connection ended");
            }
            return;
        }
        () = proxy.draining() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

async fn handle(
    request: Request<Incoming>,
    upstream: &Upstream,
    proxy: &Arc<Proxy>,
) -> Response<Body> {
    let protocol = crate::metrics::protocol(request.version());
    let mut exchange = Exchange::begin(
        proxy,
        Direction::Outbound,
        &request,
        Arc::clone(&upstream.label),
    );
    if exchange.detailed() {
        exchange.details.source.clone_from(&proxy.telemetry.own_id);
    }
    let response = forward(request, upstream, proxy, &mut exchange).await;
    proxy
        .metrics
        .requests
        .inc(&["outbound", protocol, class(response.status())]);
    exchange.respond(response)
}

async fn forward(
    request: Request<Incoming>,
    upstream: &Upstream,
    proxy: &Proxy,
    exchange: &mut Exchange,
) -> Response<Body> {
    let grpc = crate::respond::is_grpc(request.headers());
    let (mut parts, body) = request.into_parts();
    crate::headers::strip_hop_by_hop(&mut parts.headers);
    // The identity header (under any spelling) is for the upstream's proxy to set; never
    // pass the app's along.
    crate::headers::strip_reserved(&mut parts.headers, &proxy.identity_header);
    exchange.propagate(&mut parts.headers);
    let body = exchange.count_request_body(body.map_err(Into::into).boxed());
    let request = Request::from_parts(parts, body);
    let targets = upstream.targets.load_full();
    let policy = upstream.policy.load_full();
    let subsets = upstream.subsets.load_full();
    let mut trip = crate::traffic::Trip::default();
    let sent = crate::traffic::send(
        &upstream.config.service,
        &policy,
        (&targets.endpoints, &subsets),
        request,
        &proxy.metrics,
        &mut trip,
    )
    .await;
    if let Some(route) = trip.route {
        exchange.route = route;
    }
    if exchange.detailed() {
        let d = &mut exchange.details;
        d.retries = trip.retries;
        d.subset = trip.subset;
        d.upstream_duration = trip.upstream;
        if let Some(endpoint) = &trip.endpoint {
            d.upstream = Some(endpoint.addr);
            d.destination = endpoint.pool.peer_id();
        }
    }
    match sent {
        Ok(response) => crate::pool::relay(response).await,
        Err(e) => e.respond(grpc),
    }
}

/// Carries a TCP connection to an endpoint: on a failed connection (refused, or its
/// handshake) the next endpoint is tried, as often as the default route retries connect
/// failures; the breaker's connection limit counts it while it is open.
async fn forward_tcp(mut local: TcpStream, upstream: &Upstream, proxy: &Proxy) {
    let targets = upstream.targets.load_full();
    let policy = upstream.policy.load_full();
    let service = upstream.service();
    let Ok(_open) = policy.breaker.connections.acquire().await.map_err(|limit| {
        proxy
            .metrics
            .upstream_overflows
            .inc(&[service, limit.name()]);
    }) else {
        return;
    };
    let settings = &policy.settings;
    let tries = if settings.retry.on.contains(&RetryOn::ConnectFailure) {
        settings.retry.max_retries + 1
    } else {
        1
    };
    let mut avoid = None;
    let mut connection = TcpConnection::begin(&proxy.telemetry, Direction::Outbound);
    for attempt in 0..tries {
        let Some(endpoint) = targets
            .endpoints
            .pick(settings.balancer, avoid, Instant::now())
        else {
            connection.end(
                &proxy.telemetry,
                &upstream.label,
                (0, 0),
                Some("no-endpoints"),
            );
            return;
        };
        let _in_flight = endpoint.start();
        match connect_tls(endpoint.addr, &targets.connector, proxy).await {
            Some(mut tls) => {
                endpoint.outlier.observe(
                    Health::Success,
                    &settings.outlier,
                    Instant::now(),
                    || false,
                );
                if connection.traced() {
                    let a = &mut connection.attributes;
                    a.str("server.address", service)
                        .str("signet.upstream.endpoint", endpoint.addr.to_string())
                        .str("network.peer.address", endpoint.addr.ip().to_string())
                        .int("network.peer.port", i64::from(endpoint.addr.port()))
                        .int("signet.retry.attempt", i64::from(attempt));
                    if let Ok((id, _)) =
                        signet_spiffe::tls::peer_identity(tls.get_ref().1.peer_certificates())
                    {
                        a.str("signet.peer.spiffe_id", id.as_str());
                    }
                }
                // From the app's side: it sent `sent`, and received `received`.
                let (sent, received) = tokio::io::copy_bidirectional(&mut local, &mut tls)
                    .await
                    .unwrap_or((0, 0));
                connection.end(&proxy.telemetry, &upstream.label, (sent, received), None);
                return;
            }
            None => {
                let now = Instant::now();
                let total = targets.endpoints.list.len();
                let ejected =
                    endpoint
                        .outlier
                        .observe(Health::GatewayError, &settings.outlier, now, || {
                            may_eject(
                                targets.endpoints.ejected(now),
                                total,
                                settings.outlier.max_ejected_percent,
                            )
                        });
                if ejected.is_some() {
                    let addr = endpoint.addr.to_string();
                    proxy.metrics.upstream_ejections.inc(&[service, &addr]);
                }
                avoid = Some(endpoint.addr);
            }
        }
    }
    connection.end(
        &proxy.telemetry,
        &upstream.label,
        (0, 0),
        Some("connect-failure"),
    );
}

async fn connect_tls(
    addr: SocketAddr,
    connector: &TlsConnector,
    proxy: &Proxy,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = match TcpStream::connect(addr).await {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "upstream unreachable");
            return None;
        }
    };
    let name = ServerName::IpAddress(addr.ip().into());
    let handshake = connector.connect(name, tcp);
    match tokio::time::timeout(proxy.config.limits.handshake_timeout, handshake).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            let reason = signet_spiffe::tls::peer_error_in_io(&e).map_or("tls", |p| p.reason());
            proxy.metrics.handshake_failures.inc(&["outbound", reason]);
            None
        }
        Err(_) => {
            proxy
                .metrics
                .handshake_failures
                .inc(&["outbound", "timeout"]);
            None
        }
    }
}
