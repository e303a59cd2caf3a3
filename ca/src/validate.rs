//! Post-issue validation: the last step of issuance. Whatever the backend (rcgen here, Vault
//! later), the certificate is checked against the profile before anyone receives it.

use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, UnixTime};
use signet_spiffe::verify::{PeerError, Usage, verify_peer};
use signet_spiffe::{SpiffeId, SvidError, TrustBundle, X509Svid};
use x509_parser::prelude::{FromDer, X509Certificate};

/// What was wrong with an issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssuedInvalid {
    #[error("not a valid SVID: {0}")]
    Svid(#[from] SvidError),
    #[error("names `{got}` instead of `{want}`")]
    WrongId { got: SpiffeId, want: SpiffeId },
    #[error("carries a public key other than the CSR's")]
    WrongKey,
    #[error("key usage must be exactly digitalSignature")]
    KeyUsage,
    #[error("extended key usage must include serverAuth and clientAuth")]
    ExtendedKeyUsage,
    #[error("lifetime ends after the granted expiry")]
    Lifetime,
    #[error("does not chain to the trust bundle: {0}")]
    Chain(#[from] PeerError),
}

/// What the issued certificate must be.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The attested identity.
    pub id: &'a SpiffeId,
    /// The CSR's public key (uncompressed point).
    pub public_key: &'a [u8],
    /// The latest acceptable `notAfter`.
    pub not_after: SystemTime,
    /// The bundle the chain must lead to.
    pub bundle: &'a TrustBundle,
    /// Validation time.
    pub now: SystemTime,
}

/// Checks `chain` (leaf first, without the root) against `expected`.
pub fn validate_issued(
    chain: Vec<CertificateDer<'static>>,
    expected: Expected<'_>,
) -> Result<X509Svid, IssuedInvalid> {
    let svid = X509Svid::parse(chain, expected.bundle.trust_domain(), expected.now)?;
    if svid.id() != expected.id {
        return Err(IssuedInvalid::WrongId {
            got: svid.id().clone(),
            want: expected.id.clone(),
        });
    }
    if svid.not_after() > expected.not_after {
        return Err(IssuedInvalid::Lifetime);
    }
    let (_, leaf) =
        X509Certificate::from_der(svid.leaf().as_ref()).map_err(|e| SvidError::Malformed {
            index: 0,
            reason: e.to_string(),
        })?;
    if leaf.public_key().subject_public_key.data.as_ref() != expected.public_key {
        return Err(IssuedInvalid::WrongKey);
    }
    let ku = leaf
        .key_usage()
        .ok()
        .flatten()
        .ok_or(IssuedInvalid::KeyUsage)?
        .value;
    if !ku.digital_signature()
        || ku.key_cert_sign()
        || ku.crl_sign()
        || ku.key_encipherment()
        || ku.data_encipherment()
        || ku.key_agreement()
    {
        return Err(IssuedInvalid::KeyUsage);
    }
    let eku = leaf
        .extended_key_usage()
        .ok()
        .flatten()
        .ok_or(IssuedInvalid::ExtendedKeyUsage)?
        .value;
    if !(eku.server_auth && eku.client_auth) {
        return Err(IssuedInvalid::ExtendedKeyUsage);
    }
    // The EKU check above covers both roles; one path validation proves the chain.
    let now = UnixTime::since_unix_epoch(
        expected
            .now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let (leaf_der, intermediates) = svid.chain().split_at(1);
    verify_peer(
        expected.bundle,
        &leaf_der[0],
        intermediates,
        now,
        Usage::Client,
    )?;
    Ok(svid)
}
