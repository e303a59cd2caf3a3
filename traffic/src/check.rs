//! What serde cannot see: ranges, uniqueness, one-of fields and relations between fields.
//! Each problem names the entry it is about, so the loader can point at its line.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::doc::{
    Breaker, HeaderMatch, HealthCheck, Outlier, PathMatch, Probe, RateLimit, Retry, RetryBudget,
    Route, TrafficDoc,
};

/// Most services in one document, and routes per service.
pub const MAX_SERVICES: usize = 4096;
/// Most routes of one service: every request walks them in order.
pub const MAX_ROUTES: usize = 128;
/// The longest timeout (one day) and most retries accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);
const MAX_RETRIES: u32 = 10;
/// The largest body kept for retries.
pub const MAX_RETRY_BODY: u32 = 4 * 1024 * 1024;

/// One problem, with the entries (service, then route) it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The service's name, when the problem is inside one.
    pub service: Option<String>,
    /// The route's name, when the problem is inside one.
    pub route: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.service, &self.route) {
            (Some(s), Some(r)) => write!(f, "service {s}, route {r}: {}", self.message),
            (Some(s), None) => write!(f, "service {s}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// Every problem in `doc`; none means it can be applied.
pub fn problems(doc: &TrafficDoc) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut top = |message: String| {
        out.push(Problem {
            service: None,
            route: None,
            message,
        })
    };
    if doc.services.len() > MAX_SERVICES {
        top(format!("at most {MAX_SERVICES} services"));
    }
    let mut seen = BTreeSet::new();
    for s in &doc.services {
        let mut found = Vec::new();
        if !is_name(&s.service) {
            found.push(format!(
                "`{}` is not a service name (lower-case letters, digits, `-`, `.`, `_`; at most 253)",
                s.service
            ));
        }
        if !seen.insert(s.service.as_str()) {
            found.push("listed twice".to_owned());
        }
        timeout("timeout", s.timeout, &mut found);
        retry(&s.retry, None, &mut found);
        budget(&s.retry_budget, &mut found);
        breaker(&s.breaker, &mut found);
        outlier(&s.outlier, &mut found);
        if let Some(l) = &s.rate_limit {
            rate_limit(l, &mut found);
        }
        if let Some(h) = &s.health_check {
            health_check(h, &mut found);
        }
        if s.routes.len() > MAX_ROUTES {
            found.push(format!("at most {MAX_ROUTES} routes"));
        }
        subsets(&s.subsets, &mut found);
        out.extend(found.into_iter().map(|message| Problem {
            service: Some(s.service.clone()),
            route: None,
            message,
        }));
        let mut names = BTreeSet::new();
        for r in &s.routes {
            let mut found = Vec::new();
            if !names.insert(r.name.as_str()) {
                found.push("two routes have this name".to_owned());
            }
            route(r, &mut found);
            split(&r.split, &s.subsets, &mut found);
            if let Some(m) = &r.mirror {
                if !s.subsets.iter().any(|x| x.name == m.subset) {
                    found.push(format!(
                        "mirror: no subset `{}` (the service's subsets name them)",
                        m.subset
                    ));
                }
                if !(0.0..=100.0).contains(&m.percent) {
                    found.push("mirror.percent is between 0 and 100".to_owned());
                }
            }
            out.extend(found.into_iter().map(|message| Problem {
                service: Some(s.service.clone()),
                route: Some(r.name.clone()),
                message,
            }));
        }
    }
    out
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

fn timeout(what: &str, d: Duration, found: &mut Vec<String>) {
    if d.is_zero() || d > MAX_TIMEOUT {
        found.push(format!("{what} is more than 0 and at most 24h"));
    }
}

fn route(r: &Route, found: &mut Vec<String>) {
    if !is_name(&r.name) {
        found.push(format!(
            "`{}` is not a route name (lower-case letters, digits, `-`, `.`, `_`)",
            r.name
        ));
    }
    if let Some(t) = r.timeout {
        timeout("timeout", t, found);
    }
    if let Some(l) = &r.rate_limit {
        rate_limit(l, found);
    }
    if let Some(f) = &r.fault {
        fault(f, found);
    }
    match &r.when.path {
        Some(PathMatch::Exact(p) | PathMatch::Prefix(p)) if !p.starts_with('/') => {
            found.push(format!("match.path: `{p}` must start with `/`"));
        }
        _ => {}
    }
    for m in &r.when.methods {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
            found.push(format!(
                "match.methods: `{m}` is not an upper-case HTTP method"
            ));
        }
    }
    for h in &r.when.headers {
        header(h, found);
    }
    if let Some(retry_policy) = &r.retry {
        retry(retry_policy, r.timeout, found);
    }
}

fn header(h: &HeaderMatch, found: &mut Vec<String>) {
    if http_token(&h.name).is_none() {
        found.push(format!("match.headers: `{}` is not a header name", h.name));
    }
}

fn http_token(name: &str) -> Option<()> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    ok.then_some(())
}

fn retry(r: &Retry, route_timeout: Option<Duration>, found: &mut Vec<String>) {
    if r.max_retries > MAX_RETRIES {
        found.push(format!("retry.max_retries is at most {MAX_RETRIES}"));
    }
    for s in &r.statuses {
        if !(100..=599).contains(s) {
            found.push(format!("retry.statuses: {s} is not an HTTP status"));
        }
    }
    for m in &r.methods {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
            found.push(format!(
                "retry.methods: `{m}` is not an upper-case HTTP method"
            ));
        }
    }
    if let Some(t) = r.per_try_timeout {
        timeout("retry.per_try_timeout", t, found);
        if route_timeout.is_some_and(|whole| t > whole) {
            found.push("retry.per_try_timeout is longer than the route's timeout".to_owned());
        }
    }
    if r.backoff_base.is_zero() || r.backoff_max < r.backoff_base || r.backoff_max > MAX_TIMEOUT {
        found.push("retry backoff needs 0 < backoff_base <= backoff_max <= 24h".to_owned());
    }
    if r.max_body_bytes > MAX_RETRY_BODY {
        found.push(format!("retry.max_body_bytes is at most {MAX_RETRY_BODY}"));
    }
}

fn budget(b: &RetryBudget, found: &mut Vec<String>) {
    if !(0.0..=1.0).contains(&b.ratio) {
        found.push("retry_budget.ratio is between 0 and 1".to_owned());
    }
    if b.window < Duration::from_secs(1) || b.window > Duration::from_secs(60) {
        found.push("retry_budget.window is between 1s and 60s".to_owned());
    }
    if b.min_per_second > 100_000 {
        found.push("retry_budget.min_per_second is at most 100000".to_owned());
    }
}

/// The largest rate and burst accepted.
pub const MAX_RATE: f64 = 1_000_000.0;
pub const MAX_BURST: u32 = 1_000_000;

fn rate_limit(l: &RateLimit, found: &mut Vec<String>) {
    if l.overall.is_none() && l.per_caller.is_none() {
        found.push("rate_limit names neither `overall` nor `per_caller`".to_owned());
    }
    for (name, rate) in [("overall", &l.overall), ("per_caller", &l.per_caller)] {
        let Some(rate) = rate else { continue };
        if !(rate.requests_per_second > 0.0 && rate.requests_per_second <= MAX_RATE) {
            found.push(format!(
                "rate_limit.{name}.requests_per_second is more than 0 and at most 1000000"
            ));
        }
        if rate.burst == 0 || rate.burst > MAX_BURST {
            found.push(format!("rate_limit.{name}.burst is between 1 and 1000000"));
        }
    }
}

fn fault(f: &crate::doc::Fault, found: &mut Vec<String>) {
    if f.delay.is_none() && f.abort.is_none() {
        found.push("fault names neither `delay` nor `abort`".to_owned());
    }
    let percent = |what: &str, p: f64, found: &mut Vec<String>| {
        if !(0.0..=100.0).contains(&p) {
            found.push(format!("fault.{what}.percent is between 0 and 100"));
        }
    };
    if let Some(d) = &f.delay {
        percent("delay", d.percent, found);
        if d.fixed.is_zero() || d.fixed > MAX_TIMEOUT {
            found.push("fault.delay.fixed is more than 0 and at most 24h".to_owned());
        }
    }
    if let Some(a) = &f.abort {
        percent("abort", a.percent, found);
        if !(400..=599).contains(&a.http_status) {
            found.push("fault.abort.http_status is between 400 and 599".to_owned());
        }
        if !(1..=16).contains(&a.grpc_status) {
            found.push("fault.abort.grpc_status is between 1 and 16".to_owned());
        }
    }
    for c in &f.callers {
        // The shape of a SPIFFE ID; whether it names anyone is the registry's business.
        let ok = c.len() <= 2048
            && c.strip_prefix("spiffe://").is_some_and(|rest| {
                rest.split_once('/')
                    .is_some_and(|(td, path)| is_name(td) && !path.is_empty())
                    && !rest.contains(|ch: char| ch.is_whitespace() || "?#%".contains(ch))
            });
        if !ok {
            found.push(format!("fault.callers: `{c}` is not a SPIFFE ID"));
        }
    }
    for n in &f.namespaces {
        if !is_name(n) {
            found.push(format!("fault.namespaces: `{n}` is not a namespace name"));
        }
    }
}

/// Most subsets of a service, and entries of a split.
pub const MAX_SUBSETS: usize = 16;

fn subsets(list: &[crate::doc::Subset], found: &mut Vec<String>) {
    if list.len() > MAX_SUBSETS {
        found.push(format!("at most {MAX_SUBSETS} subsets"));
    }
    let mut names = BTreeSet::new();
    for s in list {
        if !is_name(&s.name) {
            found.push(format!("subsets: `{}` is not a subset name", s.name));
        }
        if !names.insert(s.name.as_str()) {
            found.push(format!("subsets: `{}` is listed twice", s.name));
        }
        if s.labels.is_empty() {
            found.push(format!(
                "subsets: `{}` selects by no label (every endpoint)",
                s.name
            ));
        }
        if let Err(e) = crate::labels::check(&s.labels) {
            found.push(format!("subsets: `{}`: {e}", s.name));
        }
    }
}

fn split(entries: &[crate::doc::SplitTo], subsets: &[crate::doc::Subset], found: &mut Vec<String>) {
    if entries.is_empty() {
        return;
    }
    if entries.len() > MAX_SUBSETS {
        found.push(format!("split: at most {MAX_SUBSETS} entries"));
    }
    let mut seen = BTreeSet::new();
    for e in entries {
        if !subsets.iter().any(|s| s.name == e.subset) {
            found.push(format!(
                "split: no subset `{}` (the service's subsets name them)",
                e.subset
            ));
        }
        if !seen.insert(e.subset.as_str()) {
            found.push(format!("split: `{}` is listed twice", e.subset));
        }
        if e.weight > 10_000 {
            found.push(format!("split: `{}` weight is at most 10000", e.subset));
        }
    }
    if entries.iter().all(|e| e.weight == 0) {
        found.push("split: every weight is 0 (no request could go anywhere)".to_owned());
    }
}

fn breaker(b: &Breaker, found: &mut Vec<String>) {
    for (name, v) in [
        ("max_connections", b.max_connections),
        ("max_pending", b.max_pending),
        ("max_requests", b.max_requests),
    ] {
        if v == 0 || v > 1_000_000 {
            found.push(format!("breaker.{name} is between 1 and 1000000"));
        }
    }
    if b.max_retries > 1_000_000 {
        found.push("breaker.max_retries is at most 1000000".to_owned());
    }
}

fn health_check(h: &HealthCheck, found: &mut Vec<String>) {
    if h.interval < Duration::from_millis(100) || h.interval > Duration::from_secs(3600) {
        found.push("health_check.interval is between 100ms and 1h".to_owned());
    }
    if h.timeout.is_zero() || h.timeout > h.interval {
        found.push("health_check.timeout is more than 0 and at most the interval".to_owned());
    }
    for (name, n) in [
        ("healthy_threshold", h.healthy_threshold),
        ("unhealthy_threshold", h.unhealthy_threshold),
    ] {
        if n == 0 || n > 100 {
            found.push(format!("health_check.{name} is between 1 and 100"));
        }
    }
    match &h.probe {
        Probe::Http { path }
            if !path.starts_with('/')
                || path.len() > 1024
                || path.contains(char::is_whitespace) =>
        {
            found.push(format!("health_check.http: `{path}` is not a request path"));
        }
        Probe::Grpc { service } if service.len() > 256 => {
            found.push("health_check.grpc: the service name is at most 256 characters".to_owned());
        }
        _ => {}
    }
}

fn outlier(o: &Outlier, found: &mut Vec<String>) {
    if o.base_ejection.is_zero() || o.max_ejection < o.base_ejection || o.max_ejection > MAX_TIMEOUT
    {
        found.push("outlier needs 0 < base_ejection <= max_ejection <= 24h".to_owned());
    }
    if o.max_ejected_percent > 100 {
        found.push("outlier.max_ejected_percent is at most 100".to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{RouteMatch, ServiceTraffic};

    fn one(service: ServiceTraffic) -> Vec<String> {
        problems(&TrafficDoc {
            services: vec![service],
        })
        .iter()
        .map(ToString::to_string)
        .collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert!(one(ServiceTraffic::defaults("payments")).is_empty());
    }

    #[test]
    fn every_problem_is_named_with_its_entry() {
        let mut s = ServiceTraffic::defaults("Payments");
        s.timeout = Duration::ZERO;
        s.retry_budget.ratio = 1.5;
        s.breaker.max_requests = 0;
        s.outlier.max_ejection = Duration::from_secs(1);
        let mut retry_policy = Retry {
            per_try_timeout: Some(Duration::from_secs(5)),
            statuses: vec![99],
            ..Retry::default()
        };
        retry_policy.max_retries = 11;
        s.routes = vec![
            Route {
                name: "charge".into(),
                when: RouteMatch {
                    path: Some(PathMatch::Prefix("api".into())),
                    methods: vec!["post".into()],
                    headers: vec![HeaderMatch {
                        name: "x canary".into(),
                        value: crate::doc::ValueMatch::Present(true),
                    }],
                },
                timeout: Some(Duration::from_secs(2)),
                retry: Some(retry_policy),
                rate_limit: Some(crate::doc::RateLimit {
                    overall: None,
                    per_caller: Some(crate::doc::Rate {
                        requests_per_second: 0.0,
                        burst: 0,
                    }),
                }),
                fault: Some(crate::doc::Fault {
                    delay: None,
                    abort: Some(crate::doc::FaultAbort {
                        http_status: 200,
                        grpc_status: 14,
                        percent: 150.0,
                    }),
                    callers: vec!["frontend".into()],
                    namespaces: Vec::new(),
                }),
                split: vec![crate::doc::SplitTo {
                    subset: "v3".into(),
                    weight: 0,
                }],
                mirror: Some(crate::doc::Mirror {
                    subset: "v3".into(),
                    percent: -1.0,
                }),
            },
            Route {
                name: "charge".into(),
                when: RouteMatch::default(),
                timeout: None,
                retry: None,
                rate_limit: None,
                fault: None,
                split: Vec::new(),
                mirror: None,
            },
        ];
        let found = one(s);
        for expected in [
            "service Payments: `Payments` is not a service name",
            "service Payments: timeout is more than 0",
            "service Payments: retry_budget.ratio",
            "service Payments: breaker.max_requests",
            "service Payments, route charge: rate_limit.per_caller.requests_per_second is more than 0",
            "service Payments, route charge: rate_limit.per_caller.burst is between 1",
            "service Payments, route charge: fault.abort.percent is between 0 and 100",
            "service Payments, route charge: fault.abort.http_status is between 400 and 599",
            "service Payments, route charge: fault.callers: `frontend` is not a SPIFFE ID",
            "service Payments, route charge: split: no subset `v3`",
            "service Payments, route charge: split: every weight is 0",
            "service Payments, route charge: mirror: no subset `v3`",
            "service Payments, route charge: mirror.percent is between 0 and 100",
            "service Payments: outlier needs",
            "service Payments, route charge: match.path: `api` must start with `/`",
            "service Payments, route charge: match.methods: `post`",
            "service Payments, route charge: match.headers: `x canary` is not a header name",
            "service Payments, route charge: retry.max_retries is at most 10",
            "service Payments, route charge: retry.statuses: 99",
            "service Payments, route charge: retry.per_try_timeout is longer",
            "service Payments, route charge: two routes have this name",
        ] {
            assert!(
                found.iter().any(|f| f.starts_with(expected)),
                "{expected} missing from {found:#?}"
            );
        }
    }

    #[test]
    fn a_service_listed_twice_is_refused() {
        let doc = TrafficDoc {
            services: vec![
                ServiceTraffic::defaults("cart"),
                ServiceTraffic::defaults("cart"),
            ],
        };
        assert_eq!(problems(&doc)[0].to_string(), "service cart: listed twice");
    }
}
