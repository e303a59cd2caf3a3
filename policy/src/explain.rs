//! `explain`: a decision with the text and location of every policy that made it, and for a
//! default deny, the permits that came closest.

use std::net::IpAddr;

use cedar_policy::Effect as CedarEffect;

use crate::PolicyOrigin;
use crate::authorizer::{Ask, Authorizer, Caller, Decision, HttpRequest, Target, scope_query};
use crate::scope::{ActionTable, Scope};

/// A policy named in an explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cited {
    /// Its `@id`.
    pub id: String,
    /// Where it is written, and its text.
    pub origin: Option<PolicyOrigin>,
}

/// Why a permit that names this principal and resource did not allow the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// Its scope fits, but its `when`/`unless` conditions did not hold.
    ConditionFalse,
    /// It is for other actions (listed).
    OtherAction(Vec<String>),
}

/// A permit that came close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearMiss {
    /// The policy.
    pub policy: Cited,
    /// Why it did not apply.
    pub miss: Miss,
}

/// A decision, explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The decision, exactly as [`Authorizer::connect`] or [`Authorizer::request`] makes it.
    pub decision: Decision,
    /// The policies that determined it, with their text and location.
    pub determining: Vec<Cited>,
    /// For a default deny: the permits for this principal and resource that did not apply,
    /// conditions that failed first. Empty otherwise.
    pub closest: Vec<NearMiss>,
}

impl Authorizer {
    /// [`Authorizer::connect`], explained.
    pub fn explain_connect(
        &self,
        caller: &Caller<'_>,
        target: &Target<'_>,
        source_ip: IpAddr,
    ) -> Explanation {
        self.explain(caller, target, Ask::Connect(source_ip))
    }

    /// [`Authorizer::request`], explained.
    pub fn explain_request(
        &self,
        caller: &Caller<'_>,
        target: &Target<'_>,
        request: &HttpRequest<'_>,
    ) -> Explanation {
        self.explain(caller, target, Ask::Http(request))
    }

    fn explain(&self, caller: &Caller<'_>, target: &Target<'_>, ask: Ask<'_>) -> Explanation {
        let decision = self.decide(caller, target, ask);
        let cite = |id: &str| Cited {
            id: id.to_owned(),
            origin: self.bundle().origin(id).cloned(),
        };
        let determining = decision.policies.iter().map(|id| cite(id)).collect();
        let mut closest = Vec::new();
        let table = ActionTable::get();
        let default_deny =
            !decision.is_allowed() && decision.policies.is_empty() && decision.errors.is_empty();
        if let (true, Some(peer), Some(action)) =
            (default_deny, caller.id, table.request_action(ask.action()))
        {
            let query = scope_query(peer, caller.foreign, action, target);
            for policy in self.bundle().policies().policies() {
                let scope = Scope::of(policy);
                if policy.effect() != CedarEffect::Permit
                    || !scope.admits_principal(&query)
                    || !scope.admits_resource(&query)
                {
                    continue;
                }
                let miss = if scope.admits_action(action) {
                    Miss::ConditionFalse
                } else {
                    Miss::OtherAction(
                        table
                            .request_actions()
                            .filter(|a| scope.admits_action(*a))
                            .map(|a| table.name(a).to_owned())
                            .collect(),
                    )
                };
                closest.push(NearMiss {
                    policy: cite(policy.id().as_ref()),
                    miss,
                });
            }
            closest.sort_by(|a, b| {
                let rank = |m: &NearMiss| matches!(m.miss, Miss::OtherAction(_));
                (rank(a), &a.policy.id).cmp(&(rank(b), &b.policy.id))
            });
        }
        Explanation {
            decision,
            determining,
            closest,
        }
    }
}
