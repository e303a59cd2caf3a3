//! Signing SVIDs with a CA key held in this process: the built-in CA and the Vault
//! intermediate mode share it, and differ only in where the issuing certificate comes from.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use signet_spiffe::{SpiffeId, TrustBundle, TrustDomain, WorkloadKey, X509Svid};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::authority::{AuthorityError, CaCertificate, Clock, SignRequest};
use crate::csr::{CsrKey, check_csr};
use crate::profile::SvidProfile;
use crate::validate::{Expected, validate_issued};

/// An issuing CA whose key this process holds.
pub(crate) struct LocalSigner {
    trust_domain: TrustDomain,
    profile: SvidProfile,
    clock: Arc<dyn Clock>,
    issuer: Issuer<'static, KeyPair>,
    /// The issuing CA first, then the CAs above it, without the root.
    chain: Vec<CertificateDer<'static>>,
    not_after: SystemTime,
    bundle: TrustBundle,
    /// The issuing CA alone, proven to chain to `bundle` when this signer was made: each new
    /// leaf is validated against it, which saves re-verifying the constant upper links.
    anchor: TrustBundle,
}

impl std::fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSigner")
            .field("trust_domain", &self.trust_domain)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl LocalSigner {
    /// A signer for the CA certificate `chain[0]` with `key`, after proving by a test
    /// issuance that what it signs chains to `bundle` now.
    pub(crate) fn new(
        trust_domain: &TrustDomain,
        profile: SvidProfile,
        clock: Arc<dyn Clock>,
        chain: Vec<CertificateDer<'static>>,
        key: KeyPair,
        bundle: TrustBundle,
    ) -> Result<Self, AuthorityError> {
        let ca = chain
            .first()
            .ok_or_else(|| AuthorityError::Storage("no issuing CA certificate".to_owned()))?;
        let (_, parsed) = X509Certificate::from_der(ca.as_ref())
            .map_err(|e| AuthorityError::Storage(format!("issuing CA certificate: {e}")))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(AuthorityError::Storage(
                "intermediate key does not match the intermediate certificate".to_owned(),
            ));
        }
        let not_after = not_after(ca)?;
        let anchor = TrustBundle::from_roots(trust_domain.clone(), [ca.clone()])
            .map_err(|e| AuthorityError::Storage(format!("issuing CA certificate: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(ca, key)
            .map_err(|e| AuthorityError::Storage(format!("issuing CA certificate: {e}")))?;
        let signer = Self {
            trust_domain: trust_domain.clone(),
            profile,
            clock,
            issuer,
            chain,
            not_after,
            bundle,
            anchor,
        };
        signer.self_test()?;
        Ok(signer)
    }

    /// Issues one short-lived SVID and validates its whole chain against the bundle.
    fn self_test(&self) -> Result<(), AuthorityError> {
        let (id, csr) = self_test_request(&self.trust_domain)?;
        self.issue_with(
            SignRequest {
                csr: &csr,
                id: &id,
                ttl: Some(Duration::from_secs(60)),
            },
            None,
        )
        .map(drop)
        .map_err(|e| {
            AuthorityError::Storage(format!(
                "the issuing CA does not chain to the root (not signed by the root, expired or malformed): {e}"
            ))
        })
    }

    /// Signs `request` (see [`crate::Authority::sign`]'s contract).
    pub(crate) fn issue(&self, request: SignRequest<'_>) -> Result<X509Svid, AuthorityError> {
        self.issue_with(request, Some(&self.anchor))
    }

    fn issue_with(
        &self,
        request: SignRequest<'_>,
        anchor: Option<&TrustBundle>,
    ) -> Result<X509Svid, AuthorityError> {
        // Step 1: check the CSR and build the template from the attested identity.
        let key = check_request(&self.trust_domain, &request)?;
        let now = self.clock.now();
        let window = self.profile.validity(now, request.ttl, self.not_after);
        let params = self
            .profile
            .template(request.id, window)
            .map_err(AuthorityError::Sign)?;
        // Step 2: sign.
        let leaf = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| AuthorityError::Sign(e.to_string()))?;
        // Step 3: validate before anyone sees it.
        let mut chain = Vec::with_capacity(1 + self.chain.len());
        chain.push(leaf.der().clone());
        chain.extend(self.chain.iter().cloned());
        let svid = validate_issued(
            chain,
            Expected {
                id: request.id,
                public_key: key.raw(),
                not_after: window.1,
                bundle: &self.bundle,
                issuer: anchor,
                now,
            },
        )?;
        tracing::debug!(spiffe_id = %svid.id(), serial = %svid.serial(), "issued SVID");
        Ok(svid)
    }

    /// The issuing CA certificate.
    pub(crate) fn certificate(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The issuing CA and the CAs above it, without the root.
    pub(crate) fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// When the issuing CA expires.
    pub(crate) fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The roots.
    pub(crate) fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }
}

/// The identity and CSR of a backend's trial issuance (`/signet/ca-self-test`, a fresh key).
pub(crate) fn self_test_request(
    trust_domain: &TrustDomain,
) -> Result<(SpiffeId, CertificateSigningRequestDer<'static>), AuthorityError> {
    let fail = |e: &dyn std::fmt::Display| AuthorityError::Sign(format!("trial issuance: {e}"));
    let id = trust_domain
        .workload("/signet/ca-self-test")
        .map_err(|e| fail(&e))?;
    let key = WorkloadKey::generate().map_err(|e| fail(&e))?;
    let csr = key.csr(&id).map_err(|e| fail(&e))?;
    Ok((id, csr))
}

/// What every backend checks before signing: the attested identity is of `trust_domain` and
/// names a workload (an X509-SVID's ID has a path), and the CSR is sound and asks for nothing
/// else. Returns the CSR's key.
pub(crate) fn check_request(
    trust_domain: &TrustDomain,
    request: &SignRequest<'_>,
) -> Result<CsrKey, AuthorityError> {
    if !request.id.is_member_of(trust_domain) {
        return Err(AuthorityError::ForeignId {
            id: request.id.clone(),
            trust_domain: trust_domain.to_string(),
        });
    }
    if request.id.path().is_empty() {
        return Err(AuthorityError::NoPath(request.id.clone()));
    }
    Ok(check_csr(request.csr, request.id)?)
}

/// The `notAfter` of a certificate.
pub(crate) fn not_after(der: &CertificateDer<'_>) -> Result<SystemTime, AuthorityError> {
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| AuthorityError::Storage(format!("CA certificate: {e}")))?;
    let secs = cert.validity().not_after.timestamp();
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0).unsigned_abs()))
}

/// The subject of a certificate, for operators.
pub(crate) fn subject(der: &CertificateDer<'_>) -> String {
    X509Certificate::from_der(der.as_ref())
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|e| format!("(unparsable: {e})"))
}

/// The chain `issuing CA … root` for `meshctl ca status`.
pub(crate) fn describe_chain(
    chain: &[CertificateDer<'static>],
    bundle: &TrustBundle,
) -> Vec<CaCertificate> {
    let describe = |role: &str, der: &CertificateDer<'_>| CaCertificate {
        role: role.to_owned(),
        subject: subject(der),
        sha256: crate::builtin::fingerprint(der),
        not_after: not_after(der)
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs()),
    };
    let mut out: Vec<CaCertificate> = chain
        .iter()
        .enumerate()
        .map(|(i, c)| describe(if i == 0 { "intermediate" } else { "issuer" }, c))
        .collect();
    out.extend(bundle.roots().map(|r| describe("root", r)));
    out
}

/// The `notBefore` of a certificate.
pub(crate) fn not_before(der: &CertificateDer<'_>) -> Result<SystemTime, AuthorityError> {
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| AuthorityError::Storage(format!("CA certificate: {e}")))?;
    let secs = cert.validity().not_before.timestamp();
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0).unsigned_abs()))
}
