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

/// A built-in CA's certificates and keys (PEM), wherever they are kept: a directory (see
/// the module's layout) or, sealed, the control plane's store.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuiltinMaterial {
    pub trust_domain: String,
    pub root_cert: String,
    pub root_key: String,
    pub intermediate_cert: String,
    pub intermediate_key: String,
}

impl std::fmt::Debug for BuiltinMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinMaterial")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl BuiltinMaterial {
    /// A new root and intermediate for `td`.
    pub fn generate(td: &TrustDomain, options: &BuiltinOptions) -> Result<Self, AuthorityError> {
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
        let (int_cert, int_key) =
            issue_intermediate(&root_issuer, td, now, options, now + options.root_ttl)?;
        Ok(Self {
            trust_domain: td.to_string(),
            root_cert: root.pem(),
            root_key: root_issuer.key().serialize_pem(),
            intermediate_cert: int_cert,
            intermediate_key: int_key,
        })
    }

    /// The material kept in `dir`; `None` when it holds no complete CA (no marker).
    /// Refuses key files others may read.
    pub fn read(dir: &Path) -> Result<Option<Self>, AuthorityError> {
        let marker = dir.join(MARKER);
        let trust_domain = match fs::read_to_string(&marker) {
            Ok(found) => found.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(storage("reading", &marker, e)),
        };
        let paths = Paths::new(dir);
        let text = |path: &Path| fs::read_to_string(path).map_err(|e| storage("reading", path, e));
        check_private(&paths.root_key)?;
        check_private(&paths.int_key)?;
        Ok(Some(Self {
            trust_domain,
            root_cert: text(&paths.root_cert)?,
            root_key: text(&paths.root_key)?,
            intermediate_cert: text(&paths.int_cert)?,
            intermediate_key: text(&paths.int_key)?,
        }))
    }

    /// Writes the material into `dir` (0700; keys 0600), the marker last.
    fn write(&self, dir: &Path) -> Result<(), AuthorityError> {
        fs::create_dir_all(dir).map_err(|e| storage("creating", dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| storage("securing", dir, e))?;
        let paths = Paths::new(dir);
        write_file(&paths.root_key, self.root_key.as_bytes(), 0o600)?;
        write_file(&paths.root_cert, self.root_cert.as_bytes(), 0o644)?;
        self.write_intermediate(&paths)?;
        write_file(
            &dir.join(MARKER),
            format!("{}\n", self.trust_domain).as_bytes(),
            0o644,
        )
    }

    fn write_intermediate(&self, paths: &Paths) -> Result<(), AuthorityError> {
        // Key first: a crash between the two writes leaves a new key with the old
        // certificate, which `assemble` refuses, rather than a certificate whose key is lost.
        write_file(&paths.int_key, self.intermediate_key.as_bytes(), 0o600)?;
        write_file(&paths.int_cert, self.intermediate_cert.as_bytes(), 0o644)
    }
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
        match BuiltinMaterial::read(dir)? {
            Some(material) => {
                if material.trust_domain != trust_domain.as_str() {
                    return Err(AuthorityError::Storage(format!(
                        "`{}` holds a CA for trust domain `{}`, not `{trust_domain}`",
                        dir.display(),
                        material.trust_domain
                    )));
                }
                let (ca, renewed) = Self::from_material(&material, trust_domain, options)?;
                if let Some(renewed) = renewed {
                    renewed.write_intermediate(&Paths::new(dir))?;
                }
                Ok(ca)
            }
            None => {
                let material = BuiltinMaterial::generate(trust_domain, &options)?;
                material.write(dir)?;
                tracing::info!(
                    trust_domain = %trust_domain,
                    dir = %dir.display(),
                    root_sha256 = %fingerprint(&pem_cert(&material.root_cert, "root")?),
                    "created built-in CA"
                );
                Ok(Self::from_material(&material, trust_domain, options)?.0)
            }
        }
    }

    /// The CA `material` holds. When its intermediate is expired or close to it, a new one
    /// is issued from the root and the changed material is returned beside the CA, for the
    /// caller to keep.
    pub fn from_material(
        material: &BuiltinMaterial,
        td: &TrustDomain,
        options: BuiltinOptions,
    ) -> Result<(Self, Option<BuiltinMaterial>), AuthorityError> {
        if material.trust_domain != td.as_str() {
            return Err(AuthorityError::Storage(format!(
                "the CA is for trust domain `{}`, not `{td}`",
                material.trust_domain
            )));
        }
        let root = pem_cert(&material.root_cert, "root certificate")?;
        let now = options.clock.now();
        let root_not_after = not_after(&root)?;
        if root_not_after <= now {
            return Err(AuthorityError::Storage(
                "the built-in CA's root has expired; rotate the CA".to_owned(),
            ));
        }
        let int_cert = pem_cert(&material.intermediate_cert, "intermediate certificate")?;
        let renewed = if not_after(&int_cert)? <= now + options.intermediate_renew_before {
            // The root key is parsed only when it must sign; it is dropped right after.
            let root_key = pem_key(&material.root_key, "root key")?;
            let root_issuer = Issuer::from_ca_cert_der(&root, root_key)
                .map_err(|e| AuthorityError::Storage(format!("root certificate: {e}")))?;
            let (cert, key) = issue_intermediate(&root_issuer, td, now, &options, root_not_after)?;
            tracing::info!(trust_domain = %td, "re-issued the built-in CA's intermediate");
            Some(BuiltinMaterial {
                intermediate_cert: cert,
                intermediate_key: key,
                ..material.clone()
            })
        } else {
            None
        };
        let current = renewed.as_ref().unwrap_or(material);
        let int_cert = pem_cert(&current.intermediate_cert, "intermediate certificate")?;
        let int_key = pem_key(&current.intermediate_key, "intermediate key")?;
        let ca = Self::assemble(td, options, root, int_cert, int_key)?;
        Ok((ca, renewed))
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

/// A new intermediate (PEM certificate and key) signed by `root`.
fn issue_intermediate(
    root: &Issuer<'_, KeyPair>,
    td: &TrustDomain,
    now: SystemTime,
    options: &BuiltinOptions,
    root_not_after: SystemTime,
) -> Result<(String, String), AuthorityError> {
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
    Ok((cert.pem(), key.serialize_pem()))
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

#[cfg(test)]
fn read_cert(path: &Path) -> Result<CertificateDer<'static>, AuthorityError> {
    CertificateDer::from_pem_file(path).map_err(|e| storage("reading", path, e))
}

pub(crate) fn read_key(path: &Path) -> Result<KeyPair, AuthorityError> {
    check_private(path)?;
    let pem = fs::read_to_string(path).map_err(|e| storage("reading", path, e))?;
    KeyPair::from_pem(&pem).map_err(|e| storage("parsing", path, e))
}

/// Refuses a key file group or others may read.
fn check_private(path: &Path) -> Result<(), AuthorityError> {
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
    Ok(())
}

fn pem_cert(pem: &str, what: &str) -> Result<CertificateDer<'static>, AuthorityError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| AuthorityError::Storage(format!("{what}: {e}")))
}

fn pem_key(pem: &str, what: &str) -> Result<KeyPair, AuthorityError> {
    KeyPair::from_pem(pem).map_err(|e| AuthorityError::Storage(format!("{what}: {e}")))
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
