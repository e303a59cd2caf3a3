//! Who a caller is beyond its SPIFFE ID: the service it runs as and its labels, as the
//! mesh's registry knows them.
//!
//! Every place that decides for a caller (the proxy on live traffic, `meshctl authz test`,
//! `diff` and `apply`, the control plane's `identity inspect` and its apply gate) turns a
//! SPIFFE ID into a [`Caller`] with [`Directory::caller`], so a policy reading
//! `principal.service` or a label tag sees the same entity everywhere.
//!
//! A caller the directory does not list (no registry entry: a workload whose proxy never
//! registered, an operator's SVID) gets no service (`""`) and no labels, the same in every
//! tool. Its namespace and service account still come from its SPIFFE ID, unless it is of
//! another trust domain than the directory's own ([`Directory::with_trust_domain`]): such a
//! caller is foreign, in none of this mesh's namespaces.

use std::collections::{BTreeMap, HashMap};

use signet_spiffe::{SpiffeId, TrustDomain};

use crate::authorizer::Caller;

/// What the registry says about one workload identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadEntry {
    /// The service it runs as.
    pub service: String,
    /// Its labels, sorted by key (read in policies as the principal's tags).
    pub labels: Vec<(String, String)>,
}

/// Workload identities and what the registry says about them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    entries: HashMap<SpiffeId, WorkloadEntry>,
    /// The mesh's own trust domain: callers of any other are foreign. `None`: none is.
    trust_domain: Option<TrustDomain>,
}

impl Directory {
    /// An empty directory: every caller is unregistered.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same directory, for the mesh of trust domain `td`: callers of other (federated)
    /// trust domains are foreign.
    #[must_use]
    pub fn with_trust_domain(mut self, td: TrustDomain) -> Self {
        self.trust_domain = Some(td);
        self
    }

    /// Lists `id` as running `service` with `labels` (replacing an earlier entry).
    pub fn insert(
        &mut self,
        id: SpiffeId,
        service: impl Into<String>,
        labels: impl IntoIterator<Item = (String, String)>,
    ) {
        let labels: BTreeMap<String, String> = labels.into_iter().collect();
        self.entries.insert(
            id,
            WorkloadEntry {
                service: service.into(),
                labels: labels.into_iter().collect(),
            },
        );
    }

    /// The entry for `id`, if it is registered.
    pub fn get(&self, id: &SpiffeId) -> Option<&WorkloadEntry> {
        self.entries.get(id)
    }

    /// The caller entity's inputs for `id`: its registered service and labels, or none of
    /// either when it is not registered.
    pub fn caller<'a>(&'a self, id: &'a SpiffeId) -> Caller<'a> {
        let foreign = self
            .trust_domain
            .as_ref()
            .is_some_and(|td| !id.is_member_of(td));
        match self.entries.get(id) {
            Some(entry) if !foreign => Caller {
                id: Some(id),
                service: Some(&entry.service),
                labels: &entry.labels,
                foreign,
            },
            _ => Caller {
                id: Some(id),
                service: None,
                labels: &[],
                foreign,
            },
        }
    }

    /// How many identities are listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, by SPIFFE ID.
    pub fn iter(&self) -> impl Iterator<Item = (&SpiffeId, &WorkloadEntry)> {
        let mut all: Vec<_> = self.entries.iter().collect();
        all.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        all.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        s.parse().expect("a SPIFFE ID")
    }

    #[test]
    fn a_listed_caller_carries_its_service_and_sorted_labels() {
        let mut dir = Directory::new();
        let cart = id("spiffe://acme.internal/ns/shop/sa/cart");
        dir.insert(
            cart.clone(),
            "cart",
            [("tier".into(), "web".into()), ("env".into(), "prod".into())],
        );
        let caller = dir.caller(&cart);
        assert_eq!(caller.service, Some("cart"));
        assert_eq!(
            caller.labels,
            &[
                ("env".to_owned(), "prod".to_owned()),
                ("tier".to_owned(), "web".to_owned())
            ]
        );
    }

    #[test]
    fn an_unlisted_caller_has_no_service_and_no_labels() {
        let dir = Directory::new();
        let stranger = id("spiffe://acme.internal/ns/shop/sa/stranger");
        let caller = dir.caller(&stranger);
        assert_eq!(caller.id, Some(&stranger));
        assert_eq!(caller.service, None);
        assert!(caller.labels.is_empty());
    }
}
