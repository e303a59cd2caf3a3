//! Outbound: a local plain-text port per upstream service. Requests (or, for TCP, bytes) go to
//! the upstream's endpoints over mTLS, round robin, on pooled connections; the upstream must
//! present one of the SPIFFE IDs configured for it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use signet_spiffe::SpiffeId;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use crate::config::{OutboundConfig, Protocol, UpstreamHttp};
use crate::metrics::class;
use crate::pool::{Balancer, Body, Pool, SendError, Transport, UseH2};
use crate::state::Proxy;

/// The header that says why the proxy, not the upstream, answered with an error.
pub const PROXY_ERROR: &str = "x-signet-error";

/// One upstream service.
pub struct Upstream {
    config: OutboundConfig,
    targets: ArcSwap<Targets>,
}

/// An upstream's endpoints and the identities they may present, with the connectors that
/// check them. Replaced whole when either changes; requests in flight keep the pools they
/// picked.
struct Targets {
    endpoints: Vec<SocketAddr>,
    identities: Vec<SpiffeId>,
    connector: TlsConnector,
    balancer: Balancer,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("service", &self.config.service)
            .field("endpoints", &self.targets.load().endpoints)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The upstream `config` describes, reached with `proxy`'s identity.
    pub fn new(config: OutboundConfig, proxy: &Proxy) -> Result<Self, String> {
        let targets = Targets::new(
            &config,
            config.endpoints.clone(),
            config.identities.clone(),
            proxy,
        )?;
        Ok(Self {
            config,
            targets: ArcSwap::from_pointee(targets),
        })
    }

    /// The upstream's service name.
    pub fn service(&self) -> &str {
        &self.config.service
    }

    /// Switches to new endpoints and identities (from the control plane); nothing happens if
    /// both are unchanged, so live pooled connections survive unrelated updates.
    pub fn update(
        &self,
        endpoints: Vec<SocketAddr>,
        identities: Vec<SpiffeId>,
        proxy: &Proxy,
    ) -> Result<bool, String> {
        let current = self.targets.load();
        if current.endpoints == endpoints && current.identities == identities {
            return Ok(false);
        }
        let targets = Targets::new(&self.config, endpoints, identities, proxy)?;
        self.targets.store(Arc::new(targets));
        Ok(true)
    }
}

impl Targets {
    fn new(
        config: &OutboundConfig,
        endpoints: Vec<SocketAddr>,
        identities: Vec<SpiffeId>,
        proxy: &Proxy,
    ) -> Result<Self, String> {
        let connector = |http2| -> Result<TlsConnector, String> {
            let tls = proxy.outbound_tls(&identities, config.protocol, http2)?;
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
        let balancer = Balancer::new(
            endpoints
                .iter()
                .map(|addr| Arc::new(Pool::new(*addr, transport.clone())))
                .collect(),
        );
        Ok(Self {
            endpoints,
            identities,
            connector: h1,
            balancer,
        })
    }
}

/// Accepts the local app's connections to `upstream` until shutdown.
pub async fn run(listener: TcpListener, upstream: Arc<Upstream>, proxy: Arc<Proxy>) {
    let limit = Arc::new(tokio::sync::Semaphore::new(
        proxy.config.limits.max_connections,
    ));
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "outbound accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = proxy.draining() => return,
        };
        proxy.metrics.connections.inc(&["outbound"]);
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            proxy
                .metrics
                .connections_refused
                .inc(&["outbound", "connection-limit"]);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let proxy = Arc::clone(&proxy);
        let upstream = Arc::clone(&upstream);
        tokio::spawn(async move {
            let _permit = permit;
            match upstream.config.protocol {
                Protocol::Http => serve_http(tcp, upstream, proxy).await,
                Protocol::Tcp => forward_tcp(tcp, &upstream, &proxy).await,
            }
        });
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

fn error(code: StatusCode, why: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(bytes::Bytes::from(format!("{why}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = code;
    if let Ok(v) = http::HeaderValue::from_str(why) {
        r.headers_mut().insert(PROXY_ERROR, v);
    }
    r
}

async fn handle(request: Request<Incoming>, upstream: &Upstream, proxy: &Proxy) -> Response<Body> {
    let protocol = crate::metrics::protocol(request.version());
    let response = forward(request, upstream, proxy).await;
    proxy
        .metrics
        .requests
        .inc(&["outbound", protocol, class(response.status())]);
    response
}

async fn forward(request: Request<Incoming>, upstream: &Upstream, proxy: &Proxy) -> Response<Body> {
    let targets = upstream.targets.load();
    let Some(pool) = targets.balancer.pick() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no endpoints");
    };
    let (mut parts, body) = request.into_parts();
    crate::headers::strip_hop_by_hop(&mut parts.headers);
    // The identity header (under any spelling) is for the upstream's proxy to set; never
    // pass the app's along.
    crate::headers::strip_reserved(&mut parts.headers, &proxy.identity_header);
    let request = Request::from_parts(parts, body.map_err(Into::into).boxed());
    match tokio::time::timeout(proxy.config.limits.request_timeout, pool.send(request)).await {
        Ok(Ok(response)) => crate::pool::relay(response).await,
        Ok(Err(e)) => {
            tracing::warn!(upstream = %upstream.config.service, error = %e, "upstream request failed");
            if let SendError::Handshake { source, .. } = &e {
                let reason =
                    signet_spiffe::tls::peer_error_in_io(source).map_or("tls", |p| p.reason());
                proxy.metrics.handshake_failures.inc(&["outbound", reason]);
                return error(
                    StatusCode::BAD_GATEWAY,
                    &format!("upstream handshake failed: {reason}"),
                );
            }
            error(StatusCode::BAD_GATEWAY, "upstream unavailable")
        }
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream did not answer in time",
        ),
    }
}

async fn forward_tcp(mut local: TcpStream, upstream: &Upstream, proxy: &Proxy) {
    let targets = upstream.targets.load_full();
    let Some(pool) = targets.balancer.pick() else {
        return;
    };
    let addr = pool.addr();
    let tcp = match TcpStream::connect(addr).await {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "upstream unreachable");
            return;
        }
    };
    let name = ServerName::IpAddress(addr.ip().into());
    let handshake = targets.connector.connect(name, tcp);
    let mut tls = match tokio::time::timeout(proxy.config.limits.handshake_timeout, handshake).await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let reason = signet_spiffe::tls::peer_error_in_io(&e).map_or("tls", |p| p.reason());
            proxy.metrics.handshake_failures.inc(&["outbound", reason]);
            return;
        }
        Err(_) => {
            proxy
                .metrics
                .handshake_failures
                .inc(&["outbound", "timeout"]);
            return;
        }
    };
    let _ = tokio::io::copy_bidirectional(&mut local, &mut tls).await;
}
