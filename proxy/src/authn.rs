//! End-user JWTs on the inbound path. The verifier (providers, keys by `kid`, the checks and
//! the refusal reasons, a cache of verified tokens) is `signet_policy::jwt`, shared with the
//! control plane, which validates what operators apply with the same code; this reads the
//! token from the request's headers.

use http::HeaderMap;
use signet_policy::Claims;
pub use signet_policy::jwt::{Authn, DEFAULT_MAX_TOKEN_BYTES, Provider, ProviderSpec, Refusal};

/// The verified end user of a request (see [`Authn::verify`]).
pub fn verify(authn: &Authn, headers: &HeaderMap) -> Result<Option<Claims>, Refusal> {
    authn.verify(|name| headers.get(name).and_then(|v| v.to_str().ok()))
}
