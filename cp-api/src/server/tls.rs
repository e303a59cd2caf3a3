//! TLS for both of the control plane's listeners: the control plane presents its own SVID;
//! a client may present one (proxies, operators with a certificate) or not (a proxy joining
//! with a token, operators with a bearer token). What the handshake proved travels with the
//! connection as a [`Peer`], which every request handler reads.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use std::future::Future as _;

use signet_spiffe::activity::{LastActivity, Tracked};
use signet_spiffe::admission::{Admission, Ticket};
use signet_spiffe::{Serial, SpiffeId};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A client certificate that verified against the trust bundle at the handshake.
#[derive(Debug, Clone)]
pub struct Verified {
    pub id: SpiffeId,
    pub serial: Serial,
    pub not_after: SystemTime,
}

impl Verified {
    /// Whether the certificate is still valid: a long-lived connection can outlive it.
    pub fn is_current(&self) -> bool {
        SystemTime::now() < self.not_after
    }
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client certificate, if one was presented.
    pub certificate: Option<Verified>,
    /// The client's address.
    pub remote: SocketAddr,
}

/// What one listener admits before and after authentication.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Time a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once, in all and from one source address.
    pub max_handshakes: usize,
    pub max_handshakes_per_source: usize,
    /// Established connections at once, in all and from one source address.
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    /// A connection that moves no byte for this long is closed.
    pub idle_timeout: Duration,
}

impl ListenerLimits {
    /// The proxies' gRPC listener: many proxies may share a node's address, and their
    /// streams stay open (HTTP/2 keepalive pings keep them from idling out).
    pub const GRPC: Self = Self {
        handshake_timeout: Duration::from_secs(5),
        max_handshakes: 512,
        max_handshakes_per_source: 64,
        max_connections: 8_192,
        max_connections_per_source: 1_024,
        idle_timeout: Duration::from_secs(300),
    };

    /// The operators' REST listener: few clients, short exchanges.
    pub const REST: Self = Self {
        handshake_timeout: Duration::from_secs(5),
        max_handshakes: 128,
        max_handshakes_per_source: 16,
        max_connections: 256,
        max_connections_per_source: 32,
        idle_timeout: Duration::from_secs(60),
    };
}

/// An accepted TLS connection and what its handshake proved; it holds its listener's
/// connection slot until dropped.
#[derive(Debug)]
pub struct Conn {
    stream: Tracked<TlsStream<TcpStream>>,
    activity: LastActivity,
    idle_timeout: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    peer: Peer,
    _slot: Ticket,
}

impl Conn {
    /// The connection's peer.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if read.is_ready() {
            return read;
        }
        // Nothing to read: a connection quiet past its limit ends here. The timer wakes the
        // pending read at the deadline, so an idle connection is closed even though no byte
        // will ever arrive to poll it.
        let quiet = self.activity.quiet_for();
        if quiet >= self.idle_timeout {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle past its limit",
            )));
        }
        let deadline = tokio::time::Instant::now() + (self.idle_timeout - quiet);
        self.idle.as_mut().reset(deadline);
        if self.idle.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

fn verified(stream: &TlsStream<TcpStream>) -> Option<Verified> {
    let certs = stream.get_ref().1.peer_certificates()?;
    let (id, serial) = signet_spiffe::tls::peer_identity(Some(certs)).ok()?;
    let leaf = certs.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let secs = cert.validity().not_after.timestamp();
    Some(Verified {
        id,
        serial,
        not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0).unsigned_abs()),
    })
}

/// Accepts connections on `listener` within `limits`, completes each handshake on its own
/// task and delivers the finished connections in order of completion. A connection first
/// holds a handshake slot (refused at once when its source's share or the total is taken),
/// then, authenticated or not, a connection slot of its own budget; one that idles past the
/// limit fails its next read, which closes it.
pub fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: ListenerLimits,
) -> mpsc::Receiver<Result<Conn, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let handshakes = Admission::new(limits.max_handshakes, limits.max_handshakes_per_source);
    let connections = Admission::new(limits.max_connections, limits.max_connections_per_source);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let handshake = match handshakes.admit(remote.ip()) {
                Ok(ticket) => ticket,
                Err(refusal) => {
                    tracing::debug!(%remote, %refusal, "connection refused before its handshake");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let delivered = tx.clone();
            let connections = Arc::clone(&connections);
            tokio::spawn(async move {
                let accepted =
                    tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await;
                drop(handshake);
                match accepted {
                    Ok(Ok(stream)) => {
                        let slot = match connections.admit(remote.ip()) {
                            Ok(slot) => slot,
                            Err(refusal) => {
                                tracing::info!(%remote, %refusal, "connection refused");
                                return;
                            }
                        };
                        let peer = Peer {
                            certificate: verified(&stream),
                            remote,
                        };
                        let (stream, activity) = Tracked::new(stream);
                        let conn = Conn {
                            stream,
                            activity,
                            idle_timeout: limits.idle_timeout,
                            idle: Box::pin(tokio::time::sleep(limits.idle_timeout)),
                            peer,
                            _slot: slot,
                        };
                        let _ = delivered.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "handshake failed"),
                    Err(_) => tracing::debug!(%remote, "handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

/// The TLS server configuration: the control plane's SVID, client SVIDs optional but
/// verified (and refused if deny-listed) when presented.
pub fn server_config(
    resolver: Arc<signet_spiffe::tls::SvidResolver>,
    bundle: signet_spiffe::tls::SharedBundle,
    deny: Arc<signet_spiffe::verify::DenyList>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, rustls::Error> {
    let verifier = Arc::new(signet_spiffe::tls::SpiffeClientVerifier::optional(
        bundle, deny,
    ));
    let mut config = signet_spiffe::tls::server_config(resolver, verifier)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
