//! Connections to one endpoint, reused: an HTTP/2 connection is shared by every request (it
//! multiplexes), HTTP/1.1 connections are kept idle and handed to the next request. Used for
//! the local app (plain text) and for other proxies (mTLS, HTTP/2 when both sides offer it).
//! New connections to an upstream count against its circuit breaker's connection limit.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, Uri, Version, header};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsConnector;

use crate::traffic::breaker::{ConnectionLimit, Limit};

/// Request and response bodies as the proxy passes them along.
pub type Body = BoxBody<Bytes, BoxError>;
/// Any error a body or a connection can carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE: usize = 64;

/// How to reach the endpoint.
#[derive(Clone)]
pub enum Transport {
    /// Plain TCP, HTTP/1.1.
    Http1,
    /// Plain TCP, HTTP/2 with prior knowledge (h2c).
    Http2,
    /// mTLS. `h1` offers only HTTP/1.1 by ALPN; `h2`, when set, offers HTTP/2 first and is
    /// used for the requests `use_h2` picks.
    Tls {
        /// Connector offering HTTP/1.1.
        h1: TlsConnector,
        /// Connector offering HTTP/2 (and HTTP/1.1 as a fallback).
        h2: Option<TlsConnector>,
        /// Which requests go over HTTP/2.
        use_h2: UseH2,
    },
}

/// Which requests travel over HTTP/2 between proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseH2 {
    /// Those that arrived over HTTP/2 (gRPC, say): each hop speaks what the app spoke.
    SameAsRequest,
    /// All: everything multiplexed on one connection per endpoint.
    Always,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Http1 => f.write_str("Http1"),
            Transport::Http2 => f.write_str("Http2"),
            Transport::Tls { h2, use_h2, .. } => f
                .debug_struct("Tls")
                .field("h2", &h2.is_some())
                .field("use_h2", use_h2)
                .finish(),
        }
    }
}

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// TCP connect failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The endpoint.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS handshake failed (the upstream's identity was refused, say).
    #[error("TLS handshake with {addr}: {source}")]
    Handshake {
        /// The endpoint.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A fresh connection closed before taking the request.
    #[error("{addr} closed the connection before taking the request")]
    Closed {
        /// The endpoint.
        addr: SocketAddr,
    },
    /// HTTP failed.
    #[error("HTTP to {addr}: {source}")]
    Http {
        /// The endpoint.
        addr: SocketAddr,
        /// The cause.
        source: hyper::Error,
    },
    /// The service's connections and the queue for them are full (circuit breaker).
    #[error("no room for another connection")]
    Overflow(Limit),
    /// The attempt ran out of its per-try timeout (set by the caller).
    #[error("the attempt timed out")]
    TimedOut,
}

/// Connections to one endpoint.
#[derive(Debug)]
pub struct Pool {
    addr: SocketAddr,
    transport: Transport,
    h2: Mutex<Option<http2::SendRequest<Body>>>,
    h1: Mutex<Vec<http1::SendRequest<Body>>>,
    /// Set once an offer of HTTP/2 was declined: HTTP/2 requests then share the HTTP/1.1
    /// connections.
    no_h2: std::sync::atomic::AtomicBool,
    /// The SPIFFE ID the endpoint's certificate named at the last handshake.
    peer_id: arc_swap::ArcSwapOption<signet_spiffe::SpiffeId>,
}

/// A request that did not get an answer: either never sent (and so safe to send again), or
/// failed.
enum Unsent {
    Again(Request<Body>),
    Failed(SendError),
}

enum Conn {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

impl Pool {
    /// A pool for `addr`, connecting by `transport`.
    pub fn new(addr: SocketAddr, transport: Transport) -> Self {
        Self {
            addr,
            transport,
            h2: Mutex::new(None),
            h1: Mutex::new(Vec::new()),
            no_h2: std::sync::atomic::AtomicBool::new(false),
            peer_id: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// The SPIFFE ID the endpoint presented at the last handshake (TLS transports only).
    pub fn peer_id(&self) -> Option<Arc<signet_spiffe::SpiffeId>> {
        self.peer_id.load_full()
    }

    /// The endpoint.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `request` on a pooled connection, or a new one (within `limit`, when given). A
    /// request the pooled connection never sent (it had just closed) is sent again on a new
    /// connection.
    pub async fn send(
        &self,
        request: Request<Body>,
        limit: Option<&ConnectionLimit>,
    ) -> Result<Response<Incoming>, SendError> {
        self.send_or_return(request, limit)
            .await
            .map_err(|(e, _)| e)
    }

    /// Whether a request of `version` goes over HTTP/2 to this endpoint.
    pub fn uses_h2(&self, version: Version) -> bool {
        match &self.transport {
            Transport::Http1 | Transport::Tls { h2: None, .. } => false,
            Transport::Http2 => true,
            Transport::Tls {
                h2: Some(_),
                use_h2,
                ..
            } => {
                (*use_h2 == UseH2::Always || version == Version::HTTP_2)
                    && !self.no_h2.load(std::sync::atomic::Ordering::Relaxed)
            }
        }
    }

    /// As [`Pool::send`], and a request that never left (no connection, no room for one, or
    /// closed before it was taken) comes back with the error: a retry can send it again
    /// without having kept a copy.
    pub async fn send_or_return(
        &self,
        request: Request<Body>,
        limit: Option<&ConnectionLimit>,
    ) -> Result<Response<Incoming>, (SendError, Option<Request<Body>>)> {
        let h2 = self.uses_h2(request.version());
        let request = match self.pooled(h2) {
            Some(conn) => match self.try_send(conn, request).await {
                Ok(response) => return Ok(response),
                Err(Unsent::Again(request)) => request,
                Err(Unsent::Failed(e)) => return Err((e, None)),
            },
            None => request,
        };
        let permit = match limit {
            Some(limit) => match limit.acquire().await {
                Ok(permit) => Some(permit),
                Err(limit) => return Err((SendError::Overflow(limit), Some(request))),
            },
            None => None,
        };
        // Boxed: a new connection is the rare path, and its TLS handshake state would
        // otherwise sit inline in every request's future (kilobytes copied per request).
        let conn = match Box::pin(self.connect(h2, permit)).await {
            Ok(conn) => conn,
            Err(e) => return Err((e, Some(request))),
        };
        match self.try_send(conn, request).await {
            Ok(response) => Ok(response),
            Err(Unsent::Failed(e)) => Err((e, None)),
            Err(Unsent::Again(request)) => {
                Err((SendError::Closed { addr: self.addr }, Some(request)))
            }
        }
    }

    async fn try_send(
        &self,
        conn: Conn,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, Unsent> {
        let failed =
            |mut e: hyper::client::conn::TrySendError<Request<Body>>| match e.take_message() {
                Some(request) => Unsent::Again(request),
                None => Unsent::Failed(SendError::Http {
                    addr: self.addr,
                    source: e.into_error(),
                }),
            };
        match conn {
            Conn::H2(mut sender) => sender
                .try_send_request(for_h2(request))
                .await
                .map_err(failed),
            Conn::H1(mut sender) => {
                let response = sender
                    .try_send_request(for_h1(request))
                    .await
                    .map_err(failed)?;
                if let Ok(mut idle) = self.h1.lock() {
                    // Ready again once this response's body is read; until then `pooled`
                    // passes over it.
                    if idle.len() < MAX_IDLE {
                        idle.push(sender);
                    }
                }
                Ok(response)
            }
        }
    }

    /// A ready pooled connection: the shared HTTP/2 one when `h2`, else an idle HTTP/1.1 one.
    fn pooled(&self, h2: bool) -> Option<Conn> {
        if h2 {
            let mut shared = self.h2.lock().ok()?;
            return match shared.as_ref() {
                Some(sender) if sender.is_ready() => Some(Conn::H2(sender.clone())),
                Some(sender) if sender.is_closed() => {
                    *shared = None;
                    None
                }
                _ => None,
            };
        }
        let mut idle = self.h1.lock().ok()?;
        idle.retain(|s| !s.is_closed());
        let ready = idle.iter().position(http1::SendRequest::is_ready)?;
        Some(Conn::H1(idle.swap_remove(ready)))
    }

    /// A new connection; `permit` (the breaker's place for it) is held until it closes.
    async fn connect(
        &self,
        want_h2: bool,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<Conn, SendError> {
        let addr = self.addr;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| SendError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let http = |source| SendError::Http { addr, source };
        match &self.transport {
            Transport::Http1 => h1(TokioIo::new(tcp), permit).await.map_err(http),
            Transport::Http2 => self.h2(TokioIo::new(tcp), permit).await.map_err(http),
            Transport::Tls { h1: plain, h2, .. } => {
                let connector = match (want_h2, h2) {
                    (true, Some(h2)) => h2,
                    _ => plain,
                };
                // SPIFFE verification ignores the name; rustls needs one.
                let name = ServerName::IpAddress(addr.ip().into());
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|source| SendError::Handshake { addr, source })?;
                if let Ok((id, _)) =
                    signet_spiffe::tls::peer_identity(tls.get_ref().1.peer_certificates())
                    && self.peer_id.load().as_deref() != Some(&id)
                {
                    self.peer_id.store(Some(Arc::new(id)));
                }
                let is_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                if want_h2 && !is_h2 {
                    self.no_h2.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                if is_h2 {
                    self.h2(TokioIo::new(tls), permit).await.map_err(http)
                } else {
                    h1(TokioIo::new(tls), permit).await.map_err(http)
                }
            }
        }
    }

    async fn h2<T>(&self, io: T, permit: Option<OwnedSemaphorePermit>) -> Result<Conn, hyper::Error>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
            }
        });
        if let Ok(mut h2) = self.h2.lock() {
            *h2 = Some(sender.clone());
        }
        Ok(Conn::H2(sender))
    }
}

async fn h1<T>(io: T, permit: Option<OwnedSemaphorePermit>) -> Result<Conn, hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io).await?;
    tokio::spawn(async move {
        let _permit = permit;
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended");
        }
    });
    Ok(Conn::H1(sender))
}

/// HTTP/2 wants an absolute URI; the authority comes from the `host` header when there is one.
fn for_h2(mut request: Request<Body>) -> Request<Body> {
    let authority = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Some(authority) = authority
        && let Ok(uri) = Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(path)
            .build()
    {
        *request.uri_mut() = uri;
    }
    request.headers_mut().remove(header::HOST);
    *request.version_mut() = Version::HTTP_2;
    request
}

/// HTTP/1.1 wants an origin-form URI and a `host` header.
fn for_h1(mut request: Request<Body>) -> Request<Body> {
    if !request.headers().contains_key(header::HOST)
        && let Some(authority) = request.uri().authority()
        && let Ok(value) = authority.as_str().parse()
    {
        request.headers_mut().insert(header::HOST, value);
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Ok(uri) = path.parse() {
        *request.uri_mut() = uri;
    }
    *request.version_mut() = Version::HTTP_11;
    request
}

/// Responses this small (by `content-length`) are read whole before they are passed on, so
/// head and body leave in one write instead of two.
const SMALL_BODY: u64 = 16 * 1024;

/// A response from the next hop, made ready to pass back: hop-by-hop headers removed, and a
/// small body read whole.
pub async fn relay(response: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    crate::headers::strip_hop_by_hop(&mut parts.headers);
    let small = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n <= SMALL_BODY);
    if small {
        return match body.collect().await {
            Ok(collected) => Response::from_parts(
                parts,
                http_body_util::Full::new(collected.to_bytes())
                    .map_err(|never| match never {})
                    .boxed(),
            ),
            Err(e) => {
                tracing::debug!(error = %e, "reading a response body failed");
                let mut r = Response::new(
                    http_body_util::Full::new(Bytes::from_static(
                        b"bad response from the next hop\n",
                    ))
                    .map_err(|never| match never {})
                    .boxed(),
                );
                *r.status_mut() = http::StatusCode::BAD_GATEWAY;
                r
            }
        };
    }
    Response::from_parts(parts, body.map_err(Into::into).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_fit_each_protocol() {
        let body = || http_body_util::Empty::new().map_err(|n| match n {}).boxed();
        use http_body_util::BodyExt;
        let r = Request::builder()
            .uri("/api/x?y=1")
            .header(header::HOST, "cart")
            .body(body())
            .unwrap();
        let r = for_h2(r);
        assert_eq!(r.uri().to_string(), "http://cart/api/x?y=1");
        let r = for_h1(r);
        assert_eq!(r.uri().to_string(), "/api/x?y=1");
        assert_eq!(r.headers().get(header::HOST).unwrap(), "cart");
    }
}
