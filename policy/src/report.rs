//! What one caller may do to one service under a bundle, action by action: the answer
//! `meshctl identity inspect` prints.
//!
//! `connect` has one answer. For requests, each HTTP method is decided on every path class
//! the bundle names (see [`crate::path_classes`]): the same effect on all of them, from
//! policies that read nothing else of the request, is a plain allow or deny; otherwise the
//! answer depends on the request, and the report says which parts the policies read and
//! which path classes are allowed and denied. Methods of one group (`read`, `write`) with the
//! same answer are reported as the group.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Value, json};

use crate::authorizer::{Authorizer, Caller, HttpRequest, Target};
use crate::scope::ActionTable;

/// One action's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Always allowed, by these policies.
    Allowed(Vec<String>),
    /// Always denied, by these policies (empty: default deny).
    Denied(Vec<String>),
    /// Allowed for some requests and denied for others, or decided by policies that read
    /// parts of the request no sample covers.
    Depends {
        /// The parts of the request the policies read.
        reads: Vec<&'static str>,
        /// Path classes allowed, with the deciding policies.
        allowed: Vec<(String, Vec<String>)>,
        /// Path classes denied, with the deciding policies.
        denied: Vec<(String, Vec<String>)>,
    },
}

impl Access {
    /// `allow`, `deny` or `depends`.
    pub fn label(&self) -> &'static str {
        match self {
            Access::Allowed(_) => "allow",
            Access::Denied(_) => "deny",
            Access::Depends { .. } => "depends",
        }
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        let samples = |list: &[(String, Vec<String>)]| {
            list.iter()
                .map(|(path, policies)| json!({ "path": path, "policies": policies }))
                .collect::<Vec<_>>()
        };
        match self {
            Access::Allowed(p) | Access::Denied(p) => {
                json!({ "decision": self.label(), "policies": p })
            }
            Access::Depends {
                reads,
                allowed,
                denied,
            } => json!({
                "decision": "depends",
                "reads": reads,
                "allowed": samples(allowed),
                "denied": samples(denied),
            }),
        }
    }
}

/// One row of a report: an action (`connect`, a group such as `read`, or a method) and its
/// answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionAccess {
    pub action: String,
    pub access: Access,
}

/// The parts of a request no path class samples: a decision reading them can go either way.
const UNSAMPLED: [&str; 4] = ["host", "query", "headers", "user"];

/// What `caller` may do to `target` under `authorizer`, trying `paths` for every method.
pub fn access_between(
    authorizer: &Authorizer,
    caller: &Caller<'_>,
    target: &Target<'_>,
    source_ip: IpAddr,
    paths: &BTreeSet<String>,
) -> Vec<ActionAccess> {
    let table = ActionTable::get();
    let connect = authorizer.connect(caller, target, source_ip);
    let mut rows = vec![ActionAccess {
        action: "connect".to_owned(),
        access: if connect.is_allowed() {
            Access::Allowed(connect.policies.clone())
        } else {
            Access::Denied(connect.policies.clone())
        },
    }];
    let methods: Vec<usize> = table
        .request_actions()
        .filter(|a| table.name(*a) != "connect")
        .collect();
    let per_method: Vec<(usize, Access)> = methods
        .iter()
        .map(|&m| {
            (
                m,
                method_access(authorizer, caller, target, source_ip, table.name(m), paths),
            )
        })
        .collect();
    // Groups first (in name order), each reported once when all its methods agree.
    let groups: Vec<usize> = (0..table.len())
        .filter(|a| !table.request_actions().any(|r| r == *a))
        .collect();
    let mut reported = BTreeSet::new();
    for group in groups {
        let members: Vec<&(usize, Access)> = per_method
            .iter()
            .filter(|(m, _)| table.within(*m).contains(&group))
            .collect();
        let Some((_, first)) = members.first() else {
            continue;
        };
        if members.iter().all(|(_, a)| a == first) {
            rows.push(ActionAccess {
                action: table.name(group).to_owned(),
                access: first.clone(),
            });
            reported.extend(members.iter().map(|(m, _)| *m));
        }
    }
    for (m, access) in per_method {
        if !reported.contains(&m) {
            rows.push(ActionAccess {
                action: table.name(m).to_owned(),
                access,
            });
        }
    }
    rows
}

/// Whether the policy `id` of the authorizer's bundle reads a part no sample covers.
fn reads_unsampled(authorizer: &Authorizer, id: &str) -> bool {
    authorizer.bundle().origin(id).is_none_or(|origin| {
        crate::needs::Needs::of_policy(&origin.text).reads_any(crate::needs::Needs::UNSAMPLED)
    })
}

fn method_access(
    authorizer: &Authorizer,
    caller: &Caller<'_>,
    target: &Target<'_>,
    source_ip: IpAddr,
    method: &str,
    paths: &BTreeSet<String>,
) -> Access {
    let mut allowed = Vec::new();
    let mut denied = Vec::new();
    for path in paths {
        let request = HttpRequest {
            method,
            path,
            host: target.name,
            query: "",
            headers: crate::authorizer::Headers::NONE,
            source_ip,
            claims: None,
        };
        let d = authorizer.request(caller, target, &request);
        let entry = (path.clone(), d.policies.clone());
        if d.is_allowed() {
            allowed.push(entry);
        } else {
            denied.push(entry);
        }
    }
    let reads = authorizer.request_reads(caller, target, method);
    // A forbid that reads no unsampled part denies whatever those parts hold: when such
    // forbids made every sampled deny, other policies reading headers cannot change it.
    let forbids_certain = allowed.is_empty()
        && denied.iter().all(|(_, policies)| {
            !policies.is_empty() && policies.iter().all(|p| !reads_unsampled(authorizer, p))
        });
    let unsampled = !forbids_certain && reads.iter().any(|r| UNSAMPLED.contains(r));
    let same_policies = |list: &[(String, Vec<String>)]| {
        list.first()
            .map(|(_, first)| list.iter().all(|(_, p)| p == first).then(|| first.clone()))
            .unwrap_or(Some(Vec::new()))
    };
    match (allowed.is_empty(), denied.is_empty(), unsampled) {
        (true, _, false) => match same_policies(&denied) {
            Some(policies) => Access::Denied(policies),
            None => Access::Depends {
                reads,
                allowed,
                denied,
            },
        },
        (false, true, false) => match same_policies(&allowed) {
            Some(policies) => Access::Allowed(policies),
            None => Access::Depends {
                reads,
                allowed,
                denied,
            },
        },
        _ => Access::Depends {
            reads,
            allowed,
            denied,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;
    use crate::bundle::{PolicyBundle, PolicySource};

    const SHOP: &str = r#"
        @id("connect") permit (principal, action == Mesh::Action::"connect", resource);
        @id("web-reads-api") permit (
            principal == Mesh::Workload::"spiffe://t.test/ns/shop/sa/web",
            action in Mesh::Action::"read", resource == Mesh::Service::"cart"
        ) when { context.path like "/api/*" };
        @id("web-never-writes") forbid (
            principal == Mesh::Workload::"spiffe://t.test/ns/shop/sa/web",
            action in Mesh::Action::"write", resource
        );
        @id("debug-header") permit (principal, action == Mesh::Action::"DELETE", resource)
            when { context.headers.hasTag("x-debug") };
    "#;

    #[test]
    fn groups_paths_and_unsampled_reads_are_told_apart() {
        let bundle = PolicyBundle::from_sources(&[PolicySource {
            name: "shop.cedar".into(),
            text: SHOP.into(),
        }])
        .expect("valid");
        let paths = crate::samples::path_classes(&[&bundle]);
        let authorizer = Authorizer::new(Arc::new(bundle));
        let web: signet_spiffe::SpiffeId = "spiffe://t.test/ns/shop/sa/web".parse().expect("id");
        let caller = Caller {
            id: Some(&web),
            service: Some("web"),
            labels: &[],
            foreign: false,
        };
        let target = Target {
            name: "cart",
            namespace: "shop",
            port: 8080,
            labels: &[],
        };
        let rows = access_between(
            &authorizer,
            &caller,
            &target,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            &paths,
        );
        let of = |action: &str| {
            rows.iter()
                .find(|r| r.action == action)
                .map(|r| r.access.clone())
                .unwrap_or_else(|| panic!("no row for {action}: {rows:?}"))
        };
        assert_eq!(of("connect"), Access::Allowed(vec!["connect".into()]));
        // Every write is forbidden whatever the request: one row for the group.
        assert_eq!(of("write"), Access::Denied(vec!["web-never-writes".into()]));
        // Reads are allowed under /api/ only.
        match of("read") {
            Access::Depends {
                reads,
                allowed,
                denied,
            } => {
                assert_eq!(reads, ["path"]);
                assert_eq!(
                    allowed,
                    [("/api/".to_owned(), vec!["web-reads-api".to_owned()])]
                );
                assert_eq!(denied, [("/".to_owned(), vec![])]);
            }
            other => panic!("read: {other:?}"),
        }
    }
}
