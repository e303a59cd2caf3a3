//! The `signet-cp` server: the gRPC API for proxies, the REST API for operators, and what
//! they share.
//!
//! - [`bootstrap`]: the data directory: CA, store, operator policies, admin token, meshctl.env.
//! - [`hub`]: live state (applied policies, deny-list, registry) and the change counter.
//! - [`identity`], [`config_watch`], [`registry`]: the gRPC services.
//! - [`rest`] and [`operators`]: the operator API and who may use it.
//! - [`store`]: durable state behind a trait; SQLite by default.
//! - [`tls`]: both listeners' TLS and what a handshake proved about the client.

pub mod acks;
pub mod audit;
pub mod authn;
pub mod bootstrap;
pub mod ca;
pub mod config_watch;
pub mod console;
pub mod duties;
pub mod federation;
pub mod feed;
pub mod fetch;
pub mod hub;
pub mod identity;
pub mod jwt_keys;
pub mod metrics;
pub mod operators;
pub mod registry;
pub mod rest;
pub mod rotation;
pub mod seal;
pub mod spans;
pub mod stats;
pub mod store;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::api::MAX_MESSAGE_BYTES;

/// Time an operator's request head may take to arrive whole.
const REST_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
use crate::api::v1 as pb;

/// How the control plane runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the CA, the store and the operator credentials live.
    pub data_dir: PathBuf,
    /// The trust domain; `None`: the data dir's, or `signet.local` for a new one.
    pub trust_domain: Option<String>,
    /// The gRPC listener (proxies).
    pub grpc_listen: SocketAddr,
    /// The REST listener (operators).
    pub api_listen: SocketAddr,
    /// The store URL; `None`: `sqlite` file `signet.db` in the data dir.
    pub store: Option<String>,
    /// Default SVID lifetime.
    pub svid_ttl: Duration,
    /// JWT-SVID lifetime and signing-key rotation.
    pub jwt: jwt_keys::JwtProfile,
    /// How often proxies heartbeat; three missed heartbeats remove an endpoint.
    pub heartbeat_interval: Duration,
    /// The plain-HTTP listener for `/metrics` (Prometheus); `None`: no metrics listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Spans of API calls, gRPC calls and issuance over OTLP; `None`: no tracing.
    pub tracing: Option<signet_otel::config::TracingConfig>,
    /// The key-encryption key sealing the CA in the store; `None`: the systemd credential,
    /// or `<data>/ca.kek` with SQLite.
    pub ca_kek_file: Option<PathBuf>,
    /// The bundle endpoint for federated domains; `None`: not served.
    pub bundle_endpoint: Option<BundleEndpointOptions>,
    /// The refresh hint the bundle endpoint publishes.
    pub bundle_refresh_hint: Duration,
}

/// Where and how the bundle endpoint is served.
#[derive(Debug, Clone)]
pub struct BundleEndpointOptions {
    pub listen: SocketAddr,
    /// `https_web`: a certificate chain and its key (PEM files); `None`: `https_spiffe`, with
    /// the control plane's own SVID.
    pub web_certificate: Option<(PathBuf, PathBuf)>,
}

/// A running control plane.
#[derive(Debug)]
pub struct Running {
    /// The bound gRPC address.
    pub grpc: SocketAddr,
    /// The bound REST address.
    pub api: SocketAddr,
    /// The bound metrics address, when there is one.
    pub metrics: Option<SocketAddr>,
    /// The bound bundle endpoint, when there is one.
    pub bundle_endpoint: Option<SocketAddr>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The trust domain.
    pub trust_domain: String,
    /// `meshctl.env`.
    pub env_file: PathBuf,
    /// The shared state.
    pub hub: Arc<hub::Hub>,
    shutdown: watch::Sender<bool>,
}

impl Running {
    /// Stops accepting work.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Writes and signs what the control plane's own audit chain still holds.
    pub async fn close(&self) {
        if let Some(replica) = self.hub.replica.get() {
            self.hub.duties.release(&*self.hub.store, &replica.id).await;
        }
        self.hub.audit.close().await;
    }
}

/// Starts the control plane: opens (or creates) the data directory, binds both listeners and
/// serves until [`Running::shutdown`].
pub async fn start(options: Options) -> Result<Running, String> {
    let tracer = match &options.tracing {
        Some(config) => Some(signet_otel::export::start(
            config,
            vec![
                signet_otel::otlp::KeyValue::string("service.name", "signet-cp"),
                signet_otel::otlp::KeyValue::string("telemetry.sdk.name", "signet-cp"),
            ],
        )?),
        None => None,
    };
    let boot = bootstrap::open(&options).await?;
    if let Some(tracer) = tracer {
        let _ = boot.hub.tracer.set(tracer);
    }
    let grpc_listener = TcpListener::bind(options.grpc_listen)
        .await
        .map_err(|e| format!("--grpc-listen {}: {e}", options.grpc_listen))?;
    let api_listener = TcpListener::bind(options.api_listen)
        .await
        .map_err(|e| format!("--api-listen {}: {e}", options.api_listen))?;
    let metrics_listener = match options.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--metrics-listen {addr}: {e}"))?,
        ),
        None => None,
    };
    let endpoint_certificate = options
        .bundle_endpoint
        .as_ref()
        .map(|b| match &b.web_certificate {
            Some((chain, key)) => federation::endpoint::Certificate::Web {
                chain: chain.clone(),
                key: key.clone(),
            },
            None => federation::endpoint::Certificate::Svid(Arc::clone(&boot.resolver)),
        });
    if let Some(certificate) = &endpoint_certificate {
        federation::endpoint::check(certificate)?;
    }
    let bundle_listener = match &options.bundle_endpoint {
        Some(b) => Some(
            TcpListener::bind(b.listen)
                .await
                .map_err(|e| format!("--bundle-endpoint-listen {}: {e}", b.listen))?,
        ),
        None => None,
    };
    let bundle_endpoint = match &bundle_listener {
        Some(l) => Some(l.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };
    boot.hub.bundle_refresh_hint_secs.store(
        options.bundle_refresh_hint.as_secs().max(1),
        std::sync::atomic::Ordering::Relaxed,
    );
    let metrics = match &metrics_listener {
        Some(l) => Some(l.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };
    let grpc = grpc_listener.local_addr().map_err(|e| e.to_string())?;
    let api = api_listener.local_addr().map_err(|e| e.to_string())?;
    let env_file = boot.write_env(api)?;
    let hub = Arc::clone(&boot.hub);
    let mut id = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .map_err(|_| "no secure random source".to_owned())?;
    let now = store::unix_ms(std::time::SystemTime::now());
    let _ = hub.replica.set(store::ReplicaRow {
        id: id.iter().map(|b| format!("{b:02x}")).collect(),
        grpc: grpc.to_string(),
        api: api.to_string(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: now,
        last_seen: now,
    });
    let (shutdown, _) = watch::channel(false);

    let grpc_tls = tls::server_config(
        Arc::clone(&boot.resolver),
        Arc::clone(&boot.bundle),
        Arc::clone(&boot.deny),
        &[b"h2"],
    )
    .map_err(|e| format!("TLS: {e}"))?;
    let api_tls = tls::server_config(
        Arc::clone(&boot.resolver),
        Arc::clone(&boot.bundle),
        Arc::clone(&boot.deny),
        &[b"h2", b"http/1.1"],
    )
    .map_err(|e| format!("TLS: {e}"))?;

    let incoming = tls::accept(
        grpc_listener,
        TlsAcceptor::from(Arc::new(grpc_tls)),
        tls::ListenerLimits::GRPC,
    );
    let mut stop = shutdown.subscribe();
    let grpc_server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(metrics::GrpcCounted::layer(Arc::clone(&hub)))
        .add_service(
            pb::identity_server::IdentityServer::new(identity::IdentityService::new(Arc::clone(
                &hub,
            )))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::config_server::ConfigServer::new(config_watch::ConfigService::new(Arc::clone(
                &hub,
            )))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::registry_server::RegistryServer::new(registry::RegistryService::new(Arc::clone(
                &hub,
            )))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::audit_server::AuditServer::new(audit::AuditService::new(
                Arc::clone(&hub),
                options.data_dir.join("audit").join("received"),
            ))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::ReceiverStream::new(incoming),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        );
    tokio::spawn(async move {
        if let Err(e) = grpc_server.await {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    });

    let router = rest::router(rest::Api {
        hub: Arc::clone(&hub),
        console: Arc::default(),
        operators: Arc::clone(&boot.operators),
        tokens: signet_ca::JoinTokens::new(identity::Tokens(Arc::clone(&hub.store))),
        apply_lock: Arc::default(),
    });
    let mut rest_incoming = tls::accept(
        api_listener,
        TlsAcceptor::from(Arc::new(api_tls)),
        tls::ListenerLimits::REST,
    );
    let mut stop = shutdown.subscribe();
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                next = rest_incoming.recv() => match next {
                    Some(Ok(conn)) => conn,
                    Some(Err(_)) => continue,
                    None => return,
                },
                _ = stop.wait_for(|s| *s) => return,
            };
            let peer = conn.peer().clone();
            let service = router.clone().layer(axum::Extension(peer));
            tokio::spawn(async move {
                let io = TokioIo::new(conn);
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                // A request head must arrive whole within this (slowloris); between requests
                // the connection's idle limit applies.
                builder
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(REST_HEADER_READ_TIMEOUT);
                builder
                    .http2()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .max_concurrent_streams(64);
                if let Err(e) = builder
                    .serve_connection(io, TowerToHyperService::new(service))
                    .await
                {
                    tracing::debug!(error = %e, "API connection ended");
                }
            });
        }
    });

    if let (Some(listener), Some(certificate)) = (bundle_listener, endpoint_certificate) {
        hub.bundle_endpoint_served
            .store(true, std::sync::atomic::Ordering::Relaxed);
        federation::endpoint::serve(
            listener,
            certificate,
            Arc::clone(&hub),
            shutdown.subscribe(),
        )
        .await?;
    }
    // Federated domains' bundles are fetched again when their refresh is due.
    let federation_hub = Arc::clone(&hub);
    tokio::spawn(every(
        Duration::from_secs(1),
        shutdown.subscribe(),
        move || {
            let hub = Arc::clone(&federation_hub);
            async move {
                if hub.duties.holds(duties::FEDERATION_REFRESH) {
                    federation::refresh_due(&hub).await;
                }
            }
        },
    ));
    if let Some(listener) = metrics_listener {
        tokio::spawn(metrics::serve(
            listener,
            Arc::clone(&hub),
            shutdown.subscribe(),
        ));
    }

    // Other replicas' writes reach this one's proxies through the store's change feed.
    let seen = hub
        .store
        .latest_change()
        .await
        .map_err(|e| format!("reading the change feed: {e}"))?;
    let database_url = options
        .store
        .clone()
        .filter(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"));
    tokio::spawn(feed::follow(
        Arc::clone(&hub),
        seen,
        database_url,
        shutdown.subscribe(),
    ));

    // The registry is shared through the store: leases out, other replicas' members in.
    let registry_hub = Arc::clone(&hub);
    tokio::spawn(every(
        Duration::from_secs(1),
        shutdown.subscribe(),
        move || {
            let hub = Arc::clone(&registry_hub);
            async move {
                if let Err(e) = hub.sync_registry().await {
                    tracing::warn!(error = %e, "sharing the registry through the store failed");
                }
            }
        },
    ));
    // Singleton duties: asked for every second, held by one replica at a time.
    let duties_hub = Arc::clone(&hub);
    tokio::spawn(every(
        Duration::from_secs(1),
        shutdown.subscribe(),
        move || {
            let hub = Arc::clone(&duties_hub);
            async move {
                let Some(replica) = hub.replica.get() else {
                    return;
                };
                if let Err(e) = hub.duties.renew(&*hub.store, &replica.id).await {
                    tracing::warn!(error = %e, "renewing duty leases failed");
                }
            }
        },
    ));
    // Endpoints of proxies that stopped heartbeating leave the registry.
    let expiry_hub = Arc::clone(&hub);
    tokio::spawn(every(
        Duration::from_millis(500),
        shutdown.subscribe(),
        move || {
            let hub = Arc::clone(&expiry_hub);
            async move {
                let removed = hub.expire(hub.heartbeat_interval * 3);
                hub.stats.forget(&removed);
                if !removed.is_empty() {
                    tracing::info!(
                        removed = removed.len(),
                        "proxies missed their heartbeats; endpoints removed"
                    );
                    let lapse =
                        i64::try_from((hub.heartbeat_interval * 3).as_millis()).unwrap_or(i64::MAX);
                    let lapsed_before = store::unix_ms(std::time::SystemTime::now()) - lapse;
                    if let Err(e) = hub.store.remove_members(removed, lapsed_before).await {
                        tracing::error!(error = %e, "forgetting expired registrations failed");
                    }
                }
                if hub.duties.holds(duties::REGISTRY_EXPIRY)
                    && let Err(e) = forget_lapsed(&hub).await
                {
                    tracing::warn!(error = %e, "forgetting lapsed registrations failed");
                }
            }
        },
    ));
    // Keys of JWT providers configured by URL are fetched again when their refresh is due.
    let authn_hub = Arc::clone(&hub);
    let attempts = Arc::new(tokio::sync::Mutex::new(std::collections::BTreeMap::new()));
    tokio::spawn(every(
        Duration::from_secs(1),
        shutdown.subscribe(),
        move || {
            let hub = Arc::clone(&authn_hub);
            let attempts = Arc::clone(&attempts);
            async move {
                if hub.duties.holds(duties::JWKS_REFRESH) {
                    authn::refresh_due(&hub, &mut *attempts.lock().await).await;
                }
            }
        },
    ));
    let rotation_hub = Arc::clone(&hub);
    tokio::spawn(every(
        Duration::from_secs(1),
        shutdown.subscribe(),
        move || {
            let hub = Arc::clone(&rotation_hub);
            async move { rotation::step(&hub, std::time::SystemTime::now()).await }
        },
    ));
    tokio::spawn(bootstrap::renew_own_svid(
        boot.clone_for_renewal(),
        shutdown.subscribe(),
    ));

    Ok(Running {
        grpc,
        api,
        metrics,
        bundle_endpoint,
        data_dir: options.data_dir.clone(),
        trust_domain: hub.trust_domain.as_str().to_owned(),
        env_file,
        hub,
        shutdown,
    })
}

/// Deletes the registrations whose lease lapsed, whichever replica served them: a replica
/// that died leaves its proxies' rows behind, and they must not come back at a restart.
async fn forget_lapsed(hub: &hub::Hub) -> Result<(), store::StoreError> {
    let lapse = i64::try_from((hub.heartbeat_interval * 3).as_millis()).unwrap_or(i64::MAX);
    let cutoff = store::unix_ms(std::time::SystemTime::now()) - lapse;
    let lapsed: Vec<String> = hub
        .store
        .members()
        .await?
        .into_iter()
        .filter(|m| m.last_seen < cutoff)
        .map(|m| m.instance)
        .collect();
    if lapsed.is_empty() {
        return Ok(());
    }
    tracing::info!(
        count = lapsed.len(),
        "forgetting registrations whose lease lapsed"
    );
    hub.store.remove_members(lapsed, cutoff).await
}

/// Runs `step` every `period` (a late tick waits a whole period after it) until `stop`
/// says the server is stopping.
async fn every<F, Fut>(period: Duration, mut stop: watch::Receiver<bool>, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopping {
            return;
        }
        step().await;
    }
}
