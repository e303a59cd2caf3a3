//! The proxy's identity: its SVID and key, the trust bundle and the deny-list, read from files
//! and re-read when they change. New credentials reach new handshakes at once (the resolver
//! and the bundle are swapped under the running listeners); established connections keep
//! the session they negotiated.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use signet_spiffe::tls::{SharedBundle, SvidResolver, shared_bundle};
use signet_spiffe::verify::DenyList;
use signet_spiffe::{Serial, SpiffeId, TrustBundle, TrustDomain, WorkloadKey, X509Svid};
use tokio::sync::watch;

use crate::config::IdentityConfig;

/// Largest credential or deny-list file read.
const MAX_FILE_LEN: u64 = 1024 * 1024;

/// One consistent set of credentials.
#[derive(Debug)]
pub struct Credentials {
    /// The SVID.
    pub svid: X509Svid,
    /// The trust bundle.
    pub bundle: TrustBundle,
    /// The SVID's private key (PKCS#8 DER), for the local workload through the Workload
    /// API; set when the credentials are put in force ([`Identity::new`], `rotate`).
    pub key_pkcs8: Option<Arc<Vec<u8>>>,
}

fn with_key(credentials: Credentials, key: &WorkloadKey) -> Credentials {
    Credentials {
        key_pkcs8: Some(Arc::new(key.private_key_der().secret_der().to_vec())),
        ..credentials
    }
}

/// The live identity state every listener reads.
#[derive(Debug)]
pub struct Identity {
    /// Presents the current SVID in handshakes.
    pub resolver: Arc<SvidResolver>,
    /// Verifies peers against the current bundle.
    pub bundle: SharedBundle,
    /// Refuses listed peers in handshakes, and closes their live connections.
    pub deny: Arc<DenyList>,
    /// The current credentials; changes are published here.
    pub current: watch::Sender<Arc<Credentials>>,
    /// Bumped when the deny-list changes, so live connections re-check their peer.
    pub deny_version: watch::Sender<u64>,
}

fn read(path: &Path, what: &str) -> Result<String, String> {
    let shown = path.display();
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{what} `{shown}`: {e}"))?
        .len();
    if len > MAX_FILE_LEN {
        return Err(format!(
            "{what} `{shown}` is {len} bytes; the limit is {MAX_FILE_LEN}"
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{what} `{shown}`: {e}"))
}

/// Reads and checks the credential files: the SVID must be valid now, belong to the trust
/// domain, chain to the bundle, and match the key.
pub fn load(config: &IdentityConfig) -> Result<(Credentials, WorkloadKey), String> {
    let cert_pem = read(&config.cert, "identity.cert")?;
    let key_pem = read(&config.key, "identity.key")?;
    let bundle_pem = read(&config.bundle, "identity.bundle")?;
    let first = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()
        .ok_or_else(|| {
            format!(
                "identity.cert `{}` holds no certificate",
                config.cert.display()
            )
        })?
        .map_err(|e| format!("identity.cert `{}`: {e}", config.cert.display()))?;
    let trust_domain = match &config.trust_domain {
        Some(td) => TrustDomain::new(td).map_err(|e| format!("identity.trust_domain: {e}"))?,
        None => signet_spiffe::leaf_spiffe_id(&first)
            .map_err(|e| format!("identity.cert `{}`: {e}", config.cert.display()))?
            .trust_domain(),
    };
    let svid = X509Svid::from_pem(&cert_pem, &trust_domain, SystemTime::now())
        .map_err(|e| format!("identity.cert `{}`: {e}", config.cert.display()))?;
    let key = WorkloadKey::from_pkcs8_pem(&key_pem)
        .map_err(|e| format!("identity.key `{}`: {e}", config.key.display()))?;
    let bundle = TrustBundle::from_pem(trust_domain, &bundle_pem)
        .map_err(|e| format!("identity.bundle `{}`: {e}", config.bundle.display()))?;
    signet_spiffe::verify::verify_peer(
        &bundle,
        svid.leaf(),
        svid.chain().get(1..).unwrap_or_default(),
        rustls::pki_types::UnixTime::now(),
        signet_spiffe::verify::Usage::Server,
    )
    .map_err(|e| {
        format!(
            "identity.cert `{}` does not verify against identity.bundle: {e}",
            config.cert.display()
        )
    })?;
    Ok((
        Credentials {
            svid,
            bundle,
            key_pkcs8: None,
        },
        key,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DenyFile {
    #[serde(default)]
    ids: Vec<SpiffeId>,
    #[serde(default)]
    serials: Vec<String>,
}

/// Reads a deny-list file: `{"ids": ["spiffe://…"], "serials": ["0a1b…"]}`.
pub fn load_deny_list(path: &Path) -> Result<(Vec<SpiffeId>, Vec<Serial>), String> {
    let text = read(path, "identity.deny_list")?;
    let file: DenyFile = serde_json::from_str(&text)
        .map_err(|e| format!("identity.deny_list `{}`: {e}", path.display()))?;
    let serials = file
        .serials
        .iter()
        .map(|s| {
            Serial::from_hex(&s.to_ascii_lowercase()).ok_or_else(|| {
                format!(
                    "identity.deny_list `{}`: serial `{s}` is not hex",
                    path.display()
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((file.ids, serials))
}

impl Identity {
    /// The state for `credentials`.
    pub fn new(credentials: Credentials, key: &WorkloadKey) -> Result<Self, String> {
        let resolver = Arc::new(SvidResolver::new());
        resolver
            .update(&credentials.svid, key)
            .map_err(|e| format!("identity: {e}"))?;
        let bundle = shared_bundle(credentials.bundle.clone());
        let (current, _) = watch::channel(Arc::new(with_key(credentials, key)));
        let (deny_version, _) = watch::channel(0);
        Ok(Self {
            resolver,
            bundle,
            deny: Arc::new(DenyList::new()),
            current,
            deny_version,
        })
    }

    /// Switches to new credentials: new handshakes present the new SVID and verify against
    /// the new bundle.
    pub fn rotate(&self, credentials: Credentials, key: &WorkloadKey) -> Result<(), String> {
        self.resolver
            .update(&credentials.svid, key)
            .map_err(|e| format!("identity: {e}"))?;
        self.bundle.store(Arc::new(credentials.bundle.clone()));
        self.current
            .send_replace(Arc::new(with_key(credentials, key)));
        Ok(())
    }

    /// Switches to a new trust bundle, keeping the SVID. A federated trust domain that
    /// left it makes live connections re-check their peers, as a deny-list update does.
    pub fn update_bundle(&self, bundle: TrustBundle) {
        let dropped = self
            .bundle
            .load()
            .federated()
            .iter()
            .any(|f| bundle.bundle_for(f.trust_domain()).is_none());
        self.bundle.store(Arc::new(bundle.clone()));
        if dropped {
            self.deny_version.send_modify(|v| *v += 1);
        }
        self.current.send_modify(|c| {
            *c = Arc::new(Credentials {
                svid: c.svid.clone(),
                bundle,
                key_pkcs8: c.key_pkcs8.clone(),
            });
        });
    }

    /// Whether `peer` may no longer be connected: deny-listed, or of a trust domain no
    /// longer trusted (a federation removed).
    pub fn revoked(&self, peer: &SpiffeId, serial: &Serial) -> Option<&'static str> {
        if self.deny.denies(peer, serial) {
            return Some("deny-list");
        }
        if self
            .bundle
            .load()
            .bundle_for(&peer.trust_domain())
            .is_none()
        {
            return Some("trust-domain");
        }
        None
    }

    /// Replaces the deny-list and tells live connections to re-check their peers.
    pub fn deny(&self, ids: Vec<SpiffeId>, serials: Vec<Serial>) {
        self.deny.replace(ids, serials);
        self.deny_version.send_modify(|v| *v += 1);
    }
}
