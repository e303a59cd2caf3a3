//! Mirroring: a copy of a share of a route's requests goes to a subset too, on a task of its
//! own; its answer is read and dropped, and the original never waits for it. Copies are
//! bounded in flight ([`MAX_IN_FLIGHT`] per upstream): past that a copy is skipped, never
//! queued. Only requests without a body are copied (a body is streamed to the upstream as
//! it arrives; keeping a second copy would mean holding it back). The copy's `Host` carries
//! a `-shadow` suffix, so the subset's app can tell a copy from a request.

use std::sync::Arc;

use http::{HeaderValue, Request};
use http_body::Body as _;
use http_body_util::BodyExt;

use super::balance::Endpoint;
use crate::metrics::Metrics;
use crate::pool::Body;

/// Copies in flight at once, per upstream service.
pub const MAX_IN_FLIGHT: usize = 64;

/// Sends a copy of `request` to `endpoint` (of the mirror's subset) if it can go without
/// holding anything up; counts what happened under `labels` (service, route).
pub fn copy(
    request: &Request<Body>,
    endpoint: Option<Arc<Endpoint>>,
    slots: &Arc<tokio::sync::Semaphore>,
    metrics: &Metrics,
    labels: (&str, &str),
) {
    let count = |result: &str| metrics.upstream_mirrors.inc(&[labels.0, labels.1, result]);
    if !request.body().is_end_stream() {
        return count("skipped-body");
    }
    let Some(endpoint) = endpoint else {
        return count("no-endpoints");
    };
    let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
        return count("skipped-busy");
    };
    let mut copy = Request::new(http_body_util::Empty::new().map_err(Into::into).boxed());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    if let Some(host) = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| HeaderValue::from_str(&format!("{h}-shadow")).ok())
    {
        copy.headers_mut().insert(http::header::HOST, host);
    }
    count("copied");
    tokio::spawn(async move {
        let _permit = permit;
        match endpoint.pool.send(copy, None).await {
            // Read to the end (so the connection can be reused), then drop.
            Ok(response) => {
                let _ = response.into_body().collect().await;
            }
            Err(e) => tracing::debug!(error = %e, "a mirrored copy failed"),
        }
    });
}
