//! The REST client for `signet-cp`: HTTPS with the control plane's certificate checked
//! against `SIGNET_CA` (it must be an SVID naming the control plane), and a bearer token.

use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use signet_spiffe::TrustBundle;
use signet_spiffe::verify::{Usage, verify_peer};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest response read.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Checks the control plane's certificate: it chains to the roots in `SIGNET_CA` and names
/// `spiffe://<trust domain>/signet/control-plane`. Host names play no part.
#[derive(Debug)]
struct ControlPlaneVerifier {
    roots_pem: String,
}

impl ServerCertVerifier for ControlPlaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let general = |m: String| rustls::Error::General(m);
        let id = signet_spiffe::leaf_spiffe_id(end_entity)
            .map_err(|e| general(format!("the control plane's certificate: {e}")))?;
        let bundle = TrustBundle::from_pem(id.trust_domain(), &self.roots_pem)
            .map_err(|e| general(format!("SIGNET_CA: {e}")))?;
        verify_peer(&bundle, end_entity, intermediates, now, Usage::Server)
            .map_err(|e| general(format!("the control plane's certificate: {e}")))?;
        if id.path() != "/signet/control-plane" {
            return Err(general(format!("`{id}` is not a Signet control plane")));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not allowed".to_owned()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &signet_spiffe::tls::provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        signet_spiffe::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client certificate and its key.
#[derive(Debug)]
pub(crate) struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// Reads a PEM chain and a PKCS#8 PEM key.
    pub(crate) fn load(cert: &str, key: &str) -> anyhow::Result<Self> {
        use rustls::pki_types::pem::PemObject as _;
        let chain = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("reading `{cert}`"))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("reading `{cert}`"))?;
        anyhow::ensure!(!chain.is_empty(), "`{cert}` holds no certificate");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("reading `{key}`"))?;
        Ok(Self { chain, key })
    }
}

/// A connection to one control plane.
#[derive(Debug)]
pub(crate) struct Client {
    address: String,
    token: Option<String>,
    tls: Arc<rustls::ClientConfig>,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// A client for `base` (`https://host:port`), trusting the roots in `ca_pem`.
    pub(crate) fn new(base: &str, token: Option<String>, ca_pem: String) -> anyhow::Result<Self> {
        Self::with_identity(base, token, ca_pem, None)
    }

    /// [`Client::new`], presenting `identity` as the client certificate when given.
    pub(crate) fn with_identity(
        base: &str,
        token: Option<String>,
        ca_pem: String,
        identity: Option<ClientIdentity>,
    ) -> anyhow::Result<Self> {
        let address = base
            .strip_prefix("https://")
            .ok_or_else(|| anyhow!("SIGNET_CP `{base}` must start with https://"))?
            .trim_end_matches('/')
            .to_owned();
        anyhow::ensure!(
            !address.is_empty() && !address.contains('/'),
            "SIGNET_CP `{base}` must be https://host:port"
        );
        let builder = rustls::ClientConfig::builder_with_provider(signet_spiffe::tls::provider())
            .with_protocol_versions(signet_spiffe::tls::PROTOCOL_VERSIONS)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ControlPlaneVerifier { roots_pem: ca_pem }));
        let mut tls = match identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain, id.key)
                .context("the client certificate and key do not match")?,
            None => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?;
        Ok(Self {
            address,
            token,
            tls: Arc::new(tls),
            runtime,
        })
    }

    /// `https://host:port` of the control plane's API.
    pub(crate) fn base(&self) -> String {
        format!("https://{}", self.address)
    }

    /// GET `path`, read as the API's type `T`.
    pub(crate) fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        serde_json::from_value(self.get(path)?).map_err(|e| {
            anyhow!("the control plane's answer to {path} is not what this meshctl reads: {e}")
        })
    }

    /// Every page of `path`'s `field`, read as the API's type `T`.
    pub(crate) fn get_all_as<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        field: &str,
    ) -> anyhow::Result<T> {
        serde_json::from_value(self.get_all(path, field)?).map_err(|e| {
            anyhow!("the control plane's answer to {path} is not what this meshctl reads: {e}")
        })
    }

    /// GET `path`; the JSON body of a 2xx answer.
    pub(crate) fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call("GET", path, None)
    }

    /// Every page of a listing (`?after=` until `next_after` is null), as one answer whose
    /// `field` holds all the items.
    pub(crate) fn get_all(&self, path: &str, field: &str) -> anyhow::Result<Value> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let url = match &after {
                Some(a) => format!("{path}?after={}", super::query_value(a)),
                None => path.to_owned(),
            };
            let mut value = self.get(&url)?;
            if let Some(Value::Array(page)) = value.get_mut(field).map(Value::take) {
                items.extend(page);
            }
            after = value
                .get("next_after")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if after.is_none() {
                return Ok(serde_json::json!({ field: items }));
            }
        }
    }

    /// POST `body` to `path`; the JSON body of a 2xx answer.
    pub(crate) fn post<B: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<Value> {
        self.call("POST", path, Some(&serde_json::to_value(body)?))
    }

    /// DELETE `path` with `body`; the JSON body of a 2xx answer.
    pub(crate) fn delete<B: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<Value> {
        self.call("DELETE", path, Some(&serde_json::to_value(body)?))
    }

    /// POST `body` to `path`; the status and JSON body whatever the status (an answer
    /// that explains a refusal in more than its `error`).
    pub(crate) fn post_answer<B: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<(u16, Value)> {
        let body = serde_json::to_value(body)?;
        self.runtime
            .block_on(self.exchange("POST", path, Some(&body)))
            .with_context(|| format!("POST {path}"))
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        self.runtime
            .block_on(self.send(method, path, body))
            .with_context(|| format!("{method} {path}"))
    }

    async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, value) = self.exchange(method, path, body).await?;
        if !(200..300).contains(&status) {
            return Err(refusal(status, &value));
        }
        Ok(value)
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let tcp = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            TcpStream::connect(&self.address),
        )
        .await
        .map_err(|_| anyhow!("connecting to {}: timed out", self.address))?
        .with_context(|| format!("connecting to the control plane at {}", self.address))?;
        let host = self
            .address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(h, _)| h);
        let name = ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        )
        .map_err(|e| anyhow!("`{host}`: {e}"))?;
        let tls = TlsConnector::from(Arc::clone(&self.tls))
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS with the control plane at {}", self.address))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.address)
            .header("accept", "application/json");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let payload = match body {
            Some(b) => {
                request = request.header("content-type", "application/json");
                serde_json::to_vec(b)?
            }
            None => Vec::new(),
        };
        let response = sender
            .send_request(request.body(Full::new(bytes::Bytes::from(payload)))?)
            .await?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer: {e}"))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status.as_u16(), value))
    }
}

/// A non-2xx answer as one error: its `error`, then its `problems` joined by `; `.
pub(crate) fn refusal(status: u16, value: &Value) -> anyhow::Error {
    let Ok(body) = serde_json::from_value::<signet_cp::model::ErrorBody>(value.clone()) else {
        return anyhow!("the control plane answered {status}");
    };
    if body.problems.is_empty() {
        anyhow!("{}", body.error)
    } else {
        anyhow!("{}: {}", body.error, body.problems.join("; "))
    }
}
