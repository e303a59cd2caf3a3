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

/// An accepted TLS connection and what its handshake proved.
#[derive(Debug)]
pub struct Conn {
    stream: TlsStream<TcpStream>,
    peer: Peer,
}

impl Conn {
    /// The connection's peer.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The TLS stream.
    pub fn into_stream(self) -> TlsStream<TcpStream> {
        self.stream
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
        Pin::new(&mut self.stream).poll_read(cx, buf)
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

/// Accepts connections on `listener`, completes each handshake on its own task (bounded by
/// `handshake_timeout`) and delivers the finished connections in order of completion.
pub fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
) -> mpsc::Receiver<Result<Conn, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
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
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let delivered = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let peer = Peer {
                            certificate: verified(&stream),
                            remote,
                        };
                        let _ = delivered.send(Ok(Conn { stream, peer })).await;
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
