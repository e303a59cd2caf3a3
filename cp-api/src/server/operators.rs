//! Operator authorization: every REST call is an action (`read`, `policy.apply`, …) by an
//! operator, decided by Cedar policies in `<data-dir>/operators.cedar` and recorded.
//!
//! The file is written on first start with one policy, letting the admin identity (the one
//! the first-start bearer token acts as) do everything; operators edit it to add people and
//! narrower roles. It is read at start and must validate against the operator schema.

use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, Schema, ValidationMode,
    Validator,
};
use signet_spiffe::{SpiffeId, TrustDomain};

/// The operator schema's text.
pub const SCHEMA: &str = include_str!("../../schema/operators.cedarschema");

/// Every operator action.
pub const ACTIONS: &[&str] = &[
    "read",
    "policy.apply",
    "policy.rollback",
    "token.create",
    "deny.add",
];

/// The identity the first-start bearer token acts as.
pub fn admin_id(td: &TrustDomain) -> Result<SpiffeId, String> {
    td.workload("/signet/operator/admin")
        .map_err(|e| e.to_string())
}

/// The operator policies a new data directory starts with.
pub fn default_policies(td: &TrustDomain) -> Result<String, String> {
    Ok(format!(
        "// Who may operate this control plane (Cedar; schema: Signet::Operator, actions\n\
         // \"read\", \"policy.apply\", \"policy.rollback\", \"token.create\", \"deny.add\").\n\
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

    /// May `operator` do `action`?
    pub fn decide(&self, operator: &SpiffeId, action: &str) -> OperatorDecision {
        let deny = OperatorDecision {
            allowed: false,
            policies: Vec::new(),
        };
        let uid = |ty: &str, id: &str| EntityUid::from_str(&format!("{ty}::{}", quoted(id))).ok();
        let (Some(principal), Some(action), Some(resource)) = (
            uid("Signet::Operator", operator.as_str()),
            uid("Signet::Action", action),
            uid("Signet::ControlPlane", "cp"),
        ) else {
            return deny;
        };
        let Ok(request) = Request::new(
            principal,
            action,
            resource,
            Context::empty(),
            Some(&self.schema),
        ) else {
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
mod tests {
    use super::*;

    #[test]
    fn the_default_policies_let_the_admin_do_everything_and_no_one_else_anything() {
        let td = TrustDomain::new("t.test").unwrap();
        let policies =
            OperatorPolicies::parse("operators.cedar", &default_policies(&td).unwrap()).unwrap();
        let admin = admin_id(&td).unwrap();
        let workload: SpiffeId = "spiffe://t.test/ns/shop/sa/cart".parse().unwrap();
        for action in ACTIONS {
            let d = policies.decide(&admin, action);
            assert!(d.allowed, "{action}");
            assert_eq!(d.policies, ["admin-may-do-everything"]);
            assert!(!policies.decide(&workload, action).allowed, "{action}");
        }
    }

    #[test]
    fn a_read_only_role_reads_and_nothing_more() {
        let text = r#"
            @id("auditors-read")
            permit (principal == Signet::Operator::"spiffe://t.test/signet/operator/auditor",
                    action == Signet::Action::"read", resource);
        "#;
        let policies = OperatorPolicies::parse("operators.cedar", text).unwrap();
        let auditor: SpiffeId = "spiffe://t.test/signet/operator/auditor".parse().unwrap();
        assert!(policies.decide(&auditor, "read").allowed);
        assert!(!policies.decide(&auditor, "policy.apply").allowed);
    }

    #[test]
    fn bad_operator_policies_are_refused_with_the_file_name() {
        let no_id = "permit (principal, action, resource);";
        assert!(
            OperatorPolicies::parse("ops.cedar", no_id)
                .unwrap_err()
                .contains("@id")
        );
        let unknown = r#"@id("x") permit (principal, action == Signet::Action::"brew", resource);"#;
        assert!(
            OperatorPolicies::parse("ops.cedar", unknown)
                .unwrap_err()
                .starts_with("ops.cedar: ")
        );
    }
}
