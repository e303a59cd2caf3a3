//! The control plane's certificate authority over time: the backend issuing now, a staged
//! successor during a rotation, and the roots being retired.
//!
//! A rotation (a new built-in root, a new Vault intermediate, or a switch of backend) runs
//! in three steps so that no handshake ever fails:
//! 1. **staged**: the successor is open and its roots join the trust bundle, which every
//!    proxy receives; issuance stays with the current backend;
//! 2. **promoted** once every registered proxy has acknowledged a configuration carrying
//!    that bundle (or after a timeout): issuance moves to the successor, and proxies pick up
//!    new SVIDs at their normal renewal;
//! 3. **retired**: the old roots leave the bundle only after every SVID the old backend
//!    signed has expired (the latest `notAfter` it issued, tracked durably).
//!
//! The state and the built-in CAs' keys live in the store, sealed under the key-encryption
//! key ([`crate::server::seal`]), so every replica on one database signs with the same CA
//! and follows the same rotation. Each write is a compare-and-swap on the row's revision: a
//! replica that lost a race reloads and the operator retries. A Vault backend's credentials
//! are sealed the same way; each replica opens its own session (and, in intermediate mode,
//! its own intermediate under `<data>/ca`), so no Vault-issued key is shared.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use signet_ca::vault::{
    IntermediateOptions, VaultIntermediateAuthority, VaultMode, VaultSession, VaultSettings,
    VaultSignAuthority,
};
use signet_ca::{
    Authority, AuthorityError, BuiltinAuthority, BuiltinMaterial, BuiltinOptions, SignRequest,
    SvidProfile, SystemClock,
};
use signet_spiffe::{TrustBundle, TrustDomain, X509Svid};

use crate::server::jwt_keys::{self, JwtProfile, Phase, StoredKey};
use crate::server::seal::Kek;
use crate::server::store::{CaWrite, Store, StoreError};

/// The rotation state a data directory kept before the CA moved into the store; imported
/// once.
const LEGACY_STATE: &str = "authority.json";
/// A Vault server's CA certificate, written beside each replica's backend directory.
const VAULT_CA_FILE: &str = "vault-ca.pem";

/// A backend and where its local files are, relative to `<data>/ca`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Backend {
    Builtin {
        dir: String,
    },
    Vault {
        settings: VaultSettings,
        dir: String,
    },
}

impl Backend {
    /// The backend name operators see.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Builtin { .. } => "builtin",
            Self::Vault { settings, .. } => settings.mode.backend(),
        }
    }

    /// Names this backend among the CA's: its directory is made once and never reused.
    fn key(&self) -> String {
        match self {
            Self::Builtin { dir } => format!("builtin/{dir}"),
            Self::Vault { dir, .. } => format!("vault/{dir}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Staged {
    backend: Backend,
    /// Unix seconds.
    since: u64,
    /// The bundle sequence that first carried its roots: a proxy that acknowledged it (at
    /// any replica) trusts the successor.
    #[serde(default)]
    sequence: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Retiring {
    backend: String,
    /// The roots, PEM.
    roots: String,
    /// Unix seconds: when the last SVID the old backend signed has expired.
    until: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    active: Backend,
    #[serde(default)]
    staged: Option<Staged>,
    #[serde(default)]
    retiring: Vec<Retiring>,
    /// Read from a data directory's `authority.json` only; the store keeps the horizon
    /// in a column of its own.
    #[serde(default, skip_serializing)]
    issued_until: u64,
    #[serde(default)]
    bundle_sequence: u64,
}

/// What the store keeps sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sealed {
    state: State,
    /// The built-in backends' material, by their directory name.
    #[serde(default)]
    builtin: BTreeMap<String, BuiltinMaterial>,
    /// Vault servers' CA certificates (PEM), by backend directory.
    #[serde(default)]
    vault_ca: BTreeMap<String, String>,
    /// The JWT-SVID signing keys: staged, active and retiring.
    #[serde(default)]
    jwt: Vec<StoredKey>,
}

/// An open backend.
#[derive(Debug, Clone)]
pub struct Opened {
    pub backend: Backend,
    pub authority: Arc<dyn Authority>,
    /// Material to keep with it: a new built-in CA's keys, a Vault server's CA certificate.
    material: Option<Material>,
}

#[derive(Debug, Clone)]
enum Material {
    Builtin(BuiltinMaterial),
    VaultCa(String),
}

impl Opened {
    /// A Vault backend opened by setup, with the Vault server's CA certificate (PEM) if one
    /// was given, to be shared with the other replicas.
    pub fn vault(backend: Backend, authority: Arc<dyn Authority>, ca_pem: Option<String>) -> Self {
        Self {
            backend,
            authority,
            material: ca_pem.map(Material::VaultCa),
        }
    }
}

/// Why a CA change was refused.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(
        "a rotation is already in progress (to {0}); wait for `meshctl ca status` to show it promoted"
    )]
    Busy(String),
    #[error("the CA was changed by another replica meanwhile; run the command again")]
    Raced,
    #[error("{0}")]
    Failed(String),
}

/// What one replica holds of the shared CA.
#[derive(Debug)]
struct Local {
    sealed: Sealed,
    /// The store row's revision this replica last read or wrote.
    revision: u64,
}

/// The certificate authority of the control plane.
#[derive(Debug)]
pub struct Ca {
    trust_domain: TrustDomain,
    dir: PathBuf,
    profile: SvidProfile,
    jwt_profile: JwtProfile,
    store: Arc<dyn Store>,
    kek: Arc<Kek>,
    local: Mutex<Local>,
    /// One write at a time from this replica (the store arbitrates between replicas).
    writing: tokio::sync::Mutex<()>,
    /// Backends opened here, by [`Backend::key`]: following another replica's change
    /// reopens nothing it already has.
    opened: Mutex<HashMap<String, Opened>>,
    active: ArcSwap<Opened>,
    staged: ArcSwap<Option<Opened>>,
    bundle: ArcSwap<TrustBundle>,
    /// The JWT-SVID keys as last published in `bundle`.
    jwt: ArcSwap<jwt_keys::Opened>,
    /// Opening changed the state (a first JWT key): written back before use.
    unsaved: std::sync::atomic::AtomicBool,
    /// Bumped when the active backend changes.
    active_generation: AtomicU64,
    /// Latest `notAfter` issued here by the active backend (unix seconds), in memory; the
    /// store's horizon is raised ahead of it.
    issued_max: AtomicU64,
    /// The horizon this replica last wrote.
    horizon_written: AtomicU64,
    upkeep: Mutex<Upkeep>,
}

/// Backend housekeeping as `meshctl ca status` reports it.
#[derive(Debug, Clone, Default)]
pub struct Upkeep {
    pub next: Option<SystemTime>,
    pub last_error: Option<String>,
    pub failures: u32,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn context(td: &TrustDomain) -> String {
    format!("ca {td}")
}

impl Ca {
    /// Opens the CA kept in `store`. On first start it imports a data directory's CA
    /// (`dir`, `<data>/ca`, as kept before the store held it) or creates the built-in CA;
    /// replicas starting together agree on one (the first write wins, the others read it).
    pub async fn open(
        store: Arc<dyn Store>,
        kek: Arc<Kek>,
        dir: &Path,
        td: &TrustDomain,
        (profile, jwt_profile): (SvidProfile, JwtProfile),
    ) -> Result<Self, String> {
        for _ in 0..3 {
            let (sealed, revision, horizon) = match store.ca().await.map_err(|e| e.to_string())? {
                Some(row) => {
                    if row.trust_domain != td.as_str() {
                        return Err(format!(
                            "the store holds the CA of trust domain `{}`, not `{td}`",
                            row.trust_domain
                        ));
                    }
                    (
                        unseal(&kek, td, &row.sealed)?,
                        row.revision,
                        row.issued_until,
                    )
                }
                None => {
                    let (sealed, horizon) = first_ca(dir, td, profile)?;
                    let write = CaWrite {
                        expected: None,
                        trust_domain: td.to_string(),
                        kek_id: kek.id(),
                        sealed: seal(&kek, td, &sealed)?,
                        issued_until: Some(horizon),
                    };
                    match store.put_ca(write).await {
                        Ok(revision) => {
                            tracing::info!(trust_domain = %td, kek = %kek.id(), "the CA is kept in the store, sealed");
                            (sealed, revision, horizon)
                        }
                        // Another replica made it first: use that one.
                        Err(StoreError::Raced(_)) => continue,
                        Err(e) => return Err(e.to_string()),
                    }
                }
            };
            let ca = Self::assemble(
                Arc::clone(&store),
                Arc::clone(&kek),
                dir,
                td,
                (profile, jwt_profile),
                sealed,
                revision,
                horizon,
            )
            .await?;
            match ca.keep_renewed().await {
                Ok(()) => return Ok(ca),
                Err(CaError::Raced) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("the CA in the store kept changing while this replica opened it".to_owned())
    }

    #[expect(clippy::too_many_arguments, reason = "one private constructor")]
    async fn assemble(
        store: Arc<dyn Store>,
        kek: Arc<Kek>,
        dir: &Path,
        td: &TrustDomain,
        (profile, jwt_profile): (SvidProfile, JwtProfile),
        mut sealed: Sealed,
        revision: u64,
        horizon: u64,
    ) -> Result<Self, String> {
        // A CA made before JWT-SVIDs (or just now) gets its first signing key.
        let first_jwt_key = !jwt_keys::has_active(&sealed.jwt);
        if first_jwt_key {
            sealed
                .jwt
                .push(StoredKey::generate(unix(SystemTime::now()), Phase::Active)?);
            sealed.state.bundle_sequence += 1;
        }
        let mut opened = HashMap::new();
        let active_backend = sealed.state.active.clone();
        let active = open_in(dir, td, profile, &mut sealed, &active_backend, &mut opened)
            .await
            .map_err(|e| format!("opening the {} CA: {e}", active_backend.name()))?;
        let staged = match sealed.state.staged.clone() {
            Some(s) => Some(
                open_in(dir, td, profile, &mut sealed, &s.backend, &mut opened)
                    .await
                    .map_err(|e| format!("opening the staged {} CA: {e}", s.backend.name()))?,
            ),
            None => None,
        };
        let ca = Self {
            trust_domain: td.clone(),
            dir: dir.to_path_buf(),
            profile,
            jwt_profile,
            store,
            kek,
            local: Mutex::new(Local { sealed, revision }),
            writing: tokio::sync::Mutex::new(()),
            opened: Mutex::new(opened),
            active: ArcSwap::from_pointee(active),
            staged: ArcSwap::from_pointee(staged),
            bundle: ArcSwap::from_pointee(TrustBundle::new(td.clone())),
            jwt: ArcSwap::from_pointee(jwt_keys::Opened::default()),
            unsaved: std::sync::atomic::AtomicBool::new(first_jwt_key),
            active_generation: AtomicU64::new(1),
            issued_max: AtomicU64::new(0),
            horizon_written: AtomicU64::new(horizon),
            upkeep: Mutex::new(Upkeep::default()),
        };
        ca.rebuild_bundle(false)?;
        Ok(ca)
    }

    /// Writes back what opening changed (a re-issued built-in intermediate, a bundle
    /// sequence that had to move).
    async fn keep_renewed(&self) -> Result<(), CaError> {
        let dirty = {
            let local = lock(&self.local);
            let stored = self.bundle.load().sequence();
            let builtin_changed = lock(&self.opened).values().any(|o| o.material.is_some());
            builtin_changed
                || local.sealed.state.bundle_sequence != stored
                || self.unsaved.load(Ordering::Acquire)
        };
        if dirty {
            let _writing = self.writing.lock().await;
            self.save(None).await?;
        }
        Ok(())
    }

    /// The backend issuing now.
    pub fn active(&self) -> Arc<Opened> {
        self.active.load_full()
    }

    /// The successor during a rotation.
    pub fn staged(&self) -> Option<Opened> {
        self.staged.load().as_ref().clone()
    }

    /// Every root a currently valid SVID may chain to.
    pub fn bundle(&self) -> TrustBundle {
        self.bundle.load().as_ref().clone()
    }

    /// Changes each time the active backend changes.
    pub fn active_generation(&self) -> u64 {
        self.active_generation.load(Ordering::Acquire)
    }

    /// The SVID profile.
    pub fn profile(&self) -> SvidProfile {
        self.profile
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// This replica's CA directory (`<data>/ca`): Vault backends' local files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key-encryption key's id.
    pub fn kek_id(&self) -> String {
        self.kek.id()
    }

    /// Signs with the active backend and remembers how long its SVIDs live.
    pub async fn sign(&self, request: SignRequest<'_>) -> Result<X509Svid, AuthorityError> {
        let active = self.active();
        let svid = active.authority.sign(request).await?;
        let until = unix(svid.not_after());
        if self.issued_max.fetch_max(until, Ordering::AcqRel) < until {
            self.raise_horizon(until).await;
        }
        Ok(svid)
    }

    /// Signs the control plane's own SVID: not counted in the issuance horizon, because it
    /// is re-issued from the new backend the moment a rotation is promoted.
    pub async fn sign_own(&self, request: SignRequest<'_>) -> Result<X509Svid, AuthorityError> {
        self.active().authority.sign(request).await
    }

    /// Keeps the store's horizon at or beyond every `notAfter` issued here, writing ahead
    /// by a margin so that the row changes every few minutes, not on every issuance.
    async fn raise_horizon(&self, until: u64) {
        if self.horizon_written.load(Ordering::Acquire) >= until {
            return;
        }
        let margin = (self.profile.default_ttl / 2)
            .min(Duration::from_secs(300))
            .as_secs();
        let ahead = until + margin;
        match self.store.raise_ca_horizon(ahead).await {
            Ok(()) => {
                self.horizon_written.fetch_max(ahead, Ordering::AcqRel);
            }
            Err(e) => tracing::error!(error = %e, "recording the CA's issuance horizon failed"),
        }
    }

    /// Seals the local state and writes it if the row is still at the revision this
    /// replica holds; `issued_until` replaces the horizon when given. A lost race reloads.
    /// Callers hold `writing`.
    async fn save(&self, issued_until: Option<u64>) -> Result<(), CaError> {
        let (mut sealed, expected) = {
            let local = lock(&self.local);
            (local.sealed.clone(), local.revision)
        };
        sealed.state.bundle_sequence = self.bundle.load().sequence();
        // Material of backends still in use, and only theirs.
        let in_use: Vec<String> = std::iter::once(&sealed.state.active)
            .chain(sealed.state.staged.as_ref().map(|s| &s.backend))
            .map(Backend::key)
            .collect();
        for o in lock(&self.opened).values() {
            match (&o.backend, &o.material) {
                (Backend::Builtin { dir }, Some(Material::Builtin(m))) => {
                    sealed.builtin.insert(dir.clone(), m.clone());
                }
                (Backend::Vault { dir, .. }, Some(Material::VaultCa(pem))) => {
                    sealed.vault_ca.insert(dir.clone(), pem.clone());
                }
                _ => {}
            }
        }
        sealed
            .builtin
            .retain(|dir, _| in_use.contains(&Backend::Builtin { dir: dir.clone() }.key()));
        sealed
            .vault_ca
            .retain(|dir, _| in_use.iter().any(|k| k == &format!("vault/{dir}")));
        let write = CaWrite {
            expected: Some(expected),
            trust_domain: self.trust_domain.to_string(),
            kek_id: self.kek.id(),
            sealed: seal(&self.kek, &self.trust_domain, &sealed).map_err(CaError::Failed)?,
            issued_until,
        };
        match self.store.put_ca(write).await {
            Ok(revision) => {
                self.unsaved.store(false, Ordering::Release);
                let mut local = lock(&self.local);
                local.sealed = sealed;
                local.revision = revision;
                for o in lock(&self.opened).values_mut() {
                    o.material = None;
                }
                Ok(())
            }
            Err(StoreError::Raced(_)) => {
                if let Err(e) = self.reload().await {
                    tracing::error!(error = %e, "reloading the CA after a lost race failed");
                }
                Err(CaError::Raced)
            }
            Err(e) => Err(CaError::Failed(e.to_string())),
        }
    }

    /// Takes in another replica's change to the CA, if the store has one; true when the
    /// bundle or the active backend changed (the proxies must hear of it).
    pub async fn follow(&self) -> Result<bool, String> {
        let _writing = self.writing.lock().await;
        self.reload().await
    }

    async fn reload(&self) -> Result<bool, String> {
        let Some(row) = self.store.ca().await.map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        if row.revision == lock(&self.local).revision {
            return Ok(false);
        }
        let mut sealed = unseal(&self.kek, &self.trust_domain, &row.sealed)?;
        let mut opened = lock(&self.opened).clone();
        let active_backend = sealed.state.active.clone();
        let active = open_in(
            &self.dir,
            &self.trust_domain,
            self.profile,
            &mut sealed,
            &active_backend,
            &mut opened,
        )
        .await
        .map_err(|e| format!("opening the {} CA: {e}", active_backend.name()))?;
        let staged = match sealed.state.staged.clone() {
            Some(s) => Some(
                open_in(
                    &self.dir,
                    &self.trust_domain,
                    self.profile,
                    &mut sealed,
                    &s.backend,
                    &mut opened,
                )
                .await
                .map_err(|e| format!("opening the staged {} CA: {e}", s.backend.name()))?,
            ),
            None => None,
        };
        // What another replica wrote is kept there: nothing opened here is new material.
        for o in opened.values_mut() {
            o.material = None;
        }
        let promoted = active.backend != self.active().backend;
        let sequence = sealed.state.bundle_sequence;
        {
            let mut local = lock(&self.local);
            local.sealed = sealed;
            local.revision = row.revision;
        }
        opened.retain(|k, _| {
            *k == active.backend.key() || staged.as_ref().is_some_and(|s| *k == s.backend.key())
        });
        *lock(&self.opened) = opened;
        if promoted {
            self.issued_max.store(0, Ordering::Release);
            self.active.store(Arc::new(active));
            self.active_generation.fetch_add(1, Ordering::AcqRel);
        }
        self.horizon_written
            .store(row.issued_until, Ordering::Release);
        self.staged.store(Arc::new(staged));
        let before = self.bundle();
        self.set_bundle(sequence)?;
        let after = self.bundle.load();
        Ok(promoted || before.sequence() != after.sequence() || before != **after)
    }

    /// The active, staged and retiring roots, and the published JWT keys (opened anew into
    /// `jwt`: the state they come from is the one the bundle is built from).
    fn roots(&self) -> Result<TrustBundle, String> {
        let mut bundle = self.active().authority.bundle();
        if let Some(staged) = self.staged() {
            for root in staged.authority.bundle().roots() {
                bundle.add_root(root.clone()).map_err(|e| e.to_string())?;
            }
        }
        let local = lock(&self.local);
        for retiring in &local.sealed.state.retiring {
            let old = TrustBundle::from_pem(self.trust_domain.clone(), &retiring.roots)
                .map_err(|e| format!("a retiring root: {e}"))?;
            for root in old.roots() {
                bundle.add_root(root.clone()).map_err(|e| e.to_string())?;
            }
        }
        let jwt = jwt_keys::open(&local.sealed.jwt)?;
        for authority in &jwt.published {
            bundle
                .add_jwt_authority(authority.clone())
                .map_err(|e| e.to_string())?;
        }
        self.jwt.store(Arc::new(jwt));
        Ok(bundle)
    }

    /// The bundle as the store's state has it, at `sequence`.
    fn set_bundle(&self, sequence: u64) -> Result<(), String> {
        let mut bundle = self.roots()?;
        bundle.set_sequence(sequence);
        self.bundle.store(Arc::new(bundle));
        Ok(())
    }

    /// Recomputes the bundle: active, staged and retiring roots. Moves its sequence on
    /// when the set of roots changed (or `force`).
    fn rebuild_bundle(&self, force: bool) -> Result<bool, String> {
        let mut bundle = self.roots()?;
        let stored = lock(&self.local).sealed.state.bundle_sequence.max(1);
        let current = self.bundle.load();
        let changed = force || bundle != **current;
        let sequence = if current.roots().next().is_none() {
            // First build after opening: the stored sequence, unless the roots it named
            // changed while opening.
            stored
        } else if changed {
            current.sequence().max(stored) + 1
        } else {
            current.sequence()
        };
        bundle.set_sequence(sequence);
        self.bundle.store(Arc::new(bundle));
        Ok(changed)
    }

    /// Stages `next`: its roots join the bundle at once; issuance moves to it at
    /// [`Ca::promote`].
    pub async fn stage(&self, next: Opened) -> Result<(), CaError> {
        let _writing = self.writing.lock().await;
        self.reload().await.map_err(CaError::Failed)?;
        if let Some(s) = self.staged() {
            return Err(CaError::Busy(s.backend.name().to_owned()));
        }
        let previous = self.bundle();
        let before = lock(&self.local).sealed.clone();
        let now = unix(SystemTime::now());
        // A new JWT signing key is staged with the new CA, unless one already is.
        if jwt_keys::staged(&before.jwt).is_none() {
            let key = StoredKey::generate(
                now,
                Phase::Staged {
                    since: now,
                    sequence: 0,
                },
            )
            .map_err(CaError::Failed)?;
            lock(&self.local).sealed.jwt.push(key);
        }
        lock(&self.opened).insert(next.backend.key(), next.clone());
        self.staged.store(Arc::new(Some(next.clone())));
        let undo = |ca: &Self| {
            lock(&ca.opened).remove(&next.backend.key());
            ca.staged.store(Arc::new(None));
            lock(&ca.local).sealed = before.clone();
            ca.bundle.store(Arc::new(previous.clone()));
            match jwt_keys::open(&before.jwt) {
                Ok(opened) => ca.jwt.store(Arc::new(opened)),
                Err(e) => tracing::error!(error = %e, "restoring the JWT keys failed"),
            }
        };
        if let Err(e) = self.rebuild_bundle(false) {
            undo(self);
            return Err(CaError::Failed(e));
        }
        let sequence = self.bundle.load().sequence();
        {
            let mut local = lock(&self.local);
            local.sealed.state.staged = Some(Staged {
                backend: next.backend.clone(),
                since: now,
                sequence,
            });
            mark_staged_sequence(&mut local.sealed.jwt, sequence);
        }
        if let Err(e) = self.save(None).await {
            if !matches!(e, CaError::Raced) {
                undo(self);
            }
            return Err(e);
        }
        Ok(())
    }

    /// The key signing JWT-SVIDs now.
    pub fn jwt_signer(&self) -> Option<Arc<signet_spiffe::jwt::JwtSigner>> {
        self.jwt.load().active.clone()
    }

    /// How JWT-SVIDs are issued.
    pub fn jwt_profile(&self) -> JwtProfile {
        self.jwt_profile
    }

    /// Every JWT signing key with its phase: `(key ID, phase, created)`.
    pub fn jwt_keys(&self) -> Vec<(String, Phase, u64)> {
        lock(&self.local)
            .sealed
            .jwt
            .iter()
            .filter_map(|k| {
                k.signer()
                    .ok()
                    .map(|s| (s.key_id().to_owned(), k.phase.clone(), k.created))
            })
            .collect()
    }

    /// The staged JWT key's start and the bundle sequence that first carried it.
    pub fn jwt_staged(&self) -> Option<(u64, u64)> {
        jwt_keys::staged(&lock(&self.local).sealed.jwt)
    }

    /// Whether the active JWT key has signed for its lifetime.
    pub fn jwt_due(&self, now: SystemTime) -> bool {
        jwt_keys::due(&lock(&self.local).sealed.jwt, &self.jwt_profile, unix(now))
    }

    /// Stages a new JWT signing key (published at once, signing from
    /// [`Ca::promote_jwt_key`]); false when one already is staged.
    pub async fn stage_jwt_key(&self) -> Result<bool, String> {
        self.change_jwt_keys(|keys, now, _| {
            if jwt_keys::staged(keys).is_some() {
                return Ok(false);
            }
            keys.push(StoredKey::generate(
                now,
                Phase::Staged {
                    since: now,
                    sequence: 0,
                },
            )?);
            Ok(true)
        })
        .await
    }

    /// Moves JWT signing to the staged key; the previous key stays published until its
    /// last token has expired. False when no key is staged.
    pub async fn promote_jwt_key(&self) -> Result<bool, String> {
        self.change_jwt_keys(|keys, now, profile| Ok(jwt_keys::promote(keys, profile, now)))
            .await
    }

    /// Applies `change` to the JWT keys and writes the state if it changed anything (a
    /// staged key's sequence is the bundle's that first carries it).
    async fn change_jwt_keys(
        &self,
        change: impl FnOnce(&mut Vec<StoredKey>, u64, &JwtProfile) -> Result<bool, String>,
    ) -> Result<bool, String> {
        let _writing = self.writing.lock().await;
        self.reload().await?;
        let before = lock(&self.local).sealed.clone();
        let changed = {
            let mut local = lock(&self.local);
            change(
                &mut local.sealed.jwt,
                unix(SystemTime::now()),
                &self.jwt_profile,
            )?
        };
        if !changed {
            return Ok(false);
        }
        let outcome = self.rebuild_bundle(false).map(|_| {
            let sequence = self.bundle.load().sequence();
            mark_staged_sequence(&mut lock(&self.local).sealed.jwt, sequence);
        });
        if let Err(e) = outcome {
            self.restore(before, self.active(), self.staged());
            return Err(e);
        }
        match self.save(None).await {
            Ok(()) => Ok(true),
            Err(CaError::Raced) => Err(CaError::Raced.to_string()),
            Err(e) => {
                self.restore(before, self.active(), self.staged());
                Err(e.to_string())
            }
        }
    }

    /// The bundle sequence proxies must have acknowledged before promotion.
    pub fn staged_sequence(&self) -> Option<u64> {
        lock(&self.local)
            .sealed
            .state
            .staged
            .as_ref()
            .map(|s| s.sequence)
    }

    /// When the staged rotation began.
    pub fn staged_since(&self) -> Option<u64> {
        lock(&self.local)
            .sealed
            .state
            .staged
            .as_ref()
            .map(|s| s.since)
    }

    /// Moves issuance to the staged backend; the old roots (those not also the new
    /// backend's) retire once every SVID the old backend signed, at any replica, has
    /// expired.
    pub async fn promote(&self) -> Result<Option<Opened>, String> {
        let _writing = self.writing.lock().await;
        self.reload().await?;
        let Some(next) = self.staged() else {
            return Ok(None);
        };
        let before = lock(&self.local).sealed.clone();
        let stored_horizon = self
            .store
            .ca()
            .await
            .map_err(|e| e.to_string())?
            .map_or(0, |row| row.issued_until);
        let old = self.active();
        let new_roots = next.authority.bundle();
        let leaving: Vec<_> = old
            .authority
            .bundle()
            .roots()
            .filter(|r| !new_roots.contains(r))
            .cloned()
            .collect();
        let horizon = stored_horizon
            .max(self.issued_max.load(Ordering::Acquire))
            .max(unix(SystemTime::now()));
        {
            let mut local = lock(&self.local);
            let state = &mut local.sealed.state;
            if !leaving.is_empty() {
                let pem = TrustBundle::from_roots(self.trust_domain.clone(), leaving)
                    .map_err(|e| e.to_string())?
                    .to_pem();
                state.retiring.push(Retiring {
                    backend: old.backend.name().to_owned(),
                    roots: pem,
                    // The backdate allowance covers clocks a little ahead of this one.
                    until: horizon + self.profile.backdate.as_secs(),
                });
            }
            state.active = next.backend.clone();
            state.staged = None;
            jwt_keys::promote(
                &mut local.sealed.jwt,
                &self.jwt_profile,
                unix(SystemTime::now()),
            );
        }
        self.active.store(Arc::new(next.clone()));
        self.staged.store(Arc::new(None));
        self.rebuild_bundle(false)?;
        match self.save(Some(0)).await {
            Ok(()) => {
                self.issued_max.store(0, Ordering::Release);
                self.horizon_written.store(0, Ordering::Release);
                self.active_generation.fetch_add(1, Ordering::AcqRel);
                lock(&self.opened).remove(&old.backend.key());
                Ok(Some(next))
            }
            // `save` reloaded what the store has.
            Err(CaError::Raced) => Err(CaError::Raced.to_string()),
            Err(e) => {
                self.restore(before, old, Some(next));
                Err(e.to_string())
            }
        }
    }

    /// Drops retiring roots whose last SVID has expired; true when the bundle changed.
    pub async fn retire_expired(&self, now: SystemTime) -> Result<bool, String> {
        let expired = {
            let local = lock(&self.local);
            local
                .sealed
                .state
                .retiring
                .iter()
                .any(|r| r.until <= unix(now))
                || local
                    .sealed
                    .jwt
                    .iter()
                    .any(|k| matches!(k.phase, Phase::Retiring { until } if until <= unix(now)))
        };
        if !expired {
            return Ok(false);
        }
        let _writing = self.writing.lock().await;
        self.reload().await?;
        let before = lock(&self.local).sealed.clone();
        let removed = {
            let mut local = lock(&self.local);
            let state = &mut local.sealed.state;
            let before = state.retiring.len();
            state.retiring.retain(|r| r.until > unix(now));
            let roots_retired = before != state.retiring.len();
            jwt_keys::retire_expired(&mut local.sealed.jwt, unix(now)) || roots_retired
        };
        if removed {
            self.rebuild_bundle(false)?;
            match self.save(None).await {
                Ok(()) => {}
                Err(CaError::Raced) => return Err(CaError::Raced.to_string()),
                Err(e) => {
                    self.restore(before, self.active(), self.staged());
                    return Err(e.to_string());
                }
            }
        }
        Ok(removed)
    }

    /// The roots being retired and when each goes: `(backend, bundle, until)`.
    pub fn retiring(&self) -> Vec<(String, TrustBundle, u64)> {
        lock(&self.local)
            .sealed
            .state
            .retiring
            .iter()
            .filter_map(|r| {
                TrustBundle::from_pem(self.trust_domain.clone(), &r.roots)
                    .ok()
                    .map(|b| (r.backend.clone(), b, r.until))
            })
            .collect()
    }

    /// Runs the active backend's housekeeping if it is due; backs off after failures
    /// (1 s doubling to 60 s), never a tight loop.
    pub async fn maintain_if_due(&self, now: SystemTime) {
        let due = lock(&self.upkeep).next.is_none_or(|n| n <= now);
        if !due {
            return;
        }
        let active = self.active();
        let outcome = active.authority.maintain().await;
        let mut upkeep = lock(&self.upkeep);
        match outcome {
            Ok(next) => {
                upkeep.next = Some(now + next);
                upkeep.last_error = None;
                upkeep.failures = 0;
            }
            Err(e) => {
                upkeep.failures = upkeep.failures.saturating_add(1);
                let backoff = Duration::from_secs(1u64 << upkeep.failures.min(6))
                    .min(Duration::from_secs(60));
                tracing::warn!(error = %e, retry_in_secs = backoff.as_secs(), "CA housekeeping failed");
                upkeep.next = Some(now + backoff);
                upkeep.last_error = Some(e.to_string());
            }
        }
    }

    /// The housekeeping state.
    pub fn upkeep(&self) -> Upkeep {
        lock(&self.upkeep).clone()
    }

    /// A fresh successor of the active backend: a new built-in root, a new Vault
    /// intermediate, or the Vault mount's chain read again.
    pub async fn successor(&self) -> Result<Opened, String> {
        let now = unix(SystemTime::now());
        match &self.active().backend {
            Backend::Builtin { .. } => {
                let material =
                    BuiltinMaterial::generate(&self.trust_domain, &builtin_options(self.profile))
                        .map_err(|e| e.to_string())?;
                let backend = Backend::Builtin {
                    dir: format!("builtin-{now}"),
                };
                let (authority, _) = BuiltinAuthority::from_material(
                    &material,
                    &self.trust_domain,
                    builtin_options(self.profile),
                )
                .map_err(|e| e.to_string())?;
                Ok(Opened {
                    backend,
                    authority: Arc::new(authority),
                    material: Some(Material::Builtin(material)),
                })
            }
            Backend::Vault { settings, dir } => {
                let sub = format!("vault-{now}");
                let ca_pem = lock(&self.local).sealed.vault_ca.get(dir).cloned();
                let authority = open_vault(
                    &self.dir,
                    &self.trust_domain,
                    self.profile,
                    settings,
                    &sub,
                    ca_pem.as_deref(),
                )
                .await
                .map_err(|e| e.to_string())?;
                Ok(Opened::vault(
                    Backend::Vault {
                        settings: settings.clone(),
                        dir: sub,
                    },
                    authority,
                    ca_pem,
                ))
            }
        }
    }

    /// Puts back what this replica held before a write the store did not take.
    fn restore(&self, sealed: Sealed, active: Arc<Opened>, staged: Option<Opened>) {
        let sequence = sealed.state.bundle_sequence;
        lock(&self.local).sealed = sealed;
        self.active.store(active);
        self.staged.store(Arc::new(staged));
        if let Err(e) = self.set_bundle(sequence) {
            tracing::error!(error = %e, "restoring the trust bundle failed");
        }
    }
}

/// Records `sequence` as the bundle that first carries a staged JWT key not yet marked.
fn mark_staged_sequence(keys: &mut [StoredKey], sequence: u64) {
    for key in keys {
        if let Phase::Staged { sequence: s, .. } = &mut key.phase
            && *s == 0
        {
            *s = sequence;
        }
    }
}

fn builtin_options(profile: SvidProfile) -> BuiltinOptions {
    BuiltinOptions {
        profile,
        ..BuiltinOptions::default()
    }
}

/// What [`seal`] made.
fn unseal(kek: &Kek, td: &TrustDomain, bytes: &[u8]) -> Result<Sealed, String> {
    let plain = kek
        .open(&context(td), bytes)
        .map_err(|e| format!("opening the CA in the store: {e}"))?;
    serde_json::from_slice(&plain).map_err(|e| format!("the CA in the store: {e}"))
}

fn seal(kek: &Kek, td: &TrustDomain, sealed: &Sealed) -> Result<Vec<u8>, String> {
    let plain = serde_json::to_vec(sealed).map_err(|e| e.to_string())?;
    kek.seal(&context(td), &plain).map_err(|e| e.to_string())
}

/// The CA to store on first start: a data directory's (imported once, with its horizon), or
/// a new built-in CA.
fn first_ca(dir: &Path, td: &TrustDomain, profile: SvidProfile) -> Result<(Sealed, u64), String> {
    let legacy = dir.join(LEGACY_STATE);
    let state = match std::fs::read_to_string(&legacy) {
        Ok(text) => Some(
            serde_json::from_str::<State>(&text)
                .map_err(|e| format!("`{}`: {e}", legacy.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("`{}`: {e}", legacy.display())),
    };
    let state = match state {
        Some(state) => state,
        // A data directory from before rotations: the built-in CA at its top.
        None if dir.join("trust-domain").exists() => State {
            active: Backend::Builtin { dir: String::new() },
            staged: None,
            retiring: Vec::new(),
            issued_until: 0,
            bundle_sequence: 1,
        },
        None => {
            let material = BuiltinMaterial::generate(td, &builtin_options(profile))
                .map_err(|e| e.to_string())?;
            let state = State {
                active: Backend::Builtin { dir: String::new() },
                staged: None,
                retiring: Vec::new(),
                issued_until: 0,
                bundle_sequence: 1,
            };
            tracing::info!(trust_domain = %td, "created the built-in CA");
            return Ok((
                Sealed {
                    state,
                    builtin: BTreeMap::from([(String::new(), material)]),
                    vault_ca: BTreeMap::new(),
                    jwt: Vec::new(),
                },
                0,
            ));
        }
    };
    let mut sealed = Sealed {
        state: state.clone(),
        builtin: BTreeMap::new(),
        vault_ca: BTreeMap::new(),
        jwt: Vec::new(),
    };
    for backend in std::iter::once(&state.active).chain(state.staged.as_ref().map(|s| &s.backend)) {
        match backend {
            Backend::Builtin { dir: sub } => {
                let material = BuiltinMaterial::read(&dir.join(sub))
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("`{}` holds no CA", dir.join(sub).display()))?;
                if material.trust_domain != td.as_str() {
                    return Err(format!(
                        "`{}` holds a CA for trust domain `{}`, not `{td}`",
                        dir.display(),
                        material.trust_domain
                    ));
                }
                sealed.builtin.insert(sub.clone(), material);
            }
            Backend::Vault { settings, dir: sub } => {
                if let Some(path) = &settings.ca_cert
                    && let Ok(pem) = std::fs::read_to_string(path)
                {
                    sealed.vault_ca.insert(sub.clone(), pem);
                }
            }
        }
    }
    tracing::info!(dir = %dir.display(), "imported the data directory's CA into the store; its files there are no longer read");
    Ok((sealed, state.issued_until))
}

/// Opens `backend` with what `sealed` holds for it, reusing one already in `opened`. A
/// built-in intermediate re-issued while opening is kept in the returned backend's
/// material (and in `sealed`) for the caller to write.
async fn open_in(
    dir: &Path,
    td: &TrustDomain,
    profile: SvidProfile,
    sealed: &mut Sealed,
    backend: &Backend,
    opened: &mut HashMap<String, Opened>,
) -> Result<Opened, AuthorityError> {
    if let Some(o) = opened.get(&backend.key()) {
        return Ok(o.clone());
    }
    let o = match backend {
        Backend::Builtin { dir: sub } => {
            let material = sealed.builtin.get(sub).ok_or_else(|| {
                AuthorityError::Storage(format!("the store holds no keys for built-in CA `{sub}`"))
            })?;
            let (authority, renewed) =
                BuiltinAuthority::from_material(material, td, builtin_options(profile))?;
            if let Some(renewed) = &renewed {
                sealed.builtin.insert(sub.clone(), renewed.clone());
            }
            Opened {
                backend: backend.clone(),
                authority: Arc::new(authority),
                material: renewed.map(Material::Builtin),
            }
        }
        Backend::Vault { settings, dir: sub } => Opened {
            backend: backend.clone(),
            authority: open_vault(
                dir,
                td,
                profile,
                settings,
                sub,
                sealed.vault_ca.get(sub).map(String::as_str),
            )
            .await?,
            material: None,
        },
    };
    opened.insert(backend.key(), o.clone());
    Ok(o)
}

/// Opens a Vault backend, its local files under `dir/sub`: the Vault server's CA
/// certificate (`ca_pem`, written there for this replica) and, in intermediate mode, this
/// replica's own intermediate.
async fn open_vault(
    dir: &Path,
    td: &TrustDomain,
    profile: SvidProfile,
    settings: &VaultSettings,
    sub: &str,
    ca_pem: Option<&str>,
) -> Result<Arc<dyn Authority>, AuthorityError> {
    let mut settings = settings.clone();
    if let Some(pem) = ca_pem {
        let local = dir.join(sub);
        std::fs::create_dir_all(&local)
            .map_err(|e| AuthorityError::Storage(format!("`{}`: {e}", local.display())))?;
        let path = local.join(VAULT_CA_FILE);
        std::fs::write(&path, pem)
            .map_err(|e| AuthorityError::Storage(format!("`{}`: {e}", path.display())))?;
        settings.ca_cert = Some(path);
    }
    let session = Arc::new(VaultSession::connect(settings.clone()).await?);
    Ok(match settings.mode {
        VaultMode::Sign => {
            Arc::new(VaultSignAuthority::open(session, td, profile, Arc::new(SystemClock)).await?)
        }
        VaultMode::Intermediate => Arc::new(
            VaultIntermediateAuthority::open(
                session,
                td,
                IntermediateOptions {
                    dir: dir.join(sub),
                    profile,
                    clock: Arc::new(SystemClock),
                },
            )
            .await?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::SqlStore;

    fn td() -> TrustDomain {
        TrustDomain::new("rotate.test").unwrap()
    }

    fn profiles() -> (SvidProfile, JwtProfile) {
        (profile(), JwtProfile::default())
    }

    fn profile() -> SvidProfile {
        SvidProfile {
            default_ttl: Duration::from_secs(60),
            ..SvidProfile::default()
        }
    }

    fn kek(seed: u8) -> Arc<Kek> {
        Arc::new(Kek::from_bytes(&[seed; 32]))
    }

    async fn store(dir: &Path) -> Arc<dyn Store> {
        Arc::new(SqlStore::open(&dir.join("signet.db")).await.unwrap())
    }

    async fn open(store: &Arc<dyn Store>, dir: &Path) -> Ca {
        Ca::open(
            Arc::clone(store),
            kek(1),
            &dir.join("ca"),
            &td(),
            profiles(),
        )
        .await
        .unwrap()
    }

    async fn issue(ca: &Ca) -> X509Svid {
        let id = td().service_account("a", "b").unwrap();
        let key = signet_spiffe::WorkloadKey::generate().unwrap();
        let csr = key.csr(&id).unwrap();
        ca.sign(SignRequest {
            csr: &csr,
            id: &id,
            ttl: None,
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_rotation_stages_promotes_and_retires_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let ca = open(&store, dir.path()).await;
        let first = ca.bundle();
        assert_eq!(first.roots().len(), 1);
        let old_svid = issue(&ca).await;

        let next = ca.successor().await.unwrap();
        ca.stage(next).await.unwrap();
        // Staged: both roots trusted, the old CA still signs, a second rotation waits.
        assert_eq!(ca.bundle().roots().len(), 2);
        assert!(ca.bundle().sequence() > first.sequence());
        assert_eq!(ca.staged_sequence(), Some(ca.bundle().sequence()));
        assert_eq!(ca.active().backend, Backend::Builtin { dir: String::new() });
        issue(&ca).await;
        let again = ca.successor().await.unwrap();
        assert!(matches!(ca.stage(again).await, Err(CaError::Busy(_))));

        // A restart keeps the staged rotation, and the bundle's sequence.
        let sequence = ca.bundle().sequence();
        drop(ca);
        let ca = open(&store, dir.path()).await;
        assert!(ca.staged().is_some());
        assert_eq!(ca.bundle().roots().len(), 2);
        assert_eq!(ca.bundle().sequence(), sequence);

        let generation = ca.active_generation();
        ca.promote().await.unwrap().unwrap();
        assert!(ca.staged().is_none());
        assert_ne!(ca.active_generation(), generation);
        let new_root = ca.active().authority.bundle();
        assert!(!new_root.roots().eq(first.roots()));
        // The old root stays until the last SVID it signed has expired (plus the backdate).
        let retiring = ca.retiring();
        assert_eq!(retiring.len(), 1);
        let until = retiring[0].2;
        assert!(until >= unix(old_svid.not_after()), "{until}");
        assert!(!ca.retire_expired(SystemTime::now()).await.unwrap());
        assert_eq!(ca.bundle().roots().len(), 2);
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(until + 1);
        assert!(ca.retire_expired(later).await.unwrap());
        assert!(ca.bundle().roots().eq(new_root.roots()));

        // Reopened: the new backend is the active one.
        drop(ca);
        let ca = open(&store, dir.path()).await;
        assert!(ca.bundle().roots().eq(new_root.roots()));
        assert_eq!(ca.active().backend.name(), "builtin");
    }

    fn kid(ca: &Ca) -> String {
        ca.jwt_signer().unwrap().key_id().to_owned()
    }

    fn published(ca: &Ca) -> Vec<String> {
        ca.bundle()
            .jwt_authorities()
            .iter()
            .map(|a| a.key_id().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn jwt_keys_rotate_with_the_ca_and_on_their_own_and_replicas_agree() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let a = open(&store, &dir.path().join("a")).await;
        let b = open(&store, &dir.path().join("b")).await;
        let first = kid(&a);
        assert_eq!(kid(&b), first, "one signing key for every replica");
        assert_eq!(published(&a), std::slice::from_ref(&first));

        // A CA rotation stages a JWT key with the new roots; it signs once promoted.
        a.stage(a.successor().await.unwrap()).await.unwrap();
        let (_, sequence) = a.jwt_staged().unwrap();
        assert_eq!(Some(sequence), a.staged_sequence());
        assert_eq!(published(&a).len(), 2);
        assert_eq!(kid(&a), first);
        a.promote().await.unwrap().unwrap();
        let second = kid(&a);
        assert_ne!(second, first);
        assert_eq!(
            published(&a).len(),
            2,
            "the old key verifies its last tokens"
        );
        assert!(b.follow().await.unwrap());
        assert_eq!(kid(&b), second);

        // On its own: staged on b, promoted on a; a second stage waits for the first.
        assert!(b.stage_jwt_key().await.unwrap());
        assert!(!b.stage_jwt_key().await.unwrap());
        assert_eq!(published(&b).len(), 3);
        assert!(a.promote_jwt_key().await.unwrap());
        let third = kid(&a);
        assert!(![first.clone(), second.clone()].contains(&third));
        b.follow().await.unwrap();
        assert_eq!(kid(&b), third);

        // Retired keys leave once their last token has expired.
        let far = SystemTime::now() + Duration::from_secs(3600);
        assert!(a.retire_expired(far).await.unwrap());
        assert_eq!(published(&a), std::slice::from_ref(&third));
        assert!(!a.jwt_due(SystemTime::now()));
        assert!(a.jwt_due(SystemTime::now() + Duration::from_secs(25 * 3600)));

        // Reopened: the same key signs.
        drop(a);
        let a = open(&store, &dir.path().join("a")).await;
        assert_eq!(kid(&a), third);
    }

    #[tokio::test]
    async fn replicas_on_one_store_share_the_ca_and_follow_each_others_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let a = open(&store, &dir.path().join("a")).await;
        let b = open(&store, &dir.path().join("b")).await;
        assert!(a.bundle().roots().eq(b.bundle().roots()), "one CA");
        let from_b = issue(&b).await;
        assert_eq!(from_b.chain()[1..], issue(&a).await.chain()[1..]);

        // A stages; B sees the successor's roots at its next follow.
        a.stage(a.successor().await.unwrap()).await.unwrap();
        assert!(b.follow().await.unwrap(), "the bundle changed");
        assert!(!b.follow().await.unwrap(), "nothing more to take in");
        assert!(b.bundle().roots().eq(a.bundle().roots()));
        assert_eq!(b.bundle().sequence(), a.bundle().sequence());
        assert_eq!(b.staged_sequence(), a.staged_sequence());
        // B cannot stage a second rotation meanwhile.
        assert!(matches!(
            b.stage(b.successor().await.unwrap()).await,
            Err(CaError::Busy(_))
        ));

        // B signed with the old CA: A's promotion keeps the old root past B's SVID.
        let generation = b.active_generation();
        a.promote().await.unwrap().unwrap();
        assert!(b.follow().await.unwrap());
        assert_ne!(b.active_generation(), generation);
        assert_eq!(b.active().authority.bundle(), a.active().authority.bundle());
        let until = b.retiring()[0].2;
        assert!(until >= unix(from_b.not_after()));
        let new_b = issue(&b).await;
        assert_eq!(new_b.chain()[1..], issue(&a).await.chain()[1..]);

        // A write against a revision that moved on loses, and reloads.
        let c = open(&store, &dir.path().join("c")).await;
        a.stage(a.successor().await.unwrap()).await.unwrap();
        let raced = c.successor().await.unwrap();
        // `stage` reloads first, so it sees A's rotation rather than racing it.
        assert!(matches!(c.stage(raced).await, Err(CaError::Busy(_))));
    }

    #[tokio::test]
    async fn the_store_holds_no_key_in_the_clear_and_another_kek_cannot_open_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let ca = open(&store, dir.path()).await;
        drop(ca);
        let row = store.ca().await.unwrap().unwrap();
        assert_eq!(row.kek_id, kek(1).id());
        let db = std::fs::read(dir.path().join("signet.db")).unwrap();
        let wal = std::fs::read(dir.path().join("signet.db-wal")).unwrap_or_default();
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(11).any(|w| w == b"PRIVATE KEY"),
                "a key in the clear"
            );
        }
        let refused = Ca::open(
            Arc::clone(&store),
            kek(2),
            &dir.path().join("ca"),
            &td(),
            profiles(),
        )
        .await
        .unwrap_err();
        assert!(refused.contains("another key-encryption key"), "{refused}");
        let other = TrustDomain::new("other.test").unwrap();
        let refused = Ca::open(store, kek(1), &dir.path().join("ca"), &other, profiles())
            .await
            .unwrap_err();
        assert!(refused.contains("`rotate.test`"), "{refused}");
    }

    #[tokio::test]
    async fn a_data_directory_from_before_the_store_is_imported_once() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let legacy = BuiltinAuthority::open(&ca_dir, &td(), builtin_options(profile())).unwrap();
        std::fs::write(
            ca_dir.join(LEGACY_STATE),
            r#"{"active":{"kind":"builtin","dir":""},"issued_until":4000000000,"bundle_sequence":7}"#,
        )
        .unwrap();
        let store = store(dir.path()).await;
        let ca = open(&store, dir.path()).await;
        assert!(ca.bundle().roots().eq(legacy.bundle().roots()));
        // The imported CA gets its first JWT signing key, so its bundle moves on.
        assert_eq!(ca.bundle().jwt_authorities().len(), 1);
        assert_eq!(ca.bundle().sequence(), 8);
        assert_eq!(
            store.ca().await.unwrap().unwrap().issued_until,
            4_000_000_000
        );
        // The files are read no more: the store's CA stays when they go.
        std::fs::remove_dir_all(&ca_dir).unwrap();
        drop(ca);
        let ca = open(&store, dir.path()).await;
        assert!(ca.bundle().roots().eq(legacy.bundle().roots()));
    }
}
