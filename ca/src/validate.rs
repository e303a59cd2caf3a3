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
    /// The issuing CA alone, already proven to chain to `bundle`: when set, only the leaf's
    /// link to it is checked, which saves re-verifying the constant upper links per SVID.
    pub issuer: Option<&'a TrustBundle>,
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
    match expected.issuer {
        Some(issuer) => verify_peer(issuer, &leaf_der[0], &[], now, Usage::Client)?,
        None => verify_peer(
            expected.bundle,
            &leaf_der[0],
            intermediates,
            now,
            Usage::Client,
        )?,
    };
    Ok(svid)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
    use signet_spiffe::test_pki::{LeafSpec, TestCa};
    use x509_parser::prelude::{FromDer, X509Certificate};

    const ID: &str = "spiffe://acme.internal/ns/shop/sa/cart";

    fn key_of(der: &CertificateDer<'_>) -> Vec<u8> {
        let (_, c) = X509Certificate::from_der(der.as_ref()).unwrap();
        c.public_key().subject_public_key.data.to_vec()
    }

    fn run(
        ca: &TestCa,
        spec: &LeafSpec,
        want_id: &str,
        key: Option<Vec<u8>>,
    ) -> Result<X509Svid, IssuedInvalid> {
        let (chain, _) = ca.issue(spec);
        let key = key.unwrap_or_else(|| key_of(&chain[0]));
        validate_issued(
            chain,
            Expected {
                id: &want_id.parse().unwrap(),
                public_key: &key,
                not_after: spec.not_after,
                bundle: &ca.bundle(),
                issuer: None,
                now: SystemTime::now(),
            },
        )
    }

    #[test]
    fn the_issuer_shortcut_checks_the_leaf_against_that_issuer() {
        let ca = TestCa::new("acme.internal");
        let spec = LeafSpec::for_id(ID);
        let (chain, _) = ca.issue(&spec);
        let key = key_of(&chain[0]);
        let check = |issuer: &TrustBundle| {
            validate_issued(
                chain.clone(),
                Expected {
                    id: &ID.parse().unwrap(),
                    public_key: &key,
                    not_after: spec.not_after,
                    bundle: &ca.bundle(),
                    issuer: Some(issuer),
                    now: SystemTime::now(),
                },
            )
        };
        let td = ca.trust_domain().clone();
        let ours = TrustBundle::from_roots(td.clone(), [ca.intermediate().clone()]).unwrap();
        assert!(check(&ours).is_ok());
        let stranger = TestCa::new("other.internal");
        let theirs = TrustBundle::from_roots(td, [stranger.intermediate().clone()]).unwrap();
        assert!(matches!(check(&theirs), Err(IssuedInvalid::Chain(_))));
    }

    #[test]
    fn a_good_leaf_passes() {
        let ca = TestCa::new("acme.internal");
        assert!(run(&ca, &LeafSpec::for_id(ID), ID, None).is_ok());
    }

    #[test]
    fn every_deviation_is_caught() {
        let ca = TestCa::new("acme.internal");
        let spec = LeafSpec::for_id(ID);

        let other = "spiffe://acme.internal/ns/shop/sa/other";
        assert!(matches!(
            run(&ca, &spec, other, None),
            Err(IssuedInvalid::WrongId { .. })
        ));
        assert_eq!(
            run(&ca, &spec, ID, Some(vec![4; 65])).unwrap_err(),
            IssuedInvalid::WrongKey
        );

        let mut no_client = spec.clone();
        no_client.eku = vec![ExtendedKeyUsagePurpose::ServerAuth];
        assert_eq!(
            run(&ca, &no_client, ID, None).unwrap_err(),
            IssuedInvalid::ExtendedKeyUsage
        );

        let mut signer = spec.clone();
        signer.ku = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ];
        // The SVID profile refuses these already; issuance is stricter still (below).
        assert!(matches!(
            run(&ca, &signer, ID, None),
            Err(IssuedInvalid::Svid(SvidError::KeyUsage(_)))
        ));
        let mut no_signature = spec.clone();
        no_signature.ku = vec![KeyUsagePurpose::KeyAgreement];
        assert!(matches!(
            run(&ca, &no_signature, ID, None),
            Err(IssuedInvalid::Svid(SvidError::KeyUsage(_)))
        ));
        // Peers may carry keyEncipherment; what Signet issues carries digitalSignature only.
        let mut encipher = spec.clone();
        encipher.ku = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        assert_eq!(
            run(&ca, &encipher, ID, None).unwrap_err(),
            IssuedInvalid::KeyUsage
        );

        let mut as_ca = spec.clone();
        as_ca.is_ca = true;
        assert!(matches!(
            run(&ca, &as_ca, ID, None),
            Err(IssuedInvalid::Svid(SvidError::LeafIsCa))
        ));

        let (chain, _) = ca.issue(&spec);
        let key = key_of(&chain[0]);
        let err = validate_issued(
            chain,
            Expected {
                id: &ID.parse().unwrap(),
                public_key: &key,
                not_after: spec.not_after - Duration::from_secs(60),
                bundle: &ca.bundle(),
                issuer: None,
                now: SystemTime::now(),
            },
        )
        .unwrap_err();
        assert_eq!(err, IssuedInvalid::Lifetime);

        let stranger = TestCa::new("acme.internal");
        let (chain, _) = stranger.issue(&spec);
        let key = key_of(&chain[0]);
        let err = validate_issued(
            chain,
            Expected {
                id: &ID.parse().unwrap(),
                public_key: &key,
                not_after: spec.not_after,
                bundle: &ca.bundle(),
                issuer: None,
                now: SystemTime::now(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, IssuedInvalid::Chain(_)), "{err}");
    }
}
