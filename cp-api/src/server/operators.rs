//! Operator authorization: every REST call is an action (`read`, `policy.apply`, …) by an
//! operator, decided by Cedar policies in `<data-dir>/operators.cedar` and recorded.
//!
//! The file is written on first start with one policy, letting the admin identity (the one
//! the first-start bearer token acts as) do everything; operators edit it to add people and
//! narrower roles. It is read at start and must validate against the operator schema.

use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, RestrictedExpression,
    Schema, ValidationMode, Validator,
};
use signet_spiffe::{SpiffeId, TrustDomain};

/// The operator schema's text.
pub const SCHEMA: &str = include_str!("../../schema/operators.cedarschema");

/// Every operator action.
pub const ACTIONS: &[&str] = &[
    "read",
    "policy.apply",
    "policy.rollback",
    "policy.apply_widening",
    "policy.shadow",
    "authn.apply",
    "traffic.apply",
    "service.label",
    "workload.attest",
    "token.create",
    "operator.enroll",
    "deny.add",
    "ca.manage",
    "federation.manage",
];

/// The longest target text an operator-action record keeps: what a caller sends is recorded
/// only after it was validated, and never more than this of it.
pub const MAX_TARGET: usize = 512;

/// One operator action on what it touches, as the operator policies see it.
#[derive(Debug, Clone, Copy)]
pub enum Act<'a> {
    /// Reading a collection (`policies`, `audit`, ...).
    Read { collection: &'a str },
    /// Applying policy files.
    PolicyApply {
        files: usize,
        dry_run: bool,
        expected_version: Option<u64>,
    },
    /// Rolling back to `version`.
    PolicyRollback {
        version: u64,
        expected_version: Option<u64>,
    },
    /// Applying (or rolling back to) policies the gate found open access.
    PolicyWidening {
        widened: u64,
        narrowed: u64,
        rollback: bool,
    },
    /// Installing (`install`) or removing (`clear`) a shadow candidate bundle.
    PolicyShadow { operation: &'a str, files: usize },
    /// Applying end-user authentication (JWT providers and the services that accept them).
    AuthnApply { providers: usize, services: usize },
    /// Applying traffic settings (`apply`) or restoring an older version (`rollback`).
    TrafficApply {
        operation: &'a str,
        services: usize,
        changes: usize,
    },
    /// Setting a service's labels.
    ServiceLabel {
        service: &'a str,
        namespace: &'a str,
    },
    /// Setting (or clearing: no selectors) who may take a service's identity from its
    /// proxies' Workload API.
    WorkloadAttest {
        service: &'a str,
        namespace: &'a str,
        selectors: usize,
    },
    /// A join token for `id` (an operator identity makes this `operator.enroll`).
    TokenCreate {
        id: &'a SpiffeId,
        operator: bool,
        ttl_seconds: u64,
    },
    /// A deny-list entry for an identity.
    DenyId { id: &'a SpiffeId },
    /// A deny-list entry for a certificate serial (lowercase hex).
    DenySerial { serial: &'a str },
    /// Changing the CA (`setup`, `rotate`).
    CaManage { operation: &'a str },
    /// Federating with another trust domain (`add`) or no longer (`remove`).
    FederationManage {
        operation: &'a str,
        trust_domain: &'a str,
    },
}

impl Act<'_> {
    /// The Cedar action's name.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read",
            Self::PolicyApply { .. } => "policy.apply",
            Self::PolicyRollback { .. } => "policy.rollback",
            Self::PolicyWidening { .. } => "policy.apply_widening",
            Self::PolicyShadow { .. } => "policy.shadow",
            Self::AuthnApply { .. } => "authn.apply",
            Self::TrafficApply { .. } => "traffic.apply",
            Self::ServiceLabel { .. } => "service.label",
            Self::WorkloadAttest { .. } => "workload.attest",
            Self::TokenCreate {
                operator: false, ..
            } => "token.create",
            Self::TokenCreate { operator: true, .. } => "operator.enroll",
            Self::DenyId { .. } | Self::DenySerial { .. } => "deny.add",
            Self::CaManage { .. } => "ca.manage",
            Self::FederationManage { .. } => "federation.manage",
        }
    }

    /// What the action touches, as `(entity type, id)`.
    fn resource(&self) -> (&'static str, String) {
        match self {
            Self::Read { .. } | Self::CaManage { .. } | Self::FederationManage { .. } => {
                ("ControlPlane", "cp".to_owned())
            }
            Self::PolicyApply { .. }
            | Self::PolicyRollback { .. }
            | Self::PolicyWidening { .. }
            | Self::PolicyShadow { .. }
            | Self::AuthnApply { .. } => ("PolicySet", "mesh".to_owned()),
            Self::TrafficApply { .. } => ("TrafficSet", "mesh".to_owned()),
            Self::ServiceLabel { service, namespace }
            | Self::WorkloadAttest {
                service, namespace, ..
            } => ("Service", format!("{namespace}/{service}")),
            Self::TokenCreate { id, .. } | Self::DenyId { id } => {
                ("Identity", id.as_str().to_owned())
            }
            Self::DenySerial { serial } => ("Certificate", (*serial).to_owned()),
        }
    }

    fn context(&self) -> Vec<(String, RestrictedExpression)> {
        let text =
            |k: &str, v: &str| (k.to_owned(), RestrictedExpression::new_string(v.to_owned()));
        let long = |k: &str, v: u64| {
            (
                k.to_owned(),
                RestrictedExpression::new_long(i64::try_from(v).unwrap_or(i64::MAX)),
            )
        };
        let mut pairs = Vec::new();
        match *self {
            Self::Read { collection } => pairs.push(text("collection", collection)),
            Self::PolicyApply {
                files,
                dry_run,
                expected_version,
            } => {
                pairs.push(long("files", files as u64));
                pairs.push((
                    "dry_run".to_owned(),
                    RestrictedExpression::new_bool(dry_run),
                ));
                pairs.extend(expected_version.map(|v| long("expected_version", v)));
            }
            Self::PolicyRollback {
                version,
                expected_version,
            } => {
                pairs.push(long("version", version));
                pairs.extend(expected_version.map(|v| long("expected_version", v)));
            }
            Self::PolicyWidening {
                widened,
                narrowed,
                rollback,
            } => {
                pairs.push(long("widened", widened));
                pairs.push(long("narrowed", narrowed));
                pairs.push((
                    "rollback".to_owned(),
                    RestrictedExpression::new_bool(rollback),
                ));
            }
            Self::PolicyShadow { operation, files } => {
                pairs.push(text("operation", operation));
                pairs.push(long("files", files as u64));
            }
            Self::AuthnApply {
                providers,
                services,
            } => {
                pairs.push(long("providers", providers as u64));
                pairs.push(long("services", services as u64));
            }
            Self::TrafficApply {
                operation,
                services,
                changes,
            } => {
                pairs.push(text("operation", operation));
                pairs.push(long("services", services as u64));
                pairs.push(long("changes", changes as u64));
            }
            Self::ServiceLabel { service, namespace } => {
                pairs.push(text("service", service));
                pairs.push(text("namespace", namespace));
            }
            Self::WorkloadAttest {
                service,
                namespace,
                selectors,
            } => {
                pairs.push(text("service", service));
                pairs.push(text("namespace", namespace));
                pairs.push(long("selectors", selectors as u64));
            }
            Self::TokenCreate {
                id, ttl_seconds, ..
            } => {
                pairs.push(text("spiffe_id", id.as_str()));
                pairs.push(text("path", id.path()));
                pairs.push(long("ttl_seconds", ttl_seconds));
            }
            Self::DenyId { id } => {
                pairs.push(text("kind", "spiffe_id"));
                pairs.push(text("value", id.as_str()));
            }
            Self::DenySerial { serial } => {
                pairs.push(text("kind", "serial"));
                pairs.push(text("value", serial));
            }
            Self::CaManage { operation } => pairs.push(text("operation", operation)),
            Self::FederationManage {
                operation,
                trust_domain,
            } => {
                pairs.push(text("operation", operation));
                pairs.push(text("trust_domain", trust_domain));
            }
        }
        pairs
    }

    /// What an operator-action record names as the target (bounded by [`MAX_TARGET`]).
    pub fn target(&self) -> String {
        let mut text = match self {
            Self::Read { collection } => (*collection).to_owned(),
            Self::PolicyApply { .. } => "policies".to_owned(),
            Self::PolicyRollback { version, .. } => format!("policies/{version}"),
            Self::PolicyWidening {
                widened, narrowed, ..
            } => format!("policies (+{widened} widened / -{narrowed} narrowed)"),
            Self::PolicyShadow { operation, .. } => format!("policies/shadow ({operation})"),
            Self::AuthnApply { .. } => "authn".to_owned(),
            Self::TrafficApply { operation, .. } => format!("traffic ({operation})"),
            Self::ServiceLabel { service, namespace } => format!("services/{namespace}/{service}"),
            Self::WorkloadAttest {
                service, namespace, ..
            } => format!("workloads/{namespace}/{service}"),
            Self::TokenCreate { id, .. } | Self::DenyId { id } => id.as_str().to_owned(),
            Self::DenySerial { serial } => (*serial).to_owned(),
            Self::CaManage { .. } => "ca".to_owned(),
            Self::FederationManage {
                operation,
                trust_domain,
            } => format!("federation/{trust_domain} ({operation})"),
        };
        if text.len() > MAX_TARGET {
            let mut end = MAX_TARGET;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        text
    }
}

/// Whether `id` names an operator (or the control plane): `/signet/...` in `td`.
pub fn is_operator_identity(id: &SpiffeId, td: &TrustDomain) -> bool {
    id.is_member_of(td) && (id.path() == "/signet" || id.path().starts_with("/signet/"))
}

/// The identity the first-start bearer token acts as.
pub fn admin_id(td: &TrustDomain) -> Result<SpiffeId, String> {
    td.workload("/signet/operator/admin")
        .map_err(|e| e.to_string())
}

/// The operator policies a new data directory starts with.
pub fn default_policies(td: &TrustDomain) -> Result<String, String> {
    Ok(format!(
        "// Who may operate this control plane (Cedar; schema: cp-api/schema/operators.cedarschema,\n\
         // actions \"read\", \"policy.apply\", \"policy.rollback\", \"policy.apply_widening\",\n\
         // \"service.label\", \"workload.attest\", \"token.create\", \"operator.enroll\", \"deny.add\", \"ca.manage\",\n\
         // \"federation.manage\").\n\
         // Read at start. The bearer token in meshctl.env acts as the admin below.\n\
         @id(\"admin-may-do-everything\")\n\
         permit (\n    principal == Signet::Operator::\"{}\",\n    action,\n    resource\n);\n",
        admin_id(td)?
    ))
}

/// The decision on one operator action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorDecision {
    pub allowed: bool,
    /// Determining policy ids (`@id`), or empty for a default deny.
    pub policies: Vec<String>,
}

/// The loaded operator policies.
#[derive(Debug)]
pub struct OperatorPolicies {
    policies: PolicySet,
    schema: Schema,
    authorizer: Authorizer,
}

impl OperatorPolicies {
    /// Parses and validates `text` (from `name`, for messages).
    pub fn parse(name: &str, text: &str) -> Result<Self, String> {
        let (schema, _) =
            Schema::from_cedarschema_str(SCHEMA).map_err(|e| format!("operator schema: {e}"))?;
        let parsed =
            PolicySet::from_str(text).map_err(|e| format!("{name}: {}", first_line(&e)))?;
        // Name each policy by its @id so decisions cite what the operator wrote.
        let mut policies = PolicySet::new();
        for p in parsed.policies() {
            let id = p
                .annotation("id")
                .ok_or_else(|| format!("{name}: every policy needs an @id(\"…\") annotation"))?;
            policies
                .add(p.new_id(cedar_policy::PolicyId::new(id)))
                .map_err(|e| format!("{name}: {e}"))?;
        }
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if let Some(e) = result.validation_errors().next() {
            return Err(format!("{name}: {e}"));
        }
        // A warning here is a policy that can never apply (a resource type the action does
        // not touch, say): an operator who wrote it expects it to grant or forbid something,
        // so it is refused rather than silently ignored.
        if let Some(w) = result.validation_warnings().next() {
            return Err(format!("{name}: {w}"));
        }
        Ok(Self {
            policies,
            schema,
            authorizer: Authorizer::new(),
        })
    }

    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading `{}`: {e}", path.display()))?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// May `operator` do `act`? Anything that cannot be put to Cedar is a deny.
    pub fn decide(&self, operator: &SpiffeId, act: &Act<'_>) -> OperatorDecision {
        let deny = OperatorDecision {
            allowed: false,
            policies: Vec::new(),
        };
        let uid = |ty: &str, id: &str| EntityUid::from_str(&format!("{ty}::{}", quoted(id))).ok();
        let (resource_type, resource_id) = act.resource();
        let (Some(principal), Some(action), Some(resource)) = (
            uid("Signet::Operator", operator.as_str()),
            uid("Signet::Action", act.action()),
            uid(&format!("Signet::{resource_type}"), &resource_id),
        ) else {
            return deny;
        };
        let Ok(context) = Context::from_pairs(act.context()) else {
            return deny;
        };
        let Ok(request) = Request::new(principal, action, resource, context, Some(&self.schema))
        else {
            return deny;
        };
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &Entities::empty());
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        policies.sort();
        OperatorDecision {
            allowed: response.decision() == Decision::Allow,
            policies,
        }
    }
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

#[cfg(test)]
#[path = "operators_tests.rs"]
mod tests;
