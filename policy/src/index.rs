//! The policy index: for one request, the handful of policies whose scope fits it.
//!
//! Built once per bundle. Policies are bucketed by action, then by resource key (a service, a
//! namespace, or any), then by principal key (a workload, a namespace, or any); a request
//! looks up at most nine buckets. Cedar is then handed only those policies, and since a policy
//! whose scope does not match contributes nothing to a decision (see [`crate::scope`]), the
//! decision is exactly the one Cedar makes over the whole bundle.
//!
//! The index holds each policy with its scope removed (`permit (principal, action, resource)
//! when { … }`): the buckets already decided the scope exactly, and Cedar checking it again
//! costs about half a microsecond per policy. Conditions, ids and effects are untouched.
//!
//! The policy sets handed to Cedar are built once per distinct candidate list and shared:
//! requests between the same peers and services hit the same few sets.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cedar_policy::{Policy, PolicySet};
use foldhash::fast::RandomState;

use crate::needs::Needs;
use crate::scope::{ActionTable, Key, Scope, ScopeQuery};

/// Sets kept before the cache starts over; far above what one proxy's peers produce.
const MAX_CACHED_SETS: usize = 65_536;

#[derive(Debug, Default)]
struct PrincipalBuckets {
    workload: HashMap<String, Vec<u32>, RandomState>,
    namespace: HashMap<String, Vec<u32>, RandomState>,
    any: Vec<u32>,
}

impl PrincipalBuckets {
    fn add(&mut self, key: &Key, policy: u32) {
        match key {
            Key::Any => self.any.push(policy),
            Key::Named(n) => self.workload.entry(n.clone()).or_default().push(policy),
            Key::Namespace(ns) => self.namespace.entry(ns.clone()).or_default().push(policy),
            Key::Never => {}
        }
    }

    fn collect(&self, q: &ScopeQuery<'_>, out: &mut Vec<u32>) {
        if let Some(v) = self.workload.get(q.peer) {
            out.extend_from_slice(v);
        }
        if let Some(v) = q.peer_namespace.and_then(|ns| self.namespace.get(ns)) {
            out.extend_from_slice(v);
        }
        out.extend_from_slice(&self.any);
    }
}

#[derive(Debug, Default)]
struct ResourceBuckets {
    service: HashMap<String, PrincipalBuckets, RandomState>,
    namespace: HashMap<String, PrincipalBuckets, RandomState>,
    any: PrincipalBuckets,
}

impl ResourceBuckets {
    fn add(&mut self, scope: &Scope, policy: u32) {
        let principals = match &scope.resource {
            Key::Any => &mut self.any,
            Key::Named(n) => self.service.entry(n.clone()).or_default(),
            Key::Namespace(ns) => self.namespace.entry(ns.clone()).or_default(),
            Key::Never => return,
        };
        principals.add(&scope.principal, policy);
    }

    fn collect(&self, q: &ScopeQuery<'_>, out: &mut Vec<u32>) {
        if let Some(p) = self.service.get(q.service) {
            p.collect(q, out);
        }
        if let Some(p) = self.namespace.get(q.service_namespace) {
            p.collect(q, out);
        }
        self.any.collect(q, out);
    }
}

/// `policy` with every scope constraint replaced by "any".
fn without_scope(policy: &Policy) -> Option<Policy> {
    let mut json = policy.to_json().ok()?;
    let any = serde_json::json!({ "op": "All" });
    for part in ["principal", "action", "resource"] {
        *json.get_mut(part)? = any.clone();
    }
    Policy::from_json(Some(policy.id().clone()), json).ok()
}

/// Policies by scope, for one bundle.
#[derive(Debug)]
pub(crate) struct PolicyIndex {
    policies: Vec<Policy>,
    needs: Vec<Needs>,
    /// By action number; empty for action groups, which no request carries.
    by_action: Vec<ResourceBuckets>,
    sets: RwLock<HashMap<Box<[u32]>, Arc<PolicySet>, RandomState>>,
}

impl PolicyIndex {
    pub(crate) fn build(set: &PolicySet) -> Self {
        let table = ActionTable::get();
        let mut policies: Vec<Policy> = set.policies().cloned().collect();
        // A stable order, so candidate lists (and the cache keys made of them) do not depend
        // on hash-map iteration.
        policies.sort_by_key(|p| p.id().to_string());
        let scopes: Vec<Scope> = policies.iter().map(Scope::of).collect();
        let needs = policies
            .iter()
            .map(|p| Needs::of_policy(&p.to_string()))
            .collect();
        // Scope matching by the buckets is exact for mesh requests (see `crate::scope`).
        let policies = policies
            .into_iter()
            .map(|p| without_scope(&p).unwrap_or(p))
            .collect();
        let mut by_action: Vec<ResourceBuckets> = (0..table.len())
            .map(|_| ResourceBuckets::default())
            .collect();
        for (n, scope) in scopes.iter().enumerate() {
            if !scope.is_live() {
                continue;
            }
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            for action in table.request_actions() {
                if scope.admits_action(action) {
                    by_action[action].add(scope, n);
                }
            }
        }
        Self {
            policies,
            needs,
            by_action,
            sets: RwLock::new(HashMap::default()),
        }
    }

    /// The numbers of the policies whose scope admits `q`, ascending, no repeats.
    pub(crate) fn candidates(&self, q: &ScopeQuery<'_>) -> Vec<u32> {
        let mut out = Vec::new();
        if let Some(buckets) = self.by_action.get(q.action) {
            buckets.collect(q, &mut out);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The context parts `candidates` read.
    pub(crate) fn needs_of(&self, candidates: &[u32]) -> Needs {
        candidates
            .iter()
            .filter_map(|n| self.needs.get(*n as usize))
            .fold(Needs::default(), |all, n| all.union(*n))
    }

    /// A policy set holding exactly `candidates`.
    pub(crate) fn set_of(&self, candidates: &[u32]) -> Arc<PolicySet> {
        if let Some(set) = self
            .sets
            .read()
            .ok()
            .and_then(|m| m.get(candidates).cloned())
        {
            return set;
        }
        let mut set = PolicySet::new();
        for n in candidates {
            if let Some(policy) = self.policies.get(*n as usize) {
                // Ids are unique in a bundle, so adding cannot clash.
                let _ = set.add(policy.clone());
            }
        }
        let set = Arc::new(set);
        if let Ok(mut sets) = self.sets.write() {
            if sets.len() >= MAX_CACHED_SETS {
                sets.clear();
            }
            sets.insert(candidates.into(), Arc::clone(&set));
        }
        set
    }
}
