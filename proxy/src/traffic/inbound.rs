//! The service's own traffic settings, applied by its proxies to the requests they receive:
//! which route a request takes (its label in metrics and logs) and the local rate limits of
//! that route and of the service. Swapped whole when the settings change; the limits' state
//! starts afresh then.

use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use signet_traffic::ServiceTraffic;

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

/// The own service's settings, compiled.
#[derive(Debug)]
pub struct InboundPolicy {
    /// As configured (the defaults when the document does not list the service).
    pub settings: ServiceTraffic,
    routes: Vec<(Route, Option<Limiter>)>,
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
        self.service.is_some() || self.routes.iter().any(|(_, l)| l.is_some())
    }

    /// The route a request takes, and whether `caller` may send it now.
    pub fn admit(
        &self,
        (method, path, headers): (&http::Method, &str, &HeaderMap),
        caller: &str,
        at: Instant,
    ) -> (Arc<str>, Result<(), Refused>) {
        let (route, limit) = self
            .routes
            .iter()
            .find(|(r, _)| r.matches(method, path, headers))
            .map_or((&self.fallback, None), |(r, l)| (r, l.as_ref()));
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
        (name, Ok(()))
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
        assert_eq!((&*route, ok), ("pay", Ok(())));
        let (_, refused) = p.admit((&get, "/pay", &h), "a", t);
        assert_eq!(refused.unwrap_err().name(), "route-per-caller");
        let (route, ok) = p.admit((&get, "/items", &h), "b", t);
        assert_eq!((&*route, ok), ("default", Ok(())));
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
        assert_eq!((&*route, ok), ("default", Ok(())));
    }
}
