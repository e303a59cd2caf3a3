//! The data directory, opened or created on start.
//!
//! ```text
//! <data-dir>/            0700
//!   ca/                  the built-in CA (keys 0600)
//!   signet.db            the SQLite store (unless --store names another)
//!   operators.cedar      who may operate the control plane (written once, then the operator's)
//!   admin.token          the admin bearer token, 0600 (delete it to have a new one made)
//!   ca.kek               SQLite only: the key sealing the CA in the store, 0600
//!   bundle.pem           the trust bundle: what meshctl and new proxies trust (SIGNET_CA)
//!   meshctl.env          SIGNET_CP, SIGNET_TOKEN, SIGNET_CA for `set -a; . meshctl.env`, 0600
//! ```

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ring::rand::{SecureRandom as _, SystemRandom};
use signet_ca::{SignRequest, SvidProfile};
use signet_spiffe::tls::{SharedBundle, SvidResolver, shared_bundle};
use signet_spiffe::verify::DenyList;
use signet_spiffe::{Serial, SpiffeId, TrustDomain, WorkloadKey};
use tokio::sync::watch;

use crate::server::Options;
use crate::server::ca::Ca;
use crate::server::hub::Hub;
use crate::server::operators::{OperatorPolicies, admin_id, default_policies};
use crate::server::rest::sha256;
use crate::server::seal::Kek;
use crate::server::store::{SqlStore, Store};

/// The trust domain of a new data directory when none is given.
pub const DEFAULT_TRUST_DOMAIN: &str = "signet.local";
/// The lifetime asked for the control plane's own SVID.
const OWN_SVID_TTL: Duration = Duration::from_secs(24 * 3600);

/// Everything opened from the data directory.
#[derive(Debug)]
pub struct Boot {
    pub hub: Arc<Hub>,
    /// The signer of the control plane's audit chain, replaced on renewal.
    pub signers: watch::Sender<Arc<dyn signet_audit::Signer>>,
    pub resolver: Arc<SvidResolver>,
    pub bundle: SharedBundle,
    pub deny: Arc<DenyList>,
    pub operators: Arc<OperatorPolicies>,
    data_dir: PathBuf,
    /// `None` when another replica made it.
    admin_token: Option<String>,
}

/// What renewing the control plane's own SVID needs.
#[derive(Debug)]
pub struct Renewal {
    hub: Arc<Hub>,
    signers: watch::Sender<Arc<dyn signet_audit::Signer>>,
    resolver: Arc<SvidResolver>,
    deny: Arc<DenyList>,
    /// What the control plane's listeners trust, and its copy for meshctl and new proxies.
    bundle: SharedBundle,
    bundle_file: PathBuf,
    next: std::time::SystemTime,
}

/// Writes `contents` to `path` with mode 0600, atomically.
pub fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    signet_spiffe::write_private(path, contents.as_bytes())
}

fn random_hex(bytes: usize) -> Result<String, String> {
    let mut b = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| "no secure random source".to_owned())?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn own_id(td: &TrustDomain) -> Result<SpiffeId, String> {
    td.workload("/signet/control-plane")
        .map_err(|e| e.to_string())
}

/// The control plane's own identity: presented by its listeners, and the key its audit
/// chain is signed with. Returns when to renew it and the audit signer for it.
async fn issue_own(
    ca: &Ca,
    resolver: &SvidResolver,
) -> Result<(SystemTime, Arc<dyn signet_audit::Signer>), String> {
    let id = own_id(ca.trust_domain())?;
    let key = WorkloadKey::generate().map_err(|e| e.to_string())?;
    let csr = key.csr(&id).map_err(|e| e.to_string())?;
    let svid = ca
        .sign_own(SignRequest {
            csr: &csr,
            id: &id,
            ttl: Some(OWN_SVID_TTL),
        })
        .await
        .map_err(|e| format!("issuing the control plane's SVID: {e}"))?;
    resolver
        .update(&svid, &key)
        .map_err(|e| format!("loading the control plane's SVID: {e}"))?;
    let rustls_pki_types::PrivateKeyDer::Pkcs8(der) = key.private_key_der() else {
        return Err("the control plane's key is not PKCS#8".to_owned());
    };
    let signer = signet_audit::KeySigner::new(&id, svid.chain().to_vec(), der.secret_pkcs8_der())?;
    Ok((svid.refresh_at(), Arc::new(signer)))
}

/// The trust domain: as given, else the store's CA's, else a data directory's from before
/// the store held the CA, else the default.
fn trust_domain(options: &Options, stored: Option<String>) -> Result<TrustDomain, String> {
    let marker = options.data_dir.join("ca").join("trust-domain");
    let existing = stored.or_else(|| std::fs::read_to_string(&marker).ok());
    let name = match (&options.trust_domain, &existing) {
        (Some(given), _) => given.clone(),
        (None, Some(found)) => found.trim().to_owned(),
        (None, None) => DEFAULT_TRUST_DOMAIN.to_owned(),
    };
    TrustDomain::new(&name).map_err(|e| format!("--trust-domain `{name}`: {e}"))
}

/// The key that seals the CA in the store: `--ca-kek-file`, else the systemd credential
/// `signet-ca-kek`, else (SQLite only, where the database sits beside it) `<data>/ca.kek`,
/// made on first start. Replicas on a shared database must be given theirs.
fn key_encryption_key(options: &Options) -> Result<Kek, String> {
    if let Some(path) = &options.ca_kek_file {
        return Kek::load(path).map_err(|e| format!("--ca-kek-file: {e}"));
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(crate::server::seal::CREDENTIAL);
        if path.exists() {
            return Kek::load(&path).map_err(|e| format!("systemd credential: {e}"));
        }
    }
    let shared = options
        .store
        .as_deref()
        .is_some_and(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"));
    if shared {
        return Err(
            "--store on a shared database needs --ca-kek-file: the key that seals the \
                    CA there, the same file on every replica (make one with `umask 077; \
                    openssl rand -hex 32 > ca.kek`)"
                .to_owned(),
        );
    }
    let path = options.data_dir.join("ca.kek");
    if path.exists() {
        Kek::load(&path)
    } else {
        Kek::generate(&path)
    }
}

/// Opens the data directory, creating whatever is missing.
pub async fn open(options: &Options) -> Result<Boot, String> {
    let dir = &options.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating `{}`: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("securing `{}`: {e}", dir.display()))?;
    let profile = SvidProfile {
        default_ttl: options.svid_ttl,
        ..SvidProfile::default()
    };
    // The store first: a database that cannot be used leaves no CA behind in the directory.
    let store: Arc<dyn Store> = match &options.store {
        None => {
            let path = dir.join("signet.db");
            let store = SqlStore::open(&path).await.map_err(|e| e.to_string())?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("securing `{}`: {e}", path.display()))?;
            Arc::new(store)
        }
        Some(url) => Arc::new(
            SqlStore::open_url(url)
                .await
                .map_err(|e| format!("--store: {e}"))?,
        ),
    };
    let stored_td = store
        .ca()
        .await
        .map_err(|e| e.to_string())?
        .map(|row| row.trust_domain);
    let td = trust_domain(options, stored_td)?;
    let kek = Arc::new(key_encryption_key(options)?);
    let ca = Arc::new(
        Ca::open(
            Arc::clone(&store),
            kek,
            &dir.join("ca"),
            &td,
            (profile, options.jwt),
        )
        .await?,
    );

    let operators_file = dir.join("operators.cedar");
    if !operators_file.exists() {
        write_private(&operators_file, &default_policies(&td)?)?;
    }
    let operators = Arc::new(OperatorPolicies::load(&operators_file)?);

    let token_file = dir.join("admin.token");
    let admin_token = match std::fs::read_to_string(&token_file) {
        Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        // Another replica on this database made it: that one's file holds it.
        _ if store
            .has_operator_token("admin")
            .await
            .map_err(|e| e.to_string())? =>
        {
            tracing::info!(
                "the admin token was made by another replica: copy its admin.token (or \
                 meshctl.env) to use this one"
            );
            None
        }
        _ => {
            let token = random_hex(32)?;
            store
                .put_operator_token("admin", admin_id(&td)?.as_str(), sha256(token.as_bytes()))
                .await
                .map_err(|e| e.to_string())?;
            write_private(&token_file, &format!("{token}\n"))?;
            Some(token)
        }
    };

    let bundle = ca.bundle();
    write_private(&dir.join("bundle.pem"), &bundle.to_pem())?;
    let resolver = Arc::new(SvidResolver::new());
    let (_, signer) = issue_own(&ca, &resolver).await?;
    // The control plane's own chain: issuance, policy versions, operator actions.
    let (signers, signer_rx) = watch::channel(signer);
    let audit_dir = dir.join("audit").join("control-plane");
    let (audit, _task) = signet_audit::AuditLog::start(
        signet_audit::WriterConfig::new(audit_dir.clone()),
        signer_rx,
    )
    .map_err(|e| format!("audit `{}`: {e}", audit_dir.display()))?;
    let hub = Hub::load(
        td,
        Arc::clone(&ca),
        store,
        options.heartbeat_interval,
        audit,
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(Boot {
        hub: Arc::new(hub),
        signers,
        resolver,
        bundle: shared_bundle(bundle),
        deny: Arc::new(DenyList::new()),
        operators,
        data_dir: dir.clone(),
        admin_token,
    })
}

impl Boot {
    /// Writes `meshctl.env` naming the API at `api`; returns its path.
    pub fn write_env(&self, api: SocketAddr) -> Result<PathBuf, String> {
        let path = self.data_dir.join("meshctl.env");
        let dir = std::fs::canonicalize(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
        write_private(
            &path,
            &format!(
                "SIGNET_CP=https://{api}\n{}SIGNET_CA={}\n",
                self.admin_token
                    .as_ref()
                    .map(|t| format!("SIGNET_TOKEN={t}\n"))
                    .unwrap_or_default(),
                dir.join("bundle.pem").display()
            ),
        )?;
        Ok(dir.join("meshctl.env"))
    }

    /// What the renewal task needs.
    pub fn clone_for_renewal(&self) -> Renewal {
        Renewal {
            hub: Arc::clone(&self.hub),
            signers: self.signers.clone(),
            resolver: Arc::clone(&self.resolver),
            deny: Arc::clone(&self.deny),
            bundle: Arc::clone(&self.bundle),
            bundle_file: self.data_dir.join("bundle.pem"),
            next: SystemTime::now() + OWN_SVID_TTL / 2,
        }
    }
}

/// Renews the control plane's own SVID at half-life and at once when the CA's active
/// backend changes (a promoted rotation), and keeps the handshake deny-list and the trust
/// bundle (listeners and `bundle.pem`) in step with the hub's.
pub async fn renew_own_svid(mut renewal: Renewal, mut stop: watch::Receiver<bool>) {
    let mut changes = renewal.hub.subscribe();
    let mut issuer_generation = renewal.hub.ca.active_generation();
    loop {
        let deny = renewal.hub.deny_list();
        renewal.deny.replace(
            deny.spiffe_ids.iter().filter_map(|s| s.parse().ok()),
            deny.serials.iter().filter_map(|s| Serial::from_hex(s)),
        );
        let bundle = renewal.hub.ca.bundle();
        if bundle.sequence() != renewal.bundle.load().sequence()
            || !bundle.roots().eq(renewal.bundle.load().roots())
        {
            if let Err(e) = write_private(&renewal.bundle_file, &bundle.to_pem()) {
                tracing::error!(error = %e, "writing bundle.pem failed");
            }
            renewal.bundle.store(Arc::new(bundle));
        }
        if renewal.hub.ca.active_generation() != issuer_generation {
            issuer_generation = renewal.hub.ca.active_generation();
            renewal.next = SystemTime::now();
        }
        let wait = renewal
            .next
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let due = tokio::select! {
            () = tokio::time::sleep(wait) => true,
            changed = changes.changed() => if changed.is_err() { return } else { false },
            _ = stop.wait_for(|s| *s) => return,
        };
        if due {
            match issue_own(&renewal.hub.ca, &renewal.resolver).await {
                Ok((next, signer)) => {
                    renewal.next = next;
                    renewal.signers.send_replace(signer);
                }
                Err(e) => {
                    tracing::error!(error = %e, "renewing the control plane's SVID failed");
                    renewal.next = SystemTime::now() + Duration::from_secs(30);
                }
            }
        }
    }
}
