//! Prometheus metrics, rendered as text on `/metrics`.
//!
//! Counters with labels live in small lists behind a mutex; the label sets are bounded (policy
//! ids of the enforced bundle, a fixed list of reasons and classes), and one lock per request
//! is cheap next to the TLS and Cedar work around it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

pub use signet_metrics::Family;

/// Everything the proxy counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections accepted, by direction.
    pub connections: Family,
    /// Connections open now, inbound.
    pub inbound_open: AtomicI64,
    /// Connections refused before any traffic, by direction and reason.
    pub connections_refused: Family,
    /// TLS handshakes that failed, by direction and reason.
    pub handshake_failures: Family,
    /// SPIFFE Workload API calls, by method and whether the caller was attested.
    pub workload_api_calls: Family,
    /// Requests answered, by direction, protocol they arrived in and response class.
    pub requests: Family,
    /// Authorization decisions, by action kind (connect, request), effect and policy.
    pub authz: Family,
    /// Reloads of watched files that failed and were ignored, by source.
    pub reload_failures: Family,
    /// Reloads applied, by source.
    pub reloads: Family,
    /// The enforced policy bundle's version.
    pub policy_version: AtomicU64,
    /// Requests whose end-user token was refused, by reason.
    pub authn_refusals: Family,
    /// Requests whose end-user token verified, by provider.
    pub authn_verified: Family,
    /// Decisions the shadow candidate made differently, by service and what it would do.
    pub shadow_disagreements: Family,
    /// The shadow candidate's id (0: none).
    pub shadow_version: AtomicU64,
    /// The traffic settings' version (0: defaults only).
    pub traffic_version: AtomicU64,
    /// Health probes of the local app, by result (`pass`, `fail`).
    pub health_probes: Family,
    /// The local app's health: 0 unknown (no check), 1 healthy, 2 unhealthy.
    pub app_health: std::sync::atomic::AtomicU8,
    /// Outbound requests answered, by upstream service, route and outcome.
    pub upstream_requests: Family,
    /// Attempts (first tries and retries), by upstream service, route and outcome.
    pub upstream_attempts: Family,
    /// Retries by upstream service and result: `sent`, or skipped for `budget` or `overflow`.
    pub upstream_retries: Family,
    /// Requests failed fast by a circuit-breaker limit, by upstream service and limit.
    pub upstream_overflows: Family,
    /// Endpoints ejected by outlier detection, by upstream service and endpoint.
    pub upstream_ejections: Family,
    /// Outbound requests a route's split sent to a subset, by service, route and subset.
    pub upstream_subset_requests: Family,
    /// Mirrored copies, by service, route and result (`copied`, `skipped-busy`,
    /// `no-endpoints`, and `abandoned` for a copied body that could not keep up); shared with
    /// the copies' tasks.
    pub upstream_mirrors: std::sync::Arc<Family>,
    /// Inbound requests refused by a local rate limit, by route and limit.
    pub rate_limited: Family,
    /// Faults injected into inbound requests, by route and kind (`delay`, `abort`).
    pub faults: Family,
    /// The control-plane source, when there is one.
    pub control_plane: ControlPlaneMetrics,
}

/// How the link to the control plane is doing.
#[derive(Debug, Default)]
pub struct ControlPlaneMetrics {
    /// Whether the proxy runs from a control plane at all.
    pub enabled: AtomicBool,
    /// Whether the config stream is up now.
    pub connected: AtomicBool,
    /// Unix seconds of the last message or successful call.
    pub last_contact: AtomicU64,
    /// The applied `ProxyConfig` version.
    pub config_version: AtomicU64,
    /// The applied `TrustUpdate` version (trust bundle and deny-list).
    pub trust_version: AtomicU64,
    /// Failed calls, by call.
    pub errors: Family,
}

impl ControlPlaneMetrics {
    /// Notes a successful exchange now.
    pub fn contact(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_contact.store(now, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Counts one authorization decision under each determining policy (or `default-deny`).
    pub fn decision(&self, kind: &str, decision: &signet_policy::Decision) {
        let effect = if decision.is_allowed() {
            "allow"
        } else {
            "deny"
        };
        if decision.policies.is_empty() {
            self.authz.inc(&[kind, effect, "default-deny"]);
        }
        for policy in &decision.policies {
            self.authz.inc(&[kind, effect, policy]);
        }
    }

    /// The text exposition; `svid_expiry_seconds` is computed by the caller.
    pub fn render(&self, svid_expiry_seconds: i64) -> String {
        let mut out = String::new();
        self.connections.render(
            &mut out,
            "signet_proxy_connections_total",
            "Connections accepted.",
            &["direction"],
        );
        let _ = writeln!(
            out,
            "# HELP signet_proxy_inbound_open_connections Inbound connections open now.\n\
             # TYPE signet_proxy_inbound_open_connections gauge\n\
             signet_proxy_inbound_open_connections {}",
            self.inbound_open.load(Ordering::Relaxed)
        );
        self.connections_refused.render(
            &mut out,
            "signet_proxy_connections_refused_total",
            "Connections refused after the handshake (authorization, limits).",
            &["direction", "reason"],
        );
        self.handshake_failures.render(
            &mut out,
            "signet_proxy_handshake_failures_total",
            "TLS handshakes that failed.",
            &["direction", "reason"],
        );
        self.workload_api_calls.render(
            &mut out,
            "signet_proxy_workload_api_calls_total",
            "SPIFFE Workload API calls, by method and attestation outcome.",
            &["method", "outcome"],
        );
        self.requests.render(
            &mut out,
            "signet_proxy_requests_total",
            "HTTP requests answered.",
            &["direction", "protocol", "class"],
        );
        self.upstream_subset_requests.render(
            &mut out,
            "signet_proxy_upstream_subset_requests_total",
            "Outbound requests a route's split sent to a subset, by upstream service, route and subset.",
            &["service", "route", "subset"],
        );
        self.upstream_mirrors.render(
            &mut out,
            "signet_proxy_upstream_mirrors_total",
            "Mirrored copies of outbound requests, by upstream service, route and result.",
            &["service", "route", "result"],
        );
        self.rate_limited.render(
            &mut out,
            "signet_proxy_rate_limited_total",
            "Inbound requests refused by a local rate limit, by route and limit.",
            &["route", "limit"],
        );
        self.faults.render(
            &mut out,
            "signet_proxy_faults_injected_total",
            "Faults injected into inbound requests by the traffic settings, by route and kind.",
            &["route", "kind"],
        );
        self.authz.render(
            &mut out,
            "signet_proxy_authz_decisions_total",
            "Authorization decisions by the policy that determined them.",
            &["action", "decision", "policy"],
        );
        self.authn_refusals.render(
            &mut out,
            "signet_proxy_authn_refusals_total",
            "Requests refused with 401 because of their end-user token, by reason.",
            &["reason"],
        );
        self.authn_verified.render(
            &mut out,
            "signet_proxy_authn_verified_total",
            "Requests whose end-user token verified.",
            &["service"],
        );
        self.shadow_disagreements.render(
            &mut out,
            "signet_proxy_authz_shadow_disagreements_total",
            "Decisions the shadow candidate bundle made differently from the enforced one, by what it would have done.",
            &["service", "would"],
        );
        self.upstream_requests.render(
            &mut out,
            "signet_proxy_upstream_requests_total",
            "Outbound requests answered, by upstream service, route and outcome.",
            &["service", "route", "outcome"],
        );
        self.upstream_attempts.render(
            &mut out,
            "signet_proxy_upstream_attempts_total",
            "Attempts sent to upstream endpoints (first tries and retries), by outcome.",
            &["service", "route", "outcome"],
        );
        self.upstream_retries.render(
            &mut out,
            "signet_proxy_upstream_retries_total",
            "Retries sent, or skipped because the retry budget or the breaker's retry limit was spent.",
            &["service", "result"],
        );
        self.upstream_overflows.render(
            &mut out,
            "signet_proxy_upstream_overflows_total",
            "Requests failed fast with 503 because a circuit-breaker limit was full.",
            &["service", "limit"],
        );
        self.upstream_ejections.render(
            &mut out,
            "signet_proxy_upstream_ejections_total",
            "Endpoints ejected by outlier detection.",
            &["service", "endpoint"],
        );
        self.reloads.render(
            &mut out,
            "signet_proxy_reloads_total",
            "Watched files reloaded and applied.",
            &["source"],
        );
        self.reload_failures.render(
            &mut out,
            "signet_proxy_reload_failures_total",
            "Watched files that changed but were refused (the previous version stays).",
            &["source"],
        );
        let _ = writeln!(
            out,
            "# HELP signet_proxy_svid_expiry_seconds Seconds until the SVID expires.\n\
             # TYPE signet_proxy_svid_expiry_seconds gauge\n\
             signet_proxy_svid_expiry_seconds {svid_expiry_seconds}\n\
             # HELP signet_proxy_policy_version Version of the enforced policy bundle.\n\
             # TYPE signet_proxy_policy_version gauge\n\
             signet_proxy_policy_version {}\n\
             # HELP signet_proxy_shadow_version Id of the shadow candidate bundle decided with beside the enforced one (0: none).\n\
             # TYPE signet_proxy_shadow_version gauge\n\
             signet_proxy_shadow_version {}\n\
             # HELP signet_proxy_traffic_version Version of the traffic settings in force (0: defaults only).\n\
             # TYPE signet_proxy_traffic_version gauge\n\
             signet_proxy_traffic_version {}\n\
             # HELP signet_proxy_app_health The local app's health by its health check: 0 unknown (no check, or none finished), 1 healthy, 2 unhealthy.\n\
             # TYPE signet_proxy_app_health gauge\n\
             signet_proxy_app_health {}",
            self.policy_version.load(Ordering::Relaxed),
            self.shadow_version.load(Ordering::Relaxed),
            self.traffic_version.load(Ordering::Relaxed),
            self.app_health.load(Ordering::Relaxed)
        );
        self.health_probes.render(
            &mut out,
            "signet_proxy_health_probes_total",
            "Health probes of the local app, by result.",
            &["result"],
        );
        let cp = &self.control_plane;
        if cp.enabled.load(Ordering::Relaxed) {
            let _ = writeln!(
                out,
                "# HELP signet_proxy_control_plane_connected Whether the config stream from the control plane is up.\n\
                 # TYPE signet_proxy_control_plane_connected gauge\n\
                 signet_proxy_control_plane_connected {}\n\
                 # HELP signet_proxy_control_plane_last_contact_seconds Unix time of the last exchange with the control plane.\n\
                 # TYPE signet_proxy_control_plane_last_contact_seconds gauge\n\
                 signet_proxy_control_plane_last_contact_seconds {}\n\
                 # HELP signet_proxy_config_version Version of the configuration applied from the control plane.\n\
                 # TYPE signet_proxy_config_version gauge\n\
                 signet_proxy_config_version {}\n\
                 # HELP signet_proxy_trust_version Version of the trust bundle and deny-list applied from the control plane.\n\
                 # TYPE signet_proxy_trust_version gauge\n\
                 signet_proxy_trust_version {}",
                u8::from(cp.connected.load(Ordering::Relaxed)),
                cp.last_contact.load(Ordering::Relaxed),
                cp.config_version.load(Ordering::Relaxed),
                cp.trust_version.load(Ordering::Relaxed),
            );
            cp.errors.render(
                &mut out,
                "signet_proxy_control_plane_errors_total",
                "Calls to the control plane that failed, by call.",
                &["call"],
            );
        }
        out
    }
}

/// `http/1.1`, `h2`… for a request's version.
pub fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_2 => "h2",
        http::Version::HTTP_11 => "http/1.1",
        http::Version::HTTP_10 => "http/1.0",
        _ => "other",
    }
}

/// `2xx`, `4xx`… for a status code.
pub fn class(status: http::StatusCode) -> &'static str {
    class_of(status.as_u16())
}

/// `2xx`, `4xx`… for a status number.
pub fn class_of(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_series() {
        let m = Metrics::default();
        m.requests.inc(&["inbound", "h2", "2xx"]);
        m.requests.inc(&["inbound", "h2", "2xx"]);
        m.authz.inc(&["request", "deny", "a\"b"]);
        let text = m.render(42);
        assert!(text.contains(
            "signet_proxy_requests_total{direction=\"inbound\",protocol=\"h2\",class=\"2xx\"} 2"
        ));
        assert!(text.contains("policy=\"a\\\"b\"} 1"));
        assert!(text.contains("signet_proxy_svid_expiry_seconds 42"));
        assert_eq!(m.requests.get(&["inbound", "h2", "2xx"]), 2);
    }
}
