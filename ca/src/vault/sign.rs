//! `vault-sign`: every SVID is signed by Vault under a PKI role; Signet holds no CA key.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use signet_spiffe::{TrustBundle, TrustDomain, X509Svid};
use vaultrs::api::pki::requests::SignCertificateRequest;

use super::endpoints::CaChainRequest;
use super::{VaultSession, certificates, split_chain};
use crate::authority::{Authority, AuthorityError, AuthorityStatus, BoxFuture, Clock, SignRequest};
use crate::local::{check_request, describe_chain, not_after, self_test_request};
use crate::profile::SvidProfile;
use crate::validate::{Expected, validate_issued};

/// How much later than asked Vault may set `notAfter`: it counts the TTL from its own clock,
/// when the request arrives.
const VAULT_CLOCK_ALLOWANCE: Duration = Duration::from_secs(5);

/// The `vault-sign` backend.
#[derive(Debug)]
pub struct VaultSignAuthority {
    session: Arc<VaultSession>,
    trust_domain: TrustDomain,
    role: String,
    profile: SvidProfile,
    clock: Arc<dyn Clock>,
    /// The mount's issuing CA and those above it, without the root.
    issuers: Vec<CertificateDer<'static>>,
    issuer_not_after: SystemTime,
    bundle: TrustBundle,
}

impl VaultSignAuthority {
    /// Reads the mount's CA chain and proves the role can sign an SVID of `trust_domain` that
    /// passes Signet's validation.
    pub async fn open(
        session: Arc<VaultSession>,
        trust_domain: &TrustDomain,
        profile: SvidProfile,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuthorityError> {
        let settings = session.settings();
        let role = settings.role.clone().ok_or_else(|| {
            AuthorityError::Sign("vault-sign mode needs a PKI role (--vault-role)".to_owned())
        })?;
        let (issuers, bundle) = read_ca_chain(&session, trust_domain).await?;
        let issuing = issuers.first().or_else(|| bundle.roots().next()).cloned();
        let issuer_not_after = match issuing {
            Some(c) => not_after(&c)?,
            None => SystemTime::UNIX_EPOCH,
        };
        let authority = Self {
            session,
            trust_domain: trust_domain.clone(),
            role,
            profile,
            clock,
            issuers,
            issuer_not_after,
            bundle,
        };
        authority.self_test().await?;
        Ok(authority)
    }

    async fn self_test(&self) -> Result<(), AuthorityError> {
        let (id, csr) = self_test_request(&self.trust_domain)?;
        self.sign_csr(SignRequest {
            csr: &csr,
            id: &id,
            ttl: Some(Duration::from_secs(60)),
        })
        .await
        .map(drop)
    }

    async fn sign_csr(&self, request: SignRequest<'_>) -> Result<X509Svid, AuthorityError> {
        let key = check_request(&self.trust_domain, &request)?;
        let now = self.clock.now();
        let window = self
            .profile
            .validity(now, request.ttl, self.issuer_not_after);
        let ttl = window.1.duration_since(now).unwrap_or_default().as_secs();
        let csr_pem = signet_spiffe::pem_block("CERTIFICATE REQUEST", request.csr.as_ref());
        let mount = self.session.settings().mount().to_owned();
        let uri = request.id.as_str().to_owned();
        let signed = self
            .session
            .call("signing the SVID", |c| {
                let (mount, csr_pem, uri) = (mount.clone(), csr_pem.clone(), uri.clone());
                let role = self.role.clone();
                async move {
                    let mut opts = SignCertificateRequest::builder();
                    opts.uri_sans(uri)
                        .ttl(format!("{ttl}s"))
                        .exclude_cn_from_sans(true)
                        .format("pem");
                    vaultrs::pki::cert::ca::sign(&*c, &mount, &role, &csr_pem, "", Some(&mut opts))
                        .await
                }
            })
            .await?;
        let mut chain = certificates(&signed.certificate)?;
        chain.truncate(1);
        let upper = signed
            .ca_chain
            .unwrap_or_else(|| vec![signed.issuing_ca.clone()])
            .join("\n");
        let (issuers, _) = split_chain(certificates(&upper)?);
        chain.extend(issuers);
        let svid = validate_issued(
            chain,
            Expected {
                id: request.id,
                public_key: key.raw(),
                not_after: window.1 + VAULT_CLOCK_ALLOWANCE,
                bundle: &self.bundle,
                issuer: None,
                now,
            },
        )?;
        tracing::debug!(spiffe_id = %svid.id(), serial = %svid.serial(), "Vault signed an SVID");
        Ok(svid)
    }
}

/// The default issuer's chain of `<mount>`: issuers below the root, and the roots.
pub(super) async fn read_ca_chain(
    session: &VaultSession,
    trust_domain: &TrustDomain,
) -> Result<(Vec<CertificateDer<'static>>, TrustBundle), AuthorityError> {
    let mount = session.settings().mount().to_owned();
    let found = session
        .read(
            "reading the mount's CA chain",
            CaChainRequest {
                mount: mount.clone(),
            },
        )
        .await?;
    let all = certificates(&format!("{}\n{}", found.ca_chain, found.certificate))?;
    let (issuers, roots) = split_chain(all);
    if roots.is_empty() {
        return Err(AuthorityError::Sign(format!(
            "the PKI mount `{mount}` has no root CA: generate or import one (`bao write {mount}/root/generate/internal ...`)"
        )));
    }
    let bundle = TrustBundle::from_roots(trust_domain.clone(), roots)
        .map_err(|e| AuthorityError::Sign(format!("the mount's root: {e}")))?;
    Ok((issuers, bundle))
}

impl Authority for VaultSignAuthority {
    fn sign<'a>(
        &'a self,
        request: SignRequest<'a>,
    ) -> BoxFuture<'a, Result<X509Svid, AuthorityError>> {
        Box::pin(self.sign_csr(request))
    }

    fn bundle(&self) -> TrustBundle {
        self.bundle.clone()
    }

    fn kind(&self) -> &'static str {
        "vault-sign"
    }

    fn status(&self) -> AuthorityStatus {
        let (vault, last_error) = self.session.status(Some(&self.role));
        let mut chain = describe_chain(&self.issuers, &self.bundle);
        for c in &mut chain {
            if c.role == "intermediate" {
                c.role = "issuer".to_owned();
            }
        }
        AuthorityStatus {
            backend: self.kind().to_owned(),
            chain,
            next_renewal: vault.token_ttl.map(|ttl| unix(self.clock.now()) + ttl / 2),
            vault: Some(vault),
            last_error,
        }
    }

    fn maintain(&self) -> BoxFuture<'_, Result<Duration, AuthorityError>> {
        Box::pin(async move { Ok(self.session.maintain().await?) })
    }
}

pub(super) fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
