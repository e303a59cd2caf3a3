//! The bundle endpoint: this trust domain's bundle (X.509 roots and JWT keys, SPIFFE bundle
//! format, with `spiffe_sequence` and `spiffe_refresh_hint`) for the control planes of
//! domains that federate with this one. It serves `GET` only, to anyone: a bundle is public.
//! Under `https_spiffe` it presents the control plane's own SVID; under `https_web`, the
//! WebPKI certificate it is given. Connections are bounded like the other listeners'.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::server::hub::Hub;
use crate::server::tls::{ListenerLimits, accept};

/// Time a request head may take to arrive whole.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Few consumers, short exchanges: other domains' control planes.
const LIMITS: ListenerLimits = ListenerLimits {
    handshake_timeout: Duration::from_secs(5),
    max_handshakes: 64,
    max_handshakes_per_source: 8,
    max_connections: 128,
    max_connections_per_source: 8,
    idle_timeout: Duration::from_secs(30),
};

/// Where the endpoint's certificate comes from.
#[derive(Debug, Clone)]
pub enum Certificate {
    /// `https_spiffe`: the control plane's own SVID, renewed as it is.
    Svid(Arc<signet_spiffe::tls::SvidResolver>),
    /// `https_web`: a certificate chain and key (PEM files).
    Web {
        chain: std::path::PathBuf,
        key: std::path::PathBuf,
    },
}

fn tls_config(certificate: &Certificate) -> Result<rustls::ServerConfig, String> {
    let builder = rustls::ServerConfig::builder_with_provider(signet_spiffe::tls::provider())
        .with_protocol_versions(signet_spiffe::tls::PROTOCOL_VERSIONS)
        .map_err(|e| e.to_string())?
        .with_no_client_auth();
    let mut config = match certificate {
        Certificate::Svid(resolver) => builder.with_cert_resolver(Arc::clone(resolver) as _),
        Certificate::Web { chain, key } => {
            let certs = CertificateDer::pem_file_iter(chain)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| format!("--bundle-endpoint-cert `{}`: {e}", chain.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "--bundle-endpoint-cert `{}` holds no certificate",
                    chain.display()
                ));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("--bundle-endpoint-key `{}`: {e}", key.display()))?;
            builder
                .with_single_cert(certs, key)
                .map_err(|e| format!("--bundle-endpoint-cert/key: {e}"))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The bundle, as the endpoint serves it.
async fn bundle(hub: Arc<Hub>) -> Response {
    let mut bundle = hub.ca.bundle();
    bundle.set_refresh_hint_secs(Some(
        hub.bundle_refresh_hint_secs
            .load(std::sync::atomic::Ordering::Relaxed),
    ));
    match bundle.to_jwks() {
        Ok(json) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            json,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the trust bundle could not be written");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Checks the certificate settings before anything is bound.
pub fn check(certificate: &Certificate) -> Result<(), String> {
    tls_config(certificate).map(drop)
}

/// Serves the bundle endpoint on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    certificate: Certificate,
    hub: Arc<Hub>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let config = tls_config(&certificate)?;
    let router = Router::new().fallback(axum::routing::get(move || bundle(Arc::clone(&hub))));
    let mut incoming = accept(listener, TlsAcceptor::from(Arc::new(config)), LIMITS);
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                next = incoming.recv() => match next {
                    Some(Ok(conn)) => conn,
                    Some(Err(_)) => continue,
                    None => return,
                },
                _ = stop.wait_for(|s| *s) => return,
            };
            let service = router.clone();
            tokio::spawn(async move {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .max_buf_size(16 * 1024);
                if let Err(e) = builder
                    .serve_connection(TokioIo::new(conn), TowerToHyperService::new(service))
                    .await
                {
                    tracing::debug!(error = %e, "bundle endpoint connection ended");
                }
            });
        }
    });
    Ok(())
}
