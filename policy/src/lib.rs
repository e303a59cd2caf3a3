//! Signet's Cedar policy engine.
//!
//! - [`schema`]: the mesh's Cedar schema (`policy/schema/mesh.cedarschema`, namespace `Mesh`).
//! - [`PolicyBundle`]: policies from files, validated strictly against the schema, each named
//!   by its required, unique `@id("…")`, content-hashed and versioned. Every problem is
//!   reported as `file:line:col: message`; one problem rejects the whole bundle.
//! - [`Authorizer`]: decides `connect` and HTTP requests from plain inputs and returns a
//!   [`Decision`] naming the policies that made it. Errors deny; default deny; forbid wins.
//!
//! See `docs/policy.md` for the schema and examples.

pub mod authorizer;
pub mod bundle;
pub mod schema;

pub use authorizer::{Authorizer, Caller, Claims, Decision, Effect, HttpRequest, Target};
pub use bundle::{BundleError, PolicyBundle, PolicyOrigin, PolicySource, Problem};
pub use schema::MeshSchema;
