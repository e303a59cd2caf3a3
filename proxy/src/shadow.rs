//! Shadow mode in the data plane: when a candidate bundle is installed, every
//! decision is made a second time by the candidate. Only the enforced decision acts; where
//! the two differ in effect, the disagreement is counted
//! (`signet_proxy_authz_shadow_disagreements_total{service,would}`) and recorded in the audit
//! trail as a shadow record carrying both decisions and both policy sets.

use signet_policy::{Authorizer, Decision, Divergence};

use crate::audit::Subject;
use crate::state::Proxy;

/// Compares the `candidate` authorizer's decision with the `enforced` one (made by the
/// bundle hashed `enforced_hash`) and records a disagreement.
pub fn compare(
    proxy: &Proxy,
    subject: &Subject<'_>,
    enforced: &Decision,
    enforced_hash: &str,
    candidate: &Authorizer,
    decided: &Decision,
) {
    // Decided by other policies with the same effect is no disagreement: nothing would
    // change for the caller.
    let would = match Divergence::between(enforced, decided) {
        Divergence::Widened => "allow",
        Divergence::Narrowed => "deny",
        Divergence::None | Divergence::OtherPolicies => return,
    };
    let service = &proxy.config.service;
    proxy
        .metrics
        .shadow_disagreements
        .inc(&[&service.name, would]);
    tracing::debug!(
        peer = %subject.peer,
        action = subject.action,
        would,
        "shadow candidate disagrees"
    );
    if let Some(audit) = &proxy.audit {
        audit.shadow(
            subject,
            enforced,
            decided,
            (&service.name, &service.namespace),
            (enforced_hash, candidate.bundle().hash()),
        );
    }
}
