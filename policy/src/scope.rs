//! What a policy's scope (`principal`, `action`, `resource`) can match, read once per bundle.
//!
//! Requests in the mesh always have the same shape: the principal is a `Workload` whose only
//! parent is its `Namespace`, the resource is a `Service` whose only parent is its `Namespace`,
//! and the action is one of the schema's actions. Under that shape a scope reduces to a few
//! keys, and whether it matches a request is decided exactly, without Cedar. Cedar checks the
//! scope before the `when`/`unless` conditions, so a policy whose scope cannot match never
//! contributes anything to a decision, not even an error: leaving it out changes nothing.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{
    ActionConstraint, Entity, EntityTypeName, EntityUid, Policy, PrincipalConstraint,
    ResourceConstraint,
};

use crate::schema::MeshSchema;

/// The entity types the mesh builds requests from.
#[derive(Debug)]
pub(crate) struct MeshTypes {
    pub(crate) workload: EntityTypeName,
    pub(crate) service: EntityTypeName,
    pub(crate) namespace: EntityTypeName,
    pub(crate) headers: EntityTypeName,
    pub(crate) user: EntityTypeName,
}

impl MeshTypes {
    pub(crate) fn get() -> &'static MeshTypes {
        static TYPES: OnceLock<MeshTypes> = OnceLock::new();
        TYPES.get_or_init(|| {
            let ty = |name: &str| {
                EntityTypeName::from_str(&format!("Mesh::{name}"))
                    // INVARIANT (type-names-parse): constant names; every authorizer test
                    // goes through here.
                    .unwrap_or_else(|e| unreachable!("entity type `{name}` does not parse: {e}"))
            };
            MeshTypes {
                workload: ty("Workload"),
                service: ty("Service"),
                namespace: ty("Namespace"),
                headers: ty("Headers"),
                user: ty("User"),
            }
        })
    }
}

/// The schema's actions, numbered, with what each one is `in`.
#[derive(Debug)]
pub(crate) struct ActionTable {
    /// Each action's uid, by number.
    uids: Vec<EntityUid>,
    /// Each action's name (its entity id), by number.
    names: Vec<String>,
    /// For each action, the numbers of the actions it is `in` (itself included).
    within: Vec<Vec<usize>>,
    /// Whether each action is a group (`read`, `write`), which no request carries.
    group: Vec<bool>,
    /// For each action, its entity and those of the groups it is in: what Cedar needs to
    /// evaluate `action in …`.
    entities: Vec<Vec<Entity>>,
    by_name: BTreeMap<String, usize>,
}

impl ActionTable {
    pub(crate) fn get() -> &'static ActionTable {
        static TABLE: OnceLock<ActionTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            let schema = MeshSchema::embedded().schema();
            let mut uids: Vec<EntityUid> = schema.actions().cloned().collect();
            uids.sort_by_key(ToString::to_string);
            let names: Vec<String> = uids.iter().map(|u| u.id().unescaped().to_owned()).collect();
            let by_name = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i))
                .collect();
            let action_entities = schema.action_entities().ok();
            let within: Vec<Vec<usize>> = uids
                .iter()
                .enumerate()
                .map(|(i, uid)| {
                    let mut set = vec![i];
                    if let Some(ancestors) = action_entities.as_ref().and_then(|e| e.ancestors(uid))
                    {
                        set.extend(
                            ancestors
                                .filter_map(|a| uids.iter().position(|candidate| candidate == a)),
                        );
                    }
                    set
                })
                .collect();
            let group = uids
                .iter()
                .map(|u| schema.action_groups().any(|g| g == u))
                .collect();
            let entities = within
                .iter()
                .map(|w| {
                    w.iter()
                        .filter_map(|n| {
                            action_entities
                                .as_ref()
                                .and_then(|e| e.get(&uids[*n]).cloned())
                        })
                        .collect()
                })
                .collect();
            ActionTable {
                uids,
                names,
                within,
                group,
                entities,
                by_name,
            }
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.uids.len()
    }

    /// The number of the action named `name` (`GET`, `connect`, `read`...).
    pub(crate) fn lookup(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The number of an action a request can carry (`connect` or a method; not a group).
    pub(crate) fn request_action(&self, name: &str) -> Option<usize> {
        self.lookup(name).filter(|a| !self.group[*a])
    }

    /// The actions a request can carry.
    pub(crate) fn request_actions(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).filter(|a| !self.group[*a])
    }

    /// The entities of `action` and of the groups it is in.
    pub(crate) fn entities(&self, action: usize) -> &[Entity] {
        &self.entities[action]
    }

    pub(crate) fn uid(&self, action: usize) -> &EntityUid {
        &self.uids[action]
    }

    pub(crate) fn name(&self, action: usize) -> &str {
        &self.names[action]
    }

    /// The actions `action` is `in`, itself included (for `GET`: `GET` and `read`).
    pub(crate) fn within(&self, action: usize) -> &[usize] {
        &self.within[action]
    }

    fn number(&self, uid: &EntityUid) -> Option<usize> {
        self.uids.iter().position(|u| u == uid)
    }
}

/// Which principals or resources a scope admits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Key {
    /// Every one.
    Any,
    /// Exactly this entity (a workload's SPIFFE ID, or a service's name).
    Named(String),
    /// Every one in this namespace.
    Namespace(String),
    /// None: the scope names an entity type that never appears in that position.
    Never,
}

impl Key {
    fn matches(&self, name: &str, namespace: Option<&str>) -> bool {
        match self {
            Key::Any => true,
            Key::Named(n) => n == name,
            Key::Namespace(ns) => namespace == Some(ns.as_str()),
            Key::Never => false,
        }
    }
}

/// A policy's scope, reduced to what mesh requests can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    pub(crate) principal: Key,
    /// The numbers of the actions the scope admits; `None` for every action.
    pub(crate) actions: Option<Vec<usize>>,
    pub(crate) resource: Key,
}

/// The parts of a request its scope is matched against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScopeQuery<'a> {
    pub(crate) peer: &'a str,
    pub(crate) peer_namespace: Option<&'a str>,
    pub(crate) action: usize,
    pub(crate) service: &'a str,
    pub(crate) service_namespace: &'a str,
}

impl Scope {
    pub(crate) fn of(policy: &Policy) -> Scope {
        let types = MeshTypes::get();
        let principal = match policy.principal_constraint() {
            PrincipalConstraint::Any => Key::Any,
            PrincipalConstraint::Eq(uid) => equal_key(&uid, &types.workload),
            PrincipalConstraint::In(uid) => in_key(&uid, &types.workload),
            PrincipalConstraint::Is(ty) => is_key(&ty, &types.workload, Key::Any),
            PrincipalConstraint::IsIn(ty, uid) => {
                is_key(&ty, &types.workload, in_key(&uid, &types.workload))
            }
        };
        let resource = match policy.resource_constraint() {
            ResourceConstraint::Any => Key::Any,
            ResourceConstraint::Eq(uid) => equal_key(&uid, &types.service),
            ResourceConstraint::In(uid) => in_key(&uid, &types.service),
            ResourceConstraint::Is(ty) => is_key(&ty, &types.service, Key::Any),
            ResourceConstraint::IsIn(ty, uid) => {
                is_key(&ty, &types.service, in_key(&uid, &types.service))
            }
        };
        let table = ActionTable::get();
        let actions = match policy.action_constraint() {
            ActionConstraint::Any => None,
            ActionConstraint::Eq(uid) => Some(table.number(&uid).into_iter().collect()),
            ActionConstraint::In(groups) => {
                let groups: Vec<usize> = groups.iter().filter_map(|g| table.number(g)).collect();
                Some(
                    (0..table.len())
                        .filter(|a| table.within(*a).iter().any(|w| groups.contains(w)))
                        .collect(),
                )
            }
        };
        Scope {
            principal,
            actions,
            resource,
        }
    }

    /// Whether the scope can match anything at all.
    pub(crate) fn is_live(&self) -> bool {
        self.principal != Key::Never
            && self.resource != Key::Never
            && self.actions.as_ref().is_none_or(|a| !a.is_empty())
    }

    pub(crate) fn admits_action(&self, action: usize) -> bool {
        self.actions.as_ref().is_none_or(|a| a.contains(&action))
    }

    pub(crate) fn admits_principal(&self, q: &ScopeQuery<'_>) -> bool {
        self.principal.matches(q.peer, q.peer_namespace)
    }

    pub(crate) fn admits_resource(&self, q: &ScopeQuery<'_>) -> bool {
        self.resource.matches(q.service, Some(q.service_namespace))
    }
}

/// `== uid`: only that very entity, if it has the type that occupies the position.
fn equal_key(uid: &EntityUid, position: &EntityTypeName) -> Key {
    if uid.type_name() == position {
        Key::Named(uid.id().unescaped().to_owned())
    } else {
        Key::Never
    }
}

/// `in uid`: that entity, or everything whose parent (a namespace) it is.
fn in_key(uid: &EntityUid, position: &EntityTypeName) -> Key {
    if uid.type_name() == position {
        Key::Named(uid.id().unescaped().to_owned())
    } else if *uid.type_name() == MeshTypes::get().namespace {
        Key::Namespace(uid.id().unescaped().to_owned())
    } else {
        Key::Never
    }
}

fn is_key(ty: &EntityTypeName, position: &EntityTypeName, then: Key) -> Key {
    if ty == position { then } else { Key::Never }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::PolicySet;

    fn scope(text: &str) -> Scope {
        let set = PolicySet::from_str(text).unwrap();
        Scope::of(set.policies().next().unwrap())
    }

    fn actions(names: &[&str]) -> Option<Vec<usize>> {
        let t = ActionTable::get();
        let mut v: Vec<usize> = names.iter().map(|n| t.lookup(n).unwrap()).collect();
        v.sort_unstable();
        Some(v)
    }

    #[test]
    fn action_groups_expand_to_their_members() {
        let t = ActionTable::get();
        let get = t.lookup("GET").unwrap();
        assert!(t.within(get).contains(&t.lookup("read").unwrap()));
        let s = scope(r#"permit(principal, action in Mesh::Action::"read", resource);"#);
        assert_eq!(s.actions, actions(&["GET", "HEAD", "OPTIONS", "read"]));
        let s = scope(
            r#"permit(principal, action in [Mesh::Action::"write", Mesh::Action::"connect"], resource);"#,
        );
        assert_eq!(
            s.actions,
            actions(&["DELETE", "PATCH", "POST", "PUT", "connect", "write"])
        );
        let s = scope(r#"permit(principal, action == Mesh::Action::"read", resource);"#);
        assert_eq!(s.actions, actions(&["read"]));
    }

    #[test]
    fn principals_and_resources_reduce_to_keys() {
        let s = scope(
            r#"permit(principal in Mesh::Namespace::"shop", action, resource == Mesh::Service::"cart");"#,
        );
        assert_eq!(s.principal, Key::Namespace("shop".into()));
        assert_eq!(s.resource, Key::Named("cart".into()));
        assert_eq!(s.actions, None);
        let s = scope(
            r#"permit(principal is Mesh::Workload, action, resource is Mesh::Service in Mesh::Namespace::"a");"#,
        );
        assert_eq!(s.principal, Key::Any);
        assert_eq!(s.resource, Key::Namespace("a".into()));
        let s = scope(r#"permit(principal == Mesh::Namespace::"shop", action, resource);"#);
        assert_eq!(s.principal, Key::Never);
        assert!(!s.is_live());
        let s = scope(r#"permit(principal is Mesh::User, action, resource);"#);
        assert!(!s.is_live());
    }
}
