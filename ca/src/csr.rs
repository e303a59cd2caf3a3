//! Checking a workload's CSR: it must be well formed, signed by the key it carries, an ECDSA
//! P-256 key, and must not ask for an identity other than the attested one. Nothing else in
//! the CSR is used: the profile decides what is signed.

use rcgen::{PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm};
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use rustls_pki_types::CertificateSigningRequestDer;
use signet_spiffe::SpiffeId;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509CertificationRequest};

/// Largest CSR accepted, in bytes. A P-256 CSR with one URI SAN is about 300 bytes.
pub const MAX_CSR_LEN: usize = 8 * 1024;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";

/// Why a CSR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    #[error("CSR is {0} bytes; the limit is 8192")]
    TooLarge(usize),
    #[error("CSR is not valid DER: {0}")]
    Malformed(String),
    #[error("CSR key must be ECDSA P-256")]
    KeyType,
    #[error("CSR must be signed with ECDSA SHA-256")]
    SignatureAlgorithm,
    #[error("CSR signature does not verify with its own key")]
    BadSignature,
    #[error("CSR asks for `{requested}` but the caller is attested as `{attested}`")]
    OtherIdentity {
        requested: String,
        attested: SpiffeId,
    },
    #[error("CSR asks for {0} URI SANs; at most one, the workload's own SPIFFE ID")]
    ManyUris(usize),
}

/// The public key of a CSR that passed the checks; the only thing taken from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrKey {
    raw: Vec<u8>,
}

impl CsrKey {
    /// The uncompressed P-256 point.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
}

impl PublicKeyData for CsrKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// Checks `der` as a CSR from the workload attested as `attested`.
pub fn check_csr(
    der: &CertificateSigningRequestDer<'_>,
    attested: &SpiffeId,
) -> Result<CsrKey, CsrError> {
    let bytes = der.as_ref();
    if bytes.len() > MAX_CSR_LEN {
        return Err(CsrError::TooLarge(bytes.len()));
    }
    let csr = match X509CertificationRequest::from_der(bytes) {
        Ok(([], csr)) => csr,
        Ok(_) => {
            return Err(CsrError::Malformed(
                "trailing bytes after the CSR".to_owned(),
            ));
        }
        Err(e) => return Err(CsrError::Malformed(e.to_string())),
    };
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let raw = spki.subject_public_key.data.as_ref();
    if spki.algorithm.algorithm.to_id_string() != OID_EC_PUBLIC_KEY
        || curve.as_deref() != Some(OID_P256)
        || raw.len() != 65
        || raw[0] != 0x04
    {
        return Err(CsrError::KeyType);
    }
    if csr.signature_algorithm.algorithm.to_id_string() != OID_ECDSA_SHA256 {
        return Err(CsrError::SignatureAlgorithm);
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, raw)
        .verify(info.raw, csr.signature_value.data.as_ref())
        .map_err(|_| CsrError::BadSignature)?;

    let mut uris = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            uris.extend(san.general_names.iter().filter_map(|n| match n {
                GeneralName::URI(u) => Some(*u),
                _ => None,
            }));
        }
    }
    match uris.as_slice() {
        [] => {}
        [one] if *one == attested.as_str() => {}
        [one] => {
            return Err(CsrError::OtherIdentity {
                requested: (*one).to_owned(),
                attested: attested.clone(),
            });
        }
        many => return Err(CsrError::ManyUris(many.len())),
    }
    Ok(CsrKey { raw: raw.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
    use signet_spiffe::WorkloadKey;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    fn csr_with(key: &KeyPair, uris: &[&str]) -> CertificateSigningRequestDer<'static> {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().unwrap()))
            .collect();
        p.serialize_request(key).unwrap().der().clone()
    }

    #[test]
    fn workload_csr_passes_and_yields_its_key() {
        let key = WorkloadKey::generate().unwrap();
        let me = id("spiffe://acme.internal/ns/shop/sa/cart");
        let got = check_csr(&key.csr(&me).unwrap(), &me).unwrap();
        assert_eq!(got.raw(), key.public_key_raw());
    }

    #[test]
    fn csrs_from_openssl_are_understood() {
        // Made by `openssl req` (see ca/fuzz/seeds): interop, not only our own encoder.
        let me = id("spiffe://acme.internal/ns/shop/sa/cart");
        let p256 = include_bytes!("../fuzz/seeds/csr/p256-uri-san.der").to_vec();
        assert_eq!(check_csr(&p256.into(), &me).unwrap().raw().len(), 65);
        let p384 = include_bytes!("../fuzz/seeds/csr/p384.der").to_vec();
        assert_eq!(check_csr(&p384.into(), &me), Err(CsrError::KeyType));
    }

    #[test]
    fn csr_without_san_takes_the_attested_identity() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let me = id("spiffe://acme.internal/ns/shop/sa/cart");
        assert!(check_csr(&csr_with(&key, &[]), &me).is_ok());
    }

    #[test]
    fn csr_asking_for_another_identity_is_refused() {
        let key = WorkloadKey::generate().unwrap();
        let asked = id("spiffe://acme.internal/ns/shop/sa/payments");
        let me = id("spiffe://acme.internal/ns/shop/sa/cart");
        let err = check_csr(&key.csr(&asked).unwrap(), &me).unwrap_err();
        assert_eq!(
            err.to_string(),
            "CSR asks for `spiffe://acme.internal/ns/shop/sa/payments` but the caller is \
             attested as `spiffe://acme.internal/ns/shop/sa/cart`"
        );
        let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let two = csr_with(&pair, &[me.as_str(), asked.as_str()]);
        assert_eq!(check_csr(&two, &me), Err(CsrError::ManyUris(2)));
    }

    #[test]
    fn other_key_types_are_refused() {
        let me = id("spiffe://acme.internal/x");
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert_eq!(
            check_csr(&csr_with(&p384, &[me.as_str()]), &me),
            Err(CsrError::KeyType)
        );
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert_eq!(
            check_csr(&csr_with(&ed, &[me.as_str()]), &me),
            Err(CsrError::KeyType)
        );
    }

    #[test]
    fn tampered_or_garbage_csrs_are_refused() {
        let key = WorkloadKey::generate().unwrap();
        let me = id("spiffe://acme.internal/ns/shop/sa/cart");
        let good = key.csr(&me).unwrap().as_ref().to_vec();

        // Flip a byte of the SAN inside the signed part: the signature no longer verifies.
        let mut tampered = good.clone();
        let pos = tampered.windows(4).position(|w| w == b"cart").unwrap();
        tampered[pos] = b'k';
        let err = check_csr(
            &tampered.into(),
            &id("spiffe://acme.internal/ns/shop/sa/kart"),
        );
        assert_eq!(err, Err(CsrError::BadSignature));

        assert!(matches!(
            check_csr(&vec![0x30, 0x01, 0x00].into(), &me),
            Err(CsrError::Malformed(_))
        ));
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            check_csr(&trailing.into(), &me),
            Err(CsrError::Malformed(_))
        ));
        assert_eq!(
            check_csr(&vec![0u8; MAX_CSR_LEN + 1].into(), &me),
            Err(CsrError::TooLarge(MAX_CSR_LEN + 1))
        );
    }
}
