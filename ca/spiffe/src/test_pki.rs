//! Test certificate chains: a root and an intermediate per trust domain, and leaves shaped as
//! a test needs them (expired, CA, no URI SAN, several URI SANs...). Tests only: the real
//! issuance path is `signet-ca`.

#![expect(
    clippy::expect_used,
    reason = "test helper: a failure to build a fixture is the test failing"
)]

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
pub use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::{TrustBundle, TrustDomain, WorkloadKey};

/// A root and an intermediate for one trust domain.
#[derive(Debug)]
pub struct TestCa {
    trust_domain: TrustDomain,
    root: CertificateDer<'static>,
    intermediate: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// The shape of a leaf to issue.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// URI SANs, in order.
    pub uris: Vec<String>,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// Mark the leaf as a CA.
    pub is_ca: bool,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Extended key usages; empty means both serverAuth and clientAuth.
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    /// Key usages; empty means digitalSignature only.
    pub ku: Vec<KeyUsagePurpose>,
    /// Leave the key usage extension out altogether.
    pub without_key_usage: bool,
}

impl LeafSpec {
    /// A well-formed SVID leaf for `id`, valid from a minute ago for an hour.
    pub fn for_id(id: &str) -> Self {
        let now = SystemTime::now();
        Self {
            uris: vec![id.to_owned()],
            dns: Vec::new(),
            is_ca: false,
            not_before: now - Duration::from_secs(60),
            not_after: now + Duration::from_secs(3600),
            eku: Vec::new(),
            ku: Vec::new(),
            without_key_usage: false,
        }
    }
}

fn ca_params(cn: &str, path_len: Option<u8>) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = SystemTime::now();
    p.not_before = OffsetDateTime::from(now - Duration::from_secs(3600));
    p.not_after = OffsetDateTime::from(now + Duration::from_secs(86400));
    p
}

impl TestCa {
    /// A fresh root and intermediate for `trust_domain`.
    pub fn new(trust_domain: &str) -> Self {
        let trust_domain = TrustDomain::new(trust_domain).expect("test trust domain");
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("root key");
        let root_params = ca_params(&format!("{trust_domain} test root"), None);
        let root = root_params.self_signed(&root_key).expect("root cert");
        let root_issuer = Issuer::new(root_params, root_key);

        let int_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("intermediate key");
        let int_params = ca_params(&format!("{trust_domain} test intermediate"), Some(0));
        let intermediate = int_params
            .signed_by(&int_key, &root_issuer)
            .expect("intermediate cert");
        Self {
            trust_domain,
            root: root.der().clone(),
            intermediate: intermediate.der().clone(),
            issuer: Issuer::new(int_params, int_key),
        }
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The root certificate.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// The intermediate certificate.
    pub fn intermediate(&self) -> &CertificateDer<'static> {
        &self.intermediate
    }

    /// A bundle holding this CA's root.
    pub fn bundle(&self) -> TrustBundle {
        TrustBundle::from_roots(self.trust_domain.clone(), [self.root.clone()]).expect("bundle")
    }

    /// A leaf shaped by `spec`, with its chain (leaf, intermediate) and key.
    pub fn issue(&self, spec: &LeafSpec) -> (Vec<CertificateDer<'static>>, WorkloadKey) {
        let key = WorkloadKey::generate().expect("leaf key");
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.subject_alt_names = spec
            .uris
            .iter()
            .map(|u| SanType::URI(u.as_str().try_into().expect("ia5 uri")))
            .chain(
                spec.dns
                    .iter()
                    .map(|d| SanType::DnsName(d.as_str().try_into().expect("ia5 dns"))),
            )
            .collect();
        p.is_ca = if spec.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        p.key_usages = if spec.without_key_usage {
            Vec::new()
        } else if spec.ku.is_empty() {
            vec![KeyUsagePurpose::DigitalSignature]
        } else {
            spec.ku.clone()
        };
        p.extended_key_usages = if spec.eku.is_empty() {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            spec.eku.clone()
        };
        p.not_before = OffsetDateTime::from(spec.not_before);
        p.not_after = OffsetDateTime::from(spec.not_after);
        let mut serial = [0u8; 16];
        // Top bit clear (positive) and first byte non-zero, so the DER INTEGER is exactly
        // 16 bytes, as the CA's serials are.
        while serial[0] == 0 {
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
                .expect("random serial");
            serial[0] &= 0x7f;
        }
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        p.use_authority_key_identifier_extension = true;
        let leaf = p
            .signed_by(key.key_pair(), &self.issuer)
            .expect("leaf cert");
        (vec![leaf.der().clone(), self.intermediate.clone()], key)
    }

    /// The CA's root as PEM (for a server outside the mesh that takes a CA file).
    pub fn root_pem(&self) -> String {
        crate::pem::certificates(std::slice::from_ref(&self.root))
    }

    /// A chain as PEM, leaf first.
    pub fn chain_pem(chain: &[CertificateDer<'_>]) -> String {
        crate::pem::certificates(chain)
    }

    /// A well-formed SVID for `id`.
    pub fn svid(&self, id: &str) -> (Vec<CertificateDer<'static>>, WorkloadKey) {
        self.issue(&LeafSpec::for_id(id))
    }
}
