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
//! State lives in `<data>/ca/authority.json` (0600: it holds Vault credentials).

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
    Authority, AuthorityError, BuiltinAuthority, BuiltinOptions, SignRequest, SvidProfile,
    SystemClock,
};
use signet_spiffe::{TrustBundle, TrustDomain, X509Svid};

const STATE: &str = "authority.json";

/// Where a backend's files are, relative to `<data>/ca`, and how to open it.
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Staged {
    backend: Backend,
    /// Unix seconds.
    since: u64,
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
    /// Unix seconds no SVID of the active backend outlives (a durable high-water mark).
    #[serde(default)]
    issued_until: u64,
    #[serde(default)]
    bundle_sequence: u64,
}

/// An open backend.
#[derive(Debug, Clone)]
pub struct Opened {
    pub backend: Backend,
    pub authority: Arc<dyn Authority>,
}

/// Why a CA change was refused.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(
        "a rotation is already in progress (to {0}); wait for `meshctl ca status` to show it promoted"
    )]
    Busy(String),
    #[error("{0}")]
    Failed(String),
}

/// The certificate authority of the control plane.
#[derive(Debug)]
pub struct Ca {
    trust_domain: TrustDomain,
    dir: PathBuf,
    profile: SvidProfile,
    state: Mutex<State>,
    active: ArcSwap<Opened>,
    staged: ArcSwap<Option<Opened>>,
    /// The hub generation a staged bundle went out with: proxies that report at least this
    /// configuration version have it.
    staged_generation: AtomicU64,
    bundle: ArcSwap<TrustBundle>,
    /// Bumped when the active backend changes.
    active_generation: AtomicU64,
    /// Latest `notAfter` issued by the active backend (unix seconds), in memory.
    issued_max: AtomicU64,
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

impl Ca {
    /// Opens the CA kept under `dir` (`<data>/ca`): the built-in CA on first start.
    pub async fn open(dir: &Path, td: &TrustDomain, profile: SvidProfile) -> Result<Self, String> {
        let path = dir.join(STATE);
        let state = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str::<State>(&text)
                .map_err(|e| format!("`{}`: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                active: Backend::Builtin { dir: String::new() },
                staged: None,
                retiring: Vec::new(),
                issued_until: 0,
                bundle_sequence: 1,
            },
            Err(e) => return Err(format!("`{}`: {e}", path.display())),
        };
        let active = open_backend(dir, td, profile, &state.active)
            .await
            .map_err(|e| format!("opening the {} CA: {e}", state.active.name()))?;
        let staged = match &state.staged {
            Some(s) => Some(
                open_backend(dir, td, profile, &s.backend)
                    .await
                    .map_err(|e| format!("opening the staged {} CA: {e}", s.backend.name()))?,
            ),
            None => None,
        };
        let ca = Self {
            trust_domain: td.clone(),
            dir: dir.to_path_buf(),
            profile,
            issued_max: AtomicU64::new(state.issued_until),
            state: Mutex::new(state),
            active: ArcSwap::from_pointee(active),
            staged: ArcSwap::from_pointee(staged),
            staged_generation: AtomicU64::new(0),
            bundle: ArcSwap::from_pointee(TrustBundle::new(td.clone())),
            active_generation: AtomicU64::new(1),
            upkeep: Mutex::new(Upkeep::default()),
        };
        ca.rebuild_bundle(false)?;
        ca.save()?;
        Ok(ca)
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

    /// The CA directory (`<data>/ca`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Signs with the active backend and remembers how long its SVIDs live.
    pub async fn sign(&self, request: SignRequest<'_>) -> Result<X509Svid, AuthorityError> {
        let active = self.active();
        let svid = active.authority.sign(request).await?;
        let until = unix(svid.not_after());
        if self.issued_max.fetch_max(until, Ordering::AcqRel) < until {
            self.persist_high_water(until);
        }
        Ok(svid)
    }

    /// Signs the control plane's own SVID: not counted in the issuance horizon, because it
    /// is re-issued from the new backend the moment a rotation is promoted.
    pub async fn sign_own(&self, request: SignRequest<'_>) -> Result<X509Svid, AuthorityError> {
        self.active().authority.sign(request).await
    }

    /// Keeps `issued_until` at or beyond every issued `notAfter`, writing ahead by a margin so
    /// that the file changes every few minutes, not on every issuance.
    fn persist_high_water(&self, until: u64) {
        let margin = (self.profile.default_ttl / 2)
            .min(Duration::from_secs(300))
            .as_secs();
        let write = {
            let mut state = lock(&self.state);
            if state.issued_until >= until {
                false
            } else {
                state.issued_until = until + margin;
                true
            }
        };
        if write && let Err(e) = self.save() {
            tracing::error!(error = %e, "recording the CA's issuance horizon failed");
        }
    }

    fn save(&self) -> Result<(), String> {
        let text = {
            let state = lock(&self.state);
            serde_json::to_string_pretty(&*state).map_err(|e| e.to_string())?
        };
        signet_spiffe::write_private(&self.dir.join(STATE), text.as_bytes())
    }

    /// Recomputes the bundle: active, staged and retiring roots. Bumps its sequence when
    /// the set of roots changed (or `force`).
    fn rebuild_bundle(&self, force: bool) -> Result<bool, String> {
        let mut bundle = self.active().authority.bundle();
        if let Some(staged) = self.staged() {
            for root in staged.authority.bundle().roots() {
                bundle.add_root(root.clone()).map_err(|e| e.to_string())?;
            }
        }
        let mut state = lock(&self.state);
        for retiring in &state.retiring {
            let old = TrustBundle::from_pem(self.trust_domain.clone(), &retiring.roots)
                .map_err(|e| format!("a retiring root: {e}"))?;
            for root in old.roots() {
                bundle.add_root(root.clone()).map_err(|e| e.to_string())?;
            }
        }
        let changed = force || !bundle.roots().eq(self.bundle.load().roots());
        if changed {
            state.bundle_sequence += 1;
        }
        bundle.set_sequence(state.bundle_sequence);
        self.bundle.store(Arc::new(bundle));
        Ok(changed)
    }

    /// Stages `next`: its roots join the bundle at once; issuance moves to it at
    /// [`Ca::promote`].
    pub fn stage(&self, next: Opened) -> Result<(), CaError> {
        if let Some(s) = self.staged() {
            return Err(CaError::Busy(s.backend.name().to_owned()));
        }
        lock(&self.state).staged = Some(Staged {
            backend: next.backend.clone(),
            since: unix(SystemTime::now()),
        });
        self.staged.store(Arc::new(Some(next)));
        self.rebuild_bundle(false).map_err(CaError::Failed)?;
        self.save().map_err(CaError::Failed)?;
        Ok(())
    }

    /// Records the hub generation the staged bundle was published at.
    pub fn set_staged_generation(&self, generation: u64) {
        self.staged_generation.store(generation, Ordering::Release);
    }

    /// The hub generation proxies must have acknowledged before promotion.
    pub fn staged_generation(&self) -> u64 {
        self.staged_generation.load(Ordering::Acquire)
    }

    /// When the staged rotation began.
    pub fn staged_since(&self) -> Option<u64> {
        lock(&self.state).staged.as_ref().map(|s| s.since)
    }

    /// Moves issuance to the staged backend; the old roots (those not also the new
    /// backend's) retire once every SVID the old backend signed has expired.
    pub fn promote(&self) -> Result<Option<Opened>, String> {
        let Some(next) = self.staged() else {
            return Ok(None);
        };
        let old = self.active();
        let new_roots = next.authority.bundle();
        let leaving: Vec<_> = old
            .authority
            .bundle()
            .roots()
            .filter(|r| !new_roots.contains(r))
            .cloned()
            .collect();
        {
            let mut state = lock(&self.state);
            let horizon = state
                .issued_until
                .max(self.issued_max.load(Ordering::Acquire))
                .max(unix(SystemTime::now()));
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
            state.issued_until = 0;
        }
        self.issued_max.store(0, Ordering::Release);
        self.active.store(Arc::new(next.clone()));
        self.staged.store(Arc::new(None));
        self.active_generation.fetch_add(1, Ordering::AcqRel);
        self.rebuild_bundle(false)?;
        self.save()?;
        Ok(Some(next))
    }

    /// Drops retiring roots whose last SVID has expired; true when the bundle changed.
    pub fn retire_expired(&self, now: SystemTime) -> Result<bool, String> {
        let removed = {
            let mut state = lock(&self.state);
            let before = state.retiring.len();
            state.retiring.retain(|r| r.until > unix(now));
            before != state.retiring.len()
        };
        if removed {
            self.rebuild_bundle(false)?;
            self.save()?;
        }
        Ok(removed)
    }

    /// The roots being retired and when each goes: `(backend, bundle, until)`.
    pub fn retiring(&self) -> Vec<(String, TrustBundle, u64)> {
        lock(&self.state)
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
        let backend = match &self.active().backend {
            Backend::Builtin { .. } => Backend::Builtin {
                dir: format!("builtin-{now}"),
            },
            Backend::Vault { settings, .. } => Backend::Vault {
                settings: settings.clone(),
                dir: format!("vault-{now}"),
            },
        };
        let authority = open_backend(&self.dir, &self.trust_domain, self.profile, &backend)
            .await
            .map_err(|e| e.to_string())?;
        Ok(authority)
    }
}

/// Opens `backend` (files under `dir`).
pub async fn open_backend(
    dir: &Path,
    td: &TrustDomain,
    profile: SvidProfile,
    backend: &Backend,
) -> Result<Opened, AuthorityError> {
    let authority: Arc<dyn Authority> = match backend {
        Backend::Builtin { dir: sub } => Arc::new(BuiltinAuthority::open(
            &dir.join(sub),
            td,
            BuiltinOptions {
                profile,
                ..BuiltinOptions::default()
            },
        )?),
        Backend::Vault { settings, dir: sub } => {
            let session = Arc::new(VaultSession::connect(settings.clone()).await?);
            match settings.mode {
                VaultMode::Sign => Arc::new(
                    VaultSignAuthority::open(session, td, profile, Arc::new(SystemClock)).await?,
                ),
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
            }
        }
    };
    Ok(Opened {
        backend: backend.clone(),
        authority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("rotate.test").unwrap()
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
        let profile = SvidProfile {
            default_ttl: Duration::from_secs(60),
            ..SvidProfile::default()
        };
        let ca = Ca::open(dir.path(), &td(), profile).await.unwrap();
        let first = ca.bundle();
        assert_eq!(first.roots().len(), 1);
        let old_svid = issue(&ca).await;

        let next = ca.successor().await.unwrap();
        ca.stage(next).unwrap();
        // Staged: both roots trusted, the old CA still signs, a second rotation waits.
        assert_eq!(ca.bundle().roots().len(), 2);
        assert!(ca.bundle().sequence() > first.sequence());
        assert_eq!(ca.active().backend, Backend::Builtin { dir: String::new() });
        issue(&ca).await;
        let again = ca.successor().await.unwrap();
        assert!(matches!(ca.stage(again), Err(CaError::Busy(_))));

        // A restart keeps the staged rotation.
        drop(ca);
        let ca = Ca::open(dir.path(), &td(), profile).await.unwrap();
        assert!(ca.staged().is_some());
        assert_eq!(ca.bundle().roots().len(), 2);

        let generation = ca.active_generation();
        ca.promote().unwrap().unwrap();
        assert!(ca.staged().is_none());
        assert_ne!(ca.active_generation(), generation);
        let new_root = ca.active().authority.bundle();
        assert!(!new_root.roots().eq(first.roots()));
        // The old root stays until the last SVID it signed has expired (plus the backdate).
        let retiring = ca.retiring();
        assert_eq!(retiring.len(), 1);
        let until = retiring[0].2;
        assert!(until >= unix(old_svid.not_after()), "{until}");
        assert!(!ca.retire_expired(SystemTime::now()).unwrap());
        assert_eq!(ca.bundle().roots().len(), 2);
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(until + 1);
        assert!(ca.retire_expired(later).unwrap());
        assert!(ca.bundle().roots().eq(new_root.roots()));

        // Reopened: the new backend is the active one.
        drop(ca);
        let ca = Ca::open(dir.path(), &td(), profile).await.unwrap();
        assert!(ca.bundle().roots().eq(new_root.roots()));
        assert_eq!(ca.active().backend.name(), "builtin");
        let state = std::fs::metadata(dir.path().join(STATE)).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(state.permissions().mode() & 0o077, 0);
    }
}
