//! Signet's certificate authority.
//!
//! - [`Authority`] is what every CA backend promises (see its contract); the control plane
//!   holds one as `Arc<dyn Authority>`.
//! - [`BuiltinAuthority`] keeps a P-256 root and intermediate in a data directory and signs
//!   SVIDs locally. The Vault backends arrive with the Vault issue.
//! - Issuance is three steps, each its own module: [`profile`] decides what is signed (from
//!   the attested identity, never the CSR's SAN), the backend signs, [`validate`] checks the
//!   result before it is returned. [`csr`] checks what the workload sent.
//! - [`token`] makes and redeems one-time join tokens.
//!
//! # Example
//!
//! ```
//! use signet_ca::{BuiltinAuthority, BuiltinOptions, SignRequest};
//! use signet_spiffe::{TrustDomain, WorkloadKey};
//!
//! let dir = tempfile::tempdir()?;
//! let td = TrustDomain::new("acme.internal")?;
//! let ca = BuiltinAuthority::open(dir.path(), &td, BuiltinOptions::default())?;
//!
//! // The workload makes its key and CSR; only the CSR travels.
//! let id = td.service_account("shop", "cart")?;
//! let key = WorkloadKey::generate()?;
//! let csr = key.csr(&id)?;
//! let svid = ca.issue(SignRequest { csr: &csr, id: &id, ttl: None })?;
//! assert_eq!(svid.id(), &id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod authority;
pub mod builtin;
pub mod csr;
mod local;
pub mod profile;
pub mod token;
pub mod validate;
pub mod vault;

pub use authority::{
    Authority, AuthorityError, AuthorityStatus, BoxFuture, CaCertificate, Clock, FixedClock,
    SignRequest, SystemClock, VaultStatus,
};
pub use builtin::{BuiltinAuthority, BuiltinMaterial, BuiltinOptions};
pub use profile::SvidProfile;
pub use token::{JoinTokens, MemoryTokenStore, NewToken, TokenError, TokenRecord, TokenStore};
