//! Slices: the part of a bundle that can apply to one destination service.
//!
//! A proxy evaluates only its own service's slice. A policy belongs to a slice when its
//! resource scope can match the service: `resource == Mesh::Service::"<it>"`, `resource in`
//! its namespace, or no resource constraint at all (so unscoped guardrails are in every
//! slice). Cedar checks the scope before anything else, so the policies left out could not
//! have contributed to any decision about this service: a slice decides exactly like the
//! whole bundle for it.

use std::collections::{BTreeMap, BTreeSet};

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

    /// An upper bound on the bytes of policy text (with file names and separators) in any
    /// service's slice, named in this bundle or not: what unscoped policies weigh, plus the
    /// heaviest service's named policies, plus the heaviest namespace's. Exact when one
    /// service holds both maxima; never less than any real slice.
    pub fn largest_slice_bytes(&self) -> usize {
        let mut any = 0usize;
        let mut named: BTreeMap<String, usize> = BTreeMap::new();
        let mut namespaces: BTreeMap<String, usize> = BTreeMap::new();
        // Each file a slice holds costs its name once.
        let mut files: BTreeSet<&str> = BTreeSet::new();
        for policy in self.policies().policies() {
            let scope = Scope::of(policy);
            let Some(origin) = self.origin(policy.id().as_ref()) else {
                continue;
            };
            if !scope.is_live() {
                continue;
            }
            // The text, and the blank line that joins it to the next in its file.
            let weight = origin.text.len() + 2;
            files.insert(origin.file.as_str());
            match scope.resource {
                Key::Any => any += weight,
                Key::Named(name) => *named.entry(name).or_default() += weight,
                Key::Namespace(ns) => *namespaces.entry(ns).or_default() += weight,
                Key::Never => {}
            }
        }
        let names: usize = files.iter().map(|f| f.len() + 8).sum();
        any + named.values().max().copied().unwrap_or(0)
            + namespaces.values().max().copied().unwrap_or(0)
            + names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::PolicySource;

    /// What the control plane sends for the slice: each file's name once, its policies'
    /// texts joined by blank lines.
    fn slice_text(bundle: &PolicyBundle, service: &ServiceRef) -> usize {
        let slice = bundle.slice_for(service);
        let mut files: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for o in slice.origins().values() {
            files.entry(o.file.as_str()).or_default().push(o.text.len());
        }
        files
            .iter()
            .map(|(name, texts)| name.len() + texts.iter().sum::<usize>() + 2 * (texts.len() - 1))
            .sum()
    }

    #[test]
    fn the_largest_slice_bound_holds_for_every_service() {
        let text = r#"
            @id("all") forbid (principal, action in Mesh::Action::"read", resource)
                when { context.path like "/admin*" };
            @id("cart-1") permit (principal, action, resource == Mesh::Service::"cart");
            @id("cart-2") permit (principal, action in Mesh::Action::"read",
                                  resource == Mesh::Service::"cart")
                when { context.path == "/a-rather-long-path-for-the-cart-service" };
            @id("pay") permit (principal, action, resource == Mesh::Service::"payments");
            @id("shop") permit (principal, action, resource in Mesh::Namespace::"shop");
        "#;
        let bundle = PolicyBundle::from_sources(&[PolicySource {
            name: "p.cedar".to_owned(),
            text: text.to_owned(),
        }])
        .unwrap();
        let bound = bundle.largest_slice_bytes();
        for (name, ns) in [
            ("cart", "shop"),
            ("payments", "shop"),
            ("cart", "other"),
            ("unnamed", "shop"),
            ("unnamed", "nowhere"),
        ] {
            let actual = slice_text(&bundle, &ServiceRef::new(name, ns));
            assert!(actual <= bound, "{name}.{ns}: {actual} > {bound}");
        }
        // Tight enough to mean something: the cart in shop holds four of five policies.
        let cart = slice_text(&bundle, &ServiceRef::new("cart", "shop"));
        assert!(bound < cart + 64, "{bound} vs {cart}");
    }
}
