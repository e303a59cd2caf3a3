//! The enforced bundle: the one authorizer every decision reads, swapped atomically.
//!
//! A new bundle replaces the enforced one only once it has validated and its authorizer (with
//! its index) is built; a bundle that fails leaves the enforced one untouched. Decisions in
//! flight keep the authorizer they loaded, so they finish under the bundle they started with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::authorizer::Authorizer;
use crate::bundle::{BundleError, PolicyBundle, PolicySource};

/// The enforced authorizer.
#[derive(Debug)]
pub struct Enforced {
    current: ArcSwap<Authorizer>,
}

impl Enforced {
    /// Enforces `bundle`.
    pub fn new(bundle: PolicyBundle) -> Self {
        Self {
            current: ArcSwap::from_pointee(Authorizer::new(Arc::new(bundle))),
        }
    }

    /// The authorizer to decide with now.
    pub fn current(&self) -> Arc<Authorizer> {
        self.current.load_full()
    }

    /// Enforces `bundle` from now on.
    pub fn replace(&self, bundle: PolicyBundle) {
        self.current
            .store(Arc::new(Authorizer::new(Arc::new(bundle))));
    }

    /// Validates `sources` as version `version` and enforces them; on any problem, returns
    /// them and keeps enforcing the current bundle.
    pub fn replace_with(
        &self,
        sources: &[PolicySource],
        version: u64,
    ) -> Result<Arc<PolicyBundle>, BundleError> {
        let bundle = PolicyBundle::from_sources(sources)?.with_version(version);
        let authorizer = Authorizer::new(Arc::new(bundle));
        let bundle = Arc::clone(authorizer.bundle());
        self.current.store(Arc::new(authorizer));
        Ok(bundle)
    }
}
