//! `vault-intermediate`: the mount's root signs Signet's intermediate; SVIDs are signed
//! locally, so issuance keeps working while Vault is down, and Vault is needed only to
//! re-sign the intermediate, which starts when two thirds of its lifetime have passed.
//!
//! Files in the backend's directory (key 0600): `intermediate.key`, `intermediate.crt`
//! (the intermediate, then any issuers of the mount above it), `roots.pem`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rcgen::{CertificateParams, DistinguishedName, DnType};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use signet_spiffe::{TrustBundle, TrustDomain, X509Svid};
use vaultrs::api::pki::requests::SignIntermediateRequest;

use super::sign::unix;
use super::{VaultSession, certificates, split_chain};
use crate::authority::{Authority, AuthorityError, AuthorityStatus, BoxFuture, Clock, SignRequest};
use crate::builtin::{new_key, read_key, write_file};
use crate::local::{LocalSigner, describe_chain, not_after, not_before};
use crate::profile::SvidProfile;

const KEY: &str = "intermediate.key";
const CHAIN: &str = "intermediate.crt";
const ROOTS: &str = "roots.pem";

/// Settings for [`VaultIntermediateAuthority::open`].
#[derive(Debug, Clone)]
pub struct IntermediateOptions {
    /// Where the intermediate's key and certificates are kept.
    pub dir: PathBuf,
    pub profile: SvidProfile,
    pub clock: Arc<dyn Clock>,
}

/// The `vault-intermediate` backend.
#[derive(Debug)]
pub struct VaultIntermediateAuthority {
    session: Arc<VaultSession>,
    trust_domain: TrustDomain,
    options: IntermediateOptions,
    signer: ArcSwap<LocalSigner>,
}

impl VaultIntermediateAuthority {
    /// Uses the intermediate kept in `options.dir` if it is still fresh and chains to the
    /// mount's root; otherwise has Vault sign a new one.
    pub async fn open(
        session: Arc<VaultSession>,
        trust_domain: &TrustDomain,
        options: IntermediateOptions,
    ) -> Result<Self, AuthorityError> {
        let now = options.clock.now();
        let kept = match load(trust_domain, &options) {
            Ok(signer) if renew_at(&signer)? > now => Some(signer),
            Ok(_) => None,
            Err(e) if options.dir.join(KEY).exists() => {
                tracing::warn!(error = %e, "the kept intermediate is not usable; asking Vault for a new one");
                None
            }
            Err(_) => None,
        };
        let signer = match kept {
            Some(s) => s,
            None => sign_new(&session, trust_domain, &options).await?,
        };
        Ok(Self {
            session,
            trust_domain: trust_domain.clone(),
            options,
            signer: ArcSwap::from_pointee(signer),
        })
    }

    /// When the intermediate will be re-signed.
    pub fn renew_at(&self) -> Result<SystemTime, AuthorityError> {
        renew_at(&self.signer.load())
    }

    async fn upkeep(&self) -> Result<Duration, AuthorityError> {
        let token = self.session.maintain().await;
        let now = self.options.clock.now();
        let due = self.renew_at()?;
        if due <= now {
            let fresh = sign_new(&self.session, &self.trust_domain, &self.options).await?;
            let current = self.signer.load();
            if !fresh.bundle().roots().eq(current.bundle().roots()) {
                return Err(AuthorityError::Sign(
                    "Vault's root changed; the new intermediate is not used until `meshctl ca rotate` puts the new root in the trust bundle".to_owned(),
                ));
            }
            tracing::info!(
                not_after = unix(fresh.not_after()),
                "Vault re-signed Signet's intermediate"
            );
            self.signer.store(Arc::new(fresh));
        }
        let until_renewal = self
            .renew_at()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_secs(1));
        Ok(token?.min(until_renewal))
    }
}

fn renew_at(signer: &LocalSigner) -> Result<SystemTime, AuthorityError> {
    let from = not_before(signer.certificate())?;
    let to = signer.not_after();
    Ok(from + to.duration_since(from).unwrap_or_default() * 2 / 3)
}

fn load(td: &TrustDomain, options: &IntermediateOptions) -> Result<LocalSigner, AuthorityError> {
    let dir = &options.dir;
    let key = read_key(&dir.join(KEY))?;
    let read = |name: &str| -> Result<Vec<CertificateDer<'static>>, AuthorityError> {
        CertificateDer::pem_file_iter(dir.join(name))
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| AuthorityError::Storage(format!("`{}`: {e}", dir.join(name).display())))
    };
    let chain = read(CHAIN)?;
    let bundle = TrustBundle::from_roots(td.clone(), read(ROOTS)?)
        .map_err(|e| AuthorityError::Storage(format!("`{ROOTS}`: {e}")))?;
    LocalSigner::new(
        td,
        options.profile,
        Arc::clone(&options.clock),
        chain,
        key,
        bundle,
    )
}

/// A new key and CSR, signed by the mount's root, checked, then kept on disk.
async fn sign_new(
    session: &VaultSession,
    td: &TrustDomain,
    options: &IntermediateOptions,
) -> Result<LocalSigner, AuthorityError> {
    let key = new_key()?;
    let now = options.clock.now();
    let cn = format!("Signet intermediate CA {td} {}", unix(now));
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Signet");
    dn.push(DnType::CommonName, cn.clone());
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AuthorityError::Sign(format!("intermediate CSR: {e}")))?;
    let csr_pem = signet_spiffe::pem_block("CERTIFICATE REQUEST", csr.der().as_ref());
    let settings = session.settings();
    let mount = settings.mount().to_owned();
    let ttl = settings.intermediate_ttl().as_secs();
    let signed = session
        .call("signing Signet's intermediate", |c| {
            let (mount, csr_pem, cn) = (mount.clone(), csr_pem.clone(), cn.clone());
            async move {
                let mut opts = SignIntermediateRequest::builder();
                opts.ttl(format!("{ttl}s"))
                    .max_path_length(0)
                    .use_csr_values(true)
                    .format("pem");
                vaultrs::pki::cert::ca::sign_intermediate(
                    &*c,
                    &mount,
                    &csr_pem,
                    &cn,
                    Some(&mut opts),
                )
                .await
            }
        })
        .await?;
    let ours = certificates(&signed.certificate)?
        .into_iter()
        .next()
        .ok_or_else(|| AuthorityError::Sign("Vault returned no certificate".to_owned()))?;
    let upper = signed
        .ca_chain
        .unwrap_or_else(|| vec![signed.issuing_ca.clone()])
        .join("\n");
    let (issuers, roots) = split_chain(certificates(&upper)?);
    if roots.is_empty() {
        return Err(AuthorityError::Sign(format!(
            "Vault's answer from `{mount}/root/sign-intermediate` names no root CA"
        )));
    }
    let mut chain = vec![ours.clone()];
    chain.extend(issuers.into_iter().filter(|c| *c != ours));
    let bundle = TrustBundle::from_roots(td.clone(), roots.clone())
        .map_err(|e| AuthorityError::Sign(format!("the mount's root: {e}")))?;
    let key_pem = key.serialize_pem();
    let signer = LocalSigner::new(
        td,
        options.profile,
        Arc::clone(&options.clock),
        chain.clone(),
        key,
        bundle,
    )?;
    let dir = &options.dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| AuthorityError::Storage(format!("creating `{}`: {e}", dir.display())))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| AuthorityError::Storage(format!("securing `{}`: {e}", dir.display())))?;
    }
    // Key first: a crash between writes leaves a key without its certificate, which `load`
    // refuses (a new intermediate is then signed), never a certificate without its key.
    write_file(&dir.join(KEY), key_pem.as_bytes(), 0o600)?;
    write_file(
        &dir.join(CHAIN),
        signet_spiffe::certificates_to_pem(&chain).as_bytes(),
        0o644,
    )?;
    write_file(
        &dir.join(ROOTS),
        signet_spiffe::certificates_to_pem(&roots).as_bytes(),
        0o644,
    )?;
    tracing::info!(
        trust_domain = %td,
        not_after = unix(not_after(&ours)?),
        "Vault signed Signet's intermediate"
    );
    Ok(signer)
}

impl Authority for VaultIntermediateAuthority {
    fn sign<'a>(
        &'a self,
        request: SignRequest<'a>,
    ) -> BoxFuture<'a, Result<X509Svid, AuthorityError>> {
        let signer = self.signer.load_full();
        Box::pin(async move { signer.issue(request) })
    }

    fn bundle(&self) -> TrustBundle {
        self.signer.load().bundle().clone()
    }

    fn kind(&self) -> &'static str {
        "vault-intermediate"
    }

    fn status(&self) -> AuthorityStatus {
        let signer = self.signer.load();
        let (vault, last_error) = self.session.status(None);
        let token_due = vault
            .token_ttl
            .map(|ttl| unix(self.options.clock.now()) + ttl / 2);
        let intermediate_due = renew_at(&signer).ok().map(unix);
        AuthorityStatus {
            backend: self.kind().to_owned(),
            chain: describe_chain(signer.chain(), signer.bundle()),
            next_renewal: match (token_due, intermediate_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            vault: Some(vault),
            last_error,
        }
    }

    fn maintain(&self) -> BoxFuture<'_, Result<Duration, AuthorityError>> {
        Box::pin(self.upkeep())
    }
}
