//! The SPIFFE Workload API, served to the local workload on a Unix domain socket
//! (`[workload_api] socket`; the app finds it through `SPIFFE_ENDPOINT_SOCKET=unix://...`):
//! its X.509 SVID with the private key and its trust bundle, pushed again at every rotation,
//! and the bundles of the trust domains it may trust (its own and the federated ones);
//! JWT-SVIDs of its own identity, minted by the control plane ([`jwt`]), and validation of
//! the JWT-SVIDs it receives. Any SPIFFE library (go-spiffe, py-spiffe, ...) reads it
//! unchanged.
//!
//! Who may ask is decided per call, before anything is sent: the request must carry the
//! specification's security header (`workload.spiffe.io: true`; otherwise
//! `INVALID_ARGUMENT`, as the specification requires), and the calling process, as the
//! kernel reports it on the socket (uid, gid, pid, and the pid's executable), must match
//! every selector configured for the service (otherwise `PERMISSION_DENIED`), so another
//! local user cannot take the service's identity. The socket itself is open to all local
//! users, as a SPIRE agent's is: the selectors are the access control. Connections are
//! capped before any of that, and each one's requests reach the server with a `localhost`
//! authority ([`authority`]), so gRPC C-core clients are understood too.

pub mod attest;
pub mod authority;
pub mod jwt;

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use signet_cp::api::workload as pb;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::{Stream, StreamExt as _};
use tonic::transport::server::{Connected, UdsConnectInfo};
use tonic::{Request, Response, Status};

use crate::identity::Credentials;
use crate::state::Proxy;
use attest::{Caller, Selector};

/// The specification's security header.
const SECURITY_HEADER: &str = "workload.spiffe.io";
/// Open connections at most; more wait in the kernel's backlog until one closes.
const MAX_CONNECTIONS: usize = 64;
/// Calls in flight on one connection at most.
const MAX_CALLS_PER_CONNECTION: usize = 16;

type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The service.
#[derive(Debug, Clone)]
pub struct WorkloadApi {
    proxy: Arc<Proxy>,
    selectors: Arc<[Selector]>,
    jwt: Arc<jwt::JwtCache>,
}

/// DER certificates, concatenated (the specification's form for chains and bundles).
fn concatenated<'a, 'b: 'a>(
    certs: impl Iterator<Item = &'a rustls::pki_types::CertificateDer<'b>>,
) -> Vec<u8> {
    certs.flat_map(|c| c.as_ref().iter().copied()).collect()
}

fn x509_response(credentials: &Credentials) -> Result<pb::X509svidResponse, Status> {
    let key = credentials
        .key_pkcs8
        .as_ref()
        .ok_or_else(|| Status::unavailable("the SVID's key is not available yet"))?;
    Ok(pb::X509svidResponse {
        svids: vec![pb::X509svid {
            spiffe_id: credentials.svid.id().to_string(),
            x509_svid: concatenated(credentials.svid.chain().iter()),
            x509_svid_key: key.as_ref().clone(),
            bundle: concatenated(credentials.bundle.roots()),
            hint: String::new(),
        }],
        crl: Vec::new(),
        federated_bundles: credentials
            .bundle
            .federated()
            .iter()
            .map(|b| {
                (
                    format!("spiffe://{}", b.trust_domain()),
                    concatenated(b.roots()),
                )
            })
            .collect(),
    })
}

/// The trust domain's JWT authorities, keyed like the X.509 bundles.
/// The trust domain's JWT authorities and every federated domain's, keyed like the X.509
/// bundles.
fn jwt_bundles_response(credentials: &Credentials) -> Result<pb::JwtBundlesResponse, Status> {
    let mut bundles = std::collections::HashMap::new();
    for bundle in credentials.bundle.all_domains() {
        let jwks = bundle
            .jwt_jwks()
            .map_err(|e| Status::internal(format!("the JWT bundle: {e}")))?;
        bundles.insert(
            format!("spiffe://{}", bundle.trust_domain()),
            jwks.into_bytes(),
        );
    }
    Ok(pb::JwtBundlesResponse { bundles })
}

/// A JSON value as a protobuf `Value`.
fn proto_value(value: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(proto_value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(proto_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn proto_struct(map: &serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), proto_value(v)))
            .collect(),
    }
}

/// The trust domain's roots and every federated domain's (those with roots).
fn bundles_response(credentials: &Credentials) -> pb::X509BundlesResponse {
    pb::X509BundlesResponse {
        crl: Vec::new(),
        bundles: credentials
            .bundle
            .all_domains()
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| {
                (
                    format!("spiffe://{}", b.trust_domain()),
                    concatenated(b.roots()),
                )
            })
            .collect(),
    }
}

impl WorkloadApi {
    /// Serves `proxy`'s identity to callers matching every one of `selectors`, with
    /// JWT-SVIDs from `jwt_source` (the control plane; `None`: JWT-SVIDs are unavailable).
    pub fn new(
        proxy: Arc<Proxy>,
        selectors: Vec<Selector>,
        jwt_source: Option<Arc<dyn jwt::JwtSource>>,
    ) -> Self {
        Self {
            proxy,
            selectors: selectors.into(),
            jwt: Arc::new(jwt::JwtCache::new(jwt_source)),
        }
    }

    /// The caller, if the request may be answered.
    fn admit<T>(&self, request: &Request<T>, call: &str) -> Result<Caller, Status> {
        let header = request.metadata().get(SECURITY_HEADER);
        if header.is_none_or(|v| v.as_bytes() != b"true") {
            return Err(Status::invalid_argument(
                "security header missing from request",
            ));
        }
        let credentials = request
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|info| info.peer_cred)
            .ok_or_else(|| Status::permission_denied("the caller's credentials are unknown"))?;
        let caller =
            Caller::from_credentials(credentials.uid(), credentials.gid(), credentials.pid());
        // The control plane's selectors, when operators set some, replace the configuration's.
        let operators = self.proxy.attestation.load();
        let selectors = operators.as_deref().map_or(&self.selectors[..], |s| &s[..]);
        if !caller.matches(selectors) {
            self.proxy.metrics.workload_api_calls.inc(&[call, "denied"]);
            tracing::warn!(call, %caller, "a Workload API caller matched no selector of this service");
            return Err(Status::permission_denied(format!(
                "{caller} is not a workload of `{}`",
                self.proxy.config.service.name
            )));
        }
        self.proxy
            .metrics
            .workload_api_calls
            .inc(&[call, "allowed"]);
        Ok(caller)
    }

    /// The current credentials and every later change, as `answer` makes them.
    fn follow<T: Send + 'static>(
        &self,
        answer: impl Fn(&Credentials) -> Result<T, Status> + Send + 'static,
    ) -> Responses<T> {
        let changes =
            tokio_stream::wrappers::WatchStream::new(self.proxy.identity.current.subscribe());
        Box::pin(changes.map(move |c| answer(&c)))
    }
}

#[tonic::async_trait]
impl pb::spiffe_workload_api_server::SpiffeWorkloadApi for WorkloadApi {
    type FetchJWTBundlesStream = Responses<pb::JwtBundlesResponse>;
    type FetchX509SVIDStream = Responses<pb::X509svidResponse>;
    type FetchX509BundlesStream = Responses<pb::X509BundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<pb::X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let caller = self.admit(&request, "FetchX509SVID")?;
        tracing::debug!(%caller, "Workload API: X.509 SVID stream opened");
        Ok(Response::new(self.follow(x509_response)))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<pb::X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        self.admit(&request, "FetchX509Bundles")?;
        Ok(Response::new(self.follow(|c| Ok(bundles_response(c)))))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<pb::JwtsvidRequest>,
    ) -> Result<Response<pb::JwtsvidResponse>, Status> {
        self.admit(&request, "FetchJWTSVID")?;
        let body = request.into_inner();
        signet_spiffe::jwt::check_audience(&body.audience)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let own = self.proxy.identity.current.borrow().svid.id().to_string();
        if !body.spiffe_id.is_empty() && body.spiffe_id != own {
            return Err(Status::permission_denied(format!(
                "this workload is `{own}`, not `{}`",
                body.spiffe_id
            )));
        }
        let minted = self
            .jwt
            .get(body.audience, std::time::SystemTime::now())
            .await?;
        Ok(Response::new(pb::JwtsvidResponse {
            svids: vec![pb::Jwtsvid {
                spiffe_id: minted.spiffe_id,
                svid: minted.token,
                hint: String::new(),
            }],
        }))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<pb::JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        self.admit(&request, "FetchJWTBundles")?;
        // Sent again only when the keys change, not at every SVID rotation.
        let mut last: Option<pb::JwtBundlesResponse> = None;
        let changes = self
            .follow(jwt_bundles_response)
            .filter_map(move |r| match r {
                Ok(response) if last.as_ref() == Some(&response) => None,
                Ok(response) => {
                    last = Some(response.clone());
                    Some(Ok(response))
                }
                Err(e) => Some(Err(e)),
            });
        Ok(Response::new(Box::pin(changes)))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<pb::ValidateJwtsvidRequest>,
    ) -> Result<Response<pb::ValidateJwtsvidResponse>, Status> {
        self.admit(&request, "ValidateJWTSVID")?;
        let body = request.into_inner();
        if body.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if body.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        // This trust domain's keys and every federated domain's.
        let bundles = self.proxy.identity.bundle.load().all_domains();
        let svid = signet_spiffe::jwt::JwtSvid::validate(
            &body.svid,
            &body.audience,
            &bundles,
            std::time::SystemTime::now(),
        )
        .map_err(|e| Status::invalid_argument(format!("the JWT-SVID is not valid: {e}")))?;
        Ok(Response::new(pb::ValidateJwtsvidResponse {
            spiffe_id: svid.id().to_string(),
            claims: Some(proto_struct(svid.claims())),
        }))
    }
}

/// A connection counted against [`MAX_CONNECTIONS`] while it lives.
struct Counted {
    stream: authority::LocalAuthority<UnixStream>,
    open: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Connected for Counted {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> UdsConnectInfo {
        self.stream.get_ref().connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Binds the socket at `path` (replacing a stale one; the directory must exist), open to
/// every local user: the selectors decide who is answered.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let shown = path.display();
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!(
                "workload_api.socket `{shown}` exists and is not a socket"
            ));
        }
        std::fs::remove_file(path).map_err(|e| format!("workload_api.socket `{shown}`: {e}"))?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("workload_api.socket `{shown}`: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
        .map_err(|e| format!("workload_api.socket `{shown}`: {e}"))?;
    Ok(listener)
}

/// Serves the Workload API on `listener` until the proxy drains.
pub async fn run(listener: UnixListener, api: WorkloadApi) {
    let proxy = Arc::clone(&api.proxy);
    let open = Arc::new(AtomicUsize::new(0));
    let incoming = capped_incoming(listener, Arc::clone(&open));
    let served = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(MAX_CALLS_PER_CONNECTION)
        .add_service(pb::spiffe_workload_api_server::SpiffeWorkloadApiServer::new(api))
        .serve_with_incoming_shutdown(incoming, proxy.draining())
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the Workload API stopped");
    }
}

/// Accepted connections, at most [`MAX_CONNECTIONS`] open at once: past that, accepting
/// waits for one to close.
fn capped_incoming(
    listener: UnixListener,
    open: Arc<AtomicUsize>,
) -> impl Stream<Item = std::io::Result<Counted>> {
    tokio_stream::wrappers::UnixListenerStream::new(listener).then(move |accepted| {
        let open = Arc::clone(&open);
        async move {
            let stream = accepted?;
            while open.load(Ordering::Acquire) >= MAX_CONNECTIONS {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            open.fetch_add(1, Ordering::AcqRel);
            Ok(Counted {
                stream: authority::LocalAuthority::new(stream),
                open,
            })
        }
    })
}
