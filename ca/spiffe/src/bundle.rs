//! Trust bundles: the X.509 authorities a trust domain's SVIDs chain to.
//!
//! A bundle holds several roots at once so that a CA rotation can overlap the old and the new
//! root. It reads and writes PEM and the SPIFFE bundle format (a JWK set whose X.509
//! authorities are keys with `"use": "x509-svid"` and a one-certificate `x5c`).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::TrustDomain;
use crate::jwk::{Jwk, JwkSet};
use crate::jwt::{JwtAuthority, JwtError};

/// Why a bundle could not be read or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("PEM input holds no certificates")]
    NoCertificates,
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("root {index} is not a valid X.509 certificate: {reason}")]
    BadCertificate { index: usize, reason: String },
    #[error("root {index} is not a CA certificate (basicConstraints CA is not set)")]
    NotCa { index: usize },
    #[error("invalid SPIFFE bundle JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("key {index} with use `x509-svid` must carry exactly one certificate in `x5c`")]
    X5cCount { index: usize },
    #[error("key {index}: `x5c` is not valid base64")]
    X5cBase64 { index: usize },
    #[error("key {index}: the JWK's public key does not match its certificate")]
    KeyMismatch { index: usize },
    #[error("root {index} has a public key type the SPIFFE bundle format cannot describe")]
    UnsupportedKey { index: usize },
    #[error("key {index} with use `jwt-svid`: {reason}")]
    JwtKey { index: usize, reason: JwtError },
    #[error("JWT authority `{0}` is already in the bundle with another key")]
    JwtKeyIdReused(String),
}

/// The X.509 roots of one trust domain.
#[derive(Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    roots: Vec<Root>,
    /// The keys JWT-SVIDs of the trust domain are signed with, each under its key ID.
    jwt: Vec<JwtAuthority>,
    /// The bundles of the other trust domains this one federates with: a peer of one of
    /// those domains is verified against its own domain's roots, and only those.
    federated: std::sync::Arc<Vec<TrustBundle>>,
    sequence: u64,
    refresh_hint_secs: Option<u64>,
}

#[derive(Clone)]
struct Root {
    der: CertificateDer<'static>,
    anchor: TrustAnchor<'static>,
}

impl TrustBundle {
    /// An empty bundle: it trusts nothing until roots are added.
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            roots: Vec::new(),
            jwt: Vec::new(),
            federated: std::sync::Arc::default(),
            sequence: 0,
            refresh_hint_secs: None,
        }
    }

    /// A bundle of the given DER roots.
    pub fn from_roots<I>(trust_domain: TrustDomain, roots: I) -> Result<Self, BundleError>
    where
        I: IntoIterator<Item = CertificateDer<'static>>,
    {
        let mut bundle = Self::new(trust_domain);
        for (index, der) in roots.into_iter().enumerate() {
            bundle.push_root(index, der)?;
        }
        Ok(bundle)
    }

    /// Reads every `CERTIFICATE` block of a PEM text as a root.
    pub fn from_pem(trust_domain: TrustDomain, pem: &str) -> Result<Self, BundleError> {
        let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BundleError::Pem(e.to_string()))?;
        if roots.is_empty() {
            return Err(BundleError::NoCertificates);
        }
        Self::from_roots(trust_domain, roots)
    }

    /// Reads the SPIFFE bundle format (JWKS): X.509 authorities (`"use": "x509-svid"`) and
    /// JWT authorities (`"use": "jwt-svid"`, each with a `kid`). Keys of other uses are
    /// skipped, as the specification asks.
    pub fn from_jwks(trust_domain: TrustDomain, json: &str) -> Result<Self, BundleError> {
        let doc: JwkSet = serde_json::from_str(json)?;
        let mut bundle = Self::new(trust_domain);
        bundle.sequence = doc.spiffe_sequence.unwrap_or(0);
        bundle.refresh_hint_secs = doc.spiffe_refresh_hint;
        for (index, key) in doc.keys.into_iter().enumerate() {
            if key.use_.as_deref() == Some("jwt-svid") {
                let authority = JwtAuthority::from_jwk(&key)
                    .map_err(|reason| BundleError::JwtKey { index, reason })?;
                bundle.push_jwt_authority(authority)?;
                continue;
            }
            if key.use_.as_deref() != Some("x509-svid") {
                continue;
            }
            let [b64] = key.x5c.as_deref().unwrap_or_default() else {
                return Err(BundleError::X5cCount { index });
            };
            let der = STANDARD
                .decode(b64)
                .map_err(|_| BundleError::X5cBase64 { index })?;
            let der = CertificateDer::from(der);
            if let Some(described) = describe_key(&der, index).ok().flatten()
                && !key.matches(&described)
            {
                return Err(BundleError::KeyMismatch { index });
            }
            bundle.push_root(index, der)?;
        }
        Ok(bundle)
    }

    /// The PEM text of every root, in order.
    pub fn to_pem(&self) -> String {
        self.roots
            .iter()
            .map(|r| crate::pem::block("CERTIFICATE", r.der.as_ref()))
            .collect()
    }

    /// The SPIFFE bundle format (JWKS), pretty-printed.
    pub fn to_jwks(&self) -> Result<String, BundleError> {
        let mut keys = Vec::with_capacity(self.roots.len());
        for (index, root) in self.roots.iter().enumerate() {
            let mut jwk =
                describe_key(&root.der, index)?.ok_or(BundleError::UnsupportedKey { index })?;
            jwk.use_ = Some("x509-svid".to_owned());
            jwk.x5c = Some(vec![STANDARD.encode(root.der.as_ref())]);
            keys.push(jwk);
        }
        keys.extend(self.jwt.iter().map(JwtAuthority::to_jwk));
        let doc = JwkSet {
            keys,
            spiffe_sequence: Some(self.sequence),
            spiffe_refresh_hint: self.refresh_hint_secs,
        };
        Ok(serde_json::to_string_pretty(&doc)?)
    }

    /// Adds a root; adding one already present changes nothing. Returns whether it was new.
    pub fn add_root(&mut self, der: CertificateDer<'static>) -> Result<bool, BundleError> {
        if self.contains(&der) {
            return Ok(false);
        }
        self.push_root(self.roots.len(), der)?;
        self.sequence += 1;
        Ok(true)
    }

    /// Adds a JWT authority; one already present changes nothing. Returns whether it was
    /// new. A key ID already naming another key is refused.
    pub fn add_jwt_authority(&mut self, authority: JwtAuthority) -> Result<bool, BundleError> {
        let added = self.push_jwt_authority(authority)?;
        if added {
            self.sequence += 1;
        }
        Ok(added)
    }

    /// The same bundle, federated with `bundles` (replacing any before): one per trust
    /// domain, the last given for a domain counting, this bundle's own domain never.
    #[must_use]
    pub fn with_federated(mut self, bundles: impl IntoIterator<Item = TrustBundle>) -> Self {
        let mut by_domain: Vec<TrustBundle> = Vec::new();
        for mut b in bundles {
            if b.trust_domain == self.trust_domain {
                continue;
            }
            // A federated bundle does not carry federations of its own.
            b.federated = std::sync::Arc::default();
            by_domain.retain(|o| o.trust_domain != b.trust_domain);
            by_domain.push(b);
        }
        by_domain.sort_by(|a, b| a.trust_domain.as_str().cmp(b.trust_domain.as_str()));
        self.federated = std::sync::Arc::new(by_domain);
        self
    }

    /// The federated trust domains' bundles, by trust domain name.
    pub fn federated(&self) -> &[TrustBundle] {
        &self.federated
    }

    /// The bundle that vouches for members of `td`: this one, or a federated domain's.
    pub fn bundle_for(&self, td: &TrustDomain) -> Option<&TrustBundle> {
        if *td == self.trust_domain {
            return Some(self);
        }
        self.federated.iter().find(|b| b.trust_domain == *td)
    }

    /// This bundle and every federated one (what validates a JWT-SVID of any of them).
    pub fn all_domains(&self) -> Vec<TrustBundle> {
        let mut own = self.clone();
        own.federated = std::sync::Arc::default();
        std::iter::once(own)
            .chain(self.federated.iter().cloned())
            .collect()
    }

    /// The JWT authorities, in the order they were added.
    pub fn jwt_authorities(&self) -> &[JwtAuthority] {
        &self.jwt
    }

    /// The JWT authority with key ID `kid`.
    pub fn jwt_authority(&self, kid: &str) -> Option<&JwtAuthority> {
        self.jwt.iter().find(|a| a.key_id() == kid)
    }

    /// The JWT authorities alone, in the SPIFFE bundle format (the form the Workload API's
    /// `FetchJWTBundles` sends).
    pub fn jwt_jwks(&self) -> Result<String, BundleError> {
        let doc = JwkSet {
            keys: self.jwt.iter().map(JwtAuthority::to_jwk).collect(),
            ..JwkSet::default()
        };
        Ok(serde_json::to_string(&doc)?)
    }

    fn push_jwt_authority(&mut self, authority: JwtAuthority) -> Result<bool, BundleError> {
        match self.jwt_authority(authority.key_id()) {
            Some(present) if *present == authority => Ok(false),
            Some(_) => Err(BundleError::JwtKeyIdReused(authority.key_id().to_owned())),
            None => {
                self.jwt.push(authority);
                Ok(true)
            }
        }
    }

    /// Removes a root. Returns whether it was present.
    pub fn remove_root(&mut self, der: &CertificateDer<'_>) -> bool {
        let before = self.roots.len();
        self.roots.retain(|r| r.der.as_ref() != der.as_ref());
        let removed = self.roots.len() != before;
        if removed {
            self.sequence += 1;
        }
        removed
    }

    /// Whether `der` is one of the roots.
    pub fn contains(&self, der: &CertificateDer<'_>) -> bool {
        self.roots.iter().any(|r| r.der.as_ref() == der.as_ref())
    }

    /// The trust domain these roots vouch for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The roots, DER-encoded, in the order they were added.
    pub fn roots(&self) -> impl ExactSizeIterator<Item = &CertificateDer<'static>> {
        self.roots.iter().map(|r| &r.der)
    }

    /// The roots prepared for path validation.
    pub fn anchors(&self) -> Vec<TrustAnchor<'static>> {
        self.roots.iter().map(|r| r.anchor.clone()).collect()
    }

    /// Whether the bundle has no roots (and so trusts nothing).
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The bundle's sequence number: bumped on every change, carried in the JWKS form.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Sets the sequence number (the control plane owns it when it distributes bundles).
    pub fn set_sequence(&mut self, sequence: u64) {
        self.sequence = sequence;
    }

    /// Sets the refresh hint published with the bundle (`spiffe_refresh_hint`).
    pub fn set_refresh_hint_secs(&mut self, hint: Option<u64>) {
        self.refresh_hint_secs = hint;
    }

    /// How often consumers should refresh the bundle, if the publisher said.
    pub fn refresh_hint_secs(&self) -> Option<u64> {
        self.refresh_hint_secs
    }

    fn push_root(&mut self, index: usize, der: CertificateDer<'static>) -> Result<(), BundleError> {
        let (_, cert) =
            X509Certificate::from_der(der.as_ref()).map_err(|e| BundleError::BadCertificate {
                index,
                reason: e.to_string(),
            })?;
        if !cert.is_ca() {
            return Err(BundleError::NotCa { index });
        }
        let anchor = webpki::anchor_from_trusted_cert(&der)
            .map_err(|e| BundleError::BadCertificate {
                index,
                reason: format!("{e:?}"),
            })?
            .to_owned();
        if !self.contains(&der) {
            self.roots.push(Root { der, anchor });
        }
        Ok(())
    }
}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("trust_domain", &self.trust_domain)
            .field("roots", &self.roots.len())
            .field("jwt_authorities", &self.jwt.len())
            .field(
                "federated",
                &self
                    .federated
                    .iter()
                    .map(|b| b.trust_domain.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("sequence", &self.sequence)
            .finish()
    }
}

impl PartialEq for TrustBundle {
    fn eq(&self, other: &Self) -> bool {
        self.trust_domain == other.trust_domain
            && self.roots.len() == other.roots.len()
            && self
                .roots
                .iter()
                .zip(&other.roots)
                .all(|(a, b)| a.der == b.der)
            && self.jwt == other.jwt
            && self.federated == other.federated
    }
}

const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// The JWK fields for a certificate's public key, or `None` for key types JWK cannot carry.
fn describe_key(der: &CertificateDer<'_>, index: usize) -> Result<Option<Jwk>, BundleError> {
    let (_, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| BundleError::BadCertificate {
            index,
            reason: e.to_string(),
        })?;
    let spki = cert.public_key();
    let parsed = spki.parsed().map_err(|e| BundleError::BadCertificate {
        index,
        reason: e.to_string(),
    })?;
    Ok(match parsed {
        PublicKey::EC(point) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            let (crv, len) = match curve.as_deref() {
                Some(OID_P256) => ("P-256", 32),
                Some(OID_P384) => ("P-384", 48),
                _ => return Ok(None),
            };
            let data = point.data();
            if data.len() != 1 + 2 * len || data[0] != 4 {
                return Ok(None);
            }
            Some(Jwk {
                kty: "EC".to_owned(),
                crv: Some(crv.to_owned()),
                x: Some(URL_SAFE_NO_PAD.encode(&data[1..=len])),
                y: Some(URL_SAFE_NO_PAD.encode(&data[1 + len..])),
                ..Jwk::default()
            })
        }
        PublicKey::RSA(rsa) => Some(Jwk {
            kty: "RSA".to_owned(),
            n: Some(URL_SAFE_NO_PAD.encode(strip_leading_zeros(rsa.modulus))),
            e: Some(URL_SAFE_NO_PAD.encode(strip_leading_zeros(rsa.exponent))),
            ..Jwk::default()
        }),
        _ => None,
    })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;
