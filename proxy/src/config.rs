//! The proxy's configuration: one TOML file, a few flags on top, checked before anything
//! starts. Every problem is one line naming the setting.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use signet_spiffe::SpiffeId;

/// Largest configuration file read.
const MAX_CONFIG_LEN: u64 = 1024 * 1024;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The local workload's service.
    pub service: ServiceConfig,
    /// Where the SVID, its key and the trust bundle come from (files; without a control plane).
    #[serde(default)]
    pub identity: Option<IdentityConfig>,
    /// Where the policies come from (a directory; without a control plane).
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// The control plane everything else comes from: SVID, trust bundle, deny-list,
    /// policies, upstream endpoints and identities.
    #[serde(default)]
    pub control_plane: Option<ControlPlaneConfig>,
    /// Traffic from other workloads to the local app.
    pub inbound: InboundConfig,
    /// Traffic from the local app to other services, one entry per upstream.
    #[serde(default)]
    pub outbound: Vec<OutboundConfig>,
    /// The admin endpoints.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Limits and timeouts.
    #[serde(default)]
    pub limits: Limits,
    /// The audit trail of decisions.
    #[serde(default)]
    pub audit: AuditConfig,
    /// End-user JWTs verified before the policies decide.
    #[serde(default)]
    pub authn: AuthnConfig,
    /// Traffic settings for the upstreams from a file (files mode; the control plane sends
    /// them otherwise).
    #[serde(default)]
    pub traffic: Option<TrafficConfig>,
    /// Spans over OTLP.
    #[serde(default)]
    pub tracing: Option<signet_otel::config::TracingConfig>,
    /// One line per request.
    #[serde(default)]
    pub access_log: Option<crate::telemetry::config::AccessLogConfig>,
    /// The app's outbound TCP, redirected to the proxy by `signet-proxy init`.
    #[serde(default)]
    pub interception: Option<InterceptionConfig>,
    /// The SPIFFE Workload API for the local workload.
    #[serde(default)]
    pub workload_api: Option<WorkloadApiConfig>,
}

/// The SPIFFE Workload API on a Unix socket: the workload's own SVID, key and bundles for
/// any SPIFFE library, answered only to processes matching every selector.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadApiConfig {
    /// The socket (absolute path; its directory must exist). Apps find it through
    /// `SPIFFE_ENDPOINT_SOCKET=unix://<socket>`.
    pub socket: PathBuf,
    /// What a caller must be, every one of them: `unix:uid:N`, `unix:gid:N`,
    /// `unix:path:/absolute/executable`. Selectors operators set on the control plane
    /// (`meshctl workload attest`) replace these; with a control plane they may be left
    /// empty (nobody is answered until operators set some).
    #[serde(default)]
    pub selectors: Vec<String>,
}

impl WorkloadApiConfig {
    /// The parsed selectors.
    pub fn parsed(&self) -> Result<Vec<crate::workload_api::attest::Selector>, String> {
        self.selectors
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|e| format!("workload_api.selectors: {e}"))
            })
            .collect()
    }
}

/// Transparent interception: the rules `signet-proxy init` installs send the app's outbound
/// connections here; each is carried to the upstream whose address it was dialed at.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterceptionConfig {
    /// Where the rules send the app's outbound connections (a loopback address: the rules
    /// redirect to 127.0.0.1 or ::1).
    #[serde(default = "default_interception_listen")]
    pub listen: SocketAddr,
    /// A connection to an address no upstream answers for: `passthrough` (carried as plain
    /// TCP to where it was going) or `refuse` (closed).
    #[serde(default)]
    pub unknown_destinations: UnknownDestinations,
}

fn default_interception_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 15001))
}

/// What an intercepted connection to an address outside the mesh gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownDestinations {
    /// Carried as plain TCP to the address it was dialed at.
    #[default]
    Passthrough,
    /// Closed at once (counted).
    Refuse,
}

/// A traffic document (`meshctl traffic` format) read from a file and re-read when it changes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficConfig {
    /// The document (YAML or JSON).
    pub file: PathBuf,
}

/// End-user authentication: the JWT providers whose tokens this service accepts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthnConfig {
    /// Refuse (401) a request without a token; by default one without a token goes on
    /// with no `context.user`, and only an invalid token is refused.
    #[serde(default)]
    pub required: bool,
    /// Largest token accepted, in bytes.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
}

impl Default for AuthnConfig {
    fn default() -> Self {
        Self {
            required: false,
            max_token_bytes: default_max_token_bytes(),
            clock_skew_seconds: default_clock_skew(),
            providers: Vec::new(),
        }
    }
}

fn default_max_token_bytes() -> usize {
    crate::authn::DEFAULT_MAX_TOKEN_BYTES
}

fn default_clock_skew() -> u64 {
    60
}

/// One JWT provider.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// Accepted `aud` values (a token must name one).
    pub audiences: Vec<String>,
    /// Its public keys, a JWKS file (each key with a `kid`).
    pub jwks_file: PathBuf,
    /// The header the token comes in.
    #[serde(default = "default_token_header")]
    pub header: String,
    /// What precedes the token in it.
    #[serde(default = "default_token_prefix")]
    pub prefix: String,
    /// Algorithms its tokens may use: `ES256`, `RS256`, `EdDSA` (default: all three).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
}

fn default_token_header() -> String {
    "authorization".to_owned()
}

fn default_token_prefix() -> String {
    "Bearer ".to_owned()
}

fn default_algorithms() -> Vec<String> {
    ["ES256", "RS256", "EdDSA"].map(str::to_owned).to_vec()
}

impl AuthnConfig {
    /// The verifier: each provider's JWKS read and checked.
    pub fn build(&self) -> Result<crate::authn::Authn, String> {
        let mut providers = Vec::new();
        for (n, p) in self.providers.iter().enumerate() {
            let jwks = std::fs::read_to_string(&p.jwks_file).map_err(|e| {
                format!(
                    "authn.providers[{n}].jwks_file `{}`: {e}",
                    p.jwks_file.display()
                )
            })?;
            let spec = crate::authn::ProviderSpec {
                name: p.name.clone(),
                issuer: p.issuer.clone(),
                audiences: p.audiences.clone(),
                jwks,
                header: p.header.to_ascii_lowercase(),
                prefix: p.prefix.clone(),
                algorithms: p.algorithms.clone(),
                skew: Duration::from_secs(self.clock_skew_seconds),
            };
            providers.push(
                crate::authn::Provider::new(&spec)
                    .map_err(|e| format!("authn.providers[{n}]: {e}"))?,
            );
        }
        if self.required && providers.is_empty() {
            return Err("authn.required needs at least one provider".to_owned());
        }
        Ok(crate::authn::Authn::new(
            providers,
            self.required,
            self.max_token_bytes,
        ))
    }
}

/// The audit trail: where the signed spool lives and how allows are sampled.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Record decisions at all (default: yes when there is a directory for the spool).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The spool directory; default `<control_plane.state_dir>/audit`. Without a control
    /// plane there is no default: no directory, no audit.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Record one allowed request in this many (connections and denials: always all).
    #[serde(default = "one")]
    pub sample_allows: u32,
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            sample_allows: 1,
        }
    }
}

impl Config {
    /// Where the audit spool goes, if decisions are recorded.
    pub fn audit_dir(&self) -> Option<PathBuf> {
        if !self.audit.enabled {
            return None;
        }
        self.audit.dir.clone().or_else(|| {
            self.control_plane
                .as_ref()
                .map(|cp| cp.state_dir.join("audit"))
        })
    }
}

/// The local workload's service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Mesh-unique name (the Cedar `Mesh::Service`).
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Labels policies can read as tags.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Identity from files, re-read when they change.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The SVID: leaf first, then intermediates (PEM).
    pub cert: PathBuf,
    /// Its PKCS#8 private key (PEM).
    pub key: PathBuf,
    /// The trust bundle's roots (PEM).
    pub bundle: PathBuf,
    /// The trust domain; default: the SVID's.
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// A deny-list file (JSON `{"ids": [...], "serials": [...]}`), re-read when it changes.
    #[serde(default)]
    pub deny_list: Option<PathBuf>,
}

/// The control plane, and what the proxy keeps of it on disk.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// Its gRPC address (`host:port`).
    pub address: String,
    /// Roots its certificate chains to (PEM): the trust bundle `signet-cp` writes to its data
    /// directory. Trusted only until the proxy has the control plane's own bundle.
    pub ca: PathBuf,
    /// The mesh's trust domain.
    pub trust_domain: String,
    /// A one-time join token, or `@file` to read it from; needed only until the proxy has an
    /// SVID in `state_dir`.
    #[serde(default, skip_serializing)]
    pub join_token: Option<String>,
    /// Where the SVID, its key (0600), the bundle and the last configuration are kept, so a
    /// restart renews instead of re-joining and serves the last configuration if the control
    /// plane is away.
    pub state_dir: PathBuf,
    /// The address other proxies reach the inbound listener at (default: `inbound.listen`).
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    /// This endpoint's weight in its callers' balancers, registered with it: 1 to 10,000,
    /// default 100 (a machine with twice the capacity of its peers says 200).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// This endpoint's labels, registered with it (`version = "v2"`): what the traffic
    /// settings' subsets select by. At most 16.
    #[serde(default)]
    pub endpoint_labels: signet_traffic::labels::Labels,
    /// The address clients outside the mesh dial for the local app (host:port on the
    /// advertised host), registered so that intercepting callers map it to this service.
    /// Default with `[interception]`: the advertised IP and `inbound.app`'s port; without:
    /// none.
    #[serde(default)]
    pub service_address: Option<SocketAddr>,
}

fn default_weight() -> u32 {
    signet_traffic::weight::DEFAULT
}

/// Policies from a directory of `.cedar` files, re-read when they change.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The directory.
    pub dir: PathBuf,
    /// Shadow mode: a directory of candidate `.cedar` files decided with beside `dir` and
    /// never acted on; disagreements are counted and audited. Re-read when it changes; no
    /// `.cedar` file in it (or no directory) turns shadow mode off.
    #[serde(default)]
    pub shadow_dir: Option<PathBuf>,
}

/// How traffic is carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 or HTTP/2 (by ALPN or preface); every request is authorized.
    #[default]
    Http,
    /// Opaque bytes; only the connection is authorized.
    Tcp,
}

/// How the local app speaks HTTP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppProtocol {
    /// HTTP/1.1.
    #[default]
    Http1,
    /// HTTP/2 without TLS (prior knowledge), as gRPC servers speak it.
    Http2,
}

/// Inbound: the mTLS listener in front of the local app.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InboundConfig {
    /// Where peers connect (mTLS).
    pub listen: SocketAddr,
    /// The local app.
    pub app: SocketAddr,
    /// How traffic is carried.
    #[serde(default)]
    pub protocol: Protocol,
    /// How the app speaks HTTP.
    #[serde(default)]
    pub app_protocol: AppProtocol,
    /// The header that carries the verified peer SPIFFE ID to the app (always overwritten).
    #[serde(default = "default_identity_header")]
    pub identity_header: String,
    /// Request headers whose names hold `_`: `drop` (default), `reject` or `allow`.
    #[serde(default)]
    pub underscore_headers: crate::headers::UnderscoreHeaders,
    /// Path parameters (`/api/..;/admin`): `reject` (default) or `strip`.
    #[serde(default)]
    pub path_parameters: crate::path::PathParameters,
}

fn default_identity_header() -> String {
    "x-signet-peer-id".to_owned()
}

/// One upstream service reached through a local plain-text port.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// The upstream service's name.
    pub service: String,
    /// The local port the app sends to (plain text); none when the app reaches the upstream
    /// through `[interception]`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Addresses intercepted connections to which go to this upstream (a virtual IP, say),
    /// besides those its endpoints register.
    #[serde(default)]
    pub addresses: Vec<SocketAddr>,
    /// The upstream's endpoints (their proxies' inbound listeners), each `"host:port"` or
    /// `{ address = "host:port", weight = N }`; from the control plane when there is one.
    #[serde(default)]
    pub endpoints: Vec<crate::traffic::weighted::WeightedAddr>,
    /// The SPIFFE IDs the upstream may present; anything else is refused. From the control
    /// plane when there is one.
    #[serde(default)]
    pub identities: Vec<SpiffeId>,
    /// A service of another trust domain this mesh federates with (`meshctl federation
    /// add`): its endpoints and identities are given here, since this mesh's control plane
    /// does not know them; every identity must be of this trust domain.
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// How traffic is carried.
    #[serde(default)]
    pub protocol: Protocol,
    /// What the hop to the upstream's proxy speaks.
    #[serde(default)]
    pub upstream_http: UpstreamHttp,
}

/// What the hop between proxies speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamHttp {
    /// What the app spoke: HTTP/2 requests (gRPC) over one multiplexed HTTP/2 connection per
    /// endpoint, HTTP/1.1 requests over pooled HTTP/1.1 keep-alive connections.
    #[default]
    SameAsApp,
    /// Everything over one multiplexed HTTP/2 connection per endpoint.
    Http2,
    /// Everything over pooled HTTP/1.1 connections.
    Http1,
}

/// The admin endpoints.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where `/live`, `/ready`, `/metrics`, `/identity` and `/config` are served.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 15000)),
        }
    }
}

/// Limits and timeouts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections open at once, per listener (authenticated ones, on the inbound side).
    pub max_connections: usize,
    /// Inbound TLS handshakes in progress at once: peers not yet authenticated hold these,
    /// never the connection slots above.
    pub max_handshakes: usize,
    /// Of those, how many one source address may hold (an IPv6 source: its /64).
    pub max_handshakes_per_source: usize,
    /// Time for a TLS handshake to complete.
    #[serde(with = "signet_traffic::duration")]
    pub handshake_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    #[serde(with = "signet_traffic::duration")]
    pub idle_timeout: Duration,
    /// Time an upstream (or the app) has to answer.
    #[serde(with = "signet_traffic::duration")]
    pub request_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: u64,
    /// On SIGTERM, time given to connections in flight before they are cut.
    #[serde(with = "signet_traffic::duration")]
    pub drain_timeout: Duration,
    /// How often watched files are checked for changes.
    #[serde(with = "signet_traffic::duration")]
    pub reload_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_handshakes: 1_024,
            max_handshakes_per_source: 64,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            drain_timeout: Duration::from_secs(15),
            reload_interval: Duration::from_secs(1),
        }
    }
}

impl Limits {
    /// An HTTP/1.1 server for one connection, bounded by these limits.
    pub fn http1_server(&self) -> hyper::server::conn::http1::Builder {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.handshake_timeout)
            .max_buf_size(self.max_header_bytes.max(8192));
        builder
    }

    /// An HTTP/2 server for one connection, bounded by these limits.
    pub fn http2_server(
        &self,
    ) -> hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor> {
        let mut builder =
            hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX));
        builder
    }

    /// An HTTP/1.1 + HTTP/2 server for one connection, bounded by these limits.
    pub fn http_server(
        &self,
    ) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
        use hyper_util::rt::{TokioExecutor, TokioTimer};
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.handshake_timeout)
            .max_buf_size(self.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX));
        builder
    }
}

/// A configuration problem, one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display();
        let len = std::fs::metadata(path)
            .map_err(|e| ConfigError(format!("config `{shown}`: {e}")))?
            .len();
        if len > MAX_CONFIG_LEN {
            return Err(ConfigError(format!(
                "config `{shown}` is {len} bytes; the limit is {MAX_CONFIG_LEN}"
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("config `{shown}`: {e}")))?;
        Self::parse(
            &text,
            &shown.to_string(),
            path.parent().unwrap_or(Path::new(".")),
        )
    }

    /// Parses `text` (from the file named `shown`, whose relative paths are relative to
    /// `base`).
    pub fn parse(text: &str, shown: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map_or((1, 1), |span| {
                let before = text.get(..span.start.min(text.len())).unwrap_or(text);
                (
                    before.matches('\n').count() + 1,
                    before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
                )
            });
            ConfigError(format!(
                "config `{shown}`:{line}:{col}: {}",
                e.message().replace('\n', " ")
            ))
        })?;
        config.resolve_paths(base);
        Ok(config)
    }

    /// Relative paths in the file are relative to the file.
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(identity) = self.identity.as_mut() {
            fix(&mut identity.cert);
            fix(&mut identity.key);
            fix(&mut identity.bundle);
            if let Some(d) = identity.deny_list.as_mut() {
                fix(d);
            }
        }
        if let Some(policy) = self.policy.as_mut() {
            fix(&mut policy.dir);
        }
        if let Some(dir) = self.audit.dir.as_mut() {
            fix(dir);
        }
        if let Some(log) = self.access_log.as_mut()
            && log.path.as_os_str() != "-"
        {
            fix(&mut log.path);
        }
        if let Some(cp) = self.control_plane.as_mut() {
            fix(&mut cp.ca);
            fix(&mut cp.state_dir);
            if let Some(token) = cp.join_token.as_mut()
                && let Some(file) = token.strip_prefix('@')
                && Path::new(file).is_relative()
            {
                *token = format!("@{}", base.join(file).display());
            }
        }
    }

    /// Checks what the types cannot: files exist, listeners do not clash, lists are not empty.
    pub fn check(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        match (&self.control_plane, &self.identity, &self.policy) {
            (Some(cp), None, None) => {
                if !cp.ca.is_file() {
                    return err(format!(
                        "control_plane.ca: `{}` is not a readable file",
                        cp.ca.display()
                    ));
                }
                if cp.address.is_empty() {
                    return err("control_plane.address is empty".to_owned());
                }
                if let Err(e) = signet_spiffe::TrustDomain::new(&cp.trust_domain) {
                    return err(format!("control_plane.trust_domain: {e}"));
                }
                if let Err(e) = signet_traffic::weight::check(cp.weight) {
                    return err(format!("control_plane.weight: {e}"));
                }
                if let Err(e) = signet_traffic::labels::check(&cp.endpoint_labels) {
                    return err(format!("control_plane.endpoint_labels: {e}"));
                }
                if !self.service.labels.is_empty() {
                    return err(
                        "service.labels come from the control plane when the proxy follows one \
                         (`meshctl services label`): remove them here"
                            .to_owned(),
                    );
                }
                if self.traffic.is_some() {
                    return err(
                        "[traffic] comes from the control plane when the proxy follows one \
                         (`meshctl traffic apply`): remove it here"
                            .to_owned(),
                    );
                }
                if !self.authn.providers.is_empty() || self.authn.required {
                    return err(
                        "[authn] comes from the control plane when the proxy follows one \
                         (`meshctl authn apply`): remove it here"
                            .to_owned(),
                    );
                }
            }
            (Some(_), _, _) => {
                return err(
                    "[identity] and [policy] come from the control plane: remove them, or remove [control_plane]"
                        .to_owned(),
                );
            }
            (None, Some(identity), Some(policy)) => {
                for (what, path) in [
                    ("identity.cert", &identity.cert),
                    ("identity.key", &identity.key),
                    ("identity.bundle", &identity.bundle),
                ] {
                    if !path.is_file() {
                        return err(format!(
                            "{what}: `{}` is not a readable file",
                            path.display()
                        ));
                    }
                }
                if !policy.dir.is_dir() {
                    return err(format!(
                        "policy.dir: `{}` is not a directory",
                        policy.dir.display()
                    ));
                }
            }
            (None, _, _) => {
                return err(
                    "no source of identity: give [control_plane] (or --cp), or both [identity] and [policy]"
                        .to_owned(),
                );
            }
        }
        let mut listeners = BTreeSet::new();
        let mut claim = |what: String, addr: SocketAddr| {
            if addr.port() != 0 && !listeners.insert(addr) {
                return Err(ConfigError(format!(
                    "{what}: {addr} is already used by another listener"
                )));
            }
            Ok(())
        };
        claim("inbound.listen".to_owned(), self.inbound.listen)?;
        claim("admin.listen".to_owned(), self.admin.listen)?;
        let mut names = BTreeSet::new();
        if let Some(api) = &self.workload_api {
            if !api.socket.is_absolute() {
                return Err(ConfigError(format!(
                    "workload_api.socket `{}`: an absolute path",
                    api.socket.display()
                )));
            }
            api.parsed().map_err(ConfigError)?;
            if api.selectors.is_empty() && self.control_plane.is_none() {
                return Err(ConfigError("workload_api.selectors: at least one (e.g. \"unix:uid:1000\"); with none and no control plane to set them, no process could be answered".to_owned()));
            }
        }
        if let Some(interception) = &self.interception {
            claim("interception.listen".to_owned(), interception.listen)?;
        }
        for (n, o) in self.outbound.iter().enumerate() {
            match o.listen {
                Some(listen) => claim(format!("outbound[{n}].listen"), listen)?,
                None if self.interception.is_none() => {
                    return err(format!(
                        "outbound[{n}] ({}): no listen, and no [interception] to reach it through",
                        o.service
                    ));
                }
                None => {}
            }
            if !names.insert(&o.service) {
                return err(format!(
                    "outbound[{n}]: service `{}` is listed twice",
                    o.service
                ));
            }
            if let Some(td) = &o.trust_domain {
                let td = signet_spiffe::TrustDomain::new(td)
                    .map_err(|e| ConfigError(format!("outbound[{n}].trust_domain: {e}")))?;
                if self
                    .control_plane
                    .as_ref()
                    .is_some_and(|cp| cp.trust_domain == td.as_str())
                {
                    return err(format!(
                        "outbound[{n}] ({}): trust_domain `{td}` is this mesh's own; leave it out",
                        o.service
                    ));
                }
                if let Some(other) = o.identities.iter().find(|i| !i.is_member_of(&td)) {
                    return err(format!(
                        "outbound[{n}] ({}): identity `{other}` is not in trust domain `{td}`",
                        o.service
                    ));
                }
            } else if self.control_plane.is_some() {
                if !o.endpoints.is_empty() || !o.identities.is_empty() {
                    return err(format!(
                        "outbound[{n}] ({}): endpoints and identities come from the control plane; remove them",
                        o.service
                    ));
                }
                continue;
            }
            if o.endpoints.is_empty() {
                return err(format!("outbound[{n}] ({}): no endpoints", o.service));
            }
            if o.identities.is_empty() {
                return err(format!(
                    "outbound[{n}] ({}): no identities; list the SPIFFE IDs the upstream may present",
                    o.service
                ));
            }
        }
        if self
            .inbound
            .identity_header
            .parse::<http::HeaderName>()
            .is_err()
        {
            return err(format!(
                "inbound.identity_header: `{}` is not a header name",
                self.inbound.identity_header
            ));
        }
        if self.limits.max_connections == 0 {
            return err("limits.max_connections must be at least 1".to_owned());
        }
        if self.limits.reload_interval.is_zero() {
            return err("limits.reload_interval must be above zero".to_owned());
        }
        if let Some(tracing) = &self.tracing {
            tracing.check().map_err(ConfigError)?;
        }
        if let Some(log) = &self.access_log {
            log.check().map_err(ConfigError)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/proxy/cart.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.service.name, "cart");
        assert_eq!(config.outbound.len(), 1);
        assert_eq!(config.limits.drain_timeout, Duration::from_secs(15));
        let identity = config.identity.as_ref().unwrap();
        assert!(identity.cert.ends_with("certs/cart.crt"));
        assert!(identity.cert.is_absolute() || identity.cert.starts_with(".."));
    }

    #[test]
    fn a_workload_api_needs_an_absolute_socket_and_selectors_that_parse() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "").unwrap();
        let base = "[service]\nname = \"cart\"\nnamespace = \"shop\"\n\
                    [inbound]\nlisten = \"127.0.0.1:0\"\napp = \"127.0.0.1:1\"\n\
                    [control_plane]\naddress = \"127.0.0.1:1\"\nca = \"ca.pem\"\n\
                    trust_domain = \"t.test\"\nstate_dir = \"state\"\n";
        let check = |section: &str| {
            Config::parse(&format!("{base}{section}"), "p.toml", dir.path()).and_then(|c| c.check())
        };
        let ok = check("[workload_api]\nsocket = \"/w.sock\"\nselectors = [\"unix:uid:1\"]\n");
        assert!(ok.is_ok(), "{ok:?}");
        // With a control plane, operators may set them there alone.
        let ok = check("[workload_api]\nsocket = \"/w.sock\"\n");
        assert!(ok.is_ok(), "{ok:?}");
        for (section, why) in [
            (
                "[workload_api]\nsocket = \"w.sock\"\nselectors = [\"unix:uid:1\"]\n",
                "absolute",
            ),
            (
                "[workload_api]\nsocket = \"/w.sock\"\nselectors = [\"uid:1\"]\n",
                "unix:uid:N",
            ),
        ] {
            let err = check(section).unwrap_err().to_string();
            assert!(err.contains(why), "{section}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        // Without a control plane, nothing could set them: refused.
        for file in ["c.pem", "k.pem", "b.pem"] {
            std::fs::write(dir.path().join(file), "").unwrap();
        }
        let files = "[service]\nname = \"cart\"\nnamespace = \"shop\"\n\
                     [inbound]\nlisten = \"127.0.0.1:0\"\napp = \"127.0.0.1:1\"\n\
                     [identity]\ncert = \"c.pem\"\nkey = \"k.pem\"\nbundle = \"b.pem\"\n\
                     [policy]\ndir = \".\"\n\
                     [workload_api]\nsocket = \"/w.sock\"\n";
        let err = Config::parse(files, "p.toml", dir.path())
            .and_then(|c| c.check())
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least one"), "{err}");
    }

    #[test]
    fn the_joining_example_parses_and_mixing_sources_is_refused() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/proxy/joined.toml");
        let config = Config::load(&path).unwrap();
        let cp = config.control_plane.as_ref().unwrap();
        assert_eq!(cp.trust_domain, "signet.local");
        assert!(cp.join_token.as_deref().unwrap().starts_with('@'));
        assert!(config.identity.is_none() && config.policy.is_none());
        assert!(config.outbound[0].endpoints.is_empty());
        let api = config.workload_api.as_ref().unwrap();
        assert_eq!(api.parsed().unwrap().len(), 2);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "").unwrap();
        let base = "[service]\nname = \"cart\"\nnamespace = \"shop\"\n\
                    [inbound]\nlisten = \"127.0.0.1:0\"\napp = \"127.0.0.1:1\"\n\
                    [control_plane]\naddress = \"127.0.0.1:1\"\nca = \"ca.pem\"\n\
                    trust_domain = \"t.test\"\nstate_dir = \"state\"\n";
        let check = |extra: &str| {
            let file = dir.path().join("p.toml");
            std::fs::write(&file, format!("{base}{extra}")).unwrap();
            Config::load(&file)
                .unwrap()
                .check()
                .map_err(|e| e.to_string())
        };
        assert_eq!(check(""), Ok(()));
        assert_eq!(check("weight = 10000\n"), Ok(()));
        assert_eq!(
            check("weight = 0\n"),
            Err("control_plane.weight: weight 0 is not between 1 and 10000".to_owned())
        );
        assert!(
            check("[policy]\ndir = \".\"\n")
                .unwrap_err()
                .contains("come from the control plane")
        );
        let own_providers = "[[authn.providers]]\nname = \"corp\"\nissuer = \"https://idp\"\n\
                             audiences = [\"shop\"]\njwks_file = \"jwks.json\"\n";
        assert!(
            check(own_providers)
                .unwrap_err()
                .contains("`meshctl authn apply`")
        );
        let pinned = "[[outbound]]\nservice = \"pay\"\nlisten = \"127.0.0.1:0\"\n\
                      endpoints = [\"127.0.0.1:9\"]\n";
        assert!(
            check(pinned)
                .unwrap_err()
                .contains("come from the control plane")
        );
        // Another trust domain's service: pinned here, its identities all of that domain.
        let federated = "[[outbound]]\nservice = \"ledger\"\nlisten = \"127.0.0.1:0\"\n\
                         trust_domain = \"partner.example\"\nendpoints = [\"127.0.0.1:9\"]\n\
                         identities = [\"spiffe://partner.example/ns/fin/sa/ledger\"]\n";
        assert_eq!(check(federated), Ok(()));
        let mixed = federated.replace(
            "spiffe://partner.example/ns/fin/sa/ledger",
            "spiffe://t.test/ns/fin/sa/ledger",
        );
        assert!(
            check(&mixed)
                .unwrap_err()
                .contains("is not in trust domain")
        );
        let own = federated.replace(
            "trust_domain = \"partner.example\"",
            "trust_domain = \"t.test\"",
        );
        assert!(check(&own).unwrap_err().contains("this mesh's own"));
        let empty = federated.replace("endpoints = [\"127.0.0.1:9\"]\n", "");
        assert!(check(&empty).unwrap_err().contains("no endpoints"));
    }

    #[test]
    fn the_interception_example_parses_and_an_upstream_needs_a_way_in() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/proxy/intercepted.toml");
        let mut config = Config::load(&path).unwrap();
        let interception = config.interception.as_ref().unwrap();
        assert_eq!(
            interception.unknown_destinations,
            UnknownDestinations::Passthrough
        );
        assert_eq!(config.outbound[0].listen, None);
        // Without [interception], an upstream without a port could not be reached at all.
        config.interception = None;
        config.control_plane = None;
        config.identity = Some(IdentityConfig {
            cert: path.clone(),
            key: path.clone(),
            bundle: path.clone(),
            trust_domain: None,
            deny_list: None,
        });
        config.policy = Some(PolicyConfig {
            dir: path.parent().unwrap().to_path_buf(),
            shadow_dir: None,
        });
        config.outbound[0].endpoints = vec![crate::traffic::weighted::WeightedAddr::new(
            "127.0.0.1:9".parse().unwrap(),
        )];
        config.outbound[0].identities =
            vec!["spiffe://signet.local/ns/shop/sa/cart".parse().unwrap()];
        let err = config.check().unwrap_err().to_string();
        assert!(err.contains("no listen, and no [interception]"), "{err}");
    }

    #[test]
    fn durations_take_the_workspace_units() {
        let limits = |text: &str| {
            toml::from_str::<Limits>(&format!("request_timeout = \"{text}\""))
                .map(|l| l.request_timeout)
                .map_err(|e| e.to_string())
        };
        assert_eq!(limits("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(limits("2m"), Ok(Duration::from_secs(120)));
        assert!(limits("10").unwrap_err().contains("not a duration"));
        assert!(limits("10y").unwrap_err().contains("not a duration"));
    }
}
