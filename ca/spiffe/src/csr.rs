//! The workload's own key and its certificate signing request.
//!
//! The workload makes an ECDSA P-256 key and sends only a CSR: the private key stays in the
//! process that made it. The CSR names the workload's SPIFFE ID as its only subject
//! alternative name and carries no subject, key usages or other requests; the CA decides
//! those.

use std::fmt;

use rcgen::{CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use rustls_pki_types::{CertificateSigningRequestDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::SpiffeId;

/// Why a key could not be made or loaded, or a CSR built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    #[error("could not generate a P-256 key: {0}")]
    Generate(String),
    #[error("could not read the private key: {0}")]
    Load(String),
    #[error("the private key is not ECDSA P-256")]
    NotP256,
    #[error("could not build the CSR: {0}")]
    Build(String),
}

/// A workload's private key (ECDSA P-256).
///
/// `Debug` never shows key material. The key leaves this type only through
/// [`WorkloadKey::to_pkcs8_pem`] (to persist it, mode 0600) and
/// [`WorkloadKey::private_key_der`] (to hand it to rustls in the same process).
pub struct WorkloadKey {
    pair: KeyPair,
}

impl WorkloadKey {
    /// A fresh P-256 key from the system's secure random source.
    pub fn generate() -> Result<Self, CsrError> {
        let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CsrError::Generate(e.to_string()))?;
        Ok(Self { pair })
    }

    /// Loads a PKCS#8 PEM key written by [`WorkloadKey::to_pkcs8_pem`].
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, CsrError> {
        let pair = KeyPair::from_pem(pem).map_err(|e| CsrError::Load(e.to_string()))?;
        if pair.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(CsrError::NotP256);
        }
        Ok(Self { pair })
    }

    /// The private key as PKCS#8 PEM, for persisting next to the SVID (mode 0600).
    pub fn to_pkcs8_pem(&self) -> String {
        self.pair.serialize_pem()
    }

    /// The private key in the form rustls loads.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pair.serialize_der()))
    }

    /// The public key as a DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.pair)
    }

    /// The public key as the raw uncompressed point (what an SVID's SPKI carries).
    pub fn public_key_raw(&self) -> &[u8] {
        self.pair.public_key_raw()
    }

    /// A CSR for `id`, signed with this key: one URI SAN, an empty subject, nothing else.
    pub fn csr(&self, id: &SpiffeId) -> Result<CertificateSigningRequestDer<'static>, CsrError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let uri = id
            .as_str()
            .try_into()
            .map_err(|e: rcgen::Error| CsrError::Build(e.to_string()))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        let csr = params
            .serialize_request(&self.pair)
            .map_err(|e| CsrError::Build(e.to_string()))?;
        Ok(csr.der().clone())
    }

    /// The key pair, for signing inside this workspace (the audit writer signs checkpoints
    /// with the SVID key).
    pub fn key_pair(&self) -> &KeyPair {
        &self.pair
    }
}

impl fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkloadKey(P-256, <redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509CertificationRequest};

    #[test]
    fn csr_carries_only_the_spiffe_id() {
        let key = WorkloadKey::generate().unwrap();
        let id: SpiffeId = "spiffe://acme.internal/ns/shop/sa/cart".parse().unwrap();
        let der = key.csr(&id).unwrap();
        let (_, csr) = X509CertificationRequest::from_der(der.as_ref()).unwrap();
        csr.verify_signature().unwrap();
        let info = &csr.certification_request_info;
        assert_eq!(info.subject.iter().count(), 0, "subject must be empty");
        assert_eq!(
            info.subject_pki.subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        let exts: Vec<_> = csr.requested_extensions().unwrap().collect();
        assert_eq!(exts.len(), 1, "only the SAN extension: {exts:?}");
        let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = exts[0] else {
            panic!("expected a SAN, got {:?}", exts[0]);
        };
        assert_eq!(
            san.general_names,
            [x509_parser::extensions::GeneralName::URI(id.as_str())]
        );
    }

    #[test]
    fn key_round_trips_through_pem_and_debug_hides_it() {
        let key = WorkloadKey::generate().unwrap();
        let pem = key.to_pkcs8_pem();
        let back = WorkloadKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.public_key_der(), key.public_key_der());
        let shown = format!("{key:?}");
        assert!(!shown.contains(&pem[30..60]));
        assert_eq!(shown, "WorkloadKey(P-256, <redacted>)");
    }

    #[test]
    fn other_key_types_are_refused() {
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert!(matches!(
            WorkloadKey::from_pkcs8_pem(&p384.serialize_pem()),
            Err(CsrError::NotP256)
        ));
        assert!(matches!(
            WorkloadKey::from_pkcs8_pem("not a key"),
            Err(CsrError::Load(_))
        ));
    }
}
