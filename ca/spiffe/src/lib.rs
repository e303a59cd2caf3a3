//! SPIFFE identities for Signet: everything a workload or proxy needs to prove who it is and
//! to check who its peer is, and no signing of certificates.
//!
//! - [`SpiffeId`] and [`TrustDomain`] parse exactly per the SPIFFE ID specification.
//! - [`TrustBundle`] holds a trust domain's X.509 roots (several at once, for CA rotation),
//!   its JWT authorities and the bundles of the domains it federates with,
//!   and reads and writes PEM and the SPIFFE bundle format (JWKS).
//! - [`X509Svid`] is a structurally checked SVID chain, with [`X509Svid::refresh_at`] for
//!   rotation at half-life with jitter.
//! - [`jwt`] signs and validates JWT-SVIDs; a bundle carries its trust domain's JWT
//!   authorities beside its X.509 roots.
//! - [`WorkloadKey`] makes the workload's P-256 key and its CSR; the key stays in the process.
//! - [`write_private`] writes keys and credentials 0600, atomically.
//! - [`verify`] checks a peer's chain against a bundle and yields its SPIFFE ID; [`tls`] pins
//!   rustls (TLS 1.3, ring) and wraps that check in verifiers for both directions.
//!
//! # Example
//!
//! ```
//! use signet_spiffe::{SpiffeId, TrustDomain};
//!
//! let id: SpiffeId = "spiffe://acme.internal/ns/shop/sa/cart".parse()?;
//! assert_eq!(id.trust_domain(), TrustDomain::new("acme.internal")?);
//! assert_eq!(id.namespace_and_account(), Some(("shop", "cart")));
//! assert!("spiffe://acme.internal/ns/../sa/cart".parse::<SpiffeId>().is_err());
//! # Ok::<(), signet_spiffe::IdError>(())
//! ```

pub mod activity;
pub mod admission;
mod bundle;
mod csr;
mod id;
mod jwk;
pub mod jwt;
mod pem;
mod private_file;
pub mod selector;
mod svid;
pub mod tls;
pub mod verify;

#[cfg(any(test, feature = "test-util"))]
pub mod test_pki;

pub use bundle::{BundleError, TrustBundle};
pub use csr::{CsrError, WorkloadKey};
pub use id::{IdError, MAX_ID_LEN, MAX_TRUST_DOMAIN_LEN, SpiffeId, TrustDomain};
pub use pem::block as pem_block;
pub use pem::certificates as certificates_to_pem;
pub use private_file::write_private;
pub use svid::{MAX_REFRESH_JITTER, Serial, SvidError, X509Svid, leaf_spiffe_id};
