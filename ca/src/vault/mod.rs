//! Vault / OpenBao PKI as Signet's root of trust.
//!
//! Two backends share one [`VaultSession`] (address, TLS, auth, token upkeep):
//! - [`VaultIntermediateAuthority`]: Signet makes its intermediate key and CSR, the mount's
//!   root signs it (`<mount>/root/sign-intermediate`), SVIDs are signed locally, and the
//!   intermediate is re-signed well before it expires.
//! - [`VaultSignAuthority`]: every SVID is signed by Vault (`<mount>/sign/<role>`); no CA
//!   key exists in Signet.
//!
//! [`preflight`] checks a configuration (reachability, auth, mount, role, key type, TTLs)
//! before anything is switched to it.

mod checks;
mod endpoints;
mod intermediate;
mod session;
mod sign;

use std::path::PathBuf;
use std::time::Duration;

pub use checks::{Check, Preflight, preflight};
pub use intermediate::{IntermediateOptions, VaultIntermediateAuthority};
pub use session::{VaultError, VaultSession};
pub use sign::VaultSignAuthority;

/// How Signet uses the Vault PKI mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VaultMode {
    /// Vault's root signs Signet's intermediate; Signet signs SVIDs.
    Intermediate,
    /// Vault signs every SVID.
    Sign,
}

impl VaultMode {
    /// The backend name operators see.
    pub fn backend(self) -> &'static str {
        match self {
            Self::Intermediate => "vault-intermediate",
            Self::Sign => "vault-sign",
        }
    }
}

/// How Signet logs in to Vault.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum VaultAuth {
    /// A token given by the operator: renewed while renewable, never replaced.
    Token { token: String },
    /// AppRole: a token obtained by login, renewed, and obtained again when renewal fails.
    #[serde(rename = "approle")]
    AppRole {
        role_id: String,
        secret_id: String,
        #[serde(default = "default_approle_mount")]
        mount: String,
    },
}

fn default_approle_mount() -> String {
    "approle".to_owned()
}

impl std::fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token { .. } => f.write_str("Token(<redacted>)"),
            Self::AppRole { role_id, mount, .. } => f
                .debug_struct("AppRole")
                .field("role_id", role_id)
                .field("mount", mount)
                .finish_non_exhaustive(),
        }
    }
}

impl VaultAuth {
    /// `token` or `approle`.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Token { .. } => "token",
            Self::AppRole { .. } => "approle",
        }
    }
}

/// Where Vault is and how to use it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VaultSettings {
    /// `https://vault.example:8200`; `http://` only for a loopback dev server.
    pub address: String,
    /// PEM file of the CA that signed Vault's TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    pub auth: VaultAuth,
    /// The PKI secrets engine's path, e.g. `pki`.
    pub mount: String,
    /// The PKI role SVIDs are signed under (`vault-sign` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub mode: VaultMode,
    /// Lifetime asked for Signet's intermediate (`vault-intermediate` mode), seconds.
    #[serde(default = "default_intermediate_ttl_secs")]
    pub intermediate_ttl_secs: u64,
}

fn default_intermediate_ttl_secs() -> u64 {
    30 * 24 * 3600
}

impl VaultSettings {
    /// The requested intermediate lifetime.
    pub fn intermediate_ttl(&self) -> Duration {
        Duration::from_secs(self.intermediate_ttl_secs)
    }

    /// The mount path without surrounding slashes.
    pub fn mount(&self) -> &str {
        self.mount.trim_matches('/')
    }
}

/// Every certificate in a PEM text.
fn certificates(
    pem: &str,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, crate::AuthorityError> {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| crate::AuthorityError::Sign(format!("Vault sent a bad certificate: {e}")))
}

/// Whether a certificate is self-signed (subject = issuer): a root.
fn is_root(der: &rustls_pki_types::CertificateDer<'_>) -> bool {
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    X509Certificate::from_der(der.as_ref())
        .map(|(_, c)| c.subject().as_raw() == c.issuer().as_raw())
        .unwrap_or(false)
}

/// Splits Vault's `ca_chain` (any order, may repeat) into issuers (below the root, nearest
/// first as given) and roots.
fn split_chain(
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
) -> (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    Vec<rustls_pki_types::CertificateDer<'static>>,
) {
    let mut issuers = Vec::new();
    let mut roots = Vec::new();
    for c in chain {
        let list = if is_root(&c) {
            &mut roots
        } else {
            &mut issuers
        };
        if !list.contains(&c) {
            list.push(c);
        }
    }
    (issuers, roots)
}
