//! Shadow mode in the data plane: when the control plane installed a candidate bundle, every
//! decision is made a second time by the candidate. Only the enforced decision acts; where
//! the two differ in effect, the disagreement is counted
//! (`signet_proxy_authz_shadow_disagreements_total{service,would}`) and recorded in the audit
//! trail as a shadow record carrying both decisions and both policy sets.

use signet_policy::{Authorizer, Decision};

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
    if decided.is_allowed() == enforced.is_allowed() {
        return;
    }
    let would = if decided.is_allowed() {
        "allow"
    } else {
        "deny"
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
