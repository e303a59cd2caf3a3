//! The control plane's spans, when `--otlp-endpoint` is set: one per REST call, one per gRPC
//! call, and one per SVID signing under the call that asked for it. A call that arrives with
//! a `traceparent` joins that trace; others start their own, sampled by the ratio.

use axum::http::HeaderMap;
use signet_otel::context::TraceContext;
use signet_otel::trace::{Attributes, Begun, Kind};

use crate::server::hub::Hub;

/// A span begun for a call, when tracing is on and the call is sampled.
pub fn begin(hub: &Hub, headers: &HeaderMap) -> Option<Begun> {
    let tracer = hub.tracer.get()?;
    let parent = TraceContext::extract(headers);
    Some(tracer.begin(parent.as_ref())).filter(|b| b.context.sampled)
}

/// A span under `parent` (a sampled call's context).
pub fn child(hub: &Hub, parent: &TraceContext) -> Option<Begun> {
    let tracer = hub.tracer.get()?;
    Some(tracer.begin(Some(parent))).filter(|b| b.context.sampled)
}

/// Sends a finished span.
pub fn end(
    hub: &Hub,
    begun: &Begun,
    (name, kind): (String, Kind),
    attributes: Attributes,
    error: Option<String>,
) {
    if let Some(tracer) = hub.tracer.get() {
        tracer.record(begun.finish(name, kind, attributes, error));
    }
}
