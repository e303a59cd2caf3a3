//! Inbound: the mTLS listener in front of the local app.
//!
//! Handshake (chain against the bundle, deny-list) → peer SPIFFE ID → `connect` decision →
//! for HTTP, a decision per request → the app, with the verified peer ID in a header the
//! proxy always overwrites.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use signet_policy::{Decision, Headers, HttpRequest};
use signet_spiffe::admission::{Admission, Ticket};
use signet_spiffe::{Serial, SpiffeId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::Protocol;
use crate::metrics::class;
use crate::pool::Body;
use crate::respond::{self, ProxyError, is_grpc, visible};
use crate::state::Proxy;
use crate::telemetry::counted::{ByteCounts, Counted};
use crate::telemetry::golden::UNKNOWN;
use crate::telemetry::{Direction, Exchange, TcpConnection};
use signet_spiffe::activity::{LastActivity, Tracked};

/// The header a denied request's response names the deciding policies in.
pub const DENIED_BY: &str = "x-signet-denied-by";

/// The verified peer of one connection.
#[derive(Debug)]
struct Peer {
    id: SpiffeId,
    /// The same, shared into the records that name it.
    shared_id: Arc<SpiffeId>,
    serial: Serial,
    addr: SocketAddr,
    /// Its registered service (the metrics label), or `unknown`: looked up when the
    /// connection was made, and again by each request's decision (a caller may register
    /// after its first connection).
    service: std::sync::RwLock<Arc<str>>,
}

/// Accepts connections until shutdown. Until its handshake completes a connection holds
/// only a handshake slot (a small budget, shared out per source address); a connection slot
/// (`max_connections`) is taken once the peer is authenticated, so peers that never finish a
/// handshake cannot crowd out the mesh's traffic.
pub async fn run(listener: TcpListener, proxy: Arc<Proxy>) -> Result<(), String> {
    let acceptor = TlsAcceptor::from(Arc::new(proxy.inbound_tls()?));
    let limits = &proxy.config.limits;
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let handshakes = Admission::new(limits.max_handshakes, limits.max_handshakes_per_source);
    let shared = Arc::clone(&proxy);
    crate::accept::serve(
        listener,
        proxy,
        "inbound",
        |remote| handshakes.admit(remote.ip()).map_err(|r| r.reason()),
        move |tcp, remote, ticket| {
            connection(
                tcp,
                remote,
                acceptor.clone(),
                Arc::clone(&shared),
                ticket,
                Arc::clone(&connections),
            )
        },
    )
    .await;
    Ok(())
}

/// Decrements the open-connections gauge when the connection ends.
struct Open<'a>(&'a Proxy);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.metrics.inbound_open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    proxy: Arc<Proxy>,
    handshake: Ticket,
    connections: Arc<Semaphore>,
) {
    let limits = &proxy.config.limits;
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Err(_) => {
            proxy
                .metrics
                .handshake_failures
                .inc(&["inbound", "timeout"]);
            return;
        }
        Ok(Err(e)) => {
            let reason = signet_spiffe::tls::peer_error_in_io(&e).map_or("tls", |p| p.reason());
            proxy.metrics.handshake_failures.inc(&["inbound", reason]);
            tracing::info!(%remote, error = %e, "inbound handshake refused");
            return;
        }
        Ok(Ok(tls)) => tls,
    };
    drop(handshake);
    let Ok(_permit) = connections.try_acquire_owned() else {
        proxy
            .metrics
            .connections_refused
            .inc(&["inbound", "connection-limit"]);
        return;
    };
    let (id, serial) = match signet_spiffe::tls::peer_identity(tls.get_ref().1.peer_certificates())
    {
        Ok(pair) => pair,
        Err(e) => {
            proxy
                .metrics
                .handshake_failures
                .inc(&["inbound", e.reason()]);
            return;
        }
    };
    tracing::Span::current().record("peer_id", id.as_str());
    let authorizer = proxy.policies.current();
    let candidate = proxy.shadow.load_full();
    let (decision, shadow, service) = {
        let callers = proxy.callers.load();
        let caller = callers.directory.caller(&id);
        let target = proxy.target(&callers);
        let decide = |a: &signet_policy::Authorizer| a.connect(&caller, &target, remote.ip());
        let service: Arc<str> = Arc::from(caller.service.unwrap_or(UNKNOWN));
        (
            decide(&authorizer),
            candidate.as_deref().map(decide),
            service,
        )
    };
    proxy.metrics.decision("connect", &decision);
    let subject = crate::audit::Subject {
        action: "connect",
        peer: &id,
        serial: &serial,
        path: None,
        trace: None,
        span: None,
        src: remote,
        dst: proxy.config.inbound.listen,
    };
    proxy.audit(&subject, &decision, authorizer.bundle().hash());
    if let (Some(candidate), Some(shadow)) = (&candidate, &shadow) {
        crate::shadow::compare(
            &proxy,
            &subject,
            &decision,
            authorizer.bundle().hash(),
            candidate,
            shadow,
        );
    }
    drop(authorizer);
    if !decision.is_allowed() {
        proxy.metrics.connections_refused.inc(&["inbound", "authz"]);
        tracing::info!(peer = %id, %remote, reason = %decision.reason(), "connection denied");
        return;
    }
    proxy.metrics.inbound_open.fetch_add(1, Ordering::Relaxed);
    let _open = Open(&proxy);
    let peer = Arc::new(Peer {
        shared_id: Arc::new(id.clone()),
        id,
        serial,
        addr: remote,
        service: std::sync::RwLock::new(service),
    });
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let (io, activity) = Tracked::new(tls);
    let denied = denied_later(&proxy, Arc::clone(&peer));
    tokio::pin!(denied);
    match proxy.config.inbound.protocol {
        Protocol::Tcp => {
            let mut connection = TcpConnection::begin(&proxy.telemetry, Direction::Inbound);
            if connection.traced() {
                connection
                    .attributes
                    .str("signet.peer.spiffe_id", peer.id.as_str())
                    .str("network.peer.address", remote.ip().to_string())
                    .int("network.peer.port", i64::from(remote.port()))
                    .str("signet.authz.decision", "allow")
                    .strings("signet.authz.policies", &decision.policies);
            }
            let counts = Arc::new(ByteCounts::default());
            let io = Counted::new(io, Arc::clone(&counts));
            let mut cut = None;
            tokio::select! {
                () = tcp_to_app(io, &proxy) => {}
                () = &mut denied => cut = Some("deny-list"),
                () = activity.idle(limits.idle_timeout) => cut = Some("idle"),
                () = proxy.draining() => cut = Some("drain"),
            }
            let bytes = counts.get();
            let service = peer
                .service
                .read()
                .map_or_else(|_| Arc::from(UNKNOWN), |s| Arc::clone(&s));
            connection.end(&proxy.telemetry, &service, bytes, cut);
        }
        Protocol::Http => serve_http(io, alpn, &proxy, peer, &activity, denied).await,
    }
}

/// Resolves when a deny-list update names this connection's peer.
async fn denied_later(proxy: &Proxy, peer: Arc<Peer>) {
    // Subscribe, then look once: an update that landed between this connection's handshake
    // and the subscription is not missed.
    let mut versions = proxy.identity.deny_version.subscribe();
    let mut first = true;
    while first || versions.changed().await.is_ok() {
        first = false;
        if let Some(why) = proxy.identity.revoked(&peer.id, &peer.serial) {
            proxy.metrics.connections_refused.inc(&["inbound", why]);
            tracing::info!(peer = %peer.id, reason = why, "closing a connection: its peer is no longer trusted");
            return;
        }
    }
    std::future::pending::<()>().await;
}

async fn tcp_to_app<S>(mut io: S, proxy: &Proxy)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match TcpStream::connect(proxy.config.inbound.app).await {
        Ok(mut app) => {
            let _ = tokio::io::copy_bidirectional(&mut io, &mut app).await;
        }
        Err(e) => tracing::warn!(error = %e, "the app is unreachable"),
    }
}

async fn serve_http<S>(
    io: S,
    alpn: Option<Vec<u8>>,
    proxy: &Arc<Proxy>,
    peer: Arc<Peer>,
    activity: &LastActivity,
    mut denied: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = &proxy.config.limits;
    let service = {
        let proxy = Arc::clone(proxy);
        service_fn(move |request| {
            let proxy = Arc::clone(&proxy);
            let peer = Arc::clone(&peer);
            async move { Ok::<_, Infallible>(handle(request, &proxy, &peer).await) }
        })
    };
    let io = TokioIo::new(io);
    let mut drain = std::pin::pin!(proxy.draining());
    let mut idle = std::pin::pin!(activity.idle(limits.idle_timeout));
    // Runs the connection until it ends, its peer is denied, or it idles out or the proxy
    // drains (both graceful). A macro, not a function: the three connection types share no
    // trait that a generic async fn could name without tripping over higher-ranked bounds.
    macro_rules! drive {
        ($conn:expr) => {{
            let conn = $conn;
            tokio::pin!(conn);
            let mut graceful = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "inbound HTTP connection ended");
                        }
                        break;
                    }
                    () = denied.as_mut() => break,
                    () = idle.as_mut(), if !graceful => conn.as_mut().graceful_shutdown(),
                    () = drain.as_mut(), if !graceful => {
                        graceful = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }};
    }
    // ALPN already said which protocol; sniffing the preface is only for peers that sent none.
    match alpn.as_deref() {
        Some(b"http/1.1") => drive!(limits.http1_server().serve_connection(io, service)),
        Some(b"h2") => drive!(limits.http2_server().serve_connection(io, service)),
        _ => {
            let builder = limits.http_server();
            drive!(builder.serve_connection(io, service));
        }
    }
}

/// 403 naming the deciding policies; for gRPC, PERMISSION_DENIED (7) with the same header.
fn denied_response(decision: &Decision, grpc: bool) -> Response<Body> {
    let reason = decision.reason();
    let mut response = respond::refusal(
        grpc,
        (StatusCode::FORBIDDEN, "7"),
        &format!("denied by {reason}"),
    );
    response.headers_mut().insert(DENIED_BY, visible(&reason));
    response
}

/// What the audit records a request decision about: its method, peer, (canonical) path and
/// trace position (`ids`: trace and span).
fn request_subject<'a, B>(
    proxy: &Proxy,
    peer: &'a Peer,
    request: &'a Request<B>,
    path: &'a str,
    ids: &'a (Option<String>, Option<String>),
) -> crate::audit::Subject<'a> {
    crate::audit::Subject {
        action: request.method().as_str(),
        peer: &peer.id,
        serial: &peer.serial,
        path: Some(path),
        trace: ids.0.as_deref(),
        span: ids.1.as_deref(),
        src: peer.addr,
        dst: proxy.config.inbound.listen,
    }
}

/// 401 for a request whose end-user token was refused (RFC 6750: `invalid_token`, or no
/// error code when a required token is missing); for gRPC, UNAUTHENTICATED (16). Counted
/// and audited as a deny by `authn-<reason>`; the token itself is never recorded.
fn unauthenticated<B>(
    proxy: &Proxy,
    peer: &Peer,
    (request, path, exchange): (&Request<B>, &str, &mut Exchange),
    refusal: crate::authn::Refusal,
    grpc: bool,
) -> Response<Body> {
    let reason = refusal.reason();
    proxy.metrics.authn_refusals.inc(&[reason]);
    let decision = Decision {
        effect: signet_policy::Effect::Deny,
        policies: vec![format!("authn-{reason}")],
        errors: Vec::new(),
    };
    proxy.metrics.decision("request", &decision);
    let ids = exchange.audit_ids();
    proxy.audit(
        &request_subject(proxy, peer, request, path, &ids),
        &decision,
        proxy.policies.current().bundle().hash(),
    );
    exchange.decided(&decision);
    tracing::debug!(peer = %peer.id, reason, "end-user token refused");
    let challenge = if refusal == crate::authn::Refusal::Missing {
        HeaderValue::from_static("Bearer realm=\"signet\"")
    } else {
        HeaderValue::from_static("Bearer realm=\"signet\", error=\"invalid_token\"")
    };
    let mut response = respond::refusal(
        grpc,
        (StatusCode::UNAUTHORIZED, "16"),
        &format!("end-user token refused: {reason}"),
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge);
    response
}

/// Records a request the traffic settings answered (refused or aborted) as a deny by
/// `policy`: in the audit trail (sampled) and on the request's own record.
fn by_settings<B>(
    proxy: &Proxy,
    peer: &Peer,
    (request, path, exchange): (&Request<B>, &str, &mut Exchange),
    policy: String,
) {
    let decision = Decision {
        effect: signet_policy::Effect::Deny,
        policies: vec![policy],
        errors: Vec::new(),
    };
    if let Some(audit) = &proxy.audit {
        let ids = exchange.audit_ids();
        audit.sampled(
            &request_subject(proxy, peer, request, path, &ids),
            &decision,
            (&proxy.config.service.name, &proxy.config.service.namespace),
            proxy.policies.current().bundle().hash(),
        );
    }
    exchange.decided(&decision);
}

/// 429 with `Retry-After` for a request over a local rate limit; for gRPC,
/// RESOURCE_EXHAUSTED (8). Counted by route and limit, and audited (sampled) as a deny by
/// `rate-limit-<limit>`.
fn rate_limited<B>(
    proxy: &Proxy,
    peer: &Peer,
    (request, path, exchange): (&Request<B>, &str, &mut Exchange),
    refused: crate::traffic::inbound::Refused,
    grpc: bool,
) -> Response<Body> {
    let limit = refused.name();
    proxy.metrics.rate_limited.inc(&[&exchange.route, limit]);
    by_settings(
        proxy,
        peer,
        (request, path, exchange),
        format!("rate-limit-{limit}"),
    );
    let wait = refused.limited.retry_after;
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = respond::refusal(
        grpc,
        (StatusCode::TOO_MANY_REQUESTS, "8"),
        &format!("rate limited ({limit}); retry after {seconds}s"),
    );
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    headers.insert(
        respond::PROXY_ERROR,
        HeaderValue::from_static("rate-limited"),
    );
    response
}

/// An injected abort: the configured status (or `grpc-status`), with
/// `x-signet-error: injected`, counted and audited (sampled) as `fault-injected`, so it is
/// never taken for a real failure.
fn injected_abort<B>(
    proxy: &Proxy,
    peer: &Peer,
    (request, path, exchange): (&Request<B>, &str, &mut Exchange),
    (http_status, grpc_status): (u16, u32),
    grpc: bool,
) -> Response<Body> {
    proxy.metrics.faults.inc(&[&exchange.route, "abort"]);
    by_settings(
        proxy,
        peer,
        (request, path, exchange),
        "fault-injected".to_owned(),
    );
    let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = respond::refusal(
        grpc,
        (status, respond::grpc_code(grpc_status)),
        "fault injected by the traffic settings",
    );
    response
        .headers_mut()
        .insert(respond::PROXY_ERROR, HeaderValue::from_static("injected"));
    response
}

async fn handle(request: Request<Incoming>, proxy: &Arc<Proxy>, peer: &Peer) -> Response<Body> {
    let protocol = crate::metrics::protocol(request.version());
    let service = peer
        .service
        .read()
        .map_or_else(|_| Arc::from(UNKNOWN), |s| Arc::clone(&s));
    let mut exchange = Exchange::begin(proxy, Direction::Inbound, &request, service);
    if exchange.detailed() {
        let d = &mut exchange.details;
        d.source = Some(Arc::clone(&peer.shared_id));
        d.destination.clone_from(&proxy.telemetry.own_id);
        d.peer_addr = Some(peer.addr);
    }
    let response = decide_and_forward(request, proxy, peer, &mut exchange).await;
    proxy
        .metrics
        .requests
        .inc(&["inbound", protocol, class(response.status())]);
    exchange.respond(response)
}

async fn decide_and_forward(
    mut request: Request<Incoming>,
    proxy: &Proxy,
    peer: &Peer,
    exchange: &mut Exchange,
) -> Response<Body> {
    // The policies decide on the headers the app will get: hop-by-hop headers (and those a
    // client's `Connection` names) go first, then anything spelled like a header the proxy
    // vouches for; the identity header itself is set last, after the decision.
    let inbound = &proxy.config.inbound;
    let cleaned = crate::headers::clean(
        request.headers_mut(),
        inbound.underscore_headers,
        &proxy.identity_header,
    );
    let grpc = is_grpc(request.headers());
    if let Err(e) = cleaned {
        return ProxyError::BadRequest(e.to_string()).respond(grpc);
    }
    // Decide on the path the app will resolve, and send the app exactly that path.
    let path = match crate::path::canonical(request.uri().path(), inbound.path_parameters) {
        Ok(path) => path,
        Err(e) => return ProxyError::BadRequest(format!("path: {e}")).respond(grpc),
    };
    if path != request.uri().path() {
        let mut parts = request.uri().clone().into_parts();
        let with_query = match request.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        match with_query.parse() {
            Ok(pq) => parts.path_and_query = Some(pq),
            Err(_) => return ProxyError::BadRequest("path".to_owned()).respond(grpc),
        }
        match http::Uri::from_parts(parts) {
            Ok(uri) => *request.uri_mut() = uri,
            Err(_) => return ProxyError::BadRequest("path".to_owned()).respond(grpc),
        }
    }
    // The end user first: a refused token ends the request before any policy sees it.
    let user = match crate::authn::verify(&proxy.authn.load(), request.headers()) {
        Ok(user) => user,
        Err(refusal) => {
            return unauthenticated(proxy, peer, (&request, &path, exchange), refusal, grpc);
        }
    };
    if user.is_some() {
        proxy
            .metrics
            .authn_verified
            .inc(&[&proxy.config.service.name]);
    }
    let authorizer = proxy.policies.current();
    let candidate = proxy.shadow.load_full();
    let (decision, shadow) = {
        // Every header reaches the policies, whatever bytes its value holds: dropping the
        // non-UTF-8 ones would let a client hide a header a `forbid` looks for. Copied only
        // when a candidate policy reads headers.
        let headers = || -> Vec<(String, String)> {
            request
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect()
        };
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        let callers = proxy.callers.load();
        let caller = callers.directory.caller(&peer.id);
        let service = caller.service.unwrap_or(UNKNOWN);
        if *exchange.peer != *service {
            let service: Arc<str> = Arc::from(service);
            if let Ok(mut known) = peer.service.write() {
                *known = Arc::clone(&service);
            }
            exchange.peer = service;
        }
        let target = proxy.target(&callers);
        let view = HttpRequest {
            method: request.method().as_str(),
            path: &path,
            host,
            query: request.uri().query().unwrap_or(""),
            headers: Headers::Lazy(&headers),
            source_ip: peer.addr.ip(),
            claims: user.as_ref(),
        };
        let decide = |a: &signet_policy::Authorizer| a.request(&caller, &target, &view);
        (decide(&authorizer), candidate.as_deref().map(decide))
    };
    proxy.metrics.decision("request", &decision);
    exchange.decided(&decision);
    if proxy.audit.is_some() || shadow.is_some() {
        let ids = exchange.audit_ids();
        let subject = request_subject(proxy, peer, &request, &path, &ids);
        proxy.audit(&subject, &decision, authorizer.bundle().hash());
        if let (Some(candidate), Some(shadow)) = (&candidate, &shadow) {
            crate::shadow::compare(
                proxy,
                &subject,
                &decision,
                authorizer.bundle().hash(),
                candidate,
                shadow,
            );
        }
    }
    drop(authorizer);
    if !decision.is_allowed() {
        tracing::debug!(peer = %peer.id, path = %request.uri().path(), reason = %decision.reason(), "request denied");
        return denied_response(&decision, grpc);
    }
    // Allowed: the route it takes, and the service's local rate limits.
    let inbound = proxy.inbound_traffic.load();
    let (route, admitted) = inbound.admit(
        (request.method(), &path, request.headers()),
        peer.id.as_str(),
        std::time::Instant::now(),
    );
    exchange.route = route;
    let injected = match admitted {
        Ok(injected) => injected,
        Err(refused) => {
            return rate_limited(proxy, peer, (&request, &path, exchange), refused, grpc);
        }
    };
    drop(inbound);
    if let Some(delay) = injected.delay {
        proxy.metrics.faults.inc(&[&exchange.route, "delay"]);
        tokio::time::sleep(delay).await;
    }
    if let Some(abort) = injected.abort {
        return injected_abort(proxy, peer, (&request, &path, exchange), abort, grpc);
    }
    let max_body = proxy.config.limits.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return ProxyError::BodyTooLarge.respond(grpc);
    }
    crate::headers::set_identity(request.headers_mut(), &proxy.identity_header, &peer.id);
    // The app's own calls continue the trace from this proxy's span.
    exchange.propagate(request.headers_mut());
    let (parts, body) = request.into_parts();
    let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
    let body = exchange.count_request_body(Limited::new(body, limit).boxed());
    let forwarded = proxy.app.send(Request::from_parts(parts, body), None);
    match tokio::time::timeout(proxy.config.limits.request_timeout, forwarded).await {
        Ok(Ok(response)) => {
            let mut response = crate::pool::relay(response).await;
            // What the mesh says about a request (`x-signet-denied-by`, ...) is said by
            // proxies only; the app cannot speak for them.
            crate::headers::strip_reserved(response.headers_mut(), &proxy.identity_header);
            response
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the app did not answer");
            ProxyError::AppUnavailable.respond(grpc)
        }
        Err(_) => ProxyError::AppTimeout.respond(grpc),
    }
}
