//! The service's own traffic settings, applied by its proxies to the requests they receive:
//! which route a request takes (its label in metrics and logs) and the local rate limits of
//! that route and of the service. Swapped whole when the settings change; the limits' state
//! starts afresh then.

use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use signet_traffic::{ServiceTraffic, doc};

use super::rate_limit::{Limited, Limiter};
use super::route::Route;

/// Which block of settings a refusing limit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Route,
    Service,
}

/// A request refused by a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub level: Level,
    pub limited: Limited,
}

impl Refused {
    /// `route-per-caller`, `service-overall`, ...: the label and the audit's policy id.
    pub fn name(&self) -> &'static str {
        use super::rate_limit::Scope::{Overall, PerCaller};
        match (self.level, self.limited.scope) {
            (Level::Route, Overall) => "route-overall",
            (Level::Route, PerCaller) => "route-per-caller",
            (Level::Service, Overall) => "service-overall",
            (Level::Service, PerCaller) => "service-per-caller",
        }
    }
}

/// What a fault decided for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    /// Hold the request this long first.
    pub delay: Option<std::time::Duration>,
    /// Then answer it with this HTTP status (plain HTTP) or `grpc-status` (gRPC).
    pub abort: Option<(u16, u32)>,
}

/// A route's fault, ready for requests.
#[derive(Debug)]
struct Fault {
    settings: doc::Fault,
}

impl Fault {
    /// Whether requests from `caller` are subject to it.
    fn applies_to(&self, caller: &str) -> bool {
        let f = &self.settings;
        if f.callers.is_empty() && f.namespaces.is_empty() {
            return true;
        }
        f.callers.iter().any(|c| c == caller)
            || namespace_of(caller).is_some_and(|ns| f.namespaces.iter().any(|n| n == ns))
    }

    /// Rolls the dice for one request.
    fn roll(&self) -> Injected {
        let hit = |percent: f64| crate::traffic::rand::fraction() * 100.0 < percent;
        let f = &self.settings;
        Injected {
            delay: f.delay.as_ref().filter(|d| hit(d.percent)).map(|d| d.fixed),
            abort: f
                .abort
                .as_ref()
                .filter(|a| hit(a.percent))
                .map(|a| (a.http_status, a.grpc_status)),
        }
    }
}

/// The namespace a SPIFFE ID names (`.../ns/<namespace>/...`).
fn namespace_of(id: &str) -> Option<&str> {
    let path = id.strip_prefix("spiffe://")?.split_once('/')?.1;
    let mut parts = path.split('/');
    while let Some(part) = parts.next() {
        if part == "ns" {
            return parts.next();
        }
    }
    None
}

/// The own service's settings, compiled.
#[derive(Debug)]
pub struct InboundPolicy {
    /// As configured (the defaults when the document does not list the service).
    pub settings: ServiceTraffic,
    routes: Vec<(Route, Option<Limiter>, Option<Fault>)>,
    fallback: Route,
    service: Option<Limiter>,
}

impl InboundPolicy {
    pub fn new(settings: ServiceTraffic) -> Self {
        Self {
            routes: settings
                .routes
                .iter()
                .map(|r| {
                    (
                        Route::new(r, &settings),
                        r.rate_limit.as_ref().map(Limiter::new),
                        r.fault.clone().map(|settings| Fault { settings }),
                    )
                })
                .collect(),
            fallback: Route::fallback(&settings),
            service: settings.rate_limit.as_ref().map(Limiter::new),
            settings,
        }
    }

    /// Whether anything is limited at all (nothing to do per request otherwise).
    pub fn limits(&self) -> bool {
        self.service.is_some() || self.routes.iter().any(|(_, l, _)| l.is_some())
    }

    /// The route a request takes, whether `caller` may send it now, and the faults to
    /// inject into it if so.
    pub fn admit(
        &self,
        (method, path, headers): (&http::Method, &str, &HeaderMap),
        caller: &str,
        at: Instant,
    ) -> (Arc<str>, Result<Injected, Refused>) {
        let (route, limit, fault) = self
            .routes
            .iter()
            .find(|(r, _, _)| r.matches(method, path, headers))
            .map_or((&self.fallback, None, None), |(r, l, f)| {
                (r, l.as_ref(), f.as_ref())
            });
        let name = Arc::clone(&route.name);
        if let Some(limit) = limit
            && let Err(limited) = limit.take(caller, at)
        {
            let level = Level::Route;
            return (name, Err(Refused { level, limited }));
        }
        if let Some(service) = &self.service
            && let Err(limited) = service.take(caller, at)
        {
            if let Some(limit) = limit {
                limit.give_back(caller);
            }
            let level = Level::Service;
            return (name, Err(Refused { level, limited }));
        }
        let injected = fault
            .filter(|f| f.applies_to(caller))
            .map(Fault::roll)
            .unwrap_or_default();
        (name, Ok(injected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> InboundPolicy {
        let doc = signet_traffic::load::load(yaml, "t.yaml").unwrap();
        InboundPolicy::new(doc.service("cart"))
    }

    #[test]
    fn route_limits_come_first_and_a_service_refusal_refunds_them() {
        let p = policy(
            "services:\n  - service: cart\n    rate_limit: {overall: {requests_per_second: 1, burst: 2}}\n    routes:\n      - name: pay\n        match: {path: {prefix: /pay}}\n        rate_limit: {per_caller: {requests_per_second: 1, burst: 1}}\n",
        );
        assert!(p.limits());
        let h = HeaderMap::new();
        let get = http::Method::GET;
        let t = Instant::now();
        let (route, ok) = p.admit((&get, "/pay", &h), "a", t);
        assert_eq!((&*route, ok), ("pay", Ok(Injected::default())));
        let (_, refused) = p.admit((&get, "/pay", &h), "a", t);
        assert_eq!(refused.unwrap_err().name(), "route-per-caller");
        let (route, ok) = p.admit((&get, "/items", &h), "b", t);
        assert_eq!((&*route, ok), ("default", Ok(Injected::default())));
        // The service's burst is spent: b's /pay is refused overall, and its route token
        // comes back.
        let (_, refused) = p.admit((&get, "/pay", &h), "b", t);
        assert_eq!(refused.unwrap_err().name(), "service-overall");
        let later = t + std::time::Duration::from_secs(1);
        assert!(p.admit((&get, "/pay", &h), "b", later).1.is_ok());
    }

    #[test]
    fn without_limits_every_request_goes_on() {
        let p = InboundPolicy::new(ServiceTraffic::defaults("cart"));
        assert!(!p.limits());
        let (route, ok) = p.admit(
            (&http::Method::POST, "/x", &HeaderMap::new()),
            "a",
            Instant::now(),
        );
        assert_eq!((&*route, ok), ("default", Ok(Injected::default())));
    }

    #[test]
    fn faults_hit_their_share_of_the_matched_callers_only() {
        let p = policy(
            "services:\n  - service: cart\n    routes:\n      - name: pay\n        match: {path: {prefix: /pay}}\n        fault: {abort: {percent: 25, http_status: 500}, delay: {fixed: 1s, percent: 100}, namespaces: [test]}\n",
        );
        let h = HeaderMap::new();
        let get = http::Method::GET;
        let t = Instant::now();
        let tester = "spiffe://td/ns/test/sa/load";
        let mut aborts = 0;
        for _ in 0..4_000 {
            let injected = p.admit((&get, "/pay", &h), tester, t).1.unwrap();
            assert_eq!(injected.delay, Some(std::time::Duration::from_secs(1)));
            if let Some(abort) = injected.abort {
                assert_eq!(abort, (500, 14));
                aborts += 1;
            }
        }
        assert!((850..1150).contains(&aborts), "{aborts} of 4000");
        // Another namespace, or another route: nothing injected.
        let other = "spiffe://td/ns/shop/sa/frontend";
        assert_eq!(
            p.admit((&get, "/pay", &h), other, t).1,
            Ok(Injected::default())
        );
        assert_eq!(
            p.admit((&get, "/items", &h), tester, t).1,
            Ok(Injected::default())
        );
        assert_eq!(namespace_of("spiffe://td/ns/a/sa/b"), Some("a"));
        assert_eq!(namespace_of("spiffe://td/workload"), None);
    }
}
