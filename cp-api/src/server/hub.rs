//! The control plane's live state, shared by the gRPC services and the REST API: the applied
//! policies, the deny-list, the registry of proxies, and a change counter that every config
//! stream follows.
//!
//! Stored state (policies, deny-list) is written to the store first and published here only
//! after the write committed, so what proxies receive is always something the store kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use signet_policy::{
    Directory, Inventory, KnownService, KnownWorkload, PolicyBundle, PolicySource, ServiceRef,
};
use signet_spiffe::{SpiffeId, TrustBundle, TrustDomain};
use tokio::sync::watch;

use crate::api::v1 as pb;
use crate::server::ca::Ca;
use crate::server::store::{
    DenyEntry, PolicyVersion, ServiceLabels, ShadowCandidate, Store, StoreError, StoredFile,
    WorkloadSelectors,
};

/// The policies being distributed.
#[derive(Debug)]
pub struct Applied {
    /// Their version's record (`None` until the first apply).
    pub meta: Option<PolicyVersion>,
    /// The validated bundle, versioned.
    pub bundle: Arc<PolicyBundle>,
    /// The files as applied.
    pub files: Vec<StoredFile>,
}

/// The candidate bundle proxies run in shadow mode.
#[derive(Debug)]
pub struct Shadowed {
    pub meta: ShadowCandidate,
    /// The validated candidate (its version is the candidate's id).
    pub bundle: Arc<PolicyBundle>,
}

/// End-user authentication in force: the applied document and every provider's keys.
#[derive(Debug, Clone, Default)]
pub struct AuthnState {
    /// The applied version (0: none).
    pub version: u64,
    pub doc: Option<crate::server::authn::AuthnDoc>,
    pub author: String,
    /// Unix milliseconds.
    pub applied_at: i64,
    /// Keys by provider: inline ones, and the last good fetch of the others.
    pub keys: crate::server::authn::Keys,
    /// When each fetched provider's keys last came, and the last fetch error (cleared by a
    /// good fetch), by provider.
    pub fetched_at: BTreeMap<String, i64>,
    pub fetch_errors: BTreeMap<String, String>,
}

/// Traffic settings in force.
#[derive(Debug, Clone, Default)]
pub struct TrafficState {
    /// The applied version (0: none, the defaults everywhere).
    pub version: u64,
    pub doc: signet_traffic::TrafficDoc,
    pub author: String,
    /// Unix milliseconds.
    pub applied_at: i64,
}

/// A registered proxy.
#[derive(Debug, Clone)]
pub struct ProxyEntry {
    /// What it announced when it registered (its serial follows its heartbeats).
    pub registration: Registration,
    pub config_version: u64,
    pub policy_version: u64,
    /// The bundle-and-deny-list version it enforces (a `TrustUpdate` version).
    pub trust_version: u64,
    /// The trust bundle sequence it has acknowledged (from another replica's lease when
    /// it is connected there).
    pub trust_bundle: u64,
    /// The shadow candidate it runs (0: none).
    pub shadow_version: u64,
    /// The traffic version it applies (0: the defaults).
    pub traffic_version: u64,
    /// Its app's health by its health check.
    pub app_health: pb::AppHealth,
    /// How its balancers saw their upstream endpoints at its last heartbeat.
    pub endpoints: Vec<pb::EndpointState>,
    pub registered_at: SystemTime,
    pub last_seen: SystemTime,
    seen: Instant,
    /// Registered or heartbeating here; otherwise known from another replica's lease in the
    /// store (and dropped when that lease lapses).
    pub local: bool,
    /// Read from the store at start: served like a live member for three heartbeat
    /// intervals (its proxy reconnects here, or to another replica, within them), but not
    /// this replica's to wait for or count until it heartbeats here.
    restored: bool,
}

/// An entry reads as its registration: `entry.service`, `entry.spiffe_id`, ...
impl std::ops::Deref for ProxyEntry {
    type Target = Registration;

    fn deref(&self) -> &Registration {
        &self.registration
    }
}

/// The shared state.
#[derive(Debug)]
pub struct Hub {
    pub trust_domain: TrustDomain,
    /// The certificate authority (active backend, rotation, trust bundle).
    pub ca: Arc<Ca>,
    pub store: Arc<dyn Store>,
    pub heartbeat_interval: Duration,
    pub started: SystemTime,
    /// The control plane's own signed audit chain.
    pub audit: signet_audit::AuditLog,
    /// The proxies' golden signals, from their heartbeats.
    pub stats: crate::server::stats::StatsBook,
    /// The control plane's own metrics.
    pub metrics: crate::server::metrics::CpMetrics,
    /// Spans of its calls, when tracing is configured (set once at start).
    pub tracer: std::sync::OnceLock<signet_otel::trace::Tracer>,
    /// When the last change was signalled (config pushes are timed from it).
    changed_at: Mutex<Instant>,
    applied: RwLock<Arc<Applied>>,
    shadow: RwLock<Arc<Option<Shadowed>>>,
    authn: RwLock<Arc<AuthnState>>,
    traffic: RwLock<Arc<TrafficState>>,
    deny: RwLock<Arc<pb::DenyList>>,
    /// The change counter when the deny-list's content last changed: a proxy whose trust
    /// stream reached this version enforces every entry.
    deny_generation: std::sync::atomic::AtomicU64,
    registry: Mutex<HashMap<String, ProxyEntry>>,
    /// Labels operators set, by service.
    labels: RwLock<Arc<BTreeMap<ServiceRef, BTreeMap<String, String>>>>,
    /// Workload API selectors operators set, by service.
    selectors: RwLock<Arc<BTreeMap<ServiceRef, WorkloadSelectors>>>,
    /// The trust domains this one federates with, their bundles parsed.
    federated: RwLock<Arc<Vec<crate::server::federation::Federated>>>,
    /// The refresh hint the bundle endpoint publishes (seconds).
    pub bundle_refresh_hint_secs: std::sync::atomic::AtomicU64,
    /// Whether a bundle endpoint is served (federated domains fetch the bundle from it).
    pub bundle_endpoint_served: std::sync::atomic::AtomicBool,
    changes: watch::Sender<u64>,
    /// Woken by every registration and heartbeat: what waits for proxies to acknowledge a
    /// version looks again.
    reports: tokio::sync::Notify,
    /// Leases renewed by heartbeats since the last [`Hub::sync_registry`]: instance -> (unix
    /// ms, app health).
    renewals: Mutex<HashMap<String, (i64, i32, u64)>>,
    /// `(change counter, bundle sequence)` each time the trust bundle's sequence moved: a
    /// proxy that acknowledged a trust update at counter `c` holds the bundle of the last
    /// mark at or below `c`.
    bundle_marks: Mutex<Vec<(u64, u64)>>,
    /// The singleton duties this replica holds.
    pub duties: crate::server::duties::Duties,
    /// This replica's row in the store (set once its listeners are bound), renewed with
    /// each [`Hub::sync_registry`].
    pub replica: std::sync::OnceLock<crate::server::store::ReplicaRow>,
}

/// Most proxy instances one identity may register: one identity's proxies cannot crowd the
/// registry (nor the endpoint lists every caller of the service receives).
pub const MAX_INSTANCES_PER_IDENTITY: usize = 64;

/// Who registers: a proxy instance, its identity and what it announces.
#[derive(Debug, Clone)]
pub struct Registration {
    pub instance: String,
    pub spiffe_id: SpiffeId,
    pub service: String,
    pub namespace: String,
    /// host:port callers reach it at.
    pub endpoint: String,
    /// Its weight in callers' balancers (checked: 1 to `signet_traffic::weight::MAX`).
    pub weight: u32,
    /// Its labels (checked), which traffic subsets select by.
    pub labels: signet_traffic::labels::Labels,
    /// The address clients outside the mesh dial for its app (checked), which intercepting
    /// callers map to the service.
    pub service_address: Option<std::net::SocketAddr>,
    pub admin: String,
    pub serial: String,
}

impl Registration {
    /// The registration as the store keeps it.
    pub fn to_member(&self, registered_at: SystemTime) -> crate::server::store::Member {
        crate::server::store::Member {
            instance: self.instance.clone(),
            spiffe_id: self.spiffe_id.as_str().to_owned(),
            service: self.service.clone(),
            namespace: self.namespace.clone(),
            endpoint: self.endpoint.clone(),
            weight: self.weight,
            labels: self.labels.clone(),
            service_address: self.service_address,
            admin: self.admin.clone(),
            serial: self.serial.clone(),
            registered_at: crate::server::store::unix_ms(registered_at),
            last_seen: crate::server::store::unix_ms(SystemTime::now()),
            app_health: 0,
            trust_bundle: 0,
        }
    }

    /// A kept registration, with when it was made; `None` if its SPIFFE ID no longer parses.
    fn from_member(m: crate::server::store::Member) -> Option<(Self, SystemTime)> {
        let spiffe_id = m.spiffe_id.parse::<SpiffeId>().ok()?;
        let registration = Self {
            instance: m.instance,
            spiffe_id,
            service: m.service,
            namespace: m.namespace,
            endpoint: m.endpoint,
            weight: m.weight,
            labels: m.labels,
            service_address: m.service_address,
            admin: m.admin,
            serial: m.serial,
        };
        Some((
            registration,
            crate::server::store::from_unix_ms(m.registered_at),
        ))
    }
}

/// What a proxy reports it enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Versions {
    /// The `ProxyConfig` version.
    pub config: u64,
    /// The policy version.
    pub policy: u64,
    /// The `TrustUpdate` version.
    pub trust: u64,
    /// The shadow candidate's id (0: none).
    pub shadow: u64,
    /// The traffic version (0: the defaults).
    pub traffic: u64,
    /// What its health check says about its app.
    pub health: pb::AppHealth,
}

/// Most endpoint states kept per proxy.
const MAX_ENDPOINT_STATES: usize = 256;

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The instance id is another identity's.
    #[error("instance `{instance}` is registered by another identity")]
    Taken { instance: String },
    /// The identity has as many instances as it may.
    #[error("`{id}` already has {MAX_INSTANCES_PER_IDENTITY} registered instances")]
    TooMany { id: String },
    /// Another service's live registration announces the same app address: letting both
    /// stand would let one service take connections callers meant for the other.
    #[error(
        "service address {address} is announced by service `{service}` until its registration lapses"
    )]
    AddressTaken {
        address: std::net::SocketAddr,
        service: String,
    },
}

/// A change could not be published.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored policy version {version} no longer validates: {problems}")]
    Invalid { version: u64, problems: String },
}

fn read<T: ?Sized>(lock: &RwLock<Arc<T>>) -> Arc<T> {
    match lock.read() {
        Ok(guard) => Arc::clone(&guard),
        Err(poisoned) => Arc::clone(&poisoned.into_inner()),
    }
}

fn write<T: ?Sized>(lock: &RwLock<Arc<T>>, value: Arc<T>) {
    match lock.write() {
        Ok(mut guard) => *guard = value,
        Err(poisoned) => *poisoned.into_inner() = value,
    }
}

/// Parses stored files as a bundle of `version`.
pub fn bundle_of(files: &[StoredFile], version: u64) -> Result<PolicyBundle, String> {
    let sources: Vec<PolicySource> = files
        .iter()
        .map(|f| PolicySource {
            name: f.name.clone(),
            text: f.text.clone(),
        })
        .collect();
    PolicyBundle::from_sources(&sources)
        .map(|b| b.with_version(version))
        .map_err(|e| e.to_string())
}

impl Hub {
    /// The hub over `store`, loading the latest policies and the deny-list from it.
    pub async fn load(
        trust_domain: TrustDomain,
        ca: Arc<Ca>,
        store: Arc<dyn Store>,
        heartbeat_interval: Duration,
        audit: signet_audit::AuditLog,
    ) -> Result<Self, HubError> {
        let hub = Self {
            audit,
            stats: crate::server::stats::StatsBook::default(),
            metrics: crate::server::metrics::CpMetrics::default(),
            tracer: std::sync::OnceLock::new(),
            changed_at: Mutex::new(Instant::now()),
            trust_domain,
            ca,
            store,
            heartbeat_interval,
            started: SystemTime::now(),
            applied: RwLock::new(Arc::new(Applied {
                meta: None,
                bundle: Arc::new(PolicyBundle::empty()),
                files: Vec::new(),
            })),
            shadow: RwLock::new(Arc::new(None)),
            authn: RwLock::new(Arc::new(AuthnState::default())),
            traffic: RwLock::new(Arc::new(TrafficState::default())),
            deny: RwLock::new(Arc::new(pb::DenyList::default())),
            deny_generation: std::sync::atomic::AtomicU64::new(0),
            registry: Mutex::new(HashMap::new()),
            labels: RwLock::new(Arc::new(BTreeMap::new())),
            selectors: RwLock::new(Arc::new(BTreeMap::new())),
            federated: RwLock::new(Arc::new(Vec::new())),
            bundle_refresh_hint_secs: std::sync::atomic::AtomicU64::new(300),
            bundle_endpoint_served: std::sync::atomic::AtomicBool::new(false),
            changes: watch::channel(1).0,
            reports: tokio::sync::Notify::new(),
            renewals: Mutex::new(HashMap::new()),
            bundle_marks: Mutex::new(Vec::new()),
            duties: crate::server::duties::Duties::default(),
            replica: std::sync::OnceLock::new(),
        };
        hub.mark_bundle(*hub.changes.borrow());
        hub.follow_store().await?;
        hub.restore_members().await?;
        Ok(hub)
    }

    /// Brings what this control plane distributes up to what the store holds: policies, the
    /// shadow candidate, traffic settings, end-user authentication, the deny-list and
    /// service labels, each published only if it differs from what is in force. Run at
    /// start, and whenever the store's change feed moves (another replica wrote).
    pub async fn follow_store(&self) -> Result<(), HubError> {
        if let Some((meta, files)) = self.store.latest_policies().await? {
            let current = self.applied().meta.as_ref().map(|m| m.version);
            if current != Some(meta.version) {
                self.publish_policies(meta, files)?;
            }
        }
        let candidate = self.store.current_shadow().await?;
        let current = self.shadow().as_ref().as_ref().map(|s| s.meta.id);
        if candidate.as_ref().map(|c| c.id) != current {
            let shadowed = match candidate {
                Some(candidate) => {
                    let bundle = bundle_of(&candidate.files, candidate.id).map_err(|problems| {
                        HubError::Invalid {
                            version: candidate.id,
                            problems: format!("(shadow candidate) {problems}"),
                        }
                    })?;
                    Some((candidate, bundle))
                }
                None => None,
            };
            self.publish_shadow(shadowed);
        }
        if let Some(stored) = self.store.traffic_versions(None, 1).await?.pop()
            && stored.version != self.traffic().version
        {
            let doc =
                signet_traffic::load(&stored.doc, "traffic").map_err(|e| HubError::Invalid {
                    version: stored.version,
                    problems: format!("(traffic) {e}"),
                })?;
            self.publish_traffic(TrafficState {
                version: stored.version,
                doc,
                author: stored.author,
                applied_at: stored.created_at,
            });
        }
        if let Some(stored) = self.store.latest_authn().await? {
            let version = stored.version;
            let doc: crate::server::authn::AuthnDoc =
                serde_json::from_str(&stored.doc).map_err(|e| HubError::Invalid {
                    version,
                    problems: format!("(authn) {e}"),
                })?;
            let mut keys = doc.inline_keys();
            let mut fetched_at = BTreeMap::new();
            for fetched in self.store.authn_keys().await? {
                keys.insert(fetched.provider.clone(), fetched.jwks);
                fetched_at.insert(fetched.provider, fetched.fetched_at);
            }
            let current = self.authn();
            if current.version != version || current.keys != keys {
                self.publish_authn(AuthnState {
                    version,
                    doc: Some(doc),
                    author: stored.author,
                    applied_at: stored.created_at,
                    keys,
                    fetched_at,
                    fetch_errors: current.fetch_errors.clone(),
                });
            }
        }
        self.reload_deny_list().await?;
        let labels: BTreeMap<ServiceRef, BTreeMap<String, String>> = self
            .store
            .service_labels()
            .await?
            .into_iter()
            .map(|l| (ServiceRef::new(l.name, l.namespace), l.labels))
            .collect();
        if *read(&self.labels) != labels {
            write(&self.labels, Arc::new(labels));
            self.changed();
        }
        let selectors: BTreeMap<ServiceRef, WorkloadSelectors> = self
            .store
            .workload_selectors()
            .await?
            .into_iter()
            .map(|s| (ServiceRef::new(s.name.clone(), s.namespace.clone()), s))
            .collect();
        if *read(&self.selectors) != selectors {
            write(&self.selectors, Arc::new(selectors));
            self.changed();
        }
        self.reload_federations().await?;
        Ok(())
    }

    /// Takes in the store's federations (a stored bundle that does not parse is left out,
    /// and logged); publishes them when they changed.
    pub async fn reload_federations(&self) -> Result<(), HubError> {
        let mut federated = Vec::new();
        for record in self.store.federations().await? {
            let parsed = signet_spiffe::TrustDomain::new(&record.trust_domain)
                .map_err(|e| e.to_string())
                .and_then(|td| crate::server::federation::parse_bundle(&td, &record.bundle));
            match parsed {
                Ok(bundle) => {
                    federated.push(crate::server::federation::Federated { record, bundle })
                }
                Err(e) => {
                    tracing::error!(trust_domain = %record.trust_domain, error = %e, "a stored federated bundle does not parse; leaving it out")
                }
            }
        }
        let before = self.federations();
        let same = before.len() == federated.len()
            && before
                .iter()
                .zip(&federated)
                .all(|(a, b)| a.record == b.record && a.bundle == b.bundle);
        if !same {
            let bundles_changed = before.len() != federated.len()
                || before
                    .iter()
                    .zip(&federated)
                    .any(|(a, b)| a.bundle != b.bundle);
            write(&self.federated, Arc::new(federated));
            if bundles_changed {
                self.changed();
            }
        }
        Ok(())
    }

    /// The federations in force.
    pub fn federations(&self) -> Arc<Vec<crate::server::federation::Federated>> {
        read(&self.federated)
    }

    /// The trust bundle with the federated domains' bundles: what proxies trust.
    pub fn trusted(&self) -> TrustBundle {
        self.ca
            .bundle()
            .with_federated(self.federations().iter().map(|f| f.bundle.clone()))
    }

    /// The Workload API selectors operators set for `service`, if any.
    pub fn selectors_of(&self, service: &ServiceRef) -> Option<WorkloadSelectors> {
        read(&self.selectors).get(service).cloned()
    }

    /// Every service's Workload API selectors.
    pub fn all_selectors(&self) -> Vec<WorkloadSelectors> {
        read(&self.selectors).values().cloned().collect()
    }

    /// Stores `entry` (already validated; no selectors: removes it) and publishes it to the
    /// service's proxies; returns the change counter a proxy enforcing it reports.
    pub async fn set_selectors(&self, entry: WorkloadSelectors) -> Result<u64, HubError> {
        let service = ServiceRef::new(entry.name.clone(), entry.namespace.clone());
        self.store.put_workload_selectors(entry.clone()).await?;
        let mut all = (*read(&self.selectors)).clone();
        if entry.selectors.is_empty() {
            all.remove(&service);
        } else {
            all.insert(service, entry);
        }
        write(&self.selectors, Arc::new(all));
        Ok(self.changed())
    }

    /// The labels of `service`.
    pub fn labels_of(&self, service: &ServiceRef) -> BTreeMap<String, String> {
        read(&self.labels).get(service).cloned().unwrap_or_default()
    }

    /// Stores `entry` (already validated) and publishes it to every proxy; returns the
    /// change counter a proxy enforcing it reports.
    pub async fn set_labels(&self, entry: ServiceLabels) -> Result<u64, HubError> {
        let service = ServiceRef::new(entry.name.clone(), entry.namespace.clone());
        let labels = entry.labels.clone();
        self.store.put_service_labels(entry).await?;
        let mut all = (*read(&self.labels)).clone();
        if labels.is_empty() {
            all.remove(&service);
        } else {
            all.insert(service, labels);
        }
        write(&self.labels, Arc::new(all));
        Ok(self.changed())
    }

    /// Every registered workload identity with its service and that service's labels: what
    /// callers are, for every decision the mesh makes. An identity none of whose proxies is
    /// registered is not listed (unregistered: no service, no labels).
    pub fn directory(&self) -> Directory {
        self.directory_of(&self.proxies())
    }

    fn directory_of(&self, proxies: &[ProxyEntry]) -> Directory {
        let labels = read(&self.labels);
        let mut directory = Directory::new().with_trust_domain(self.trust_domain.clone());
        for p in proxies {
            let service = ServiceRef::new(p.service.clone(), p.namespace.clone());
            let tags = labels.get(&service).cloned().unwrap_or_default();
            directory.insert(p.spiffe_id.clone(), p.service.clone(), tags);
        }
        directory
    }

    /// The registry as the access matrix sees it: every registered workload (as
    /// [`Hub::directory`] lists it) and every service with a registered proxy, its port and
    /// labels. No request samples.
    pub fn inventory(&self) -> Inventory {
        // One registry snapshot for both halves, so every listed caller's service is listed.
        let proxies = self.proxies();
        let directory = self.directory_of(&proxies);
        let workloads = directory
            .iter()
            .map(|(id, entry)| KnownWorkload {
                spiffe_id: id.clone(),
                service: Some(entry.service.clone()),
                labels: entry.labels.iter().cloned().collect(),
                source_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            })
            .collect();
        let labels = read(&self.labels);
        let mut services: BTreeMap<ServiceRef, u16> = BTreeMap::new();
        for p in proxies {
            let port = p
                .endpoint
                .rsplit(':')
                .next()
                .and_then(|port| port.parse().ok())
                .unwrap_or(8080);
            services
                .entry(ServiceRef::new(
                    p.registration.service,
                    p.registration.namespace,
                ))
                .or_insert(port);
        }
        let services = services
            .into_iter()
            .map(|(service, port)| KnownService {
                labels: labels.get(&service).cloned().unwrap_or_default(),
                name: service.name,
                namespace: service.namespace,
                port,
            })
            .collect();
        Inventory {
            workloads,
            services,
            requests: Vec::new(),
            trust_domain: Some(self.trust_domain.to_string()),
        }
    }

    /// The policies being distributed.
    pub fn applied(&self) -> Arc<Applied> {
        read(&self.applied)
    }

    /// Publishes a committed policy version to every proxy.
    pub fn publish_policies(
        &self,
        meta: PolicyVersion,
        files: Vec<StoredFile>,
    ) -> Result<(), HubError> {
        let bundle = bundle_of(&files, meta.version).map_err(|problems| HubError::Invalid {
            version: meta.version,
            problems,
        })?;
        self.publish_bundle(meta, bundle, files);
        Ok(())
    }

    /// Publishes a committed policy version already parsed as `bundle` (given `meta`'s
    /// version here).
    pub fn publish_bundle(
        &self,
        meta: PolicyVersion,
        bundle: PolicyBundle,
        files: Vec<StoredFile>,
    ) {
        let bundle = bundle.with_version(meta.version);
        write(
            &self.applied,
            Arc::new(Applied {
                meta: Some(meta),
                bundle: Arc::new(bundle),
                files,
            }),
        );
        self.changed();
    }

    /// The shadow candidate being distributed, if any.
    pub fn shadow(&self) -> Arc<Option<Shadowed>> {
        read(&self.shadow)
    }

    /// Publishes a stored shadow candidate (parsed as `bundle`), or none; returns the change
    /// counter a proxy running it reports.
    pub fn publish_shadow(&self, candidate: Option<(ShadowCandidate, PolicyBundle)>) -> u64 {
        let shadowed = candidate.map(|(meta, bundle)| Shadowed {
            bundle: Arc::new(bundle.with_version(meta.id)),
            meta,
        });
        write(&self.shadow, Arc::new(shadowed));
        self.changed()
    }

    /// Traffic settings in force.
    pub fn traffic(&self) -> Arc<TrafficState> {
        read(&self.traffic)
    }

    /// Publishes traffic settings to every proxy; returns the change counter a proxy
    /// applying them reports.
    pub fn publish_traffic(&self, state: TrafficState) -> u64 {
        write(&self.traffic, Arc::new(state));
        self.changed()
    }

    /// End-user authentication in force.
    pub fn authn(&self) -> Arc<AuthnState> {
        read(&self.authn)
    }

    /// Publishes `state` to every proxy; returns the change counter a proxy enforcing it
    /// reports.
    pub fn publish_authn(&self, state: AuthnState) -> u64 {
        write(&self.authn, Arc::new(state));
        self.changed()
    }

    /// Notes a fetch of `provider`'s keys: new keys (published when they differ), or an
    /// error (the keys in force stay).
    pub fn fetched_keys(&self, version: u64, provider: &str, result: Result<String, String>) {
        let current = self.authn();
        if current.version != version {
            return;
        }
        let mut next = AuthnState::clone(&current);
        let changed = match result {
            Ok(jwks) => {
                next.fetch_errors.remove(provider);
                next.fetched_at.insert(
                    provider.to_owned(),
                    crate::server::store::unix_ms(SystemTime::now()),
                );
                let changed = current.keys.get(provider) != Some(&jwks);
                next.keys.insert(provider.to_owned(), jwks);
                changed
            }
            Err(e) => {
                next.fetch_errors.insert(provider.to_owned(), e);
                false
            }
        };
        write(&self.authn, Arc::new(next));
        if changed {
            self.changed();
        }
    }

    /// Re-reads the deny-list from the store and publishes it.
    pub async fn reload_deny_list(&self) -> Result<(), HubError> {
        let entries: Vec<DenyEntry> = self.store.deny_list().await?;
        let mut list = pb::DenyList::default();
        for e in entries {
            match e.kind.as_str() {
                "spiffe_id" => list.spiffe_ids.push(e.value),
                _ => list.serials.push(e.value),
            }
        }
        if *self.deny_list() != list {
            write(&self.deny, Arc::new(list));
            let generation = self.changed();
            self.deny_generation
                .store(generation, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    /// The change counter when the deny-list last changed.
    pub fn deny_generation(&self) -> u64 {
        self.deny_generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The deny-list being distributed.
    pub fn deny_list(&self) -> Arc<pb::DenyList> {
        read(&self.deny)
    }

    /// The trust bundle as the API sends it.
    pub fn bundle(&self) -> pb::TrustBundle {
        bundle_message(&self.trusted())
    }

    /// Bumps the change counter (every config stream recomputes its proxy's view); returns
    /// the new value.
    pub fn changed(&self) -> u64 {
        if let Ok(mut at) = self.changed_at.lock() {
            *at = Instant::now();
        }
        let mut now = 0;
        self.changes.send_modify(|v| {
            *v += 1;
            now = *v;
        });
        self.mark_bundle(now);
        now
    }

    /// Notes the bundle's sequence at change counter `at` if it moved.
    fn mark_bundle(&self, at: u64) {
        let sequence = self.ca.bundle().sequence();
        if let Ok(mut marks) = self.bundle_marks.lock()
            && marks.last().is_none_or(|(_, s)| *s != sequence)
        {
            marks.push((at, sequence));
            // Proxies acknowledge within seconds; older marks only matter to a proxy stuck
            // far behind, which counts as not having the newer bundles either way.
            if marks.len() > 32 {
                marks.remove(0);
            }
        }
    }

    /// The bundle sequence a proxy holds that acknowledged trust update `version`.
    pub fn acked_bundle(&self, version: u64) -> u64 {
        self.bundle_marks.lock().map_or(0, |marks| {
            marks
                .iter()
                .rev()
                .find(|(at, _)| *at <= version)
                .map_or(0, |(_, sequence)| *sequence)
        })
    }

    /// Follows the change counter.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// A stream of `view(hub)`: sent at once, then after each change whose result differs
    /// from the last one sent by `same`. Ends when the receiver goes away.
    pub fn follow<T, V, S>(
        self: &Arc<Self>,
        stream: &'static str,
        view: V,
        same: S,
    ) -> tokio_stream::wrappers::ReceiverStream<Result<T, tonic::Status>>
    where
        T: Clone + Send + 'static,
        V: Fn(&Hub) -> T + Send + 'static,
        S: Fn(&T, &T) -> bool + Send + 'static,
    {
        let hub = Arc::clone(self);
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            let _open = crate::server::metrics::OpenStream::new(&hub.metrics);
            let mut changes = hub.subscribe();
            let mut last: Option<T> = None;
            loop {
                // Mark the current generation seen before reading the state, so a change
                // made while computing wakes the loop again.
                changes.borrow_and_update();
                let now = view(&hub);
                if !last.as_ref().is_some_and(|l| same(l, &now)) {
                    if tx.send(Ok(now.clone())).await.is_err() {
                        return;
                    }
                    // The first message is the state at opening, not a change's push.
                    if last.is_some() {
                        let lag = hub
                            .changed_at
                            .lock()
                            .map_or(Duration::ZERO, |at| at.elapsed());
                        hub.metrics.pushed(stream, lag);
                    }
                    last = Some(now);
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }

    /// The current change counter.
    pub fn generation(&self) -> u64 {
        *self.changes.borrow()
    }

    fn with_registry<T>(&self, f: impl FnOnce(&mut HashMap<String, ProxyEntry>) -> T) -> T {
        match self.registry.lock() {
            Ok(mut guard) => f(&mut guard),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Registers (or re-registers) a proxy instance. An instance id belongs to the identity
    /// that registered it first: another identity cannot take over its registry entry.
    pub fn register(
        &self,
        registration: Registration,
        versions: Versions,
    ) -> Result<(), RegisterError> {
        let now = SystemTime::now();
        let endpoint_changed = self.with_registry(|r| {
            let before = r.get(&registration.instance);
            if before.is_some_and(|e| e.spiffe_id != registration.spiffe_id) {
                return Err(RegisterError::Taken {
                    instance: registration.instance,
                });
            }
            if before.is_none()
                && r.values()
                    .filter(|e| e.spiffe_id == registration.spiffe_id)
                    .count()
                    >= MAX_INSTANCES_PER_IDENTITY
            {
                return Err(RegisterError::TooMany {
                    id: registration.spiffe_id.as_str().to_owned(),
                });
            }
            if let Some(address) = registration.service_address {
                let other = r.values().find(|e| {
                    e.service_address == Some(address)
                        && (e.service != registration.service
                            || e.namespace != registration.namespace)
                });
                if let Some(other) = other {
                    return Err(RegisterError::AddressTaken {
                        address,
                        service: other.service.clone(),
                    });
                }
            }
            let changed = before.map(|e| {
                (
                    (&e.endpoint, &e.service, &e.labels, e.service_address),
                    e.weight,
                    e.app_health,
                )
            }) != Some((
                (
                    &registration.endpoint,
                    &registration.service,
                    &registration.labels,
                    registration.service_address,
                ),
                registration.weight,
                versions.health,
            ));
            let registered_at = before.map_or(now, |e| e.registered_at);
            r.insert(
                registration.instance.clone(),
                ProxyEntry {
                    registration,
                    config_version: versions.config,
                    policy_version: versions.policy,
                    trust_version: versions.trust,
                    trust_bundle: self.acked_bundle(versions.trust),
                    shadow_version: versions.shadow,
                    traffic_version: versions.traffic,
                    app_health: versions.health,
                    endpoints: before.map(|e| e.endpoints.clone()).unwrap_or_default(),
                    registered_at,
                    last_seen: now,
                    seen: Instant::now(),
                    local: true,
                    restored: false,
                },
            );
            Ok(changed)
        })?;
        self.reports.notify_waiters();
        if endpoint_changed {
            self.changed();
        }
        Ok(())
    }

    /// Records a heartbeat; `false` if the instance is not registered (it must register again).
    pub fn heartbeat(
        &self,
        instance: &str,
        caller: &SpiffeId,
        versions: Versions,
        serial: String,
        mut endpoints: Vec<pb::EndpointState>,
        stats: Vec<pb::TrafficStats>,
    ) -> bool {
        // Shown to operators only; what a proxy may report is still bounded.
        endpoints.retain(|e| e.service.len() <= 253 && e.address.len() <= 64);
        endpoints.truncate(MAX_ENDPOINT_STATES);
        let mut health_changed = false;
        let found = self.with_registry(|r| match r.get_mut(instance) {
            Some(e) if e.spiffe_id == *caller => {
                health_changed = e.app_health != versions.health;
                e.app_health = versions.health;
                e.endpoints = std::mem::take(&mut endpoints);
                e.config_version = versions.config;
                e.policy_version = versions.policy;
                e.trust_version = versions.trust;
                e.trust_bundle = self.acked_bundle(versions.trust);
                e.shadow_version = versions.shadow;
                e.traffic_version = versions.traffic;
                e.registration.serial = serial;
                e.last_seen = SystemTime::now();
                e.seen = Instant::now();
                // A proxy that moved here from another replica is this one's now.
                e.local = true;
                e.restored = false;
                self.renew(instance, versions.health, e.trust_bundle);
                self.stats
                    .record(instance, (&e.service, &e.namespace), stats);
                true
            }
            _ => false,
        });
        self.reports.notify_waiters();
        if health_changed {
            // Callers' endpoint sets leave out (or take back) this endpoint.
            self.changed();
        }
        found
    }

    /// Woken at every registration and heartbeat.
    pub fn reports(&self) -> &tokio::sync::Notify {
        &self.reports
    }

    /// Removes proxies whose heartbeats stopped; returns their instances.
    pub fn expire(&self, after: Duration) -> Vec<String> {
        let removed = self.with_registry(|r| {
            let gone: Vec<String> = r
                .values()
                .filter(|e| e.local && e.seen.elapsed() >= after)
                .map(|e| e.instance.clone())
                .collect();
            for instance in &gone {
                r.remove(instance);
            }
            gone
        });
        if !removed.is_empty() {
            self.changed();
        }
        removed
    }

    /// Restores the registrations kept in the store: each counts as just seen, so a proxy
    /// that does not heartbeat again (here or at another replica) leaves after three missed
    /// heartbeats as usual. Their configuration versions are unknown (0) until they do, and
    /// none is this replica's own (to wait for, or to count as connected) until then.
    async fn restore_members(&self) -> Result<(), StoreError> {
        let members = self.store.members().await?;
        let now = SystemTime::now();
        self.with_registry(|r| {
            for m in members {
                let Some((registration, registered_at)) = Registration::from_member(m) else {
                    continue;
                };
                r.insert(
                    registration.instance.clone(),
                    ProxyEntry {
                        registration,
                        config_version: 0,
                        policy_version: 0,
                        trust_version: 0,
                        trust_bundle: 0,
                        shadow_version: 0,
                        traffic_version: 0,
                        app_health: pb::AppHealth::Unknown,
                        endpoints: Vec::new(),
                        registered_at,
                        last_seen: now,
                        seen: Instant::now(),
                        local: false,
                        restored: true,
                    },
                );
            }
        });
        Ok(())
    }

    /// Notes a heartbeat's lease renewal, written to the store by [`Hub::sync_registry`].
    fn renew(&self, instance: &str, health: pb::AppHealth, trust_bundle: u64) {
        let at = crate::server::store::unix_ms(SystemTime::now());
        if let Ok(mut renewals) = self.renewals.lock() {
            renewals.insert(instance.to_owned(), (at, health as i32, trust_bundle));
        }
    }

    /// Shares the registry through the store: writes the leases this replica's proxies
    /// renewed, then takes in every registration another replica holds a fresh lease for
    /// (and drops those whose lease lapsed), so any replica serves every endpoint.
    pub async fn sync_registry(&self) -> Result<(), StoreError> {
        let leases: Vec<crate::server::store::Lease> = match self.renewals.lock() {
            Ok(mut renewals) => std::mem::take(&mut *renewals),
            Err(_) => HashMap::new(),
        }
        .into_iter()
        .map(
            |(instance, (at, app_health, trust_bundle))| crate::server::store::Lease {
                instance,
                at,
                app_health,
                trust_bundle,
            },
        )
        .collect();
        self.store.renew_members(leases).await?;
        if let Some(replica) = self.replica.get() {
            let mut row = replica.clone();
            row.last_seen = crate::server::store::unix_ms(SystemTime::now());
            self.store.put_replica(row).await?;
        }
        let lapse = i64::try_from((self.heartbeat_interval * 3).as_millis()).unwrap_or(i64::MAX);
        let cutoff = crate::server::store::unix_ms(SystemTime::now()).saturating_sub(lapse);
        let live: HashMap<String, crate::server::store::Member> = self
            .store
            .members()
            .await?
            .into_iter()
            .filter(|m| m.last_seen >= cutoff)
            .map(|m| (m.instance.clone(), m))
            .collect();
        let changed = self.with_registry(|r| {
            let before = r.len();
            let grace = self.heartbeat_interval * 3;
            r.retain(|instance, e| {
                e.local || live.contains_key(instance) || (e.restored && e.seen.elapsed() < grace)
            });
            let mut changed = r.len() != before;
            for (instance, member) in live {
                let health =
                    pb::AppHealth::try_from(member.app_health).unwrap_or(pb::AppHealth::Unknown);
                let last_seen = crate::server::store::from_unix_ms(member.last_seen);
                match r.get_mut(&instance) {
                    Some(e) if e.local => {}
                    Some(e) => {
                        if e.app_health != health {
                            e.app_health = health;
                            changed = true;
                        }
                        e.last_seen = last_seen;
                        e.trust_bundle = member.trust_bundle;
                    }
                    None => {
                        let trust_bundle = member.trust_bundle;
                        let Some((registration, registered_at)) = Registration::from_member(member)
                        else {
                            continue;
                        };
                        r.insert(
                            instance,
                            ProxyEntry {
                                registration,
                                config_version: 0,
                                policy_version: 0,
                                trust_version: 0,
                                trust_bundle,
                                shadow_version: 0,
                                traffic_version: 0,
                                app_health: health,
                                endpoints: Vec::new(),
                                registered_at,
                                last_seen,
                                seen: Instant::now(),
                                local: false,
                                restored: false,
                            },
                        );
                        changed = true;
                    }
                }
            }
            changed
        });
        if changed {
            self.changed();
        }
        Ok(())
    }

    /// Every registered proxy, by service then instance.
    pub fn proxies(&self) -> Vec<ProxyEntry> {
        let mut all: Vec<ProxyEntry> = self.with_registry(|r| r.values().cloned().collect());
        all.sort_by(|a, b| (&a.service, &a.instance).cmp(&(&b.service, &b.instance)));
        all
    }

    /// What the proxy of `service` in `namespace` must enforce, with the endpoints of
    /// `upstreams`.
    pub fn config_for(&self, service: &ServiceRef, upstreams: &[String]) -> pb::ProxyConfig {
        let applied = self.applied();
        let slice = applied.bundle.slice_for(service);
        let proxies = self.proxies();
        let upstreams: Vec<pb::Upstream> = upstreams
            .iter()
            .map(|name| {
                let all: Vec<&ProxyEntry> = proxies.iter().filter(|p| p.service == *name).collect();
                // Endpoints whose app fails its health check are left out, unless all do:
                // then every one is kept, since some answer beats none.
                let healthy: Vec<&ProxyEntry> = all
                    .iter()
                    .copied()
                    .filter(|p| p.app_health != pb::AppHealth::Unhealthy)
                    .collect();
                let members = if healthy.is_empty() { all } else { healthy };
                // Two instances announcing one address are one endpoint, as heavy as the
                // heavier of them, with its labels.
                let mut endpoints: BTreeMap<&str, (u32, &signet_traffic::labels::Labels)> =
                    BTreeMap::new();
                for p in &members {
                    let e = endpoints
                        .entry(p.endpoint.as_str())
                        .or_insert((0, &p.labels));
                    if p.weight > e.0 {
                        *e = (p.weight, &p.labels);
                    }
                }
                let identities: BTreeSet<String> = members
                    .iter()
                    .map(|p| p.spiffe_id.as_str().to_owned())
                    .collect();
                // Every announced app address, healthy or not: a connection to an endpoint
                // whose app is failing is still a connection to the service.
                let addresses: BTreeSet<std::net::SocketAddr> = proxies
                    .iter()
                    .filter(|p| p.service == *name)
                    .filter_map(|p| p.service_address)
                    .collect();
                pb::Upstream {
                    service: name.clone(),
                    endpoints: endpoints.keys().map(|e| (*e).to_owned()).collect(),
                    weights: endpoints.values().map(|(w, _)| *w).collect(),
                    labels: endpoints
                        .values()
                        .map(|(_, l)| pb::EndpointLabels {
                            labels: l.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                        })
                        .collect(),
                    identities: identities.into_iter().collect(),
                    addresses: addresses.iter().map(ToString::to_string).collect(),
                }
            })
            .collect();
        let shadow = self.shadow();
        let shadow = shadow.as_ref().as_ref().map(|candidate| {
            let slice = candidate.bundle.slice_for(service);
            pb::PolicySlice {
                version: candidate.meta.id,
                bundle_hash: candidate.bundle.hash().to_owned(),
                files: slice_files(&slice),
            }
        });
        let authn = self.authn();
        let authn = authn
            .doc
            .as_ref()
            .and_then(|doc| doc.for_service(&service.name, &service.namespace, &authn.keys));
        let traffic = self.traffic();
        let traffic = (traffic.version > 0).then(|| {
            // Its upstreams' entries, and its own service's (the health check of its app).
            let names: Vec<&str> = upstreams
                .iter()
                .map(|u: &pb::Upstream| u.service.as_str())
                .chain(std::iter::once(service.name.as_str()))
                .collect();
            pb::TrafficSlice {
                version: traffic.version,
                document: traffic.doc.only(&names).to_json(),
            }
        });
        pb::ProxyConfig {
            version: self.generation(),
            shadow,
            authn,
            traffic,
            policies: Some(pb::PolicySlice {
                version: applied.meta.as_ref().map_or(0, |m| m.version),
                bundle_hash: applied.bundle.hash().to_owned(),
                files: slice_files(&slice),
            }),
            // On their own stream (`WatchTrust`), so no policy can hold them back.
            bundle: None,
            deny: None,
            upstreams,
            workloads: crate::api::convert::workloads_message(&self.directory()),
            labels: self
                .labels_of(service)
                .into_iter()
                .map(|(key, value)| pb::Label { key, value })
                .collect(),
            attestation: self.selectors_of(service).map(|s| pb::WorkloadAttestation {
                selectors: s.selectors,
            }),
        }
    }
}

/// A slice's policies as files: each policy's text under the file it came from, in source
/// order, so the proxy re-validates exactly what was applied.
pub fn slice_files(slice: &PolicyBundle) -> Vec<pb::PolicyFile> {
    let mut by_file: BTreeMap<&str, Vec<(usize, usize, &str)>> = BTreeMap::new();
    for origin in slice.origins().values() {
        by_file.entry(origin.file.as_str()).or_default().push((
            origin.line,
            origin.col,
            origin.text.as_str(),
        ));
    }
    by_file
        .into_iter()
        .map(|(name, mut policies)| {
            policies.sort_unstable();
            pb::PolicyFile {
                name: name.to_owned(),
                text: policies
                    .iter()
                    .map(|(_, _, text)| *text)
                    .collect::<Vec<_>>()
                    .join("\n\n"),
            }
        })
        .collect()
}

/// A trust bundle as the API sends it, with the bundles of the domains it federates with.
pub fn bundle_message(bundle: &TrustBundle) -> pb::TrustBundle {
    let mut message = domain_message(bundle);
    message.federated = bundle.federated().iter().map(domain_message).collect();
    message
}

/// One trust domain's bundle, without federations.
fn domain_message(bundle: &TrustBundle) -> pb::TrustBundle {
    pb::TrustBundle {
        trust_domain: bundle.trust_domain().as_str().to_owned(),
        roots: bundle.roots().map(|r| r.to_vec()).collect(),
        sequence: bundle.sequence(),
        jwt_authorities: bundle
            .jwt_authorities()
            .iter()
            .map(|a| pb::JwtAuthority {
                key_id: a.key_id().to_owned(),
                jwk: a.to_jwk_json(),
            })
            .collect(),
        federated: Vec::new(),
    }
}
