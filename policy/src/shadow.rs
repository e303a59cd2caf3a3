//! Shadow mode: a candidate bundle evaluated beside the enforced one. The enforced decision
//! is what the caller acts on; the candidate's is only compared, so an operator sees what a
//! new bundle would change on live traffic before enforcing it.

use std::net::IpAddr;

use crate::authorizer::{Authorizer, Caller, Decision, Effect, HttpRequest, Target};

/// How the candidate's decision differs from the enforced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// Same effect, same determining policies.
    None,
    /// Same effect, decided by other policies.
    OtherPolicies,
    /// The candidate would allow what is denied now.
    Widened,
    /// The candidate would deny what is allowed now.
    Narrowed,
}

impl Divergence {
    /// How `candidate` differs from `enforced`.
    pub fn between(enforced: &Decision, candidate: &Decision) -> Self {
        match (enforced.effect, candidate.effect) {
            (Effect::Deny, Effect::Allow) => Divergence::Widened,
            (Effect::Allow, Effect::Deny) => Divergence::Narrowed,
            _ if enforced.policies != candidate.policies => Divergence::OtherPolicies,
            _ => Divergence::None,
        }
    }

    /// A label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Divergence::None => "same",
            Divergence::OtherPolicies => "other-policies",
            Divergence::Widened => "widened",
            Divergence::Narrowed => "narrowed",
        }
    }
}

/// Both decisions for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowDecision {
    /// The decision to act on.
    pub enforced: Decision,
    /// What the candidate bundle would have decided.
    pub candidate: Decision,
    /// How they differ.
    pub divergence: Divergence,
}

/// An enforced authorizer with a candidate evaluated beside it.
#[derive(Debug, Clone)]
pub struct Shadow {
    enforced: Authorizer,
    candidate: Authorizer,
}

impl Shadow {
    /// `candidate` shadowing `enforced`.
    pub fn new(enforced: Authorizer, candidate: Authorizer) -> Self {
        Self {
            enforced,
            candidate,
        }
    }

    /// The authorizer whose decisions are acted on.
    pub fn enforced(&self) -> &Authorizer {
        &self.enforced
    }

    /// The authorizer being tried.
    pub fn candidate(&self) -> &Authorizer {
        &self.candidate
    }

    /// [`Authorizer::connect`] under both bundles.
    pub fn connect(
        &self,
        caller: &Caller<'_>,
        target: &Target<'_>,
        source_ip: IpAddr,
    ) -> ShadowDecision {
        Self::pair(
            self.enforced.connect(caller, target, source_ip),
            self.candidate.connect(caller, target, source_ip),
        )
    }

    /// [`Authorizer::request`] under both bundles.
    pub fn request(
        &self,
        caller: &Caller<'_>,
        target: &Target<'_>,
        request: &HttpRequest<'_>,
    ) -> ShadowDecision {
        Self::pair(
            self.enforced.request(caller, target, request),
            self.candidate.request(caller, target, request),
        )
    }

    fn pair(enforced: Decision, candidate: Decision) -> ShadowDecision {
        let divergence = Divergence::between(&enforced, &candidate);
        ShadowDecision {
            enforced,
            candidate,
            divergence,
        }
    }
}
