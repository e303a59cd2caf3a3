//! Small clients: HTTP/1.1 and HTTP/2 (prior knowledge) over plain TCP, kept open for reuse,
//! and raw TLS connections with whatever certificate a test wants to present.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use signet_spiffe::TrustBundle;
use signet_spiffe::tls::{SpiffeServerVerifier, provider, shared_bundle};
use signet_spiffe::verify::AdmitAll;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Trailers, if any.
    pub trailers: Option<HeaderMap>,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (the echo app's description of the request).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The value of a request header as the echo app saw it.
    pub fn echoed_header(&self, name: &str) -> Vec<String> {
        self.json()["headers"]
            .as_array()
            .map(|headers| {
                headers
                    .iter()
                    .filter(|h| h[0] == name)
                    .filter_map(|h| h[1].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// An open plain-text HTTP connection.
#[derive(Debug)]
pub enum Http {
    /// HTTP/1.1.
    H1(http1::SendRequest<Full<Bytes>>),
    /// HTTP/2 with prior knowledge.
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Http {
    /// An HTTP/1.1 connection to `addr`.
    pub async fn h1(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        Http::H1(sender)
    }

    /// An HTTP/2 connection to `addr`.
    pub async fn h2(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        Http::H2(sender)
    }

    /// Sends `request`; `Err` if the connection failed.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Reply, hyper::Error> {
        let response = match self {
            Http::H1(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
            Http::H2(s) => {
                s.ready().await?;
                s.send_request(request).await?
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let collected = response.into_body().collect().await?;
        let trailers = collected.trailers().cloned();
        Ok(Reply {
            status,
            headers,
            trailers,
            body: collected.to_bytes(),
        })
    }

    /// `GET path` with `headers`, host `host`.
    pub async fn get(&mut self, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(request("GET", host, path, headers, Bytes::new()))
            .await
            .unwrap()
    }

    /// `method path` without a body, host `host`; `Err` if the connection failed.
    pub async fn call(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
    ) -> Result<Reply, hyper::Error> {
        self.send(request(method, host, path, &[], Bytes::new()))
            .await
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        match self {
            Http::H1(s) => s.is_closed(),
            Http::H2(s) => s.is_closed(),
        }
    }
}

/// A request; for HTTP/2 the URI is made absolute from `host`.
pub fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{host}{path}"))
        .header(http::header::HOST, host);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(Full::new(body)).unwrap()
}

/// Connects to `addr` over TLS presenting `chain`/`key`, trusting `bundle`, sends one
/// HTTP/1.1 request and returns what was read: `Err` with the reason if the handshake or the
/// exchange failed, as a refused client sees it.
pub async fn raw_tls_get(
    addr: SocketAddr,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    bundle: TrustBundle,
) -> Result<String, String> {
    tls_request(addr, Some((chain, key)), bundle, "/", &[]).await
}

/// A client certificate chain and its key.
pub type ClientCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Sends `GET path` with `headers` over TLS to `addr` (trusting `bundle`, presenting
/// `client` if given) and returns the raw response, or why the exchange failed.
pub async fn tls_request(
    addr: SocketAddr,
    client: Option<ClientCert>,
    bundle: TrustBundle,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<String, String> {
    let verifier = Arc::new(SpiffeServerVerifier::new(
        shared_bundle(bundle),
        Arc::new(AdmitAll),
    ));
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{extra}\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out).await {
        Ok(_) if out.is_empty() => Err("closed without a response".to_owned()),
        Ok(_) => Ok(String::from_utf8_lossy(&out).into_owned()),
        Err(e) if out.is_empty() => Err(e.to_string()),
        Err(_) => Ok(String::from_utf8_lossy(&out).into_owned()),
    }
}

/// Sends a plain-text HTTP request to a TLS port; returns what came back (nothing, for a
/// port that insists on TLS).
pub async fn plain_text_get(addr: SocketAddr) -> Vec<u8> {
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return Vec::new();
    };
    let _ = tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut out = Vec::new();
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    out
}
