//! X.509-SVIDs: a leaf certificate naming one SPIFFE ID, with the intermediates up to (not
//! including) a root of the trust bundle.

use std::fmt;
use std::time::{Duration, SystemTime};

use ring::rand::SecureRandom as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{IdError, SpiffeId, TrustDomain};

/// Most a refresh time moves away from half-life, as a fraction of the lifetime. Bounded so
/// that a refresh never lands in the last third of the lifetime nor in the first third.
pub const MAX_REFRESH_JITTER: f64 = 0.1;

/// Why a certificate chain is not a usable X.509-SVID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    #[error("certificate chain is empty")]
    EmptyChain,
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("certificate {index} in the chain cannot be parsed: {reason}")]
    Malformed { index: usize, reason: String },
    #[error("leaf has no URI SAN; an SVID names exactly one `spiffe://` URI")]
    NoUriSan,
    #[error("leaf has {0} URI SANs; an SVID names exactly one")]
    ManyUriSans(usize),
    #[error("leaf URI SAN `{uri}` is not a SPIFFE ID: {reason}")]
    BadSpiffeId { uri: String, reason: IdError },
    #[error("leaf is a CA certificate; an SVID leaf must not be")]
    LeafIsCa,
    #[error("SPIFFE ID `{0}` has no path; an X509-SVID names a workload, not a trust domain")]
    NoPath(SpiffeId),
    #[error("leaf key usage {0}")]
    KeyUsage(&'static str),
    #[error("certificate {index} in the chain is not a CA but signs the one before it")]
    IntermediateNotCa { index: usize },
    #[error("SPIFFE ID `{id}` is not in trust domain `{expected}`")]
    WrongTrustDomain { id: SpiffeId, expected: TrustDomain },
    #[error("certificate {index} in the chain expired at {not_after} (unix seconds)")]
    Expired { index: usize, not_after: i64 },
    #[error("certificate {index} in the chain is not valid before {not_before} (unix seconds)")]
    NotYetValid { index: usize, not_before: i64 },
}

/// A parsed, structurally checked X.509-SVID chain.
///
/// Parsing does not check that the chain leads to a trusted root: that is the verifier's job
/// (`verify::verify_peer`), which needs a [`crate::TrustBundle`].
#[derive(Clone)]
pub struct X509Svid {
    id: SpiffeId,
    serial: Serial,
    not_before: SystemTime,
    not_after: SystemTime,
    chain: Vec<CertificateDer<'static>>,
}

impl X509Svid {
    /// Checks `chain` (leaf first) as an SVID of `trust_domain` valid at `now`.
    pub fn parse(
        chain: Vec<CertificateDer<'static>>,
        trust_domain: &TrustDomain,
        now: SystemTime,
    ) -> Result<Self, SvidError> {
        let Some(leaf_der) = chain.first() else {
            return Err(SvidError::EmptyChain);
        };
        let leaf = parse_cert(leaf_der, 0)?;
        let id = spiffe_id_of(&leaf)?;
        if leaf.is_ca() {
            return Err(SvidError::LeafIsCa);
        }
        check_leaf(&leaf, &id)?;
        if !id.is_member_of(trust_domain) {
            return Err(SvidError::WrongTrustDomain {
                id,
                expected: trust_domain.clone(),
            });
        }
        let now_secs = unix_secs(now);
        check_validity(&leaf, 0, now_secs)?;
        for (index, der) in chain.iter().enumerate().skip(1) {
            let cert = parse_cert(der, index)?;
            if !cert.is_ca() {
                return Err(SvidError::IntermediateNotCa { index });
            }
            check_validity(&cert, index, now_secs)?;
        }
        let validity = leaf.validity();
        Ok(Self {
            serial: Serial(leaf.raw_serial().to_vec()),
            not_before: from_unix(validity.not_before.timestamp()),
            not_after: from_unix(validity.not_after.timestamp()),
            id,
            chain,
        })
    }

    /// Reads a PEM chain (leaf first) and checks it as [`X509Svid::parse`] does.
    pub fn from_pem(
        pem: &str,
        trust_domain: &TrustDomain,
        now: SystemTime,
    ) -> Result<Self, SvidError> {
        let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SvidError::Pem(e.to_string()))?;
        Self::parse(chain, trust_domain, now)
    }

    /// The SPIFFE ID the leaf names.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The leaf's serial number.
    pub fn serial(&self) -> &Serial {
        &self.serial
    }

    /// Start of the leaf's validity.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of the leaf's validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The whole chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // INVARIANT (non-empty-chain): `parse` refuses an empty chain.
        &self.chain[0]
    }

    /// The chain as PEM, leaf first.
    pub fn to_pem(&self) -> String {
        crate::pem::certificates(&self.chain)
    }

    /// When to ask for a new SVID: half-way through the lifetime, moved by a random jitter of
    /// at most [`MAX_REFRESH_JITTER`] of the lifetime so that a fleet does not renew at once.
    pub fn refresh_at(&self) -> SystemTime {
        let mut b = [0u8; 2];
        // Without randomness, refresh exactly at half-life: still correct, merely in step.
        let unit = if ring::rand::SystemRandom::new().fill(&mut b).is_ok() {
            f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) * 2.0 - 1.0
        } else {
            0.0
        };
        self.refresh_at_with(unit)
    }

    /// [`X509Svid::refresh_at`] with the jitter given as `unit` in `[-1, 1]` (clamped).
    pub fn refresh_at_with(&self, unit: f64) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        let fraction = 0.5 + unit.clamp(-1.0, 1.0) * MAX_REFRESH_JITTER;
        self.not_before + lifetime.mul_f64(fraction)
    }
}

impl fmt::Debug for X509Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Svid")
            .field("id", &self.id)
            .field("serial", &self.serial)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("chain_len", &self.chain.len())
            .finish()
    }
}

/// A certificate serial number, shown as colon-free lowercase hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// The serial's big-endian bytes, as encoded in the certificate.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// From big-endian bytes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    /// Parses the hex form produced by `Display`.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.is_empty() || !hex.len().is_multiple_of(2) {
            return None;
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<_>>>()
            .map(Self)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

/// The SPIFFE ID named by a leaf certificate's single `spiffe://` URI SAN.
pub fn leaf_spiffe_id(der: &CertificateDer<'_>) -> Result<SpiffeId, SvidError> {
    spiffe_id_of(&parse_cert(der, 0)?)
}

pub(crate) fn parse_cert<'a>(
    der: &'a CertificateDer<'_>,
    index: usize,
) -> Result<X509Certificate<'a>, SvidError> {
    match X509Certificate::from_der(der.as_ref()) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(SvidError::Malformed {
            index,
            reason: "trailing bytes after the certificate".to_owned(),
        }),
        Err(e) => Err(SvidError::Malformed {
            index,
            reason: e.to_string(),
        }),
    }
}

pub(crate) fn spiffe_id_of(cert: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| SvidError::Malformed {
            index: 0,
            reason: e.to_string(),
        })?;
    let uris: Vec<&str> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    match uris.as_slice() {
        [] => Err(SvidError::NoUriSan),
        [uri] => uri.parse().map_err(|reason| SvidError::BadSpiffeId {
            uri: (*uri).to_owned(),
            reason,
        }),
        many => Err(SvidError::ManyUriSans(many.len())),
    }
}

/// The X509-SVID rules for a leaf beyond its one URI SAN (SPIFFE X509-SVID §3, §4.3): the
/// ID has a path, and the key usage extension is present with digitalSignature and without
/// keyCertSign or cRLSign. keyEncipherment and keyAgreement are allowed, as other SPIFFE
/// implementations issue them.
pub(crate) fn check_leaf(cert: &X509Certificate<'_>, id: &SpiffeId) -> Result<(), SvidError> {
    if id.path().is_empty() || id.path() == "/" {
        return Err(SvidError::NoPath(id.clone()));
    }
    let ku = match cert.key_usage() {
        Ok(Some(ext)) => ext.value,
        Ok(None) => return Err(SvidError::KeyUsage("is missing")),
        Err(_) => return Err(SvidError::KeyUsage("cannot be parsed")),
    };
    if !ku.digital_signature() {
        return Err(SvidError::KeyUsage("lacks digitalSignature"));
    }
    if ku.key_cert_sign() || ku.crl_sign() {
        return Err(SvidError::KeyUsage(
            "holds keyCertSign or cRLSign, which a leaf must not",
        ));
    }
    Ok(())
}

fn check_validity(cert: &X509Certificate<'_>, index: usize, now: i64) -> Result<(), SvidError> {
    let v = cert.validity();
    let (not_before, not_after) = (v.not_before.timestamp(), v.not_after.timestamp());
    if now < not_before {
        return Err(SvidError::NotYetValid { index, not_before });
    }
    if now > not_after {
        return Err(SvidError::Expired { index, not_after });
    }
    Ok(())
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn from_unix(secs: i64) -> SystemTime {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + magnitude
    } else {
        SystemTime::UNIX_EPOCH - magnitude
    }
}

#[cfg(test)]
#[path = "svid_tests.rs"]
mod tests;
