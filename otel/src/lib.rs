//! Distributed tracing for Signet's processes: W3C and B3 trace context on the wire
//! ([`context`]), head sampling and spans ([`trace`]), and an OTLP exporter over gRPC or
//! HTTP/protobuf with a bounded queue that never holds up the caller ([`export`]), on the
//! OTLP messages Signet sends ([`otlp`]). The proxy and the control plane both use it.

pub mod config;
pub mod context;
pub mod export;
pub mod ids;
pub mod otlp;
pub mod trace;
