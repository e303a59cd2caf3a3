//! Slices: the part of a bundle that can apply to one destination service.
//!
//! A proxy evaluates only its own service's slice. A policy belongs to a slice when its
//! resource scope can match the service: `resource == Mesh::Service::"<it>"`, `resource in`
//! its namespace, or no resource constraint at all (so unscoped guardrails are in every
//! slice). Cedar checks the scope before anything else, so the policies left out could not
//! have contributed to any decision about this service: a slice decides exactly like the
//! whole bundle for it.

use std::collections::BTreeMap;

use cedar_policy::PolicySet;

use crate::bundle::PolicyBundle;
use crate::scope::{Key, Scope};

/// A destination service, as slices and the access matrix name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    /// Mesh-unique service name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

impl ServiceRef {
    /// A service by name and namespace.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
        }
    }
}

impl PolicyBundle {
    /// The policies that can apply to requests for `service`, as a bundle of their own (same
    /// version; its own content hash).
    pub fn slice_for(&self, service: &ServiceRef) -> PolicyBundle {
        let mut policies = PolicySet::new();
        let mut origins = BTreeMap::new();
        for policy in self.policies().policies() {
            let scope = Scope::of(policy);
            let applies = scope.is_live()
                && match &scope.resource {
                    Key::Any => true,
                    Key::Named(name) => *name == service.name,
                    Key::Namespace(ns) => *ns == service.namespace,
                    Key::Never => false,
                };
            let id = policy.id().to_string();
            if let (true, Some(origin)) = (applies, self.origin(&id))
                && policies.add(policy.clone()).is_ok()
            {
                origins.insert(id, origin.clone());
            }
        }
        PolicyBundle::assemble(policies, origins).with_version(self.version())
    }
}
