//! The control-plane source: the proxy's SVID, trust bundle, deny-list, policies and upstream
//! endpoints come from `signet-cp` instead of files, through the same internals the file
//! source uses ([`Identity::rotate`], [`Proxy::enforce`], [`Upstream::update`]).
//!
//! - Start: an SVID persisted in `state_dir` that is still valid is used (a restart renews
//!   rather than re-joins); otherwise the join token buys one. The key never leaves the proxy.
//! - Renewal at the SVID's refresh time (half-life with jitter), over mTLS with the current
//!   SVID; failures retry with backoff until the SVID expires.
//! - One config stream; each message is applied and persisted, so a restart while the
//!   control plane is away serves the last configuration (static stability).
//! - Registration of the inbound endpoint and heartbeats.
//!
//! Every call that fails is counted by call and retried with capped exponential backoff
//! with jitter (`backoff.rs`), so proxies that lost the control plane together do not come
//! back in lockstep.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use hyper_util::rt::TokioIo;
use prost::Message as _;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName};
use signet_cp::api::convert;
use signet_cp::api::v1 as pb;
use signet_policy::PolicyBundle;
use signet_spiffe::tls::{SharedBundle, SpiffeServerVerifier, SvidResolver, shared_bundle};
use signet_spiffe::verify::AllowList;
use signet_spiffe::{SpiffeId, TrustBundle, TrustDomain, WorkloadKey, X509Svid};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::backoff::Backoff;
use crate::config::{ControlPlaneConfig, IdentityConfig, ServiceConfig};
use crate::identity::{self, Credentials};
use crate::outbound::Upstream;
use crate::state::{Callers, Proxy};
use crate::traffic::weighted::WeightedAddr;

/// How long one unary call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff bounds for retries.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The backoff of every control-plane loop.
fn control_backoff() -> Backoff {
    Backoff::new(BACKOFF_START, BACKOFF_MAX)
}
/// How long start-up waits to join when the control plane is not answering yet.
const JOIN_PATIENCE: Duration = Duration::from_secs(30);

/// The control plane's own SPIFFE ID in `td`.
/// A gRPC client held to the message limit the control plane uses, in both directions (one
/// constant for both sides: a limit that differs between them freezes a proxy's config).
macro_rules! limited {
    ($client:expr) => {
        $client
            .max_decoding_message_size(signet_cp::api::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(signet_cp::api::MAX_MESSAGE_BYTES)
    };
}

pub fn control_plane_id(td: &TrustDomain) -> Result<SpiffeId, String> {
    td.workload("/signet/control-plane")
        .map_err(|e| e.to_string())
}

/// Where the persisted credentials live.
fn state_files(state_dir: &Path, td: &TrustDomain) -> IdentityConfig {
    IdentityConfig {
        cert: state_dir.join("svid.pem"),
        key: state_dir.join("key.pem"),
        bundle: state_dir.join("bundle.pem"),
        trust_domain: Some(td.as_str().to_owned()),
        deny_list: None,
    }
}

fn config_file(state_dir: &Path) -> PathBuf {
    state_dir.join("config.pb")
}

use signet_spiffe::write_private;

fn persist(
    state_dir: &Path,
    td: &TrustDomain,
    c: &Credentials,
    key: &WorkloadKey,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(state_dir)
        .and_then(|()| std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| format!("control_plane.state_dir `{}`: {e}", state_dir.display()))?;
    let files = state_files(state_dir, td);
    write_private(&files.key, key.to_pkcs8_pem().as_bytes())?;
    write_private(&files.cert, c.svid.to_pem().as_bytes())?;
    write_private(&files.bundle, c.bundle.to_pem().as_bytes())
}

/// The join token: the text, or the contents of `@file`.
pub fn join_token(cfg: &ControlPlaneConfig) -> Result<Option<String>, String> {
    match cfg.join_token.as_deref() {
        None | Some("") => Ok(None),
        Some(t) => match t.strip_prefix('@') {
            Some(file) => std::fs::read_to_string(file)
                .map(|s| Some(s.trim().to_owned()))
                .map_err(|e| format!("control_plane.join_token `{t}`: {e}")),
            None => Ok(Some(t.trim().to_owned())),
        },
    }
}

/// TLS towards the control plane: its SVID must chain to `bundle` and name the control plane;
/// the proxy presents whatever `client` holds (nothing before it has joined).
fn tls(
    bundle: SharedBundle,
    td: &TrustDomain,
    client: Arc<dyn ResolvesClientCert>,
) -> Result<rustls::ClientConfig, String> {
    let verifier = Arc::new(SpiffeServerVerifier::new(
        bundle,
        Arc::new(AllowList::new([control_plane_id(td)?])),
    ));
    let mut config =
        signet_spiffe::tls::client_config(client, verifier).map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A lazily connecting gRPC channel to `address` over `tls`.
/// One control-plane replica: where to dial it and the name its certificate is checked for.
#[derive(Debug, Clone)]
struct Replica {
    target: String,
    name: ServerName<'static>,
}

/// The replicas `address` lists (`host:port`, comma-separated; a name may resolve to
/// several addresses, tried in turn as well).
fn replicas(address: &str) -> Result<Vec<Replica>, String> {
    let list: Vec<&str> = address
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    if list.is_empty() {
        return Err("control_plane.address is empty".to_owned());
    }
    list.into_iter()
        .map(|target| {
            let (host, port) = target
                .rsplit_once(':')
                .ok_or_else(|| format!("control_plane.address `{target}` is not host:port"))?;
            if port.parse::<u16>().is_err() {
                return Err(format!("control_plane.address `{target}` is not host:port"));
            }
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let name = ServerName::try_from(host)
                .map_err(|e| format!("control_plane.address `{target}`: {e}"))?
                .to_owned();
            Ok(Replica {
                target: target.to_owned(),
                name,
            })
        })
        .collect()
}

/// A channel to the control plane at `address`: one replica at a time, the one that last
/// answered, moving on to the next when a connection to it cannot be made (so a proxy
/// fails over when its replica dies, and stays put otherwise). Proxies start at a random
/// replica, so they spread over them.
fn channel(address: &str, tls: rustls::ClientConfig) -> Result<Channel, String> {
    let replicas = Arc::new(replicas(address)?);
    let connector = TlsConnector::from(Arc::new(tls));
    let first = replicas
        .first()
        .map(|r| r.target.clone())
        .unwrap_or_default();
    let mut start = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut start);
    let current = Arc::new(std::sync::atomic::AtomicUsize::new(
        usize::try_from(u32::from_le_bytes(start)).unwrap_or(0) % replicas.len(),
    ));
    let endpoint = Endpoint::from_shared(format!("http://{first}"))
        .map_err(|e| format!("control_plane.address `{first}`: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
            let connector = connector.clone();
            let replicas = Arc::clone(&replicas);
            let current = Arc::clone(&current);
            async move { connect_any(&replicas, &current, &connector).await }
        })),
    )
}

/// Connects to the replica `current` names, else to each next one in turn; `current` then
/// names the one that answered.
async fn connect_any(
    replicas: &[Replica],
    current: &std::sync::atomic::AtomicUsize,
    connector: &TlsConnector,
) -> Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>, std::io::Error> {
    use std::sync::atomic::Ordering;
    let from = current.load(Ordering::Relaxed);
    let mut last = None;
    for step in 0..replicas.len() {
        let index = (from + step) % replicas.len();
        let replica = &replicas[index];
        let attempt = async {
            let tcp = TcpStream::connect(&replica.target).await?;
            let _ = tcp.set_nodelay(true);
            connector.connect(replica.name.clone(), tcp).await
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(tls)) => {
                if index != from {
                    tracing::info!(replica = %replica.target, "control plane: connected to another replica");
                }
                current.store(index, Ordering::Relaxed);
                return Ok(TokioIo::new(tls));
            }
            Ok(Err(e)) => {
                tracing::debug!(replica = %replica.target, error = %e, "control plane replica unreachable");
                last = Some(e);
            }
            Err(_) => {
                last = Some(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{}: timed out", replica.target),
                ));
            }
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no control plane replica")))
}

fn credentials(
    response: pb::IssueResponse,
    td: &TrustDomain,
    expected: &SpiffeId,
) -> Result<Credentials, String> {
    let chain = response
        .chain
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let svid = X509Svid::parse(chain, td, SystemTime::now())
        .map_err(|e| format!("the control plane sent a bad SVID: {e}"))?;
    if svid.id() != expected {
        return Err(format!(
            "the control plane issued `{}`, not `{expected}`",
            svid.id()
        ));
    }
    let bundle = convert::trust_bundle(td, &response.bundle.unwrap_or_default())
        .map_err(|e| format!("the control plane sent a bad bundle: {e}"))?;
    Ok(Credentials {
        svid,
        bundle,
        key_pkcs8: None,
    })
}

fn status_text(s: &tonic::Status) -> String {
    if s.message().is_empty() {
        format!("{:?}", s.code())
    } else {
        s.message().to_owned()
    }
}

/// Whether retrying a refused call could help.
fn retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Internal
            | tonic::Code::ResourceExhausted
    )
}

async fn timed<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded(
            "the control plane did not answer",
        )),
    }
}

/// The proxy's credentials at start: the persisted ones if still valid, else by joining.
pub async fn obtain_identity(
    cfg: &ControlPlaneConfig,
    td: &TrustDomain,
    service: &ServiceConfig,
) -> Result<(Credentials, WorkloadKey), String> {
    let expected = td
        .service_account(&service.namespace, &service.name)
        .map_err(|e| format!("service: {e}"))?;
    let files = state_files(&cfg.state_dir, td);
    if files.cert.exists() {
        match identity::load(&files) {
            Ok((c, key)) if c.svid.id() == &expected => {
                tracing::info!(serial = %c.svid.serial(), "using the SVID kept in the state directory");
                return Ok((c, key));
            }
            Ok((c, _)) => {
                tracing::warn!(found = %c.svid.id(), %expected, "the kept SVID is for another identity; joining again")
            }
            Err(e) => tracing::warn!(error = %e, "the kept SVID is not usable; joining again"),
        }
    }
    let token = join_token(cfg)?.ok_or_else(|| {
        format!(
            "no valid SVID in `{}` and no join token: create one with `meshctl token create --spiffe-id {expected}` and pass --join-token",
            cfg.state_dir.display()
        )
    })?;
    let ca = std::fs::read_to_string(&cfg.ca)
        .map_err(|e| format!("control_plane.ca `{}`: {e}", cfg.ca.display()))?;
    let bootstrap = TrustBundle::from_pem(td.clone(), &ca)
        .map_err(|e| format!("control_plane.ca `{}`: {e}", cfg.ca.display()))?;
    let channel = channel(
        &cfg.address,
        tls(shared_bundle(bootstrap), td, Arc::new(SvidResolver::new()))?,
    )?;
    let key = WorkloadKey::generate().map_err(|e| e.to_string())?;
    let csr = key.csr(&expected).map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + JOIN_PATIENCE;
    let mut backoff = control_backoff();
    let response = loop {
        let request = pb::IssueRequest {
            join_token: token.clone(),
            csr: csr.as_ref().to_vec(),
            ttl_seconds: 0,
        };
        let mut client = limited!(pb::identity_client::IdentityClient::new(channel.clone()));
        match timed(client.issue(request)).await {
            Ok(r) => break r,
            Err(s) if retryable(&s) && tokio::time::Instant::now() + backoff.step() < deadline => {
                tracing::warn!(error = %status_text(&s), "control plane not reachable yet; retrying");
                tokio::time::sleep(backoff.pause()).await;
            }
            Err(s) => {
                return Err(format!(
                    "joining the control plane at {}: {}",
                    cfg.address,
                    status_text(&s)
                ));
            }
        }
    };
    let c = credentials(response, td, &expected)?;
    persist(&cfg.state_dir, td, &c, &key)?;
    tracing::info!(spiffe_id = %c.svid.id(), serial = %c.svid.serial(), "joined the control plane");
    Ok((c, key))
}

/// The configuration saved by the last run, if any.
pub fn saved_config(state_dir: &Path) -> Option<pb::ProxyConfig> {
    let bytes = std::fs::read(config_file(state_dir)).ok()?;
    pb::ProxyConfig::decode(bytes.as_slice()).ok()
}

/// Whether `now` differs from what `last` holds; remembers `now` if so.
fn changed<T: PartialEq + Clone>(last: &Mutex<Option<T>>, now: Option<&T>) -> bool {
    let mut last = last
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.as_ref() == now {
        return false;
    }
    *last = now.cloned();
    true
}

/// A policy slice as the control plane sent it, converted and validated.
fn slice_bundle(p: &pb::PolicySlice) -> Result<PolicyBundle, String> {
    let slice = convert::Slice::try_from(p).map_err(|e| e.to_string())?;
    PolicyBundle::from_sources(&slice.sources)
        .map(|b| b.with_version(slice.version))
        .map_err(|e| e.to_string())
}

/// The running link: applies what the control plane sends.
#[derive(Debug)]
pub struct Link {
    cfg: ControlPlaneConfig,
    td: TrustDomain,
    proxy: Arc<Proxy>,
    upstreams: Vec<Arc<Upstream>>,
    /// Replaced after each renewal so new connections present the new SVID.
    channel: ArcSwap<Channel>,
    instance: String,
    advertise: SocketAddr,
    /// The app's address announced to intercepting callers.
    service_address: Option<SocketAddr>,
    last_deny: Mutex<Option<pb::DenyList>>,
    last_policies: Mutex<Option<pb::PolicySlice>>,
    last_shadow: Mutex<Option<pb::PolicySlice>>,
    last_authn: Mutex<Option<pb::Authn>>,
    last_attestation: Mutex<Option<pb::WorkloadAttestation>>,
    last_traffic: Mutex<Option<pb::TrafficSlice>>,
    /// Told when a change was applied: the next heartbeat goes at once, so the control plane
    /// learns quickly what this proxy enforces.
    applied: tokio::sync::Notify,
    /// What is kept on disk: the last configuration with the last trust update in it.
    kept: Mutex<pb::ProxyConfig>,
}

impl Link {
    /// The link for `proxy` and its `upstreams`.
    pub fn new(
        cfg: ControlPlaneConfig,
        td: TrustDomain,
        proxy: Arc<Proxy>,
        upstreams: Vec<Arc<Upstream>>,
    ) -> Result<Arc<Self>, String> {
        let advertise = cfg.advertise.unwrap_or(proxy.config.inbound.listen);
        if advertise.ip().is_unspecified() {
            return Err(format!(
                "inbound.listen is {advertise}: set control_plane.advertise to the address other proxies reach it at"
            ));
        }
        let service_address = cfg.service_address.or_else(|| {
            proxy
                .config
                .interception
                .as_ref()
                .map(|_| SocketAddr::new(advertise.ip(), proxy.config.inbound.app.port()))
        });
        if let Some(address) = service_address
            && address.ip() != advertise.ip()
        {
            return Err(format!(
                "control_plane.service_address {address} is not on the advertised host {}",
                advertise.ip()
            ));
        }
        let mut instance = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut instance)
            .map_err(|_| "no secure random source".to_owned())?;
        let channel = Self::channel_for(&cfg, &td, &proxy)?;
        proxy
            .metrics
            .control_plane
            .enabled
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(Arc::new(Self {
            instance: instance.iter().map(|b| format!("{b:02x}")).collect(),
            channel: ArcSwap::from_pointee(channel),
            advertise,
            service_address,
            cfg,
            td,
            proxy,
            upstreams,
            last_deny: Mutex::new(None),
            last_policies: Mutex::new(None),
            last_shadow: Mutex::new(None),
            last_authn: Mutex::new(None),
            last_attestation: Mutex::new(None),
            last_traffic: Mutex::new(None),
            applied: tokio::sync::Notify::new(),
            kept: Mutex::new(pb::ProxyConfig::default()),
        }))
    }

    fn channel_for(
        cfg: &ControlPlaneConfig,
        td: &TrustDomain,
        proxy: &Proxy,
    ) -> Result<Channel, String> {
        channel(
            &cfg.address,
            tls(
                proxy.identity.bundle.clone(),
                td,
                proxy.identity.resolver.clone(),
            )?,
        )
    }

    fn channel(&self) -> Channel {
        Channel::clone(&self.channel.load())
    }

    fn failed(&self, call: &str, status: &tonic::Status) {
        self.proxy.metrics.control_plane.errors.inc(&[call]);
        tracing::warn!(call, error = %status_text(status), "control plane call failed");
    }

    /// Applies a trust bundle and a deny-list (from either stream). Each part converts
    /// whole or is refused (counted and logged) and the one enforced now stays.
    fn apply_trust(&self, bundle: Option<&pb::TrustBundle>, deny: Option<&pb::DenyList>) {
        let proxy = &self.proxy;
        if let Some(b) = bundle {
            match convert::trust_bundle(&self.td, b) {
                Ok(bundle) => {
                    let current = proxy.identity.bundle.load();
                    if **current != bundle {
                        proxy.identity.update_bundle(bundle);
                        tracing::info!("trust bundle updated");
                    }
                }
                Err(e) => self.refused("bundle", &e.to_string()),
            }
        }
        if let Some(deny) = deny {
            let mut last = self
                .last_deny
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.as_ref() != Some(deny) {
                match convert::Deny::try_from(deny) {
                    Ok(list) => {
                        proxy.identity.deny(list.ids, list.serials);
                        *last = Some(deny.clone());
                        tracing::info!(
                            ids = deny.spiffe_ids.len(),
                            serials = deny.serials.len(),
                            "deny-list updated"
                        );
                    }
                    Err(e) => self.refused("deny", &e.to_string()),
                }
            }
        }
    }

    /// Applies one configuration: policies, callers, upstreams. A part that does not
    /// convert or validate is refused (counted and logged); the rest still applies.
    pub fn apply(&self, config: &pb::ProxyConfig) {
        let proxy = &self.proxy;
        self.apply_trust(config.bundle.as_ref(), config.deny.as_ref());
        if let Some(p) = &config.policies
            && changed(&self.last_policies, Some(p))
        {
            match slice_bundle(p) {
                Ok(bundle) => {
                    proxy.enforce(&bundle);
                    proxy.metrics.reloads.inc(&["policy"]);
                    tracing::info!(version = p.version, "policies applied");
                }
                Err(e) => self.refused("policy", &e),
            }
        }
        if changed(&self.last_shadow, config.shadow.as_ref()) {
            match config.shadow.as_ref().map(slice_bundle).transpose() {
                Ok(candidate) => {
                    proxy.run_shadow(candidate.as_ref());
                    proxy.metrics.reloads.inc(&["shadow"]);
                    match &config.shadow {
                        Some(c) => {
                            tracing::info!(candidate = c.version, "shadow candidate running")
                        }
                        None => tracing::info!("shadow mode off"),
                    }
                }
                Err(e) => self.refused("shadow", &e),
            }
        }
        if changed(&self.last_traffic, config.traffic.as_ref()) {
            let loaded = match &config.traffic {
                Some(slice) => {
                    signet_traffic::load(&slice.document, "traffic from the control plane")
                        .map(|doc| (doc, slice.version))
                        .map_err(|e| e.to_string())
                }
                None => Ok((signet_traffic::TrafficDoc::default(), 0)),
            };
            match loaded {
                Ok((doc, version)) => {
                    let changed = proxy.apply_traffic(&doc, version);
                    proxy.metrics.reloads.inc(&["traffic"]);
                    tracing::info!(version, ?changed, "traffic settings applied");
                }
                Err(e) => self.refused("traffic", &e),
            }
        }
        if changed(&self.last_authn, config.authn.as_ref()) {
            match convert::authn(config.authn.as_ref()) {
                Ok(authn) => {
                    let authn = authn.unwrap_or_default();
                    tracing::info!(
                        providers = ?authn.providers().collect::<Vec<_>>(),
                        required = authn.required(),
                        "end-user authentication updated"
                    );
                    proxy.authn.store(Arc::new(authn));
                    proxy.metrics.reloads.inc(&["authn"]);
                }
                Err(e) => self.refused("authn", &e.to_string()),
            }
        }
        if changed(&self.last_attestation, config.attestation.as_ref()) {
            self.apply_attestation(config.attestation.as_ref());
        }
        match (
            convert::directory(&config.workloads).map(|d| d.with_trust_domain(self.td.clone())),
            convert::labels(&config.labels),
        ) {
            (Ok(directory), Ok(labels)) => {
                let current = proxy.callers.load();
                if current.directory != directory || current.labels != labels {
                    tracing::info!(workloads = directory.len(), ?labels, "callers updated");
                    proxy.callers.store(Arc::new(Callers { directory, labels }));
                }
            }
            (Err(e), _) | (_, Err(e)) => self.refused("workloads", &e.to_string()),
        }
        for upstream in self.upstreams.iter().filter(|u| !u.is_federated()) {
            let Some((index, u)) = config
                .upstreams
                .iter()
                .enumerate()
                .find(|(_, u)| u.service == upstream.service())
            else {
                continue;
            };
            let update = convert::endpoints(index, u)
                .map_err(|e| e.to_string())
                .and_then(|e| {
                    if upstream.set_registered_addresses(&e.addresses) {
                        tracing::info!(
                            service = %u.service,
                            addresses = ?upstream.addresses(),
                            "upstream addresses updated"
                        );
                    }
                    let weighted = e
                        .endpoints
                        .iter()
                        .zip(&e.weights)
                        .zip(e.labels)
                        .map(|((addr, weight), labels)| WeightedAddr {
                            addr: *addr,
                            weight: *weight,
                            labels: std::sync::Arc::new(labels),
                        })
                        .collect();
                    upstream.update(weighted, e.identities, proxy)
                });
            match update {
                Ok(true) => {
                    tracing::info!(service = %u.service, endpoints = ?u.endpoints, "upstream updated")
                }
                Ok(false) => {}
                Err(e) => self.refused("upstream", &e),
            }
        }
        proxy
            .metrics
            .control_plane
            .config_version
            .store(config.version, std::sync::atomic::Ordering::Relaxed);
        self.applied.notify_one();
    }

    /// Takes in the Workload API selectors operators set (none: the configuration's again).
    fn apply_attestation(&self, attestation: Option<&pb::WorkloadAttestation>) {
        let Some(attestation) = attestation else {
            self.proxy.attestation.store(None);
            tracing::info!("Workload API selectors: this proxy's configuration's");
            return;
        };
        let parsed: Result<Vec<_>, String> = attestation
            .selectors
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<crate::workload_api::attest::Selector>()
                    .map_err(|e| format!("attestation.selectors[{i}]: {e}"))
            })
            .collect();
        match parsed {
            Ok(selectors) if !selectors.is_empty() => {
                tracing::info!(selectors = ?attestation.selectors, "Workload API selectors set by the control plane");
                self.proxy.attestation.store(Some(Arc::new(selectors)));
                self.proxy.metrics.reloads.inc(&["attestation"]);
            }
            Ok(_) => self.refused("attestation", "attestation.selectors: none"),
            Err(e) => self.refused("attestation", &e),
        }
    }

    fn refused(&self, part: &str, why: &str) {
        self.proxy.metrics.reload_failures.inc(&[part]);
        tracing::warn!(
            part,
            error = why,
            "configuration refused; keeping the previous one"
        );
    }

    /// Follows a server stream until shutdown: opens it with `open`, hands each message to
    /// `on_message`, and reopens it with capped backoff when it ends or fails (`call` names
    /// it in metrics and logs). `first` is told once the first message has been handled;
    /// `up`, if given, says whether the stream is up.
    async fn follow<T, F, Fut>(
        &self,
        call: &str,
        mut open: F,
        mut on_message: impl FnMut(T),
        first: tokio::sync::oneshot::Sender<()>,
        up: Option<&std::sync::atomic::AtomicBool>,
    ) where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Streaming<T>, tonic::Status>>,
    {
        let mut first = Some(first);
        let cp = &self.proxy.metrics.control_plane;
        let mut backoff = control_backoff();
        loop {
            match open(self.channel()).await {
                Ok(mut stream) => loop {
                    let next = tokio::select! {
                        next = stream.message() => next,
                        () = self.proxy.draining() => return,
                    };
                    match next {
                        Ok(Some(message)) => {
                            if let Some(up) = up {
                                up.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                            cp.contact();
                            backoff.reset();
                            on_message(message);
                            if let Some(tx) = first.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(None) => break,
                        Err(s) => {
                            self.failed(call, &s);
                            break;
                        }
                    }
                },
                Err(s) => self.failed(call, &s),
            }
            if let Some(up) = up {
                up.store(false, std::sync::atomic::Ordering::Relaxed);
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.pause()) => {}
                () = self.proxy.draining() => return,
            }
        }
    }

    /// Follows the config stream until shutdown; `first` is told when the first
    /// configuration has been applied.
    pub async fn watch(self: Arc<Self>, first: tokio::sync::oneshot::Sender<()>) {
        // A federated domain's services are not this control plane's to describe.
        let upstreams: Vec<String> = self
            .upstreams
            .iter()
            .filter(|u| !u.is_federated())
            .map(|u| u.service().to_owned())
            .collect();
        let open = |channel: Channel| {
            let request = pb::WatchRequest {
                upstreams: upstreams.clone(),
            };
            async move {
                let mut client = limited!(pb::config_client::ConfigClient::new(channel));
                timed(client.watch(request)).await
            }
        };
        let on_config = |config: pb::ProxyConfig| {
            self.apply(&config);
            self.keep(Some(config), None);
        };
        let up = &self.proxy.metrics.control_plane.connected;
        self.follow("watch", open, on_config, first, Some(up)).await;
    }

    /// Follows the trust stream (bundle and deny-list) until shutdown; `first` is told when
    /// the first update has been applied. A stream of its own, so a revocation reaches the
    /// proxy whatever happens to the policy stream.
    pub async fn watch_trust(self: Arc<Self>, first: tokio::sync::oneshot::Sender<()>) {
        let open = |channel: Channel| async move {
            let mut client = limited!(pb::config_client::ConfigClient::new(channel));
            timed(client.watch_trust(pb::WatchTrustRequest {})).await
        };
        let on_update = |update: pb::TrustUpdate| {
            self.apply_trust(update.bundle.as_ref(), update.deny.as_ref());
            self.proxy
                .metrics
                .control_plane
                .trust_version
                .store(update.version, std::sync::atomic::Ordering::Relaxed);
            self.applied.notify_one();
            self.keep(None, Some(update));
        };
        self.follow("watch_trust", open, on_update, first, None)
            .await;
    }

    /// Keeps the newest configuration and trust update on disk as one `ProxyConfig`, so a
    /// restart without the control plane enforces both.
    fn keep(&self, config: Option<pb::ProxyConfig>, trust: Option<pb::TrustUpdate>) {
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(config) = config {
            let (bundle, deny) = (kept.bundle.take(), kept.deny.take());
            *kept = config;
            kept.bundle = kept.bundle.take().or(bundle);
            kept.deny = kept.deny.take().or(deny);
        }
        if let Some(trust) = trust {
            kept.bundle = trust.bundle;
            kept.deny = trust.deny;
        }
        // Until the first configuration arrives there is nothing whole to keep: a file with
        // a trust update alone would restart the proxy without its policies.
        if kept.policies.is_none() {
            return;
        }
        if let Err(e) = write_private(&config_file(&self.cfg.state_dir), &kept.encode_to_vec()) {
            tracing::warn!(error = %e, "could not keep the configuration");
        }
    }

    /// Registers the inbound endpoint and heartbeats until shutdown.
    pub async fn register(self: Arc<Self>) {
        let mut backoff = control_backoff();
        loop {
            let mut client = limited!(pb::registry_client::RegistryClient::new(self.channel()));
            let request = pb::RegisterRequest {
                instance: self.instance.clone(),
                service: self.proxy.config.service.name.clone(),
                namespace: self.proxy.config.service.namespace.clone(),
                endpoint: self.advertise.to_string(),
                service_address: self
                    .service_address
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                weight: self.cfg.weight,
                labels: self
                    .cfg
                    .endpoint_labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                admin: self.proxy.config.admin.listen.to_string(),
                config_version: self
                    .proxy
                    .metrics
                    .control_plane
                    .config_version
                    .load(std::sync::atomic::Ordering::Relaxed),
                policy_version: self
                    .proxy
                    .metrics
                    .policy_version
                    .load(std::sync::atomic::Ordering::Relaxed),
                trust_version: self
                    .proxy
                    .metrics
                    .control_plane
                    .trust_version
                    .load(std::sync::atomic::Ordering::Relaxed),
                shadow_version: self
                    .proxy
                    .metrics
                    .shadow_version
                    .load(std::sync::atomic::Ordering::Relaxed),
                traffic_version: self
                    .proxy
                    .metrics
                    .traffic_version
                    .load(std::sync::atomic::Ordering::Relaxed),
                app_health: app_health(&self.proxy) as i32,
            };
            let interval = match timed(client.register(request)).await {
                Ok(r) => {
                    self.proxy.metrics.control_plane.contact();
                    backoff.reset();
                    Duration::from_secs(u64::from(r.heartbeat_interval_seconds.max(1)))
                }
                Err(s) => {
                    self.failed("register", &s);
                    tokio::select! {
                        () = tokio::time::sleep(backoff.pause()) => {}
                        () = self.proxy.draining() => return,
                    }
                    continue;
                }
            };
            loop {
                // A change just applied is reported at once; otherwise every interval.
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = self.applied.notified() => {}
                    () = self.proxy.health.changed.notified() => {}
                    () = self.proxy.draining() => return,
                }
                let metrics = &self.proxy.metrics;
                let request = pb::HeartbeatRequest {
                    instance: self.instance.clone(),
                    config_version: metrics
                        .control_plane
                        .config_version
                        .load(std::sync::atomic::Ordering::Relaxed),
                    policy_version: metrics
                        .policy_version
                        .load(std::sync::atomic::Ordering::Relaxed),
                    trust_version: metrics
                        .control_plane
                        .trust_version
                        .load(std::sync::atomic::Ordering::Relaxed),
                    shadow_version: metrics
                        .shadow_version
                        .load(std::sync::atomic::Ordering::Relaxed),
                    traffic_version: metrics
                        .traffic_version
                        .load(std::sync::atomic::Ordering::Relaxed),
                    app_health: app_health(&self.proxy) as i32,
                    endpoints: endpoint_states(&self.proxy),
                    stats: traffic_stats(&self.proxy),
                    serial: self
                        .proxy
                        .identity
                        .current
                        .borrow()
                        .svid
                        .serial()
                        .to_string(),
                };
                let mut client = limited!(pb::registry_client::RegistryClient::new(self.channel()));
                match timed(client.heartbeat(request)).await {
                    Ok(_) => metrics.control_plane.contact(),
                    Err(s) if s.code() == tonic::Code::NotFound => break,
                    Err(s) => self.failed("heartbeat", &s),
                }
            }
        }
    }

    /// Ships the audit spool in `dir` to the control plane until shutdown: every second,
    /// whatever complete lines lie past the cursor (`dir/shipped.cursor`, advanced only once
    /// the control plane acknowledged them), so an outage delays records but loses none.
    pub async fn ship(self: Arc<Self>, dir: PathBuf) {
        let cursor_path = dir.join("shipped.cursor");
        let mut cursor = read_cursor(&cursor_path);
        let mut backoff = control_backoff();
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = self.proxy.draining() => return,
            }
            loop {
                let (lines, next) = match read_batch(&dir, &cursor) {
                    Ok(batch) => batch,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the audit spool to ship it");
                        break;
                    }
                };
                if lines.is_empty() {
                    cursor = next;
                    break;
                }
                let mut client = limited!(pb::audit_client::AuditClient::new(self.channel()));
                match timed(client.ship(pb::ShipRequest { lines })).await {
                    Ok(_) => {
                        self.proxy.metrics.control_plane.contact();
                        cursor = next;
                        backoff.reset();
                        let text = format!("{}\n{}\n", cursor.0, cursor.1);
                        if let Err(e) = write_private(&cursor_path, text.as_bytes()) {
                            tracing::warn!(error = %e, "keeping the audit cursor");
                        }
                    }
                    Err(s) => {
                        self.failed("ship", &s);
                        tokio::select! {
                            () = tokio::time::sleep(backoff.pause()) => {}
                            () = self.proxy.draining() => return,
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Renews the SVID at its refresh time until shutdown.
    pub async fn renew(self: Arc<Self>) {
        loop {
            let (refresh_at, not_after, id) = {
                let c = self.proxy.identity.current.borrow();
                (c.svid.refresh_at(), c.svid.not_after(), c.svid.id().clone())
            };
            let wait = renewal_wait(refresh_at, not_after, SystemTime::now());
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.proxy.draining() => return,
            }
            let mut backoff = control_backoff();
            loop {
                match self.renew_once(&id).await {
                    Ok(()) => break,
                    Err(e) => {
                        self.proxy.metrics.control_plane.errors.inc(&["renew"]);
                        tracing::warn!(error = %e, "renewing the SVID failed; retrying");
                    }
                }
                // Never wait past the expiry by more than a backoff step.
                let left = not_after
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                let pause = backoff.pause().min(left.max(BACKOFF_START));
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = self.proxy.draining() => return,
                }
            }
        }
    }

    async fn renew_once(&self, id: &SpiffeId) -> Result<(), String> {
        let key = WorkloadKey::generate().map_err(|e| e.to_string())?;
        let csr = key.csr(id).map_err(|e| e.to_string())?;
        let mut client = limited!(pb::identity_client::IdentityClient::new(self.channel()));
        let response = timed(client.renew(pb::RenewRequest {
            csr: csr.as_ref().to_vec(),
            ttl_seconds: 0,
        }))
        .await
        .map_err(|s| status_text(&s))?;
        let c = credentials(response, &self.td, id)?;
        persist(&self.cfg.state_dir, &self.td, &c, &key)?;
        tracing::info!(serial = %c.svid.serial(), not_after = ?c.svid.not_after(), "SVID renewed");
        self.proxy.rotate(c, &key)?;
        self.proxy.metrics.control_plane.contact();
        // New connections present the new SVID; the old channel closes once unused.
        match Self::channel_for(&self.cfg, &self.td, &self.proxy) {
            Ok(ch) => self.channel.store(Arc::new(ch)),
            Err(e) => tracing::warn!(error = %e, "could not rebuild the control-plane channel"),
        }
        Ok(())
    }
}

impl crate::workload_api::jwt::JwtSource for Link {
    fn mint(
        &self,
        audience: Vec<String>,
    ) -> crate::workload_api::jwt::BoxFuture<
        '_,
        Result<crate::workload_api::jwt::Minted, tonic::Status>,
    > {
        Box::pin(async move {
            let mut client = limited!(pb::identity_client::IdentityClient::new(self.channel()));
            let response = timed(client.mint_jwt_svid(pb::MintJwtSvidRequest {
                audience,
                ttl_seconds: 0,
            }))
            .await
            .inspect_err(|s| self.failed("mint_jwt_svid", s))?;
            self.proxy.metrics.control_plane.contact();
            Ok(crate::workload_api::jwt::Minted {
                spiffe_id: response.spiffe_id,
                token: response.token,
                expires: SystemTime::UNIX_EPOCH + Duration::from_secs(response.expires_at),
            })
        })
    }
}

/// Where shipping has got to: a segment file name and a byte offset in it.
type Cursor = (String, u64);

/// Most lines and bytes per shipped batch.
const SHIP_LINES: usize = 1024;
const SHIP_BYTES: usize = 1024 * 1024;

fn read_cursor(path: &Path) -> Cursor {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            let mut lines = text.lines();
            Some((lines.next()?.to_owned(), lines.next()?.parse().ok()?))
        })
        .unwrap_or_default()
}

/// How long to wait before renewing an SVID due at `refresh_at` (half its validity, with
/// jitter), but never less than a quarter of the time it has left: an SVID whose validity
/// starts before its issuance (the CA backdates for clock skew) by more than half its
/// lifetime, as a 6 s SVID backdated 10 s does, is due the moment it arrives, and renewing
/// at once would renew again and again.
fn renewal_wait(refresh_at: SystemTime, not_after: SystemTime, now: SystemTime) -> Duration {
    let due = refresh_at.duration_since(now).unwrap_or(Duration::ZERO);
    let left = not_after.duration_since(now).unwrap_or(Duration::ZERO);
    due.max(left / 4)
}

/// The complete lines past `cursor` (at most a batch), and the cursor after them.
fn read_batch(dir: &Path, cursor: &Cursor) -> std::io::Result<(Vec<Vec<u8>>, Cursor)> {
    use std::io::{Read as _, Seek as _};
    let files = signet_audit::spool::segment_files(dir)?;
    let name = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    // The cursor's file, or the first one after it (an evicted file's records are declared
    // lost by a gap record in the chain itself), in the spool's order, not the names'.
    let order = |n: &str| signet_audit::spool::segment_order(n).unwrap_or((0, 0));
    let at_cursor = order(&cursor.0);
    let Some(start) = files.iter().position(|f| order(&name(f)) >= at_cursor) else {
        return Ok((Vec::new(), cursor.clone()));
    };
    let mut lines = Vec::new();
    let mut bytes = 0;
    let mut at = cursor.clone();
    for (i, file) in files.iter().enumerate().skip(start) {
        let offset = if name(file) == cursor.0 { cursor.1 } else { 0 };
        let mut f = std::fs::File::open(file)?;
        f.seek(std::io::SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        f.take((SHIP_BYTES - bytes) as u64 + 1)
            .read_to_end(&mut buf)?;
        let mut consumed = 0;
        for line in buf.split_inclusive(|b| *b == b'\n') {
            if !line.ends_with(b"\n")
                || lines.len() == SHIP_LINES
                || bytes + line.len() > SHIP_BYTES
            {
                break;
            }
            consumed += line.len();
            bytes += line.len();
            let content = &line[..line.len() - 1];
            if !content.is_empty() {
                lines.push(content.to_vec());
            }
        }
        at = (name(file), offset + consumed as u64);
        let at_end = offset + consumed as u64 >= std::fs::metadata(file)?.len();
        if !at_end || i + 1 == files.len() || lines.len() == SHIP_LINES {
            break;
        }
    }
    Ok((lines, at))
}

/// The app's health as the control plane's registry takes it.
fn app_health(proxy: &Proxy) -> pb::AppHealth {
    match proxy.health.state() {
        crate::health::State::Unknown => pb::AppHealth::Unknown,
        crate::health::State::Healthy => pb::AppHealth::Healthy,
        crate::health::State::Unhealthy => pb::AppHealth::Unhealthy,
    }
}

/// Most endpoint states one heartbeat carries.
/// Most golden-signal series one heartbeat carries (the control plane keeps no more).
const MAX_STATS: usize = 256;

/// The golden signals of HTTP requests, for `meshctl stats`.
fn traffic_stats(proxy: &Proxy) -> Vec<pb::TrafficStats> {
    proxy
        .telemetry
        .golden
        .http
        .snapshot()
        .into_iter()
        .take(MAX_STATS)
        .filter_map(|s| {
            let [direction, peer, route, class] = <[String; 4]>::try_from(s.labels).ok()?;
            Some(pb::TrafficStats {
                direction,
                peer,
                route,
                class,
                count: s.count,
                buckets: s.buckets,
                sum_seconds: s.sum_seconds,
                request_bytes: s.bytes[0],
                response_bytes: s.bytes[1],
            })
        })
        .collect()
}

const MAX_ENDPOINT_STATES: usize = 256;

/// How this proxy's balancers see their endpoints now.
fn endpoint_states(proxy: &Proxy) -> Vec<pb::EndpointState> {
    let now = std::time::Instant::now();
    proxy
        .upstreams
        .get()
        .into_iter()
        .flatten()
        .flat_map(|u| {
            u.endpoints().into_iter().map(move |e| pb::EndpointState {
                service: u.service().to_owned(),
                address: e.addr.to_string(),
                ejected: e.outlier.is_ejected(now),
                ejections: e.outlier.ejections(),
                in_flight: e.outstanding(),
                latency_ewma_us: (e.latency_seconds(now) * 1e6) as u64,
                weight: e.weight(),
            })
        })
        .take(MAX_ENDPOINT_STATES)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_svid_is_never_renewed_at_once() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = Duration::from_secs;
        // One hour, half-life ahead: the half-life.
        assert_eq!(renewal_wait(now + s(1800), now + s(3600), now), s(1800));
        // 6 s backdated 10 s: due 2 s ago, waits a quarter of the 6 s left.
        assert_eq!(
            renewal_wait(now - s(2), now + s(6), now),
            Duration::from_millis(1500)
        );
        // Expired: at once.
        assert_eq!(renewal_wait(now - s(20), now - s(1), now), Duration::ZERO);
    }

    fn segment(dir: &Path, name: &str, lines: &[&str]) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn batches_follow_segments_in_the_order_they_were_made_not_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let name = |n: &str| format!("segment-00000000000000000005{n}.jsonl");
        // Made in this order; as text, `.1` sorts before the bare name and `.10` before `.2`.
        segment(dir.path(), &name(""), &["a"]);
        for n in 1..=10 {
            let lines: &[&str] = if n == 2 { &["b", "c"] } else { &[] };
            segment(dir.path(), &name(&format!(".{n}")), lines);
        }
        segment(dir.path(), &name(".11"), &["d"]);
        segment(dir.path(), "segment-00000000000000000009.jsonl", &["e"]);
        let mut cursor = Cursor::default();
        let mut shipped = Vec::new();
        for _ in 0..20 {
            let (lines, next) = read_batch(dir.path(), &cursor).unwrap();
            shipped.extend(lines.into_iter().map(|l| String::from_utf8(l).unwrap()));
            cursor = next;
        }
        assert_eq!(shipped, ["a", "b", "c", "d", "e"]);
        // A cursor in the middle of one of them resumes right there.
        let (lines, _) = read_batch(dir.path(), &(name(".2"), 2)).unwrap();
        assert_eq!(lines, [b"c".to_vec(), b"d".to_vec(), b"e".to_vec()]);
    }
}
