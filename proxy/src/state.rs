//! What every listener of one proxy shares: configuration, identity, the enforced policies,
//! metrics, and the pool to the local app.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::{ArcSwap, ArcSwapOption};
use http::HeaderName;
use signet_policy::{Authorizer, Directory, Enforced, PolicyBundle, ServiceRef, Target};
use signet_spiffe::SpiffeId;
use signet_spiffe::tls::{
    SpiffeClientVerifier, SpiffeServerVerifier, client_config, server_config,
};
use signet_spiffe::verify::{AllOf, AllowList, PeerFilter};
use tokio::sync::watch;

use crate::config::{AppProtocol, Config, Protocol};
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::pool::{Pool, Transport};

/// ALPN for HTTP between proxies.
pub const ALPN_HTTP: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// What the proxy knows of the mesh's workloads, swapped whole.
#[derive(Debug, Default)]
pub struct Callers {
    /// Registered callers' services and labels; a caller not listed has neither.
    pub directory: Directory,
    /// This service's labels.
    pub labels: Vec<(String, String)>,
}

/// One proxy's shared state.
#[derive(Debug)]
pub struct Proxy {
    /// The effective configuration.
    pub config: Config,
    /// SVID, bundle, deny-list.
    pub identity: Identity,
    /// The enforced slice of the policy bundle.
    pub policies: Enforced,
    /// Shadow mode: this service's slice of a candidate bundle, decided with beside the
    /// enforced one and never acted on.
    pub shadow: ArcSwapOption<Authorizer>,
    /// Counters.
    pub metrics: Metrics,
    /// The local app.
    pub app: Pool,
    /// The header the app reads the peer's identity from.
    pub identity_header: HeaderName,
    /// Who callers are (their registered service and labels) and this service's labels:
    /// from the configuration file, or pushed by the control plane.
    pub callers: ArcSwap<Callers>,
    /// Set to start draining.
    pub shutdown: watch::Sender<bool>,
    /// The audit trail, when decisions are recorded.
    pub audit: Option<crate::audit::Audit>,
    /// The JWT providers end users authenticate with.
    pub authn: ArcSwap<crate::authn::Authn>,
    /// The local app's health, by the health check in the traffic settings.
    pub health: crate::health::AppHealth,
    /// Spans, access logs and golden metrics.
    pub telemetry: crate::telemetry::Telemetry,
    /// The own service's traffic settings on the inbound side: routes and rate limits.
    pub inbound_traffic: ArcSwap<crate::traffic::inbound::InboundPolicy>,
    /// Who may take this service's identity from the Workload API, as operators set it on
    /// the control plane (`meshctl workload attest`); unset: the configuration's selectors.
    pub attestation: ArcSwapOption<Vec<crate::workload_api::attest::Selector>>,
    /// The upstream services, set once their listeners are bound.
    pub upstreams: std::sync::OnceLock<Vec<Arc<crate::outbound::Upstream>>>,
}

impl Proxy {
    /// The proxy for `config`, with `identity` and the policy `bundle` loaded.
    pub fn new(
        config: Config,
        identity: Identity,
        bundle: &PolicyBundle,
        audit: Option<crate::audit::Audit>,
    ) -> Result<Self, String> {
        let identity_header = config
            .inbound
            .identity_header
            .parse()
            .map_err(|_| "inbound.identity_header is not a header name".to_owned())?;
        let app = Pool::new(
            config.inbound.app,
            match config.inbound.app_protocol {
                AppProtocol::Http1 => Transport::Http1,
                AppProtocol::Http2 => Transport::Http2,
            },
        );
        let labels = config
            .service
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let authn = config.authn.build()?;
        let (shutdown, _) = watch::channel(false);
        let slice = bundle.slice_for(&ServiceRef::new(
            &config.service.name,
            &config.service.namespace,
        ));
        let own_id = identity.current.borrow().svid.id().clone();
        let telemetry = crate::telemetry::Telemetry::start(&config, &own_id)?;
        let metrics = Metrics::default();
        metrics
            .policy_version
            .store(slice.version(), Ordering::Relaxed);
        // Callers of other (federated) trust domains are foreign in every decision.
        let own_domain = identity.current.borrow().svid.id().trust_domain();
        Ok(Self {
            policies: Enforced::new(slice),
            shadow: ArcSwapOption::empty(),
            identity,
            metrics,
            app,
            identity_header,
            callers: ArcSwap::from_pointee(Callers {
                directory: Directory::new().with_trust_domain(own_domain),
                labels,
            }),
            shutdown,
            audit,
            authn: ArcSwap::from_pointee(authn),
            upstreams: std::sync::OnceLock::new(),
            attestation: ArcSwapOption::empty(),
            health: crate::health::AppHealth::default(),
            telemetry,
            inbound_traffic: ArcSwap::from_pointee(crate::traffic::inbound::InboundPolicy::new(
                signet_traffic::ServiceTraffic::defaults(&config.service.name),
            )),
            config,
        })
    }

    /// Applies traffic settings `version` to every upstream (the defaults for those `doc`
    /// does not list) and the own service's health check; returns the upstream services
    /// whose settings changed.
    pub fn apply_traffic(&self, doc: &signet_traffic::TrafficDoc, version: u64) -> Vec<String> {
        let mut changed = Vec::new();
        for upstream in self.upstreams.get().into_iter().flatten() {
            if upstream.set_traffic(doc.service(upstream.service())) {
                changed.push(upstream.service().to_owned());
            }
        }
        let own = doc.service(&self.config.service.name);
        if self.inbound_traffic.load().settings != own {
            self.inbound_traffic
                .store(Arc::new(crate::traffic::inbound::InboundPolicy::new(
                    own.clone(),
                )));
        }
        self.health.configure(own.health_check);
        self.metrics
            .traffic_version
            .store(version, Ordering::Relaxed);
        changed
    }

    /// Records a decision in the audit trail, if there is one.
    pub fn audit(
        &self,
        subject: &crate::audit::Subject<'_>,
        decision: &signet_policy::Decision,
        bundle_hash: &str,
    ) {
        if let Some(audit) = &self.audit {
            audit.decision(
                subject,
                decision,
                (&self.config.service.name, &self.config.service.namespace),
                bundle_hash,
            );
        }
    }

    /// Switches to new credentials: new handshakes present them and the audit trail signs
    /// with their key from now on.
    pub fn rotate(
        &self,
        credentials: crate::identity::Credentials,
        key: &signet_spiffe::WorkloadKey,
    ) -> Result<(), String> {
        let signer = crate::audit::signer(&credentials.svid, key);
        self.identity.rotate(credentials, key)?;
        if let Some(audit) = &self.audit {
            audit.rotate(signer?);
        }
        Ok(())
    }

    /// Resolves once draining has started.
    pub async fn draining(&self) {
        let mut shutdown = self.shutdown.subscribe();
        let _ = shutdown.wait_for(|draining| *draining).await;
    }

    /// Enforces this service's slice of `bundle`.
    pub fn enforce(&self, bundle: &PolicyBundle) {
        let slice = bundle.slice_for(&ServiceRef::new(
            &self.config.service.name,
            &self.config.service.namespace,
        ));
        self.metrics
            .policy_version
            .store(slice.version(), Ordering::Relaxed);
        self.policies.replace(slice);
    }

    /// Decides with this service's slice of `candidate` beside the enforced policies from
    /// now on; `None` stops shadow mode.
    pub fn run_shadow(&self, candidate: Option<&PolicyBundle>) {
        let slice = candidate.map(|bundle| {
            bundle.slice_for(&ServiceRef::new(
                &self.config.service.name,
                &self.config.service.namespace,
            ))
        });
        self.metrics.shadow_version.store(
            slice.as_ref().map_or(0, PolicyBundle::version),
            Ordering::Relaxed,
        );
        self.shadow
            .store(slice.map(|s| Arc::new(Authorizer::new(Arc::new(s)))));
    }

    /// The local service as the authorizer's target, with the labels in `callers`.
    /// This proxy's own SPIFFE ID (its current SVID's).
    pub fn own_id(&self) -> SpiffeId {
        self.identity.current.borrow().svid.id().clone()
    }

    pub fn target<'a>(&'a self, callers: &'a Callers) -> Target<'a> {
        Target {
            name: &self.config.service.name,
            namespace: &self.config.service.namespace,
            port: self.config.inbound.listen.port(),
            labels: &callers.labels,
        }
    }

    /// The inbound TLS configuration: client SVIDs required, deny-list applied.
    pub fn inbound_tls(&self) -> Result<rustls::ServerConfig, String> {
        let filter: Arc<dyn PeerFilter> = self.identity.deny.clone();
        let verifier = Arc::new(SpiffeClientVerifier::new(
            self.identity.bundle.clone(),
            filter,
        ));
        let mut config =
            server_config(self.identity.resolver.clone(), verifier).map_err(|e| e.to_string())?;
        if self.config.inbound.protocol == Protocol::Http {
            config.alpn_protocols = ALPN_HTTP.iter().map(|p| p.to_vec()).collect();
        }
        Ok(config)
    }

    /// The TLS configuration towards an upstream that may present only `identities`.
    pub fn outbound_tls(
        &self,
        identities: &[SpiffeId],
        protocol: Protocol,
        http2: bool,
    ) -> Result<rustls::ClientConfig, String> {
        // `http2`: offer h2 first by ALPN; otherwise HTTP/1.1 only.
        let filter: Arc<dyn PeerFilter> = Arc::new(AllOf(vec![
            self.identity.deny.clone(),
            Arc::new(AllowList::new(identities.iter().cloned())),
        ]));
        let verifier = Arc::new(SpiffeServerVerifier::new(
            self.identity.bundle.clone(),
            filter,
        ));
        let mut config =
            client_config(self.identity.resolver.clone(), verifier).map_err(|e| e.to_string())?;
        if protocol == Protocol::Http {
            config.alpn_protocols = ALPN_HTTP
                .iter()
                .filter(|p| http2 || **p != b"h2")
                .map(|p| p.to_vec())
                .collect();
        }
        Ok(config)
    }
}
