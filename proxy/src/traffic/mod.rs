//! The outbound request stack, stage by stage:
//!
//! ```text
//! route match -> breaker (requests) -> timeout -> retry (budget, backoff, breaker: retries)
//!   -> balance (P2C peak-EWMA | least request | round robin; outliers passed over)
//!   -> endpoint (in-flight count, latency, outlier detection) -> pool (breaker: connections)
//! ```
//!
//! Each stage is a module testable alone; [`send`] strings them together for one request.
//! The settings come from the traffic document ([`signet_traffic`]), per upstream service,
//! and are swapped whole when a new version arrives; the state that must outlive a version
//! (endpoint latency and ejections) lives on the endpoints.

pub mod balance;
pub mod breaker;
pub mod budget;
mod clock;
pub mod inbound;
pub mod mirror;
pub mod outlier;
pub mod rand;
pub mod rate_limit;
pub mod replay;
pub mod retry;
pub mod route;
pub mod subsets;
pub mod weighted;

use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use signet_traffic::ServiceTraffic;

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::pool::{Body, SendError};
use crate::respond::ProxyError;
use balance::Endpoints;
use retry::Outcome;

/// One upstream service's traffic settings, compiled, with its budget and breaker.
#[derive(Debug)]
pub struct Policy {
    /// As configured (every default filled in).
    pub settings: ServiceTraffic,
    routes: Vec<route::Route>,
    fallback: route::Route,
    budget: budget::RetryBudget,
    /// The service's circuit-breaker limits.
    pub breaker: breaker::Breaker,
    /// Mirrored copies in flight.
    mirrors: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Policy {
    /// Compiles `settings`.
    pub fn new(settings: ServiceTraffic) -> Self {
        Self {
            routes: settings
                .routes
                .iter()
                .map(|r| route::Route::new(r, &settings))
                .collect(),
            fallback: route::Route::fallback(&settings),
            budget: budget::RetryBudget::new(&settings.retry_budget),
            breaker: breaker::Breaker::new(&settings.breaker),
            mirrors: std::sync::Arc::new(tokio::sync::Semaphore::new(mirror::MAX_IN_FLIGHT)),
            settings,
        }
    }

    /// The route a request takes.
    pub fn route<B>(&self, request: &Request<B>) -> &route::Route {
        route::select(
            &self.routes,
            &self.fallback,
            request.method(),
            request.uri().path(),
            request.headers(),
        )
    }
}

/// Where a request went, for its span and access-log line.
#[derive(Debug, Default)]
pub struct Trip {
    /// The route it took.
    pub route: Option<std::sync::Arc<str>>,
    /// The endpoint of its last attempt.
    pub endpoint: Option<std::sync::Arc<balance::Endpoint>>,
    /// Retries sent after the first attempt.
    pub retries: u32,
    /// How long its last attempt took to answer.
    pub upstream: Option<Duration>,
    /// The subset its route's split sent it to.
    pub subset: Option<std::sync::Arc<str>>,
}

/// Sends `request` to one of `endpoints` by `policy`: the route's timeout over all attempts,
/// retries as its policy and the budget allow. Errors are the proxy's own answers. `trip`
/// learns where it went.
pub async fn send(
    service: &str,
    policy: &Policy,
    (all, subsets): (&Endpoints, &subsets::Subsets),
    mut request: Request<Body>,
    metrics: &Metrics,
    trip: &mut Trip,
) -> Result<Response<Incoming>, ProxyError> {
    let grpc = crate::respond::is_grpc(request.headers());
    let route = policy.route(&request);
    trip.route = Some(std::sync::Arc::clone(&route.name));
    // A split route sends the request to one subset's endpoints.
    let endpoints = match route.pick_subset() {
        None => all,
        Some(subset) => {
            metrics
                .upstream_subset_requests
                .inc(&[service, &route.name, subset]);
            trip.subset = Some(std::sync::Arc::clone(subset));
            subsets.get(subset).ok_or(ProxyError::NoEndpoints)?
        }
    };
    if let Some((subset, share)) = &route.mirror
        && crate::traffic::rand::fraction() < *share
    {
        let endpoint = subsets
            .get(subset)
            .and_then(|e| e.pick(policy.settings.balancer, None, Instant::now()));
        request = mirror::copy(
            request,
            endpoint,
            &policy.mirrors,
            metrics,
            (service, &route.name),
        );
    }
    // Only a gRPC call carries a deadline or a status in its headers: other requests skip
    // the lookups.
    let asked = if grpc {
        grpc_timeout(request.headers())
    } else {
        None
    };
    let timeout = match asked {
        Some(asked) => asked.min(route.timeout),
        None => route.timeout,
    };
    let _in_flight = policy.breaker.request().map_err(|limit| {
        metrics.upstream_overflows.inc(&[service, limit.name()]);
        ProxyError::Overflow { limit }
    })?;
    policy.budget.deposit(Instant::now());
    let call = Call {
        service,
        policy,
        route,
        endpoints,
        metrics,
        grpc,
    };
    let result = tokio::time::timeout(timeout, call.attempts(request, trip))
        .await
        .unwrap_or(Err(ProxyError::Timeout));
    let outcome = match &result {
        Ok(r) => Outcome::Answered {
            status: r.status().as_u16(),
            grpc: grpc_status(r, grpc),
            injected: injected(r),
        }
        .name(),
        Err(e) => e.reason(),
    };
    metrics
        .upstream_requests
        .inc(&[service, &route.name, outcome]);
    result
}

/// One request's way through the retry loop.
struct Call<'a> {
    service: &'a str,
    policy: &'a Policy,
    route: &'a route::Route,
    endpoints: &'a Endpoints,
    metrics: &'a Metrics,
    grpc: bool,
}

impl Call<'_> {
    async fn attempts(
        &self,
        request: Request<Body>,
        trip: &mut Trip,
    ) -> Result<Response<Incoming>, ProxyError> {
        let retry = &self.route.retry;
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut body = if retry.max_retries > 0 {
            replay::prepare(body, declared, retry.max_body_bytes)
                .await
                .map_err(|e| ProxyError::BadRequest(format!("reading the body: {e}")))?
        } else {
            replay::Prepared::Once(body)
        };
        let mut backoff = Backoff::new(retry.backoff_base, retry.backoff_max);
        let method = parts.method.clone();
        // The request's head while this loop holds it: lent to an attempt that cannot be
        // followed by a resend of a consumed request, and given back by the pool if that
        // attempt never left.
        let mut head = Some(parts);
        let mut avoid = None;
        // Held through the retry's attempt, so `max_retries` of the breaker counts retries
        // in flight.
        let mut _retrying = None;
        let mut retries = 0;
        loop {
            let endpoint = self
                .endpoints
                .pick(self.policy.settings.balancer, avoid, Instant::now())
                .ok_or(ProxyError::NoEndpoints)?;
            let sending = body.attempt().ok_or(ProxyError::Unavailable)?;
            let Some(kept) = head.as_ref() else {
                return Err(ProxyError::Unavailable);
            };
            let copy = retries < retry.max_retries
                && body.replayable()
                && retry::needs_copy(retry, endpoint.pool.uses_h2(kept.version));
            let attempt = if copy {
                let mut attempt = Request::new(sending);
                *attempt.method_mut() = kept.method.clone();
                *attempt.uri_mut() = kept.uri.clone();
                *attempt.version_mut() = kept.version;
                *attempt.headers_mut() = kept.headers.clone();
                attempt
            } else {
                let Some(lent) = head.take() else {
                    return Err(ProxyError::Unavailable);
                };
                Request::from_parts(lent, sending)
            };
            let started = Instant::now();
            let in_flight = endpoint.start();
            let sent = endpoint
                .pool
                .send_or_return(attempt, Some(&self.policy.breaker.connections));
            let result = match retry.per_try_timeout {
                Some(limit) => tokio::time::timeout(limit, sent)
                    .await
                    .unwrap_or(Err((SendError::TimedOut, None))),
                None => sent.await,
            };
            drop(in_flight);
            let result = result.map_err(|(e, unsent)| {
                if let Some(unsent) = unsent
                    && head.is_none()
                {
                    // Its body was this attempt's replay: only the head is kept.
                    head = Some(unsent.into_parts().0);
                }
                e
            });
            let done = Instant::now();
            trip.retries = retries;
            trip.upstream = Some(done - started);
            trip.endpoint = Some(std::sync::Arc::clone(&endpoint));
            let (outcome, answer) = self.classify(result)?;
            if matches!(outcome, Outcome::Answered { .. }) {
                endpoint.observe(done - started, done);
            }
            let outlier = &self.policy.settings.outlier;
            let total = self.endpoints.list.len();
            if let Some(length) = endpoint
                .outlier
                .observe(outcome.health(), outlier, done, || {
                    outlier::may_eject(
                        self.endpoints.ejected(done),
                        total,
                        outlier.max_ejected_percent,
                    )
                })
            {
                let addr = endpoint.addr.to_string();
                self.metrics.upstream_ejections.inc(&[self.service, &addr]);
                tracing::warn!(service = self.service, endpoint = %addr, seconds = length.as_secs(), "endpoint ejected");
            }
            self.metrics
                .upstream_attempts
                .inc(&[self.service, &self.route.name, outcome.name()]);
            let wanted = retries < retry.max_retries
                && body.replayable()
                && head.is_some()
                && retry::retries(retry, outcome, &method, self.grpc);
            if !wanted {
                return answer;
            }
            if !self.policy.budget.withdraw(done) {
                self.metrics.upstream_retries.inc(&[self.service, "budget"]);
                return answer;
            }
            match self.policy.breaker.retry() {
                Ok(permit) => _retrying = Some(permit),
                Err(_) => {
                    self.metrics
                        .upstream_retries
                        .inc(&[self.service, "overflow"]);
                    return answer;
                }
            }
            self.metrics.upstream_retries.inc(&[self.service, "sent"]);
            drop(answer);
            tokio::time::sleep(backoff.pause()).await;
            avoid = Some(endpoint.addr);
            retries += 1;
        }
    }

    /// An attempt's outcome and what the caller would get if it were the last. A full
    /// connection queue ends the request at once: another attempt would meet it too.
    fn classify(
        &self,
        result: Result<Response<Incoming>, SendError>,
    ) -> Result<(Outcome, Result<Response<Incoming>, ProxyError>), ProxyError> {
        Ok(match result {
            Ok(response) => (
                Outcome::Answered {
                    status: response.status().as_u16(),
                    grpc: grpc_status(&response, self.grpc),
                    injected: injected(&response),
                },
                Ok(response),
            ),
            Err(SendError::Overflow(limit)) => {
                self.metrics
                    .upstream_overflows
                    .inc(&[self.service, limit.name()]);
                return Err(ProxyError::Overflow { limit });
            }
            Err(SendError::Handshake { source, addr }) => {
                let reason =
                    signet_spiffe::tls::peer_error_in_io(&source).map_or("tls", |p| p.reason());
                self.metrics.handshake_failures.inc(&["outbound", reason]);
                tracing::warn!(upstream = self.service, %addr, error = %source, "upstream handshake failed");
                (
                    Outcome::ConnectFailure,
                    Err(ProxyError::Handshake { reason }),
                )
            }
            Err(e @ (SendError::Connect { .. } | SendError::Closed { .. })) => {
                tracing::debug!(upstream = self.service, error = %e, "upstream unreachable");
                (Outcome::ConnectFailure, Err(ProxyError::Unavailable))
            }
            Err(SendError::TimedOut) => (Outcome::TimedOut, Err(ProxyError::Timeout)),
            Err(SendError::Http { source, addr }) => {
                tracing::debug!(upstream = self.service, %addr, error = %source, "upstream request failed");
                let outcome = if refused_stream(&source) {
                    Outcome::RefusedStream
                } else {
                    Outcome::Reset
                };
                (outcome, Err(ProxyError::Unavailable))
            }
        })
    }
}

/// Whether HTTP/2 refused the stream (the endpoint did not process the request).
fn refused_stream(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = s.source();
    }
    false
}

/// `grpc-status` when it came with the headers (a trailers-only answer).
/// Whether the endpoint's proxy made the answer up as an injected fault.
fn injected<B>(response: &Response<B>) -> bool {
    response
        .headers()
        .get(crate::respond::PROXY_ERROR)
        .is_some_and(|v| v.as_bytes() == b"injected")
}

fn grpc_status<B>(response: &Response<B>, grpc: bool) -> Option<u32> {
    if !grpc {
        return None;
    }
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The caller's deadline from `grpc-timeout` (gRPC over HTTP/2: up to 8 digits and a unit).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_writes_them() {
        let t = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&h)
        };
        assert_eq!(t("100m"), Some(Duration::from_millis(100)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5u"), Some(Duration::from_micros(5)));
        assert_eq!(t("m"), None);
        assert_eq!(t("123456789S"), None, "at most 8 digits");
        assert_eq!(t("10x"), None);
    }
}
