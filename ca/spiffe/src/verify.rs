//! Peer certificate verification: the chain leads to a root of the trust bundle AND the leaf
//! names exactly one SPIFFE ID in the bundle's trust domain AND the peer passes the filters
//! (deny-list, expected identities).
//!
//! Name constraints: the CA does not put a URI name constraint on its intermediate because
//! webpki (and so rustls) rejects every chain carrying one. The equivalent check is done here
//! instead: the leaf's SPIFFE ID picks the roots it is verified against (its own trust
//! domain's, or a federated domain's), so a domain's CA vouches for its own members only.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::svid::{Serial, SvidError, check_leaf, parse_cert, spiffe_id_of};
use crate::{SpiffeId, TrustBundle, TrustDomain};

/// What the peer's certificate must be good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// The peer is a TLS client (EKU clientAuth).
    Client,
    /// The peer is a TLS server (EKU serverAuth).
    Server,
}

/// A peer whose chain verified: who it is and which certificate it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPeer {
    /// The SPIFFE ID of the leaf.
    pub id: SpiffeId,
    /// The leaf's serial number.
    pub serial: Serial,
    /// End of the leaf's validity.
    pub not_after: SystemTime,
}

/// Why a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    #[error("the trust bundle for `{0}` has no roots")]
    NoRoots(TrustDomain),
    #[error("peer sent no certificate")]
    NoCertificate,
    #[error("peer certificate has expired")]
    Expired,
    #[error("peer certificate is not valid yet")]
    NotYetValid,
    #[error("peer certificate does not chain to a root of the trust bundle")]
    UnknownIssuer,
    #[error("peer certificate chain has a bad signature")]
    BadSignature,
    #[error("peer certificate is not allowed for {0:?} authentication")]
    WrongUsage(Usage),
    #[error("peer certificate chain is invalid: {0}")]
    InvalidChain(String),
    #[error("peer certificate is not an SVID: {0}")]
    NotSvid(SvidError),
    #[error("peer `{id}` is not in trust domain `{expected}`")]
    WrongTrustDomain { id: SpiffeId, expected: TrustDomain },
    #[error("peer `{id}` is refused: {reason}")]
    Refused { id: SpiffeId, reason: String },
}

impl PeerError {
    /// A short, stable label for metrics (`handshake failures by reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoRoots(_) => "no_trust_roots",
            Self::NoCertificate => "no_certificate",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::UnknownIssuer => "unknown_issuer",
            Self::BadSignature => "bad_signature",
            Self::WrongUsage(_) => "wrong_usage",
            Self::InvalidChain(_) => "invalid_chain",
            Self::NotSvid(_) => "not_svid",
            Self::WrongTrustDomain { .. } => "wrong_trust_domain",
            Self::Refused { .. } => "refused",
        }
    }
}

/// Verifies a peer's chain (leaf, then intermediates) against `bundle` at `now`.
pub fn verify_peer(
    bundle: &TrustBundle,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: Usage,
) -> Result<VerifiedPeer, PeerError> {
    let ee = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|e| PeerError::InvalidChain(format!("{e:?}")))?;
    let leaf = parse_cert(end_entity, 0).map_err(PeerError::NotSvid)?;
    let id = spiffe_id_of(&leaf).map_err(PeerError::NotSvid)?;
    // The roots of the trust domain the leaf claims, and only those.
    let Some(roots) = bundle.bundle_for(&id.trust_domain()) else {
        return Err(PeerError::WrongTrustDomain {
            id,
            expected: bundle.trust_domain().clone(),
        });
    };
    if roots.is_empty() {
        return Err(PeerError::NoRoots(roots.trust_domain().clone()));
    }
    let eku = match usage {
        Usage::Client => webpki::KeyUsage::client_auth(),
        Usage::Server => webpki::KeyUsage::server_auth(),
    };
    let anchors = roots.anchors();
    ee.verify_for_usage(
        crate::tls::provider().signature_verification_algorithms.all,
        &anchors,
        intermediates,
        now,
        eku,
        None,
        None,
    )
    .map_err(|e| map_webpki(e, usage))?;
    check_leaf(&leaf, &id).map_err(PeerError::NotSvid)?;
    let not_after = leaf.validity().not_after.timestamp();
    Ok(VerifiedPeer {
        id,
        serial: Serial::from_bytes(leaf.raw_serial()),
        not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(not_after.max(0).unsigned_abs()),
    })
}

fn map_webpki(e: webpki::Error, usage: Usage) -> PeerError {
    use webpki::Error as W;
    match e {
        W::CertExpired { .. } => PeerError::Expired,
        W::CertNotValidYet { .. } => PeerError::NotYetValid,
        W::UnknownIssuer => PeerError::UnknownIssuer,
        W::InvalidSignatureForPublicKey
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
        | W::UnsupportedSignatureAlgorithmContext(_) => PeerError::BadSignature,
        W::RequiredEkuNotFoundContext(_) => PeerError::WrongUsage(usage),
        W::CaUsedAsEndEntity => PeerError::NotSvid(SvidError::LeafIsCa),
        other => PeerError::InvalidChain(format!("{other:?}")),
    }
}

/// A check on a peer whose chain verified: a deny-list, an allow-list of expected
/// identities, or anything else that refuses peers by identity or certificate.
///
/// Contract: `admit` is called during the handshake, on the TLS task, for every new
/// connection; it must be fast and must not block (no I/O). Returning `Err(reason)` refuses
/// the handshake; the reason is shown to operators, never to the peer.
pub trait PeerFilter: Send + Sync + fmt::Debug {
    /// `Ok(())` admits the peer; `Err(reason)` refuses it.
    fn admit(&self, peer: &VerifiedPeer) -> Result<(), String>;
}

/// Admits every verified peer.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdmitAll;

impl PeerFilter for AdmitAll {
    fn admit(&self, _: &VerifiedPeer) -> Result<(), String> {
        Ok(())
    }
}

/// Refuses listed SPIFFE IDs and certificate serials; the lists can be replaced while
/// handshakes run (revocation pushed by the control plane).
#[derive(Debug, Default)]
pub struct DenyList {
    current: ArcSwap<DenySet>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct DenySet {
    ids: HashSet<SpiffeId>,
    serials: HashSet<Serial>,
}

impl DenyList {
    /// An empty deny-list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the whole list; new handshakes see it at once.
    pub fn replace(
        &self,
        ids: impl IntoIterator<Item = SpiffeId>,
        serials: impl IntoIterator<Item = Serial>,
    ) {
        self.current.store(Arc::new(DenySet {
            ids: ids.into_iter().collect(),
            serials: serials.into_iter().collect(),
        }));
    }

    /// Whether `peer` is denied (used to close live connections after an update).
    pub fn denies(&self, id: &SpiffeId, serial: &Serial) -> bool {
        let set = self.current.load();
        set.ids.contains(id) || set.serials.contains(serial)
    }
}

impl PeerFilter for DenyList {
    fn admit(&self, peer: &VerifiedPeer) -> Result<(), String> {
        let set = self.current.load();
        if set.ids.contains(&peer.id) {
            return Err("SPIFFE ID is on the deny-list".to_owned());
        }
        if set.serials.contains(&peer.serial) {
            return Err(format!(
                "certificate serial {} is on the deny-list",
                peer.serial
            ));
        }
        Ok(())
    }
}

/// Admits only the listed SPIFFE IDs (an upstream's expected server identities).
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    ids: HashSet<SpiffeId>,
}

impl AllowList {
    /// Admits exactly `ids`.
    pub fn new(ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        Self {
            ids: ids.into_iter().collect(),
        }
    }
}

impl PeerFilter for AllowList {
    fn admit(&self, peer: &VerifiedPeer) -> Result<(), String> {
        if self.ids.contains(&peer.id) {
            Ok(())
        } else {
            Err("not one of the expected identities".to_owned())
        }
    }
}

/// Admits a peer only if every filter admits it.
#[derive(Debug, Clone, Default)]
pub struct AllOf(pub Vec<Arc<dyn PeerFilter>>);

impl PeerFilter for AllOf {
    fn admit(&self, peer: &VerifiedPeer) -> Result<(), String> {
        self.0.iter().try_for_each(|f| f.admit(peer))
    }
}

/// Verifies the chain, then runs the filter.
pub fn verify_and_admit(
    bundle: &TrustBundle,
    filter: &dyn PeerFilter,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: Usage,
) -> Result<VerifiedPeer, PeerError> {
    let peer = verify_peer(bundle, end_entity, intermediates, now, usage)?;
    filter.admit(&peer).map_err(|reason| PeerError::Refused {
        id: peer.id.clone(),
        reason,
    })?;
    Ok(peer)
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
