//! Synthetic meshes for benchmarks and equivalence tests: bundles of any size spread over 100
//! services in 10 namespaces and 1,000 workloads, with the mix of rules a real mesh has
//! (connect rules, HTTP rules with `like` path patterns, header conditions, namespace-wide
//! rules, forbids and a few unscoped guardrails), and requests that exercise them.
//!
//! Deterministic: the same size and seed give the same mesh.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use signet_spiffe::SpiffeId;

use crate::{Caller, HttpRequest, PolicySource, Target};

/// Services in a synthetic mesh.
pub const SERVICES: usize = 100;
/// Workloads in a synthetic mesh.
pub const WORKLOADS: usize = 1000;
/// Namespaces the services and workloads are spread over.
pub const NAMESPACES: usize = 10;

const METHODS: [&str; 7] = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"];

/// A small deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// One request of a synthetic mesh.
#[derive(Debug, Clone)]
pub struct SyntheticRequest {
    /// Index into [`Synthetic::workloads`].
    pub peer: usize,
    /// Index into [`Synthetic::services`].
    pub service: usize,
    /// `connect` or an HTTP method.
    pub action: &'static str,
    /// Request path.
    pub path: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
}

/// A synthetic mesh: its policies, its workloads and services, and requests to decide.
#[derive(Debug, Clone)]
pub struct Synthetic {
    /// The policies, a thousand per source.
    pub sources: Vec<PolicySource>,
    /// The workloads' SPIFFE IDs.
    pub workloads: Vec<SpiffeId>,
    /// The services' names and namespaces.
    pub services: Vec<(String, String)>,
    /// Labels every service carries (`env`).
    pub labels: Vec<Vec<(String, String)>>,
    /// Requests, mostly aimed at what the policies name.
    pub requests: Vec<SyntheticRequest>,
}

fn workload_id(w: usize) -> String {
    format!("spiffe://bench.internal/ns/ns-{}/sa/wl-{w}", w % NAMESPACES)
}

/// A mesh with `policies` policies and `requests` requests.
pub fn mesh(policies: usize, requests: usize, seed: u64) -> Synthetic {
    let mut rng = Rng::new(seed);
    let mut sources = Vec::new();
    let mut text = String::new();
    let guardrails = policies.min(3);
    push_guardrails(&mut text, guardrails);
    // What the rules name, so requests can aim at them.
    let mut aimed: Vec<SyntheticRequest> = Vec::new();
    for n in guardrails..policies {
        // One file per thousand policies keeps every file under the size limit.
        if n % 1000 == 0 && !text.is_empty() {
            sources.push(source(sources.len(), std::mem::take(&mut text)));
        }
        let w = rng.below(WORKLOADS);
        let s = rng.below(SERVICES);
        let workload = workload_id(w);
        let service = format!("svc-{s}");
        let version = rng.below(4);
        let _ = writeln!(text, "@id(\"p{n}\")");
        match rng.below(100) {
            0..25 => {
                let _ = writeln!(
                    text,
                    "permit (principal == Mesh::Workload::\"{workload}\", \
                     action == Mesh::Action::\"connect\", resource == Mesh::Service::\"{service}\");"
                );
                aimed.push(request(w, s, "connect", String::new(), Vec::new()));
            }
            25..60 => {
                let _ = writeln!(
                    text,
                    "permit (principal == Mesh::Workload::\"{workload}\", \
                     action in Mesh::Action::\"read\", resource == Mesh::Service::\"{service}\")\n  \
                     when {{ context.path like \"/api/v{version}/*\" }};"
                );
                let path = format!("/api/v{version}/items/{}", rng.below(1000));
                aimed.push(request(w, s, "GET", path, Vec::new()));
            }
            60..80 => {
                let tenant = rng.below(50);
                let _ = writeln!(
                    text,
                    "permit (principal == Mesh::Workload::\"{workload}\", \
                     action in Mesh::Action::\"write\", resource == Mesh::Service::\"{service}\")\n  \
                     when {{ context.path like \"/api/v{version}/orders*\" && \
                     context.headers.hasTag(\"x-tenant\") && \
                     context.headers.getTag(\"x-tenant\") == \"t{tenant}\" }};"
                );
                let headers = vec![
                    ("x-tenant".to_owned(), format!("t{tenant}")),
                    ("content-type".to_owned(), "application/json".to_owned()),
                ];
                let path = format!("/api/v{version}/orders/{}", rng.below(1000));
                aimed.push(request(w, s, "POST", path, headers));
            }
            80..92 => {
                let _ = writeln!(
                    text,
                    "forbid (principal in Mesh::Namespace::\"ns-{}\", \
                     action in Mesh::Action::\"write\", resource == Mesh::Service::\"{service}\")\n  \
                     when {{ context.path like \"/admin*\" }};",
                    rng.below(NAMESPACES)
                );
                aimed.push(request(
                    w,
                    s,
                    "DELETE",
                    "/admin/cache".to_owned(),
                    Vec::new(),
                ));
            }
            _ => {
                let ns = s % NAMESPACES;
                let _ = writeln!(
                    text,
                    "permit (principal in Mesh::Namespace::\"ns-{ns}\", \
                     action == Mesh::Action::\"connect\", resource == Mesh::Service::\"{service}\");"
                );
                aimed.push(request(w, s, "connect", String::new(), Vec::new()));
            }
        }
    }
    let requests = (0..requests)
        .map(|_| {
            if !aimed.is_empty() && rng.below(10) < 8 {
                aimed[rng.below(aimed.len())].clone()
            } else {
                let method = METHODS[rng.below(METHODS.len())];
                request(
                    rng.below(WORKLOADS),
                    rng.below(SERVICES),
                    method,
                    format!("/api/v{}/items", rng.below(4)),
                    Vec::new(),
                )
            }
        })
        .collect();
    if !text.is_empty() {
        sources.push(source(sources.len(), text));
    }
    Synthetic {
        sources,
        workloads: (0..WORKLOADS)
            .filter_map(|w| workload_id(w).parse().ok())
            .collect(),
        services: (0..SERVICES)
            .map(|s| (format!("svc-{s}"), format!("ns-{}", s % NAMESPACES)))
            .collect(),
        labels: (0..SERVICES)
            .map(|s| {
                let env = if s % 3 == 0 { "prod" } else { "staging" };
                vec![("env".to_owned(), env.to_owned())]
            })
            .collect(),
        requests,
    }
}

fn source(n: usize, text: String) -> PolicySource {
    PolicySource {
        name: format!("synthetic-{n:02}.cedar"),
        text,
    }
}

fn request(
    peer: usize,
    service: usize,
    action: &'static str,
    path: String,
    headers: Vec<(String, String)>,
) -> SyntheticRequest {
    SyntheticRequest {
        peer,
        service,
        action,
        path,
        headers,
    }
}

/// Unscoped rules every slice keeps.
fn push_guardrails(text: &mut String, count: usize) {
    let rules = [
        "@id(\"no-debug-in-prod\")\nforbid (principal, action in [Mesh::Action::\"read\", \
         Mesh::Action::\"write\"], resource)\n  when { context.headers.hasTag(\"x-debug\") && \
         resource.hasTag(\"env\") && resource.getTag(\"env\") == \"prod\" };",
        "@id(\"same-trust-domain\")\nforbid (principal, action, resource)\n  unless { \
         principal.trust_domain == \"bench.internal\" };",
        "@id(\"health-checks\")\npermit (principal, action == Mesh::Action::\"GET\", resource)\n  \
         when { context.path == \"/healthz\" };",
    ];
    for rule in rules.iter().take(count) {
        text.push_str(rule);
        text.push('\n');
    }
}

/// Source address of synthetic requests.
pub const SOURCE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));

impl Synthetic {
    /// How many policies `authorizer` hands Cedar for request `r`.
    pub fn candidates(&self, authorizer: &crate::Authorizer, r: &SyntheticRequest) -> usize {
        let (caller, target) = self.parties(r);
        authorizer.candidates(&caller, &target, r.action)
    }

    /// The caller and target of request `r`.
    fn parties(&self, r: &SyntheticRequest) -> (Caller<'_>, Target<'_>) {
        let (name, namespace) = &self.services[r.service];
        let caller = Caller {
            id: self.workloads.get(r.peer),
            ..Caller::default()
        };
        let target = Target {
            name,
            namespace,
            port: 8080,
            labels: &self.labels[r.service],
        };
        (caller, target)
    }

    /// Decides request `r` with `authorizer`.
    pub fn decide(&self, authorizer: &crate::Authorizer, r: &SyntheticRequest) -> crate::Decision {
        let (caller, target) = self.parties(r);
        if r.action == "connect" {
            authorizer.connect(&caller, &target, SOURCE_IP)
        } else {
            let request = HttpRequest {
                method: r.action,
                path: &r.path,
                host: target.name,
                query: "",
                headers: (&r.headers).into(),
                source_ip: SOURCE_IP,
                claims: None,
            };
            authorizer.request(&caller, &target, &request)
        }
    }
}
