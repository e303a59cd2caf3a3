//! The control plane's durable state, behind one trait so that the SQLite default and a
//! PostgreSQL backend share every caller.
//!
//! Contract for every backend:
//! - `open` applies pending migrations in order, each in its own transaction, and refuses a
//!   database migrated by a newer Signet.
//! - Every write is one transaction: a policy version and all of its files appear together
//!   or not at all.
//! - `apply_policies` fails with [`StoreError::Conflict`] when `expected` is given and is not
//!   the latest version, so a change reviewed against one version is never applied on top
//!   of another.

use std::time::SystemTime;

use signet_ca::BoxFuture;
use signet_ca::token::{TokenRecord, TokenStoreError};

pub mod migrate;
pub mod sql;

pub use sql::{Dialect, SqlStore};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Backend(String),
    #[error("policy version {expected} is no longer the latest (it is {latest})")]
    Conflict { expected: u64, latest: u64 },
    #[error("no policy version {0}")]
    NoSuchVersion(u64),
    /// Another writer changed it first (a compare-and-swap lost).
    #[error("{0} was changed by another replica meanwhile")]
    Raced(String),
}

/// The API's types the store keeps as they are.
pub use crate::model::{DenyEntry, OperatorAction, PolicyFile as StoredFile, PolicyVersion};

/// A new policy version to write.
#[derive(Debug, Clone)]
pub struct NewPolicyVersion {
    pub hash: String,
    pub policies: u64,
    pub author: String,
    pub message: String,
    pub rolled_back_from: Option<u64>,
    pub files: Vec<StoredFile>,
    /// The version the change was made against (`Some(0)`: none yet); `None` skips the check.
    pub expected: Option<u64>,
    /// The gate's access diff summary.
    pub widened: Option<u64>,
    pub narrowed: Option<u64>,
}

/// The labels operators set on one service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceLabels {
    pub namespace: String,
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Unix milliseconds.
    pub updated_at: i64,
    pub author: String,
}

/// Who may take one service's identity from its proxies' Workload API.
pub use crate::model::WorkloadSelectors;

/// A trust domain this mesh federates with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Federation {
    pub trust_domain: String,
    /// The bundle endpoint's URL.
    pub endpoint: String,
    /// `https_spiffe` or `https_web`.
    pub profile: String,
    /// https_spiffe: the SPIFFE ID the endpoint must present.
    pub endpoint_spiffe_id: String,
    /// https_web: the roots (PEM) its certificate must chain to; empty: the system's.
    pub endpoint_ca: String,
    /// The bundle held (SPIFFE bundle format): the bootstrap one until the first fetch.
    pub bundle: String,
    /// Unix milliseconds; 0: never fetched.
    pub refreshed_at: i64,
    /// Unix milliseconds.
    pub next_refresh: i64,
    /// Why the last fetch failed; empty when it did not.
    pub last_error: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub author: String,
}

/// An issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IssuedCertificate {
    /// Lowercase hex.
    pub serial: String,
    pub spiffe_id: String,
    /// Unix milliseconds, as are the other times.
    pub not_before: i64,
    pub not_after: i64,
    pub issued_at: i64,
    /// `issue` (join token) or `renew`.
    pub kind: String,
}

/// A registered proxy, as kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub instance: String,
    pub spiffe_id: String,
    pub service: String,
    pub namespace: String,
    pub endpoint: String,
    /// Its weight in callers' balancers.
    pub weight: u32,
    /// Its labels, which traffic subsets select by.
    pub labels: signet_traffic::labels::Labels,
    /// The address clients outside the mesh dial for its app, if it announced one.
    pub service_address: Option<std::net::SocketAddr>,
    /// Its lease: when its proxy last heartbeated, at any replica (unix milliseconds).
    pub last_seen: i64,
    /// What its app's health check last said (`AppHealth` as a number).
    pub app_health: i32,
    /// The trust bundle sequence it has acknowledged (0: unknown).
    pub trust_bundle: u64,
    pub admin: String,
    pub serial: String,
    /// Unix milliseconds.
    pub registered_at: i64,
}

/// A control-plane replica on the database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaRow {
    /// Random, made at start.
    pub id: String,
    pub grpc: String,
    pub api: String,
    /// Its Signet version.
    pub version: String,
    /// Unix milliseconds.
    pub started_at: i64,
    /// Unix milliseconds.
    pub last_seen: i64,
}

/// A registration's lease renewed by a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub instance: String,
    /// Unix milliseconds.
    pub at: i64,
    pub app_health: i32,
    /// The trust bundle sequence the proxy has acknowledged.
    pub trust_bundle: u64,
}

/// A shipped batch to keep: its records and checkpoints, and the writer's chain moving from
/// one tip to the next (only if it still stands at `from`; `None`: not kept before).
#[derive(Debug, Clone)]
pub struct AuditBatch {
    pub writer: String,
    pub from: Option<signet_audit::receiver::Tip>,
    pub to: signet_audit::receiver::Tip,
    pub records: Vec<AuditRow>,
    /// `(last record signed, exact line)`.
    pub checkpoints: Vec<(u64, String)>,
}

/// The CA as stored: its state and built-in material, sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCa {
    /// Bumped by each write.
    pub revision: u64,
    pub trust_domain: String,
    /// Which key-encryption key sealed it (an id, never the key).
    pub kek_id: String,
    pub sealed: Vec<u8>,
    /// Unix seconds no SVID of the active backend outlives.
    pub issued_until: u64,
}

/// A write of the CA row: applied only if the stored revision is still `expected`
/// (`None`: only if there is no row yet).
#[derive(Debug, Clone)]
pub struct CaWrite {
    pub expected: Option<u64>,
    pub trust_domain: String,
    pub kek_id: String,
    pub sealed: Vec<u8>,
    /// Replaces the issuance horizon (unix seconds) when given; kept otherwise.
    pub issued_until: Option<u64>,
}

/// Who holds a singleton duty.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DutyLease {
    pub name: String,
    /// The replica's id.
    pub holder: String,
    /// Unix milliseconds: since when this holder has it.
    pub since: i64,
    /// Unix milliseconds: when the lease lapses unless renewed.
    pub expires_at: i64,
}

/// An indexed audit record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRow {
    /// Position in the index (for `after`).
    pub id: i64,
    pub writer: String,
    pub seq: u64,
    /// Unix nanoseconds.
    pub time: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub decision: Option<String>,
    pub action: Option<String>,
    pub principal: Option<String>,
    pub resource: Option<String>,
    pub path: Option<String>,
    pub policies: Option<String>,
    /// A shadow record's candidate bundle hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// The record's line as written.
    pub line: String,
}

/// Which audit records to return.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AuditQuery {
    /// Only after this index position.
    #[serde(default)]
    pub after: Option<i64>,
    /// `allow` or `deny`: decisions (and operator actions) that were made, never what a
    /// shadow candidate would have done.
    #[serde(default)]
    pub decision: Option<String>,
    #[serde(default)]
    pub principal: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub policy: Option<String>,
    /// Unix nanoseconds, inclusive.
    #[serde(default)]
    pub since: Option<u64>,
    #[serde(default)]
    pub until: Option<u64>,
    /// Newest `limit` (default 100, at most 10,000), returned oldest first.
    #[serde(default)]
    pub limit: Option<u32>,
    /// The oldest `limit` instead of the newest (to page forwards with `after`).
    #[serde(default)]
    pub oldest: bool,
}

/// A candidate bundle installed for shadow mode.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShadowCandidate {
    pub id: u64,
    pub hash: String,
    pub policies: u64,
    /// Unix milliseconds.
    pub installed_at: i64,
    pub author: String,
    pub message: String,
    #[serde(skip)]
    pub files: Vec<StoredFile>,
}

/// A candidate to install.
#[derive(Debug, Clone)]
pub struct NewShadow {
    pub hash: String,
    pub policies: u64,
    pub author: String,
    pub message: String,
    pub files: Vec<StoredFile>,
}

/// One flow of a shadow report: the candidate's decisions that differ from the enforced
/// ones for one caller, service and action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShadowFlow {
    pub principal: String,
    pub service: String,
    pub action: String,
    /// `allow` (newly allowed) or `deny` (newly denied).
    pub would: String,
    pub count: u64,
    /// Unix nanoseconds of the first and the last such decision.
    pub first: u64,
    pub last: u64,
}

/// An applied end-user authentication document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuthn {
    pub version: u64,
    /// The document, JSON.
    pub doc: String,
    pub author: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// An applied traffic document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTraffic {
    pub version: u64,
    /// The document, canonical JSON.
    pub doc: String,
    pub author: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Settings changed from the version before.
    pub changes: u64,
    /// The version this one restored, for a rollback.
    pub rollback_of: Option<u64>,
}

/// Keys last fetched for a provider configured by URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedKeys {
    pub provider: String,
    pub jwks: String,
    /// Unix milliseconds.
    pub fetched_at: i64,
}

/// A policy version with its files.
pub type VersionWithFiles = (PolicyVersion, Vec<StoredFile>);

/// The control plane's storage.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Writes a new policy version with its files; returns its number.
    fn apply_policies(&self, new: NewPolicyVersion) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// The latest policy version and its files, if any was applied.
    fn latest_policies(&self) -> BoxFuture<'_, Result<Option<VersionWithFiles>, StoreError>>;
    /// One policy version and its files.
    fn policy_version(&self, version: u64) -> BoxFuture<'_, Result<VersionWithFiles, StoreError>>;
    /// Every policy version, newest first.
    fn policy_history(&self) -> BoxFuture<'_, Result<Vec<PolicyVersion>, StoreError>>;

    /// Join tokens (the contract of [`signet_ca::TokenStore`]).
    fn insert_token(&self, record: TokenRecord) -> BoxFuture<'_, Result<(), TokenStoreError>>;
    fn get_token<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenRecord>, TokenStoreError>>;
    fn mark_token_used<'a>(
        &'a self,
        id: &'a str,
        at: SystemTime,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>>;

    /// Stores an operator bearer token's hash under `name`, replacing an older one.
    fn put_operator_token<'a>(
        &'a self,
        name: &'a str,
        spiffe_id: &'a str,
        token_sha256: [u8; 32],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Whether an operator token named `name` exists.
    fn has_operator_token<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// The operator identity a bearer token's hash belongs to.
    fn operator_for_token(
        &self,
        token_sha256: [u8; 32],
    ) -> BoxFuture<'_, Result<Option<String>, StoreError>>;

    /// Records an issued certificate.
    fn record_certificate(&self, cert: IssuedCertificate) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Certificates issued to `spiffe_id`, newest first, at most `limit`.
    fn certificates_for<'a>(
        &'a self,
        spiffe_id: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<IssuedCertificate>, StoreError>>;

    /// The deny-list.
    fn deny_list(&self) -> BoxFuture<'_, Result<Vec<DenyEntry>, StoreError>>;
    /// Adds (or replaces) a deny-list entry.
    fn deny(&self, entry: DenyEntry) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Keeps a registered proxy (replacing its earlier registration).
    fn put_member(&self, member: Member) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Forgets proxies that left the registry, unless their lease was renewed (by another
    /// replica) since `lapsed_before` (unix milliseconds).
    fn remove_members(
        &self,
        instances: Vec<String>,
        lapsed_before: i64,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Renews registrations' leases (a lease never moves back).
    fn renew_members(&self, leases: Vec<Lease>) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Every service's labels.
    fn service_labels(&self) -> BoxFuture<'_, Result<Vec<ServiceLabels>, StoreError>>;
    /// Replaces one service's labels (no labels: removes its entry).
    fn put_service_labels(&self, entry: ServiceLabels) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Every federation, by trust domain.
    fn federations(&self) -> BoxFuture<'_, Result<Vec<Federation>, StoreError>>;
    /// Adds a federation (`new`; one already there is `Raced`) or replaces one (one not
    /// there is `Raced`).
    fn put_federation(&self, entry: Federation, new: bool)
    -> BoxFuture<'_, Result<(), StoreError>>;
    /// Removes a federation; false when there was none.
    fn remove_federation<'a>(
        &'a self,
        trust_domain: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Every service's Workload API selectors.
    fn workload_selectors(&self) -> BoxFuture<'_, Result<Vec<WorkloadSelectors>, StoreError>>;
    /// Replaces one service's Workload API selectors (none: removes its entry).
    fn put_workload_selectors(
        &self,
        entry: WorkloadSelectors,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Every kept proxy.
    fn members(&self) -> BoxFuture<'_, Result<Vec<Member>, StoreError>>;

    /// Indexes shipped audit records (already stored as spool lines).
    fn index_audit(&self, rows: Vec<AuditRow>) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Indexed audit records matching `query`.
    /// Where `writer`'s shipped chain stands, if any replica kept some of it.
    fn audit_tip<'a>(
        &'a self,
        writer: &'a str,
    ) -> BoxFuture<'a, Result<Option<signet_audit::receiver::Tip>, StoreError>>;
    /// Where every shipped chain stands, by writer.
    fn audit_tips(
        &self,
    ) -> BoxFuture<'_, Result<Vec<(String, signet_audit::receiver::Tip)>, StoreError>>;
    /// Keeps a shipped batch and moves its chain's tip, in one transaction; another
    /// replica having moved it first is [`StoreError::Raced`], and nothing is kept.
    fn append_audit(&self, batch: AuditBatch) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Up to `limit` records of `writer`'s chain after `after`, with the checkpoints kept
    /// among them, exact lines in chain order: what a replica's copy lacks.
    fn audit_chain_after<'a>(
        &'a self,
        writer: &'a str,
        after: &'a signet_audit::receiver::Tip,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;
    fn query_audit(&self, query: AuditQuery) -> BoxFuture<'_, Result<Vec<AuditRow>, StoreError>>;

    /// Installs a shadow candidate, ending the current one (as `replaced`).
    fn install_shadow(&self, new: NewShadow) -> BoxFuture<'_, Result<ShadowCandidate, StoreError>>;
    /// The current shadow candidate, with its files.
    fn current_shadow(&self) -> BoxFuture<'_, Result<Option<ShadowCandidate>, StoreError>>;
    /// Ends shadow candidate `id` with `outcome`; false when it was not current.
    fn end_shadow<'a>(
        &'a self,
        id: u64,
        outcome: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// The flows where candidate `hash` disagreed since `since` (Unix nanoseconds), most
    /// disagreements first, at most `limit`.
    fn shadow_flows<'a>(
        &'a self,
        hash: &'a str,
        since: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<ShadowFlow>, StoreError>>;
    /// The newest `per_flow` shadow records of each flow of candidate `hash` since `since`.
    fn shadow_examples<'a>(
        &'a self,
        hash: &'a str,
        since: u64,
        per_flow: u32,
    ) -> BoxFuture<'a, Result<Vec<AuditRow>, StoreError>>;

    /// Stores an end-user authentication document (JSON) as the next version, with the
    /// fetched keys of its `jwks_uri` providers replacing all kept keys; returns the version.
    fn put_authn(
        &self,
        doc: String,
        author: String,
        keys: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// The latest end-user authentication document.
    fn latest_authn(&self) -> BoxFuture<'_, Result<Option<StoredAuthn>, StoreError>>;
    /// The kept fetched keys.
    fn authn_keys(&self) -> BoxFuture<'_, Result<Vec<FetchedKeys>, StoreError>>;
    /// Keeps newly fetched keys of `provider`.
    fn put_authn_key(
        &self,
        provider: String,
        jwks: String,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Stores a traffic document (canonical JSON) as the next version; returns it.
    fn put_traffic(
        &self,
        doc: String,
        author: String,
        changes: u64,
        rollback_of: Option<u64>,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// Traffic versions, newest first: all of them up to `limit`, or only `version`.
    fn traffic_versions(
        &self,
        version: Option<u64>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<StoredTraffic>, StoreError>>;

    /// Records an operator action.
    /// Records (or renews) a control-plane replica's row.
    fn put_replica(&self, replica: ReplicaRow) -> BoxFuture<'_, Result<(), StoreError>>;
    /// The replicas seen since `seen_since` (unix milliseconds), oldest first.
    fn replicas(&self, seen_since: i64) -> BoxFuture<'_, Result<Vec<ReplicaRow>, StoreError>>;
    /// Whether the database answers (a trivial query).
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// The change feed's newest sequence number: it moves with every write other replicas
    /// must follow (policies, shadow candidates, traffic, authn, labels, the deny-list, new
    /// registrations).
    /// The CA row, if one was written.
    fn ca(&self) -> BoxFuture<'_, Result<Option<StoredCa>, StoreError>>;
    /// Writes the CA row if its revision is still the expected one (moves the change feed);
    /// returns the new revision, or [`StoreError::Raced`].
    fn put_ca(&self, write: CaWrite) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// Raises the active backend's issuance horizon to `until` (never lowers it).
    fn raise_ca_horizon(&self, until: u64) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Takes or renews the lease on duty `name` for `holder`: true if `holder` has it now.
    fn take_duty<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        lease: std::time::Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Gives up every duty `holder` has (a replica shutting down cleanly).
    fn release_duties<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Who holds which duty.
    fn duties(&self) -> BoxFuture<'_, Result<Vec<DutyLease>, StoreError>>;
    fn latest_change(&self) -> BoxFuture<'_, Result<u64, StoreError>>;
    fn record_action(&self, action: OperatorAction) -> BoxFuture<'_, Result<(), StoreError>>;
    /// The latest `limit` operator actions before position `before` (all, if `None`), newest
    /// first.
    fn actions(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> BoxFuture<'_, Result<Vec<OperatorAction>, StoreError>>;
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn from_unix_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0).unsigned_abs())
}
