//! The authorizer: plain domain inputs in, a [`Decision`] out. Never a `Result`: anything that
//! goes wrong (an unknown method, an entity that does not fit the schema, a policy that errors
//! while evaluating) is a deny that says why. Default deny; `forbid` wins.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use signet_spiffe::SpiffeId;

use crate::bundle::PolicyBundle;
use crate::schema::MeshSchema;

/// The outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Allowed by at least one permit and no forbid.
    Allow,
    /// Denied: by a forbid, by no permit (default deny), or by an error.
    Deny,
}

/// A decision and what made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub effect: Effect,
    /// The policies that determined the decision: the permits that allowed it, the forbids
    /// that denied it, or the policies whose evaluation failed. Empty for a default deny.
    pub policies: Vec<String>,
    /// What went wrong, if anything did (a non-empty list always means deny).
    pub errors: Vec<String>,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// The determining policy ids joined by commas, or `default-deny` when none decided.
    pub fn reason(&self) -> String {
        if self.policies.is_empty() {
            "default-deny".to_owned()
        } else {
            self.policies.join(",")
        }
    }

    fn error(message: impl Into<String>) -> Self {
        Self {
            effect: Effect::Deny,
            policies: Vec::new(),
            errors: vec![message.into()],
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let effect = match self.effect {
            Effect::Allow => "ALLOW",
            Effect::Deny => "DENY",
        };
        write!(f, "{effect} ({})", self.reason())
    }
}

/// The calling workload (the TLS peer).
#[derive(Debug, Clone, Default)]
pub struct Caller<'a> {
    /// Its verified SPIFFE ID.
    pub id: Option<&'a SpiffeId>,
    /// Its own service name, when the mesh knows it.
    pub service: Option<&'a str>,
    /// Its labels.
    pub labels: &'a [(String, String)],
}

/// The destination service.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Mesh-unique service name.
    pub name: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// The port the request arrived on.
    pub port: u16,
    /// Its labels.
    pub labels: &'a [(String, String)],
}

/// End-user claims from a verified JWT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// `sub`.
    pub sub: String,
    /// `iss`.
    pub iss: String,
    /// Group memberships.
    pub groups: Vec<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Any other string claims, readable as tags.
    pub other: Vec<(String, String)>,
}

/// An HTTP (or gRPC) request.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// Method, upper case (`GET`).
    pub method: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// Host (`:authority`).
    pub host: &'a str,
    /// Raw query string, without `?`.
    pub query: &'a str,
    /// Headers; names are lower-cased before evaluation. A repeated header's values are
    /// joined with `,`.
    pub headers: &'a [(String, String)],
    /// Source address of the connection.
    pub source_ip: IpAddr,
    /// End-user claims, when a JWT was verified.
    pub claims: Option<&'a Claims>,
}

/// Decides requests under one bundle.
#[derive(Debug, Clone)]
pub struct Authorizer {
    bundle: Arc<PolicyBundle>,
}

const NS: &str = "Mesh";

fn uid(kind: &str, id: &str) -> Result<EntityUid, String> {
    let ty = EntityTypeName::from_str(&format!("{NS}::{kind}")).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn tags(pairs: &[(String, String)]) -> Vec<(String, RestrictedExpression)> {
    pairs.iter().map(|(k, v)| (k.clone(), string(v))).collect()
}

impl Authorizer {
    /// An authorizer for `bundle`.
    pub fn new(bundle: Arc<PolicyBundle>) -> Self {
        Self { bundle }
    }

    /// The bundle decisions are made under.
    pub fn bundle(&self) -> &Arc<PolicyBundle> {
        &self.bundle
    }

    /// May `caller` open a connection to `target`?
    pub fn connect(&self, caller: &Caller<'_>, target: &Target<'_>, source_ip: IpAddr) -> Decision {
        self.decide(
            "connect",
            caller,
            target,
            |peer| {
                Ok(vec![
                    ("peer_spiffe_id".to_owned(), string(peer)),
                    (
                        "source_ip".to_owned(),
                        RestrictedExpression::new_ip(source_ip.to_string()),
                    ),
                ])
            },
            Vec::new(),
        )
    }

    /// May `caller` make `request` to `target`?
    pub fn request(
        &self,
        caller: &Caller<'_>,
        target: &Target<'_>,
        request: &HttpRequest<'_>,
    ) -> Decision {
        let mut extra = Vec::new();
        let headers_uid = match uid("Headers", "request") {
            Ok(u) => u,
            Err(e) => return Decision::error(e),
        };
        let mut joined: Vec<(String, String)> = Vec::new();
        for (k, v) in request.headers {
            let k = k.to_ascii_lowercase();
            match joined.iter_mut().find(|(name, _)| *name == k) {
                Some((_, existing)) => {
                    existing.push(',');
                    existing.push_str(v);
                }
                None => joined.push((k, v.clone())),
            }
        }
        match Entity::new_with_tags(headers_uid.clone(), [], [], tags(&joined)) {
            Ok(e) => extra.push(e),
            Err(e) => return Decision::error(e.to_string()),
        }
        let user_uid = match request.claims {
            Some(claims) => {
                let u = match uid("User", &format!("{}#{}", claims.iss, claims.sub)) {
                    Ok(u) => u,
                    Err(e) => return Decision::error(e),
                };
                let set = |v: &[String]| RestrictedExpression::new_set(v.iter().map(|s| string(s)));
                let attrs = [
                    ("sub".to_owned(), string(&claims.sub)),
                    ("iss".to_owned(), string(&claims.iss)),
                    ("groups".to_owned(), set(&claims.groups)),
                    ("roles".to_owned(), set(&claims.roles)),
                ];
                match Entity::new_with_tags(u.clone(), attrs, [], tags(&claims.other)) {
                    Ok(e) => extra.push(e),
                    Err(e) => return Decision::error(e.to_string()),
                }
                Some(u)
            }
            None => None,
        };
        let grpc = grpc_parts(request.path);
        self.decide(
            request.method,
            caller,
            target,
            |peer| {
                let mut ctx = vec![
                    ("peer_spiffe_id".to_owned(), string(peer)),
                    (
                        "source_ip".to_owned(),
                        RestrictedExpression::new_ip(request.source_ip.to_string()),
                    ),
                    ("path".to_owned(), string(request.path)),
                    ("host".to_owned(), string(request.host)),
                    ("query".to_owned(), string(request.query)),
                    (
                        "headers".to_owned(),
                        RestrictedExpression::new_entity_uid(headers_uid.clone()),
                    ),
                ];
                if let Some((service, method)) = grpc {
                    ctx.push(("grpc_service".to_owned(), string(service)));
                    ctx.push(("grpc_method".to_owned(), string(method)));
                }
                if let Some(u) = &user_uid {
                    ctx.push((
                        "user".to_owned(),
                        RestrictedExpression::new_entity_uid(u.clone()),
                    ));
                }
                Ok(ctx)
            },
            extra,
        )
    }

    fn decide(
        &self,
        action: &str,
        caller: &Caller<'_>,
        target: &Target<'_>,
        context: impl FnOnce(&str) -> Result<Vec<(String, RestrictedExpression)>, String>,
        extra: Vec<Entity>,
    ) -> Decision {
        let Some(peer) = caller.id else {
            return Decision::error("no verified peer identity");
        };
        match self.build(action, peer, caller, target, context, extra) {
            Ok((request, entities)) => self.evaluate(&request, &entities),
            Err(e) => Decision::error(e),
        }
    }

    fn build(
        &self,
        action: &str,
        peer: &SpiffeId,
        caller: &Caller<'_>,
        target: &Target<'_>,
        context: impl FnOnce(&str) -> Result<Vec<(String, RestrictedExpression)>, String>,
        mut entities: Vec<Entity>,
    ) -> Result<(Request, Entities), String> {
        let schema = MeshSchema::embedded().schema();
        let (ns, sa) = peer.namespace_and_account().unwrap_or(("", ""));
        let principal = uid("Workload", peer.as_str())?;
        let mut principal_parents = Vec::new();
        if !ns.is_empty() {
            principal_parents.push(uid("Namespace", ns)?);
        }
        entities.push(
            Entity::new_with_tags(
                principal.clone(),
                [
                    ("spiffe_id".to_owned(), string(peer.as_str())),
                    ("trust_domain".to_owned(), string(peer.trust_domain_str())),
                    ("namespace".to_owned(), string(ns)),
                    ("service_account".to_owned(), string(sa)),
                    ("service".to_owned(), string(caller.service.unwrap_or(""))),
                ],
                principal_parents.clone(),
                tags(caller.labels),
            )
            .map_err(|e| e.to_string())?,
        );
        let resource = uid("Service", target.name)?;
        let target_ns = uid("Namespace", target.namespace)?;
        entities.push(
            Entity::new_with_tags(
                resource.clone(),
                [
                    ("name".to_owned(), string(target.name)),
                    ("namespace".to_owned(), string(target.namespace)),
                    (
                        "port".to_owned(),
                        RestrictedExpression::new_long(i64::from(target.port)),
                    ),
                ],
                [target_ns.clone()],
                tags(target.labels),
            )
            .map_err(|e| e.to_string())?,
        );
        for parent in principal_parents.into_iter().chain([target_ns]) {
            if !entities.iter().any(|e| e.uid() == parent) {
                entities.push(Entity::with_uid(parent));
            }
        }
        let action_uid = EntityUid::from_type_name_and_id(
            EntityTypeName::from_str(&format!("{NS}::Action")).map_err(|e| e.to_string())?,
            EntityId::new(action),
        );
        if !schema.actions().any(|a| *a == action_uid) {
            return Err(format!("unknown action `{action}`"));
        }
        let context = Context::from_pairs(context(peer.as_str())?).map_err(|e| e.to_string())?;
        let request = Request::new(principal, action_uid, resource, context, Some(schema))
            .map_err(|e| e.to_string())?;
        let entities =
            Entities::from_entities(entities, Some(schema)).map_err(|e| e.to_string())?;
        Ok((request, entities))
    }

    fn evaluate(&self, request: &Request, entities: &Entities) -> Decision {
        let response = cedar_policy::Authorizer::new().is_authorized(
            request,
            self.bundle.policies(),
            entities,
        );
        let errors: Vec<_> = response.diagnostics().errors().collect();
        if !errors.is_empty() {
            let mut policies: Vec<String> = errors
                .iter()
                .map(|e| match e {
                    cedar_policy::AuthorizationError::PolicyEvaluationError(p) => {
                        p.policy_id().to_string()
                    }
                })
                .collect();
            policies.sort();
            policies.dedup();
            return Decision {
                effect: Effect::Deny,
                policies,
                errors: errors.iter().map(ToString::to_string).collect(),
            };
        }
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        policies.sort();
        Decision {
            effect: match response.decision() {
                cedar_policy::Decision::Allow => Effect::Allow,
                cedar_policy::Decision::Deny => Effect::Deny,
            },
            policies,
            errors: Vec::new(),
        }
    }
}

/// `(service, method)` of a gRPC path `/package.Service/Method`.
fn grpc_parts(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    (service.contains('.') && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

#[cfg(test)]
#[path = "authorizer_tests.rs"]
mod tests;
