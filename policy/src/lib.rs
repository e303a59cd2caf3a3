//! Signet's Cedar policy engine.
//!
//! Empty for now: the mesh schema, `PolicyBundle` and the `Authorizer` arrive with the
//! policy-engine issue (see `docs/architecture.md`).
