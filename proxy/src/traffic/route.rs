//! Route match: the first of a service's routes whose path, method and headers all match a
//! request decides its timeout and retries; a request no route takes gets the service's.
//!
//! Paths are matched as the app sent them (before the receiving proxy canonicalizes them
//! for authorization): routing only picks settings, it never grants access.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use signet_traffic::doc::{self, PathMatch, RouteMatch, ValueMatch};

/// A route, ready for requests.
#[derive(Debug)]
pub struct Route {
    /// Its name (`default` for the service's own settings).
    pub name: Arc<str>,
    when: RouteMatch,
    /// The whole request's timeout, retries included.
    pub timeout: Duration,
    /// The retry policy.
    pub retry: doc::Retry,
    /// Subsets and their weights (none: every endpoint), and the weights' sum.
    split: Vec<(Arc<str>, u32)>,
    split_total: u32,
    /// The subset copies go to, and the share of requests copied (0 to 1).
    pub mirror: Option<(Arc<str>, f64)>,
}

impl Route {
    /// `route` as configured, with the service's settings where it has none.
    pub fn new(route: &doc::Route, service: &doc::ServiceTraffic) -> Self {
        Self {
            name: route.name.as_str().into(),
            when: route.when.clone(),
            timeout: route.timeout.unwrap_or(service.timeout),
            retry: route.retry.clone().unwrap_or_else(|| service.retry.clone()),
            split: route
                .split
                .iter()
                .filter(|s| s.weight > 0)
                .map(|s| (Arc::from(s.subset.as_str()), s.weight))
                .collect(),
            split_total: route.split.iter().map(|s| s.weight).sum(),
            mirror: route
                .mirror
                .as_ref()
                .map(|m| (Arc::from(m.subset.as_str()), m.percent / 100.0)),
        }
    }

    /// The subset a request on this route goes to, drawn by the split's weights; `None`
    /// when the route does not split (every endpoint).
    pub fn pick_subset(&self) -> Option<&Arc<str>> {
        if self.split_total == 0 {
            return None;
        }
        let mut at =
            u32::try_from(crate::traffic::rand::below(self.split_total as usize)).unwrap_or(0);
        for (name, weight) in &self.split {
            if at < *weight {
                return Some(name);
            }
            at -= weight;
        }
        self.split.last().map(|(name, _)| name)
    }

    /// The route for requests no configured route takes.
    pub fn fallback(service: &doc::ServiceTraffic) -> Self {
        Self {
            name: "default".into(),
            when: RouteMatch::default(),
            timeout: service.timeout,
            retry: service.retry.clone(),
            split: Vec::new(),
            split_total: 0,
            mirror: None,
        }
    }

    /// Whether this route takes a request with `method`, `path` and `headers`.
    pub fn matches(&self, method: &http::Method, path: &str, headers: &HeaderMap) -> bool {
        let path_ok = match &self.when.path {
            None => true,
            Some(PathMatch::Exact(p)) => path == p,
            Some(PathMatch::Prefix(p)) => has_prefix(path, p),
            Some(PathMatch::Regex(p)) => p.is_match(path),
        };
        path_ok
            && (self.when.methods.is_empty()
                || self.when.methods.iter().any(|m| m == method.as_str()))
            && self.when.headers.iter().all(|h| {
                let mut values = headers.get_all(h.name.as_str()).iter();
                match &h.value {
                    ValueMatch::Present(want) => values.next().is_some() == *want,
                    ValueMatch::Exact(v) => values.any(|x| x.as_bytes() == v.as_bytes()),
                    ValueMatch::Regex(p) => values.any(|x| x.to_str().is_ok_and(|x| p.is_match(x))),
                }
            })
    }
}

/// `/api` is a prefix of `/api` and `/api/x`, not of `/apix`.
fn has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// The first of `routes` that takes the request, else `fallback`.
pub fn select<'a>(
    routes: &'a [Route],
    fallback: &'a Route,
    method: &http::Method,
    path: &str,
    headers: &HeaderMap,
) -> &'a Route {
    routes
        .iter()
        .find(|r| r.matches(method, path, headers))
        .unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(yaml: &str) -> (Vec<Route>, Route) {
        let doc = signet_traffic::load(yaml, "t").unwrap();
        let s = &doc.services[0];
        (
            s.routes.iter().map(|r| Route::new(r, s)).collect(),
            Route::fallback(s),
        )
    }

    fn pick<'a>(
        r: &'a (Vec<Route>, Route),
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> &'a str {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        &select(&r.0, &r.1, &method.parse().unwrap(), path, &map).name
    }

    #[test]
    fn the_first_matching_route_wins() {
        let r = routes(
            "services:\n  - service: s\n    timeout: 9s\n    routes:\n\
             \x20     - name: canary\n        match: {headers: [{name: x-canary, exact: '1'}]}\n\
             \x20     - name: charge\n        match: {path: {exact: /pay}, methods: [POST]}\n        timeout: 2s\n\
             \x20     - name: api\n        match: {path: {prefix: /api}}\n\
             \x20     - name: users\n        match: {path: {regex: '/users/[0-9]+'}, headers: [{name: x-debug, present: false}]}\n",
        );
        assert_eq!(pick(&r, "GET", "/pay", &[("x-canary", "1")]), "canary");
        assert_eq!(pick(&r, "POST", "/pay", &[("x-canary", "2")]), "charge");
        assert_eq!(pick(&r, "GET", "/pay", &[]), "default");
        assert_eq!(pick(&r, "GET", "/api", &[]), "api");
        assert_eq!(pick(&r, "GET", "/api/v1", &[]), "api");
        assert_eq!(pick(&r, "GET", "/apix", &[]), "default");
        assert_eq!(pick(&r, "GET", "/users/7", &[]), "users");
        assert_eq!(pick(&r, "GET", "/users/7", &[("x-debug", "")]), "default");
        assert_eq!(pick(&r, "GET", "/users/7/x", &[]), "default");
        assert_eq!(r.0[1].timeout, Duration::from_secs(2));
        assert_eq!(
            r.0[2].timeout,
            Duration::from_secs(9),
            "the service's timeout"
        );
    }
}
