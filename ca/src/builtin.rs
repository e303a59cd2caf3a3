//! The built-in CA: a root and an intermediate (ECDSA P-256) kept in a data directory.
//!
//! Layout of the directory (keys mode 0600, directory 0700):
//! - `root.crt`, `root.key`: the self-signed root, valid 10 years by default;
//! - `intermediate.crt`, `intermediate.key`: the issuing CA (pathLen 0), valid 1 year by
//!   default and re-issued from the root on start when less than 30 days remain;
//! - `trust-domain`: written last, so its presence means the CA above is complete.
//!
//! The intermediate carries no URI name constraint: rcgen cannot encode one and webpki (so
//! rustls) rejects every chain that has one. Verifiers instead require every leaf to name an
//! ID in the bundle's own trust domain (`signet_spiffe::verify`).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use signet_spiffe::{TrustBundle, TrustDomain, X509Svid};
use time::OffsetDateTime;

use crate::authority::{
    Authority, AuthorityError, AuthorityStatus, BoxFuture, Clock, SignRequest, SystemClock,
};
use crate::local::describe_chain;
use crate::local::{LocalSigner, not_after};
use crate::profile::{SvidProfile, random_serial};

const ROOT_CERT: &str = "root.crt";
const ROOT_KEY: &str = "root.key";
const INT_CERT: &str = "intermediate.crt";
const INT_KEY: &str = "intermediate.key";
const MARKER: &str = "trust-domain";

/// Settings for [`BuiltinAuthority::open`].
#[derive(Debug, Clone)]
pub struct BuiltinOptions {
    /// The SVID profile (TTLs).
    pub profile: SvidProfile,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// Lifetime of a new root.
    pub root_ttl: Duration,
    /// Lifetime of a new intermediate.
    pub intermediate_ttl: Duration,
    /// Re-issue the intermediate on open when less than this remains.
    pub intermediate_renew_before: Duration,
}

impl Default for BuiltinOptions {
    fn default() -> Self {
        Self {
            profile: SvidProfile::default(),
            clock: Arc::new(SystemClock),
            root_ttl: Duration::from_secs(10 * 365 * 86400),
            intermediate_ttl: Duration::from_secs(365 * 86400),
            intermediate_renew_before: Duration::from_secs(30 * 86400),
        }
    }
}

/// The built-in certificate authority.
pub struct BuiltinAuthority {
    trust_domain: TrustDomain,
    signer: LocalSigner,
}

impl std::fmt::Debug for BuiltinAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinAuthority")
            .field("trust_domain", &self.trust_domain)
            .field("intermediate_not_after", &self.signer.not_after())
            .finish_non_exhaustive()
    }
}

fn storage(what: &str, path: &Path, e: impl std::fmt::Display) -> AuthorityError {
    AuthorityError::Storage(format!("{what} `{}`: {e}", path.display()))
}

impl BuiltinAuthority {
    /// Opens the CA in `dir`, creating the directory, root and intermediate on first use.
    ///
    /// Refuses a directory that holds a CA for another trust domain, key files readable by
    /// group or others, and keys that do not match their certificates.
    pub fn open(
        dir: &Path,
        trust_domain: &TrustDomain,
        options: BuiltinOptions,
    ) -> Result<Self, AuthorityError> {
        let marker = dir.join(MARKER);
        if marker.exists() {
            let found = fs::read_to_string(&marker).map_err(|e| storage("reading", &marker, e))?;
            if found.trim() != trust_domain.as_str() {
                return Err(AuthorityError::Storage(format!(
                    "`{}` holds a CA for trust domain `{}`, not `{trust_domain}`",
                    dir.display(),
                    found.trim()
                )));
            }
            Self::load(dir, trust_domain, options)
        } else {
            Self::create(dir, trust_domain, options)
        }
    }

    fn create(
        dir: &Path,
        td: &TrustDomain,
        options: BuiltinOptions,
    ) -> Result<Self, AuthorityError> {
        fs::create_dir_all(dir).map_err(|e| storage("creating", dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| storage("securing", dir, e))?;
        let now = options.clock.now();
        let root_key = new_key()?;
        let root_params = ca_params(
            &format!("Signet root CA {td} {}", unix(now)),
            None,
            now,
            now + options.root_ttl,
        )?;
        let root = root_params
            .self_signed(&root_key)
            .map_err(|e| AuthorityError::Sign(e.to_string()))?;
        let root_issuer = Issuer::new(root_params, root_key);
        let paths = Paths::new(dir);
        write_file(
            &paths.root_key,
            root_issuer.key().serialize_pem().as_bytes(),
            0o600,
        )?;
        write_file(&paths.root_cert, root.pem().as_bytes(), 0o644)?;
        let root_not_after = now + options.root_ttl;
        let (int_cert, int_key) =
            issue_intermediate(&root_issuer, td, now, &options, root_not_after, &paths)?;
        write_file(&dir.join(MARKER), format!("{td}\n").as_bytes(), 0o644)?;
        tracing::info!(
            trust_domain = %td,
            dir = %dir.display(),
            root_sha256 = %fingerprint(root.der()),
            "created built-in CA"
        );
        Self::assemble(td, options, root.der().clone(), int_cert, int_key)
    }

    fn load(dir: &Path, td: &TrustDomain, options: BuiltinOptions) -> Result<Self, AuthorityError> {
        let paths = Paths::new(dir);
        let root = read_cert(&paths.root_cert)?;
        let mut int_cert = read_cert(&paths.int_cert)?;
        let mut int_key = read_key(&paths.int_key)?;
        let now = options.clock.now();
        let root_not_after = not_after(&root)?;
        if root_not_after <= now {
            return Err(AuthorityError::Storage(format!(
                "the root in `{}` has expired; rotate the CA",
                dir.display()
            )));
        }
        if not_after(&int_cert)? <= now + options.intermediate_renew_before {
            // The root key is read only when it must sign; it is dropped right after.
            let root_key = read_key(&paths.root_key)?;
            let root_issuer = Issuer::from_ca_cert_der(&root, root_key)
                .map_err(|e| storage("reading", &paths.root_cert, e))?;
            (int_cert, int_key) =
                issue_intermediate(&root_issuer, td, now, &options, root_not_after, &paths)?;
            tracing::info!(trust_domain = %td, "re-issued the built-in CA's intermediate");
        }
        Self::assemble(td, options, root, int_cert, int_key)
    }

    fn assemble(
        td: &TrustDomain,
        options: BuiltinOptions,
        root: CertificateDer<'static>,
        intermediate: CertificateDer<'static>,
        key: KeyPair,
    ) -> Result<Self, AuthorityError> {
        let bundle = TrustBundle::from_roots(td.clone(), [root])
            .map_err(|e| AuthorityError::Storage(format!("root certificate: {e}")))?;
        let signer = LocalSigner::new(
            td,
            options.profile,
            options.clock,
            vec![intermediate],
            key,
            bundle,
        )?;
        Ok(Self {
            trust_domain: td.clone(),
            signer,
        })
    }

    /// Signs synchronously: the whole of [`Authority::sign`] for this backend, which does no
    /// I/O.
    pub fn issue(&self, request: SignRequest<'_>) -> Result<X509Svid, AuthorityError> {
        self.signer.issue(request)
    }

    /// The intermediate certificate SVIDs are signed with.
    pub fn intermediate(&self) -> &CertificateDer<'static> {
        self.signer.certificate()
    }

    /// When the intermediate expires.
    pub fn intermediate_not_after(&self) -> SystemTime {
        self.signer.not_after()
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }
}

impl Authority for BuiltinAuthority {
    fn sign<'a>(
        &'a self,
        request: SignRequest<'a>,
    ) -> BoxFuture<'a, Result<X509Svid, AuthorityError>> {
        Box::pin(async move { self.issue(request) })
    }

    fn bundle(&self) -> TrustBundle {
        self.signer.bundle().clone()
    }

    fn kind(&self) -> &'static str {
        "builtin"
    }

    fn status(&self) -> AuthorityStatus {
        AuthorityStatus {
            backend: self.kind().to_owned(),
            chain: describe_chain(self.signer.chain(), self.signer.bundle()),
            ..AuthorityStatus::default()
        }
    }
}

struct Paths {
    root_cert: PathBuf,
    root_key: PathBuf,
    int_cert: PathBuf,
    int_key: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Self {
        Self {
            root_cert: dir.join(ROOT_CERT),
            root_key: dir.join(ROOT_KEY),
            int_cert: dir.join(INT_CERT),
            int_key: dir.join(INT_KEY),
        }
    }
}

fn issue_intermediate(
    root: &Issuer<'_, KeyPair>,
    td: &TrustDomain,
    now: SystemTime,
    options: &BuiltinOptions,
    root_not_after: SystemTime,
    paths: &Paths,
) -> Result<(CertificateDer<'static>, KeyPair), AuthorityError> {
    let key = new_key()?;
    let params = ca_params(
        &format!("Signet intermediate CA {td} {}", unix(now)),
        Some(0),
        now,
        (now + options.intermediate_ttl).min(root_not_after),
    )?;
    let cert = params
        .signed_by(&key, root)
        .map_err(|e| AuthorityError::Sign(e.to_string()))?;
    // Key first: a crash between the two writes leaves a new key with the old certificate,
    // which `assemble` refuses, rather than a certificate whose key is lost.
    write_file(&paths.int_key, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&paths.int_cert, cert.pem().as_bytes(), 0o644)?;
    Ok((cert.der().clone(), key))
}

fn ca_params(
    cn: &str,
    path_len: Option<u8>,
    now: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, AuthorityError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Signet");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = OffsetDateTime::from(now - Duration::from_secs(60));
    p.not_after = OffsetDateTime::from(not_after);
    p.serial_number = Some(random_serial().map_err(AuthorityError::Sign)?);
    p.use_authority_key_identifier_extension = path_len.is_some();
    Ok(p)
}

pub(crate) fn new_key() -> Result<KeyPair, AuthorityError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| AuthorityError::Sign(e.to_string()))
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename) with `mode`.
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AuthorityError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| storage("creating", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| storage("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| storage("renaming to", path, e))
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>, AuthorityError> {
    CertificateDer::from_pem_file(path).map_err(|e| storage("reading", path, e))
}

pub(crate) fn read_key(path: &Path) -> Result<KeyPair, AuthorityError> {
    let meta = fs::metadata(path).map_err(|e| storage("reading", path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(storage(
            "refusing key file",
            path,
            format!(
                "mode {:o} lets others read it; run `chmod 600` on it",
                meta.permissions().mode() & 0o777
            ),
        ));
    }
    let pem = fs::read_to_string(path).map_err(|e| storage("reading", path, e))?;
    KeyPair::from_pem(&pem).map_err(|e| storage("parsing", path, e))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// SHA-256 of a certificate, hex: safe to log (public).
pub fn fingerprint(der: &CertificateDer<'_>) -> String {
    ring::digest::digest(&ring::digest::SHA256, der.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
#[path = "builtin_tests.rs"]
mod tests;
