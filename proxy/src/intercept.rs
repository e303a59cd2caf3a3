//! Transparent interception: the app dials `cart:8080` as if there were no mesh, the rules
//! `signet-proxy init` installs redirect the connection here, and the address it was dialed
//! at (`SO_ORIGINAL_DST`) says which upstream it is for. A connection to an address no
//! upstream answers for is carried as plain TCP or refused (`interception.
//! unknown_destinations`); one that was not redirected at all is refused, since dialing it
//! again would come straight back here.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::config::UnknownDestinations;
use crate::outbound::Upstream;
use crate::state::Proxy;
use crate::telemetry::{Direction, TcpConnection};

/// The connection counters' direction label for intercepted connections.
const DIRECTION: &str = "intercepted";

/// Where an intercepted connection goes.
#[derive(Debug)]
pub enum Route<'a> {
    /// To this upstream, through the traffic stack and mTLS.
    Upstream(&'a Arc<Upstream>),
    /// As plain TCP to the address it was dialed at.
    Passthrough(SocketAddr),
    /// Nowhere; the reason is counted.
    Refuse(&'static str),
}

/// Decides where a connection dialed at `original` goes. `listening` is this listener's own
/// address: a connection that arrives without having been redirected reports it (or another
/// local address on its port) as its original destination.
pub fn route<'a>(
    original: SocketAddr,
    listening: SocketAddr,
    upstreams: &'a [Arc<Upstream>],
    unknown: UnknownDestinations,
) -> Route<'a> {
    if let Some(upstream) = upstreams.iter().find(|u| u.answers_for(original)) {
        return Route::Upstream(upstream);
    }
    if original.port() == listening.port()
        && (listening.ip().is_unspecified()
            || original.ip() == listening.ip()
            || original.ip().is_loopback())
    {
        return Route::Refuse("not-redirected");
    }
    match unknown {
        UnknownDestinations::Passthrough => Route::Passthrough(original),
        UnknownDestinations::Refuse => Route::Refuse("unknown-destination"),
    }
}

/// The address a redirected connection was dialed at.
fn original_destination(tcp: &TcpStream) -> std::io::Result<SocketAddr> {
    let socket = socket2::SockRef::from(tcp);
    let original = match tcp.local_addr()? {
        SocketAddr::V4(_) => socket.original_dst_v4()?,
        SocketAddr::V6(_) => socket.original_dst_v6()?,
    };
    original
        .as_socket()
        .ok_or_else(|| std::io::Error::other("the original destination is not an IP address"))
}

/// Accepts intercepted connections until shutdown.
pub async fn run(listener: TcpListener, upstreams: Vec<Arc<Upstream>>, proxy: Arc<Proxy>) {
    let Ok(listening) = listener.local_addr() else {
        tracing::error!("the interception listener has no address");
        return;
    };
    let limit = Arc::new(tokio::sync::Semaphore::new(
        proxy.config.limits.max_connections,
    ));
    let upstreams = Arc::new(upstreams);
    let unknown = proxy
        .config
        .interception
        .as_ref()
        .map(|i| i.unknown_destinations)
        .unwrap_or_default();
    let shared = Arc::clone(&proxy);
    crate::accept::serve(
        listener,
        proxy,
        DIRECTION,
        |_| {
            Arc::clone(&limit)
                .try_acquire_owned()
                .map_err(|_| "connection-limit")
        },
        move |tcp, _, permit| {
            let proxy = Arc::clone(&shared);
            let upstreams = Arc::clone(&upstreams);
            async move {
                let _permit = permit;
                let original = match original_destination(&tcp) {
                    Ok(original) => original,
                    Err(e) => {
                        tracing::debug!(error = %e, "no original destination");
                        refuse(&proxy, "not-redirected");
                        return;
                    }
                };
                match route(original, listening, &upstreams, unknown) {
                    Route::Upstream(upstream) => {
                        crate::outbound::serve(tcp, Arc::clone(upstream), proxy).await;
                    }
                    Route::Passthrough(to) => passthrough(tcp, to, &proxy).await,
                    Route::Refuse(reason) => {
                        tracing::debug!(%original, reason, "intercepted connection refused");
                        refuse(&proxy, reason);
                    }
                }
            }
        },
    )
    .await;
}

fn refuse(proxy: &Proxy, reason: &'static str) {
    proxy.metrics.connections_refused.inc(&[DIRECTION, reason]);
}

/// Carries the app's connection to `to` as it was: bytes in both directions, nothing read.
async fn passthrough(mut local: TcpStream, to: SocketAddr, proxy: &Proxy) {
    let connection = TcpConnection::begin(&proxy.telemetry, Direction::Outbound);
    let connect = TcpStream::connect(to);
    let mut remote =
        match tokio::time::timeout(proxy.config.limits.handshake_timeout, connect).await {
            Ok(Ok(remote)) => remote,
            Ok(Err(e)) => {
                tracing::debug!(%to, error = %e, "passthrough destination unreachable");
                connection.end(
                    &proxy.telemetry,
                    "passthrough",
                    (0, 0),
                    Some("connect-failure"),
                );
                return;
            }
            Err(_) => {
                connection.end(
                    &proxy.telemetry,
                    "passthrough",
                    (0, 0),
                    Some("connect-timeout"),
                );
                return;
            }
        };
    let _ = remote.set_nodelay(true);
    let bytes = tokio::io::copy_bidirectional(&mut local, &mut remote)
        .await
        .unwrap_or((0, 0));
    connection.end(&proxy.telemetry, "passthrough", bytes, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unknown_destinations_pass_or_are_refused_as_configured() {
        let listening = addr("127.0.0.1:15001");
        let to = addr("10.0.0.9:443");
        assert!(matches!(
            route(to, listening, &[], UnknownDestinations::Passthrough),
            Route::Passthrough(a) if a == to
        ));
        assert!(matches!(
            route(to, listening, &[], UnknownDestinations::Refuse),
            Route::Refuse("unknown-destination")
        ));
        // A remote service on the listener's port is still somewhere else.
        assert!(matches!(
            route(
                addr("10.0.0.9:15001"),
                listening,
                &[],
                UnknownDestinations::Passthrough
            ),
            Route::Passthrough(_)
        ));
    }

    #[test]
    fn a_connection_that_was_not_redirected_is_never_dialed_again() {
        // Dialed straight at the listener: passing it through would come back here forever.
        for (original, listening) in [
            ("127.0.0.1:15001", "127.0.0.1:15001"),
            ("127.0.0.2:15001", "127.0.0.1:15001"),
            ("10.0.0.1:15001", "0.0.0.0:15001"),
        ] {
            assert!(
                matches!(
                    route(
                        addr(original),
                        addr(listening),
                        &[],
                        UnknownDestinations::Passthrough
                    ),
                    Route::Refuse("not-redirected")
                ),
                "{original} on {listening}"
            );
        }
    }
}
