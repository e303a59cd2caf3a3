//! The access matrix: for a known set of workloads and services, which (principal, action,
//! resource) decisions change between two bundles. This is how an operator sees whether a
//! policy change widens access before applying it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;
use signet_spiffe::SpiffeId;

use crate::authorizer::{Authorizer, Decision, HttpRequest, Target};
use crate::bundle::PolicyBundle;
use crate::directory::Directory;
use crate::scope::ActionTable;
use crate::slice::ServiceRef;

fn default_port() -> u16 {
    8080
}

fn default_source() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// A workload the mesh knows.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KnownWorkload {
    /// Its SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// The service it runs as, if any.
    #[serde(default)]
    pub service: Option<String>,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The address its connections come from (default 127.0.0.1).
    #[serde(default = "default_source")]
    pub source_ip: IpAddr,
}

/// A service the mesh knows.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KnownService {
    /// Mesh-unique name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Port (default 8080).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// An HTTP request to try against every service.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RequestSample {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string.
    #[serde(default)]
    pub query: String,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The workloads, services and request samples the matrix is computed over
/// (`deploy/examples/entities.yaml` is an example).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Known workloads (the principals).
    #[serde(default)]
    pub workloads: Vec<KnownWorkload>,
    /// Known services (the resources).
    #[serde(default)]
    pub services: Vec<KnownService>,
    /// HTTP requests to try; `connect` is always tried.
    #[serde(default)]
    pub requests: Vec<RequestSample>,
    /// The mesh's own trust domain: principals of any other are foreign (federated), as the
    /// proxies decide them. Absent: none is.
    #[serde(default)]
    pub trust_domain: Option<String>,
}

impl Inventory {
    /// Checks what serde cannot: known methods, no repeated workloads or services.
    pub fn check(&self) -> Result<(), String> {
        if let Some(td) = &self.trust_domain {
            signet_spiffe::TrustDomain::new(td).map_err(|e| format!("trust_domain `{td}`: {e}"))?;
        }
        let table = ActionTable::get();
        for sample in &self.requests {
            if sample.method == "connect" || table.request_action(&sample.method).is_none() {
                return Err(format!(
                    "request sample `{} {}`: `{}` is not an HTTP method of the schema",
                    sample.method, sample.path, sample.method
                ));
            }
        }
        let mut seen = BTreeSet::new();
        if let Some(w) = self.workloads.iter().find(|w| !seen.insert(&w.spiffe_id)) {
            return Err(format!("workload `{}` is listed twice", w.spiffe_id));
        }
        let mut seen = BTreeSet::new();
        if let Some(s) = self.services.iter().find(|s| !seen.insert(&s.name)) {
            return Err(format!("service `{}` is listed twice", s.name));
        }
        Ok(())
    }

    /// The workloads as a [`Directory`]: how every tool turns a principal into a caller.
    pub fn directory(&self) -> Directory {
        let mut directory = Directory::new();
        if let Some(td) = self
            .trust_domain
            .as_deref()
            .and_then(|td| signet_spiffe::TrustDomain::new(td).ok())
        {
            directory = directory.with_trust_domain(td);
        }
        for w in &self.workloads {
            directory.insert(
                w.spiffe_id.clone(),
                w.service.clone().unwrap_or_default(),
                w.labels.clone(),
            );
        }
        directory
    }

    /// The service named `name`, if listed.
    pub fn service(&self, name: &str) -> Option<&KnownService> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Adds a request sample for every HTTP method of the schema on every path class the
    /// policies of `bundles` name (see [`crate::path_classes`]), unless already sampled: the
    /// matrix then covers each (workload, action, service, path class).
    pub fn with_path_classes(mut self, bundles: &[&PolicyBundle]) -> Self {
        let table = ActionTable::get();
        for path in crate::samples::path_classes(bundles) {
            for action in table.request_actions() {
                let method = table.name(action);
                if method == "connect"
                    || self
                        .requests
                        .iter()
                        .any(|r| r.method == method && r.path == path && r.headers.is_empty())
                {
                    continue;
                }
                self.requests.push(RequestSample {
                    method: method.to_owned(),
                    path: path.clone(),
                    query: String::new(),
                    headers: BTreeMap::new(),
                });
            }
        }
        self
    }
}

/// Whether a change opens or closes access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// Denied before, allowed after.
    Widened,
    /// Allowed before, denied after.
    Narrowed,
}

impl ChangeKind {
    /// `widened` or `narrowed`.
    pub fn label(self) -> &'static str {
        match self {
            ChangeKind::Widened => "widened",
            ChangeKind::Narrowed => "narrowed",
        }
    }
}

/// One (principal, action, resource) whose decision changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessChange {
    /// Widened or narrowed.
    pub kind: ChangeKind,
    /// The calling workload.
    pub principal: SpiffeId,
    /// `connect` or an HTTP method.
    pub action: String,
    /// The request path, for HTTP actions.
    pub path: Option<String>,
    /// The destination.
    pub resource: ServiceRef,
    /// The decision under the old bundle.
    pub before: Decision,
    /// The decision under the new bundle.
    pub after: Decision,
}

impl AccessChange {
    /// `GET /path`, or the action alone.
    fn what(&self) -> String {
        match &self.path {
            Some(path) => format!("{} {path}", self.action),
            None => self.action.clone(),
        }
    }

    /// One line for people: `+ WIDENED   <principal> -> <service>: GET /admin  (was …, now …)`.
    pub fn row(&self) -> String {
        let mark = match self.kind {
            ChangeKind::Widened => "+ WIDENED ",
            ChangeKind::Narrowed => "- NARROWED",
        };
        format!(
            "{mark}  {} -> {}: {}  (was {}, now {})",
            self.principal,
            self.resource.name,
            self.what(),
            self.before,
            self.after
        )
    }

    /// The change as JSON (the shape `meshctl` and the control plane print).
    pub fn to_json(&self) -> serde_json::Value {
        let decision = |d: &Decision| {
            serde_json::json!({
                "decision": if d.is_allowed() { "allow" } else { "deny" },
                "policies": d.policies,
                "errors": d.errors,
            })
        };
        serde_json::json!({
            "kind": self.kind.label(),
            "principal": self.principal.as_str(),
            "action": self.action,
            "path": self.path,
            "resource": self.resource.name,
            "namespace": self.resource.namespace,
            "before": decision(&self.before),
            "after": decision(&self.after),
        })
    }
}

/// The access diff a policy change makes over `inventory`, with every path class the two
/// bundles name sampled for every HTTP method (see [`Inventory::with_path_classes`]).
pub fn gate_diff(old: &Authorizer, new: &Authorizer, inventory: Inventory) -> GateDiff {
    let inventory = inventory.with_path_classes(&[old.bundle(), new.bundle()]);
    let changes = access_diff(old, new, &inventory);
    let widened = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Widened)
        .count();
    GateDiff {
        checked: inventory.workloads.len()
            * inventory.services.len()
            * (1 + inventory.requests.len()),
        widened,
        narrowed: changes.len() - widened,
        changes,
    }
}

/// What a policy change does to the access matrix.
#[derive(Debug, Clone)]
pub struct GateDiff {
    /// Decisions compared.
    pub checked: usize,
    /// Decisions it opens.
    pub widened: usize,
    /// Decisions it closes.
    pub narrowed: usize,
    /// Each of them.
    pub changes: Vec<AccessChange>,
}

/// Every change of effect between `old` and `new` over `inventory`: `connect` for each
/// workload and service, then each request sample.
pub fn access_diff(old: &Authorizer, new: &Authorizer, inventory: &Inventory) -> Vec<AccessChange> {
    let mut changes = Vec::new();
    let directory = inventory.directory();
    for workload in &inventory.workloads {
        let caller = directory.caller(&workload.spiffe_id);
        for service in &inventory.services {
            let labels = pairs(&service.labels);
            let target = Target {
                name: &service.name,
                namespace: &service.namespace,
                port: service.port,
                labels: &labels,
            };
            let mut record = |action: &str, path: Option<&str>, before: Decision, after| {
                let kind = match (before.is_allowed(), Decision::is_allowed(&after)) {
                    (false, true) => ChangeKind::Widened,
                    (true, false) => ChangeKind::Narrowed,
                    _ => return,
                };
                changes.push(AccessChange {
                    kind,
                    principal: workload.spiffe_id.clone(),
                    action: action.to_owned(),
                    path: path.map(str::to_owned),
                    resource: ServiceRef::new(&service.name, &service.namespace),
                    before,
                    after,
                });
            };
            record(
                "connect",
                None,
                old.connect(&caller, &target, workload.source_ip),
                new.connect(&caller, &target, workload.source_ip),
            );
            for sample in &inventory.requests {
                let headers = pairs(&sample.headers);
                let request = HttpRequest {
                    method: &sample.method,
                    path: &sample.path,
                    host: &service.name,
                    query: &sample.query,
                    headers: (&headers).into(),
                    source_ip: workload.source_ip,
                    claims: None,
                };
                record(
                    &sample.method,
                    Some(&sample.path),
                    old.request(&caller, &target, &request),
                    new.request(&caller, &target, &request),
                );
            }
        }
    }
    changes
}

fn pairs(map: &BTreeMap<String, String>) -> Vec<(String, String)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
