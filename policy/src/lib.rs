//! Signet's Cedar policy engine.
//!
//! - [`schema`]: the mesh's Cedar schema (`policy/schema/mesh.cedarschema`, namespace `Mesh`).
//! - [`PolicyBundle`]: policies from files, validated strictly against the schema, each named
//!   by its required, unique `@id("…")`, content-hashed and versioned. Every problem is
//!   reported as `file:line:col: message`; one problem rejects the whole bundle.
//! - [`Authorizer`]: decides `connect` and HTTP requests from plain inputs and returns a
//!   [`Decision`] naming the policies that made it. Errors deny; default deny; forbid wins.
//!   Cedar sees only the policies whose scope fits the request (an index built once per
//!   bundle); `connect` decisions are cached per caller and target for the bundle's life.
//! - [`PolicyBundle::slice_for`]: the policies that can apply to one service, for its proxy.
//! - [`Enforced`]: the enforced authorizer, swapped atomically, never by an invalid bundle.
//! - [`Shadow`]: a candidate bundle decided beside the enforced one, differences reported.
//! - [`Authorizer::explain_request`]: a decision with its policies' text and location, and
//!   for a default deny the permits that came closest.
//! - [`Directory`]: a caller's registered service and labels, looked up the same way by the
//!   proxy, the offline tools and the control plane.
//! - [`access_diff`]: the access-matrix changes between two bundles over an [`Inventory`].
//!
//! See `docs/policy.md` for the schema and examples.

pub mod authorizer;
pub mod bundle;
mod directory;
mod enforced;
mod explain;
mod index;
pub mod jwt;
mod matrix;
mod needs;
mod report;
mod samples;
pub mod schema;
mod scope;
mod shadow;
mod slice;
#[cfg(feature = "synthetic")]
pub mod synthetic;

pub use authorizer::{Authorizer, Caller, Claims, Decision, Effect, Headers, HttpRequest, Target};
pub use bundle::{BundleError, PolicyBundle, PolicyOrigin, PolicySource, Problem};
pub use directory::{Directory, WorkloadEntry};
pub use enforced::Enforced;
pub use explain::{Cited, Explanation, Miss, NearMiss};
pub use matrix::{
    AccessChange, ChangeKind, GateDiff, Inventory, KnownService, KnownWorkload, RequestSample,
    access_diff, gate_diff,
};
pub use report::{Access, ActionAccess, access_between};
pub use samples::path_classes;
pub use schema::MeshSchema;
pub use shadow::{Divergence, Shadow, ShadowDecision};
pub use slice::ServiceRef;

/// The actions a request can carry: `connect` and the HTTP methods of the schema (not the
/// `read`/`write` groups).
pub fn request_actions() -> impl Iterator<Item = &'static str> {
    let table = scope::ActionTable::get();
    table.request_actions().map(|a| table.name(a))
}
