//! The `Authority` trait: what every CA backend (built-in, Vault intermediate, Vault sign)
//! promises the control plane.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateSigningRequestDer;
use signet_spiffe::{SpiffeId, TrustBundle, X509Svid};

use crate::csr::CsrError;
use crate::validate::IssuedInvalid;

/// A boxed, sendable future: the trait's methods return these so that backends can be held
/// as `Arc<dyn Authority>` and swapped at run time (CA rotation, backend switch).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request to sign a workload's CSR.
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    /// The workload's CSR (DER). Only its public key is used; its signature is checked.
    pub csr: &'a CertificateSigningRequestDer<'a>,
    /// The identity the caller attested (join token, current SVID...). This, never the
    /// CSR's own SAN, is the identity signed.
    pub id: &'a SpiffeId,
    /// Requested lifetime; `None` takes the profile's default. Clamped to the profile.
    pub ttl: Option<Duration>,
}

/// Why an authority did not issue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    #[error("CSR refused: {0}")]
    Csr(#[from] CsrError),
    #[error("SPIFFE ID `{id}` is not in this authority's trust domain `{trust_domain}`")]
    ForeignId { id: SpiffeId, trust_domain: String },
    #[error("SPIFFE ID `{0}` has no path; an X509-SVID names a workload, not a trust domain")]
    NoPath(SpiffeId),
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("issued certificate failed validation: {0}")]
    Invalid(#[from] IssuedInvalid),
    #[error("CA storage: {0}")]
    Storage(String),
    #[error("CA backend unavailable: {0}")]
    Unavailable(String),
}

/// A certificate authority for one trust domain.
///
/// Contract for every implementation:
/// - `sign` issues an X.509-SVID for `request.id` (never for an identity taken from the CSR;
///   a CSR naming another identity is refused with [`AuthorityError::Csr`]) with the CSR's
///   public key, after checking the CSR's signature. The lifetime is the requested TTL clamped
///   to the backend's profile and never beyond its own issuing certificate's expiry.
/// - The returned SVID has been validated before it is returned: it parses as an SVID of the
///   trust domain, names exactly `request.id`, carries the CSR's key, has KU digitalSignature
///   and EKU serverAuth+clientAuth, and chains to a root in [`Authority::bundle`]. Its chain
///   is leaf first and excludes the root.
/// - `sign` may be called concurrently; it must not block the async runtime for long (CPU
///   work of a signature is fine; network or disk I/O must be awaited).
/// - `bundle` is cheap and returns every root a currently valid SVID may chain to (more than
///   one during a rotation).
/// - Implementations never log or return private key material.
pub trait Authority: Send + Sync + fmt::Debug {
    /// Signs a workload CSR for an attested identity.
    fn sign<'a>(
        &'a self,
        request: SignRequest<'a>,
    ) -> BoxFuture<'a, Result<X509Svid, AuthorityError>>;

    /// The current trust bundle.
    fn bundle(&self) -> TrustBundle;

    /// The backend's name as operators see it (`builtin`, `vault-intermediate`, `vault-sign`).
    fn kind(&self) -> &'static str;

    /// What operators see in `meshctl ca status`: the CAs and when they expire, the
    /// backend's own state (a Vault token's lifetime), what is due next, and warnings.
    fn status(&self) -> AuthorityStatus;

    /// Housekeeping the backend needs to keep issuing (renewing a Vault token, re-issuing an
    /// intermediate before it expires). The control plane calls it periodically and after
    /// failures; it returns when the next call is due. Never loops by itself.
    fn maintain(&self) -> BoxFuture<'_, Result<Duration, AuthorityError>> {
        Box::pin(async { Ok(Duration::from_secs(3600)) })
    }
}

/// One CA certificate as `meshctl ca status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaCertificate {
    /// `root`, `intermediate` or `issuer` (an upper CA of a Vault mount).
    pub role: String,
    pub subject: String,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
    /// Unix seconds.
    pub not_after: u64,
}

/// A backend's state for operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthorityStatus {
    /// `builtin`, `vault-intermediate` or `vault-sign`.
    pub backend: String,
    /// The issuing chain, issuing CA first, root last.
    pub chain: Vec<CaCertificate>,
    /// Vault's side, for the Vault backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultStatus>,
    /// When the backend next renews something (token, intermediate), unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_renewal: Option<u64>,
    /// The last failure talking to the backend, if the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A Vault backend's connection as `meshctl ca status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VaultStatus {
    pub address: String,
    pub mount: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `token` or `approle`.
    pub auth: String,
    /// Seconds the current token has left (`None`: it never expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ttl: Option<u64>,
    pub token_renewable: bool,
    /// Logins since start (AppRole: the first, then one per token that could not be renewed).
    pub logins: u64,
    /// Token renewals since start.
    pub renewals: u64,
}

/// Where time comes from, so tests can issue in the past or the future.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that always says the same time.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}
