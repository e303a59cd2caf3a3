//! The one accept loop every listener of the proxy runs: accept until draining, count the
//! connection, admit it or refuse it by a named reason (counted), and serve it in its own task
//! inside a `connection` span (direction, peer address; the inbound side adds the peer's
//! SPIFFE ID once its handshake proves it), so every log line about a connection says which.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument as _;

use crate::state::Proxy;

/// Accepts on `listener` until the proxy drains. `admit` decides, before any byte is read,
/// whether the connection may go on (a refusal names its reason, counted in
/// `signet_proxy_connections_refused_total{direction,reason}`); `serve` then carries it.
pub async fn serve<T, A, S, F>(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    direction: &'static str,
    admit: A,
    serve: S,
) where
    A: Fn(SocketAddr) -> Result<T, &'static str>,
    S: Fn(TcpStream, SocketAddr, T) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(direction, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = proxy.draining() => return,
        };
        proxy.metrics.connections.inc(&[direction]);
        let admitted = match admit(remote) {
            Ok(admitted) => admitted,
            Err(reason) => {
                proxy.metrics.connections_refused.inc(&[direction, reason]);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let span = tracing::info_span!(
            "connection",
            direction,
            peer = %remote,
            peer_id = tracing::field::Empty
        );
        tokio::spawn(serve(tcp, remote, admitted).instrument(span));
    }
}
