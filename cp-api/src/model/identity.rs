//! `GET /v1/identities` (`meshctl identity inspect`) and `POST /v1/svid`: one identity's
//! SVIDs, proxies, effective authorization and trust material.

use serde::{Deserialize, Serialize};

use super::{IssuingCertificate, JwtStatus, Proxy, WorkloadSelectors};

/// A service, by name and namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceName {
    pub name: String,
    pub namespace: String,
}

/// How an SVID was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueKind {
    /// For a join token.
    Issue,
    /// A renewal over mTLS.
    Renew,
}

/// An SVID the control plane issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCertificate {
    /// Lowercase hex.
    pub serial: String,
    pub spiffe_id: String,
    pub not_before: i64,
    pub not_after: i64,
    pub issued_at: i64,
    pub kind: IssueKind,
}

/// The SVID its proxies hold now, and the chain that issues them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentSvid {
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    /// Half its lifetime: when its proxy renews it.
    pub refresh_at: i64,
    pub issued_at: i64,
    pub kind: IssueKind,
    /// The issuing CA's chain, the issuer first.
    pub issuer_chain: Vec<IssuingCertificate>,
}

/// A proxy holding the identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    #[serde(flatten)]
    pub proxy: Proxy,
    /// When the SVID it holds was issued (`None`: not among the newest issued).
    pub last_renewed: Option<i64>,
}

/// A path class's decision, with the deciding policies (empty: the default deny).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathAccess {
    pub path: String,
    pub policies: Vec<String>,
}

/// How one action is decided for every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Access {
    /// Always allowed, by these policies.
    Allow { policies: Vec<String> },
    /// Always denied, by these policies (empty: the default deny).
    Deny { policies: Vec<String> },
    /// Allowed for some requests and denied for others.
    Depends {
        /// The parts of the request the deciding policies read.
        reads: Vec<String>,
        allowed: Vec<PathAccess>,
        denied: Vec<PathAccess>,
    },
}

/// One action (`connect`, a method group such as `read`, or a method) and its decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionAccess {
    pub action: String,
    #[serde(flatten)]
    pub access: Access,
}

/// A caller of the identity's service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundAccess {
    pub spiffe_id: String,
    /// The service it registered for.
    pub service: String,
    pub connect: bool,
    pub actions: Vec<ActionAccess>,
}

/// A service the identity may call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundAccess {
    pub service: String,
    pub namespace: String,
    pub connect: bool,
    pub actions: Vec<ActionAccess>,
}

/// Who may call the identity's service and what it may call, under the applied policies,
/// over every identity and service the registry knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveAuthorization {
    pub policy_version: u64,
    /// Registered as a caller (else it has no service and no labels).
    pub registered: bool,
    /// The path classes tried for each method.
    pub paths: Vec<String>,
    pub inbound: Vec<InboundAccess>,
    pub outbound: Vec<OutboundAccess>,
}

/// A federated trust domain's bundle, as this identity's proxies trust it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederatedBundle {
    pub trust_domain: String,
    pub roots: u64,
    pub jwt_keys: u64,
    pub sequence: u64,
}

/// `GET /v1/identities?id=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityReport {
    pub spiffe_id: String,
    /// The service its path names (`/ns/<namespace>/sa/<name>`).
    pub service: Option<ServiceName>,
    /// `None`: none issued.
    pub certificate: Option<CurrentSvid>,
    /// The newest issued, newest first.
    pub certificates: Vec<IssuedCertificate>,
    pub proxies: Vec<Holder>,
    pub authorization: EffectiveAuthorization,
    /// The JWT-SVIDs its proxies' Workload API mints.
    pub jwt: JwtStatus,
    pub federated_bundles: Vec<FederatedBundle>,
    /// Who its proxies' Workload API answers, as operators set it (`None`: the proxies' own
    /// configuration).
    pub workload_selectors: Option<WorkloadSelectors>,
}

/// `POST /v1/svid`: an X.509-SVID for a join token's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SvidIssued {
    pub spiffe_id: String,
    /// The SVID and its intermediates, PEM.
    pub chain: String,
    /// The trust bundle's roots, PEM.
    pub bundle: String,
    pub not_after: i64,
}
