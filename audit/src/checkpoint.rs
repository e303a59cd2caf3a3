//! Signing checkpoints with the writer's own SVID key, and checking them against the trust
//! bundle as of the time they were signed.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rustls_pki_types::{CertificateDer, UnixTime};
use signet_spiffe::verify::{Usage, verify_peer};
use signet_spiffe::{SpiffeId, TrustBundle};

use crate::record::Checkpoint;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Whoever signs checkpoints: the proxy with its SVID key, the control plane with its own.
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// The signer's SPIFFE ID (the writer).
    fn id(&self) -> String;
    /// Its certificate chain, leaf first.
    fn chain(&self) -> Vec<CertificateDer<'static>>;
    /// ECDSA P-256 SHA-256 (ASN.1 DER) over `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;
}

/// Signs with a workload key held in the process.
pub struct KeySigner {
    id: String,
    chain: Vec<CertificateDer<'static>>,
    key: ring::signature::EcdsaKeyPair,
}

impl std::fmt::Debug for KeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySigner")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A signer writing as one instance of its identity: the writer id is `<SPIFFE ID>#<instance>`
/// (a SPIFFE ID has no `#`), so two proxies of one service keep two chains, never one
/// interleaved one. The signature is still the SPIFFE ID's, checked by [`verify`].
#[derive(Debug)]
pub struct InstanceSigner {
    inner: std::sync::Arc<dyn Signer>,
    instance: String,
}

impl InstanceSigner {
    /// `inner`, writing as `instance` (an empty instance: as the identity itself).
    pub fn new(inner: std::sync::Arc<dyn Signer>, instance: &str) -> Self {
        Self {
            inner,
            instance: instance.to_owned(),
        }
    }
}

impl Signer for InstanceSigner {
    fn id(&self) -> String {
        if self.instance.is_empty() {
            self.inner.id()
        } else {
            format!("{}#{}", self.inner.id(), self.instance)
        }
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.inner.chain()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.inner.sign(message)
    }
}

impl KeySigner {
    /// From an SVID chain and its PKCS#8 key.
    pub fn new(
        id: &SpiffeId,
        chain: Vec<CertificateDer<'static>>,
        pkcs8: &[u8],
    ) -> Result<Self, String> {
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| format!("audit signing key: {e}"))?;
        Ok(Self {
            id: id.as_str().to_owned(),
            chain,
            key,
        })
    }
}

impl Signer for KeySigner {
    fn id(&self) -> String {
        self.id.clone()
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.chain.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.key
            .sign(&ring::rand::SystemRandom::new(), message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| "signing failed".to_owned())
    }
}

/// A signed checkpoint over `first..=last` ending at `head`.
pub fn sign(
    signer: &dyn Signer,
    first: u64,
    last: u64,
    head: &str,
    time: u64,
) -> Result<Checkpoint, String> {
    let mut checkpoint = Checkpoint {
        writer: signer.id(),
        first,
        last,
        head: head.to_owned(),
        time,
        chain: signer.chain().iter().map(|c| B64.encode(c)).collect(),
        sig: String::new(),
    };
    checkpoint.sig = B64.encode(signer.sign(&checkpoint.signed_bytes())?);
    Ok(checkpoint)
}

/// Why a checkpoint does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("signer's certificate does not verify against the trust bundle: {0}")]
    Untrusted(String),
    #[error("signed by `{signer}`, not by the writer `{writer}`")]
    WrongSigner { signer: String, writer: String },
    #[error("the signature does not verify")]
    BadSignature,
}

/// Checks `checkpoint`'s signature and that its signer is the writer, with a certificate
/// that chained to `bundle` when the checkpoint was signed.
pub fn verify(checkpoint: &Checkpoint, bundle: &TrustBundle) -> Result<(), CheckpointError> {
    let at = UnixTime::since_unix_epoch(Duration::from_nanos(checkpoint.time));
    verify_at(checkpoint, bundle, at).map(|_| ())
}

/// The signer's SPIFFE ID a writer id names: the ID itself, or the part before `#` of a
/// per-instance writer id (`spiffe://td/ns/shop/sa/cart#3f2a…`; a SPIFFE ID has no `#`).
pub fn writer_identity(writer: &str) -> &str {
    writer.split_once('#').map_or(writer, |(id, _)| id)
}

/// [`verify`] with the certificate judged at `at` (a receiver judges it on receipt); returns
/// the signer.
pub fn verify_at(
    checkpoint: &Checkpoint,
    bundle: &TrustBundle,
    at: UnixTime,
) -> Result<signet_spiffe::verify::VerifiedPeer, CheckpointError> {
    let chain: Vec<CertificateDer<'static>> = checkpoint
        .chain
        .iter()
        .map(|c| B64.decode(c).map(CertificateDer::from))
        .collect::<Result<_, _>>()
        .map_err(|e| CheckpointError::Malformed(format!("chain: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| CheckpointError::Malformed("empty chain".to_owned()))?;
    let peer = verify_peer(
        bundle,
        leaf,
        chain.get(1..).unwrap_or_default(),
        at,
        Usage::Client,
    )
    .map_err(|e| CheckpointError::Untrusted(e.to_string()))?;
    if peer.id.as_str() != writer_identity(&checkpoint.writer) {
        return Err(CheckpointError::WrongSigner {
            signer: peer.id.to_string(),
            writer: checkpoint.writer.clone(),
        });
    }
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    let public_key = cert.public_key().subject_public_key.data.to_vec();
    let sig = B64
        .decode(&checkpoint.sig)
        .map_err(|e| CheckpointError::Malformed(format!("sig: {e}")))?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, public_key)
        .verify(&checkpoint.signed_bytes(), &sig)
        .map_err(|_| CheckpointError::BadSignature)?;
    Ok(peer)
}

/// Now, Unix nanoseconds.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
