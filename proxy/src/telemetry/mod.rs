//! What the proxy tells about the traffic it carries: spans (OTLP), access-log lines and
//! golden metrics, all from one record per request ([`Exchange`]) that is finished when the
//! response body ends (or is dropped), so durations and byte counts cover the whole
//! exchange.
//!
//! - [`context`], [`trace`], [`export`], [`otlp`] (from `signet-otel`): W3C and B3 trace
//!   headers, spans, head sampling, the OTLP exporter.
//! - [`access_log`]: the access-log writer.
//! - [`golden`]: bounded histograms per direction, peer, route and status class.

pub mod access_log;
pub mod config;
pub mod counted;
pub mod golden;

pub use signet_otel::{context, export, otlp, trace};

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;

use signet_spiffe::SpiffeId;

use crate::pool::{Body, BoxError};
use crate::state::Proxy;
use access_log::{AccessLog, Entry};
use context::TraceContext;
use trace::{Attributes, Begun, Kind, Tracer};

/// The telemetry outputs of one proxy.
#[derive(Debug)]
pub struct Telemetry {
    /// Spans, when `[tracing]` is configured.
    pub tracer: Option<Tracer>,
    /// Access-log lines, when `[access_log]` is configured.
    pub access_log: Option<AccessLog>,
    /// Always on.
    pub golden: golden::Golden,
    /// The route label of requests no named route took (shared: no allocation per request).
    default_route: Arc<str>,
    /// This proxy's SPIFFE ID, shared into the records that name it.
    pub own_id: Option<Arc<SpiffeId>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            tracer: None,
            access_log: None,
            golden: golden::Golden::default(),
            default_route: Arc::from("default"),
            own_id: None,
        }
    }
}

impl Telemetry {
    /// Starts the outputs `config` asks for (the span exporter in the current runtime).
    pub fn start(
        config: &crate::config::Config,
        own_id: &signet_spiffe::SpiffeId,
    ) -> Result<Self, String> {
        let tracer = match &config.tracing {
            Some(tracing) => {
                let resource = vec![
                    otlp::KeyValue::string("service.name", config.service.name.clone()),
                    otlp::KeyValue::string("service.namespace", config.service.namespace.clone()),
                    otlp::KeyValue::string("signet.spiffe_id", own_id.as_str()),
                    otlp::KeyValue::string("telemetry.sdk.name", "signet-proxy"),
                ];
                Some(export::start(tracing, resource)?)
            }
            None => None,
        };
        let access_log = match &config.access_log {
            Some(log) => {
                log.check()?;
                Some(AccessLog::start(log)?)
            }
            None => None,
        };
        Ok(Self {
            tracer,
            access_log,
            own_id: Some(Arc::new(own_id.clone())),
            ..Self::default()
        })
    }
}

impl Telemetry {
    /// The golden histograms and the span and access-log counters, as Prometheus text.
    pub fn render(&self, out: &mut String) {
        self.golden.render(out);
        let mut counter = |name: &str, help: &str, series: &[(&str, u64)]| {
            signet_metrics::family(out, (name, "counter", help), series);
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        if let Some(t) = &self.tracer {
            let s = &t.stats;
            counter(
                "signet_proxy_trace_spans_exported_total",
                "Spans the collector accepted.",
                &[("", load(&s.exported))],
            );
            counter(
                "signet_proxy_trace_spans_dropped_total",
                "Spans dropped: the queue was full, their export failed, or the collector rejected them.",
                &[
                    ("{reason=\"queue-full\"}", load(&s.dropped_queue)),
                    ("{reason=\"export-failed\"}", load(&s.dropped_export)),
                    ("{reason=\"rejected\"}", load(&s.rejected)),
                ],
            );
        }
        if let Some(log) = &self.access_log {
            let s = &log.stats;
            counter(
                "signet_proxy_access_log_lines_total",
                "Access-log lines written.",
                &[("", load(&s.written))],
            );
            counter(
                "signet_proxy_access_log_dropped_total",
                "Access-log lines dropped: the queue was full, or writing failed.",
                &[
                    ("{reason=\"queue-full\"}", load(&s.dropped)),
                    ("{reason=\"write-failed\"}", load(&s.failed)),
                ],
            );
        }
    }
}

/// One proxied TCP connection, as a span and a golden-metrics observation. Raw TCP carries
/// no trace context, so each sampled connection is the root of its own trace.
#[derive(Debug)]
pub struct TcpConnection {
    direction: Direction,
    opened: Instant,
    span: Option<Begun>,
    /// The span's attributes, filled while the connection is set up (sampled ones only).
    pub attributes: Attributes,
}

impl TcpConnection {
    pub fn begin(telemetry: &Telemetry, direction: Direction) -> Self {
        let span = telemetry
            .tracer
            .as_ref()
            .map(|t| t.begin(None))
            .filter(|b| b.context.sampled);
        Self {
            direction,
            opened: Instant::now(),
            span,
            attributes: Attributes::default(),
        }
    }

    /// Whether it makes a span (and so wants attributes).
    pub fn traced(&self) -> bool {
        self.span.is_some()
    }

    /// Counts the connection under `peer`, `bytes` received from and sent to the side that
    /// connected, and sends its span.
    pub fn end(self, telemetry: &Telemetry, peer: &str, bytes: (u64, u64), error: Option<&str>) {
        telemetry.golden.tcp.observe(
            &[self.direction.name(), peer],
            self.opened.elapsed(),
            bytes.0,
            bytes.1,
        );
        let (Some(tracer), Some(span)) = (&telemetry.tracer, self.span) else {
            return;
        };
        let mut a = self.attributes;
        a.str("network.transport", "tcp")
            .str("signet.direction", self.direction.name())
            .str("signet.peer.service", peer)
            .int("signet.tcp.received_bytes", to_i64(bytes.0))
            .int("signet.tcp.sent_bytes", to_i64(bytes.1));
        if let Some(e) = error {
            a.str("error.type", e);
        }
        let kind = match self.direction {
            Direction::Inbound => Kind::Server,
            Direction::Outbound => Kind::Client,
        };
        tracer.record(span.finish("tcp".to_owned(), kind, a, error.map(str::to_owned)));
    }
}

/// Which way a request goes through this proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a peer to the local app: a server span.
    Inbound,
    /// From the local app to an upstream: a client span.
    Outbound,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// What only a traced or logged request needs: copied from the request once it is known
/// to be one.
#[derive(Debug, Default)]
pub struct Details {
    pub start: Option<SystemTime>,
    pub method: String,
    pub authority: String,
    pub path: String,
    /// The calling workload's SPIFFE ID.
    pub source: Option<Arc<SpiffeId>>,
    /// The called workload's SPIFFE ID.
    pub destination: Option<Arc<SpiffeId>>,
    pub upstream: Option<SocketAddr>,
    /// The subset a route's split sent it to (outbound).
    pub subset: Option<Arc<str>>,
    /// The caller's address (inbound).
    pub peer_addr: Option<SocketAddr>,
    pub upstream_duration: Option<Duration>,
    pub retries: u32,
    pub decision: Option<&'static str>,
    pub policies: Vec<String>,
    /// The proxy's own error (`x-signet-error`), when it answered itself.
    pub error: Option<String>,
}

/// One request's record, from its arrival to the end of its response.
#[derive(Debug)]
pub struct Exchange {
    proxy: Arc<Proxy>,
    started: Instant,
    direction: Direction,
    protocol: &'static str,
    /// The peer's service (the metrics label): the caller's inbound, the upstream outbound.
    pub peer: Arc<str>,
    /// The route (the metrics label).
    pub route: Arc<str>,
    /// The trace position the request continues from: this proxy's span when tracing,
    /// else the caller's context as it came.
    pub context: Option<TraceContext>,
    span: Option<Begun>,
    log: bool,
    request_bytes: RequestBytes,
    status: u16,
    /// Filled only when [`Exchange::detailed`].
    pub details: Details,
}

#[derive(Debug)]
enum RequestBytes {
    Declared(u64),
    Counted(Arc<AtomicU64>),
}

impl Exchange {
    /// Begins the record of `request`, which `proxy` received going `direction`; its trace
    /// context (W3C or B3) is read, and with tracing on, this proxy's span begins under it.
    pub fn begin<B>(
        proxy: &Arc<Proxy>,
        direction: Direction,
        request: &Request<B>,
        peer: Arc<str>,
    ) -> Self {
        let telemetry = &proxy.telemetry;
        // The trace context is read when something records it: spans, access logs, or the
        // audit trail (which carries the trace id).
        let wanted =
            telemetry.tracer.is_some() || telemetry.access_log.is_some() || proxy.audit.is_some();
        let incoming = if wanted {
            TraceContext::extract(request.headers())
        } else {
            None
        };
        let (context, span) = match &telemetry.tracer {
            Some(tracer) => {
                let begun = tracer.begin(incoming.as_ref());
                let context = Some(begun.context.clone());
                (context, begun.context.sampled.then_some(begun))
            }
            None => (incoming, None),
        };
        let log = telemetry
            .access_log
            .as_ref()
            .is_some_and(AccessLog::sampled);
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut exchange = Self {
            proxy: Arc::clone(proxy),
            started: Instant::now(),
            direction,
            protocol: crate::metrics::protocol(request.version()),
            peer,
            route: Arc::clone(&telemetry.default_route),
            context,
            span,
            log,
            request_bytes: RequestBytes::Declared(declared),
            status: 0,
            details: Details::default(),
        };
        if exchange.detailed() {
            let d = &mut exchange.details;
            d.start = Some(SystemTime::now());
            d.method = request.method().as_str().to_owned();
            d.path = request.uri().path().to_owned();
            d.authority = request
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| request.uri().authority().map(|a| a.as_str()))
                .unwrap_or("")
                .to_owned();
        }
        exchange
    }

    /// Whether this request is traced or logged (and so worth its details).
    pub fn detailed(&self) -> bool {
        self.span.is_some() || self.log
    }

    /// Writes the trace context the next hop continues from (this proxy's span) into
    /// `headers`; without tracing, the headers are left as they came.
    pub fn propagate(&self, headers: &mut http::HeaderMap) {
        if self.proxy.telemetry.tracer.is_some()
            && let Some(context) = &self.context
        {
            context.inject(headers);
        }
    }

    /// The trace and span ids the audit record of this request carries: this proxy's span
    /// when tracing, else the trace id that came with the request.
    pub fn audit_ids(&self) -> (Option<String>, Option<String>) {
        match &self.context {
            Some(c) if self.proxy.telemetry.tracer.is_some() => {
                (Some(c.trace_hex()), Some(c.span_hex()))
            }
            Some(c) => (Some(c.trace_hex()), None),
            None => (None, None),
        }
    }

    /// Counts the request body's bytes as they pass, when its length was not declared.
    pub fn count_request_body(&mut self, body: Body) -> Body {
        if body.is_end_stream() || matches!(self.request_bytes, RequestBytes::Declared(n) if n > 0)
        {
            return body;
        }
        let counter = Arc::new(AtomicU64::new(0));
        self.request_bytes = RequestBytes::Counted(Arc::clone(&counter));
        body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            frame
        })
        .boxed()
    }

    /// Notes the authorization decision (inbound).
    pub fn decided(&mut self, decision: &signet_policy::Decision) {
        if self.detailed() {
            self.details.decision = Some(if decision.is_allowed() {
                "allow"
            } else {
                "deny"
            });
            self.details.policies.clone_from(&decision.policies);
        }
    }

    /// The response, its body observed: the record is finished when that body ends.
    pub fn respond(mut self, response: Response<Body>) -> Response<Body> {
        self.status = response.status().as_u16();
        if self.detailed() && self.details.error.is_none() {
            self.details.error = response
                .headers()
                .get(crate::respond::PROXY_ERROR)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
        let (parts, body) = response.into_parts();
        let observed = Observed {
            inner: body,
            bytes: 0,
            exchange: Some(self),
        };
        Response::from_parts(parts, observed.boxed())
    }

    fn finish(mut self, response_bytes: u64, failed: Option<String>) {
        let took = self.started.elapsed();
        let proxy = Arc::clone(&self.proxy);
        let telemetry = &proxy.telemetry;
        let request_bytes = match &self.request_bytes {
            RequestBytes::Declared(n) => *n,
            RequestBytes::Counted(c) => c.load(Ordering::Relaxed),
        };
        let class = crate::metrics::class_of(self.status);
        telemetry.golden.http.observe(
            &[self.direction.name(), &self.peer, &self.route, class],
            took,
            request_bytes,
            response_bytes,
        );
        if !self.detailed() {
            return;
        }
        let error = failed.or_else(|| self.details.error.take());
        if let (Some(tracer), Some(span)) = (&telemetry.tracer, &self.span) {
            tracer.record(self.span(span, request_bytes, response_bytes, error.clone()));
        }
        if self.log
            && let Some(log) = &telemetry.access_log
        {
            log.log(self.entry(took, (request_bytes, response_bytes), error, &proxy));
        }
    }

    fn span(
        &self,
        span: &Begun,
        request_bytes: u64,
        response_bytes: u64,
        error: Option<String>,
    ) -> otlp::Span {
        let d = &self.details;
        let mut a = Attributes::default();
        a.str("http.request.method", d.method.clone())
            .str("url.path", d.path.clone())
            .int("http.response.status_code", i64::from(self.status))
            .str("network.protocol.name", "http")
            .str("signet.direction", self.direction.name())
            .str("signet.peer.service", &*self.peer)
            .str("signet.route", &*self.route)
            .int("http.request.body.size", to_i64(request_bytes))
            .int("http.response.body.size", to_i64(response_bytes));
        let kind = match self.direction {
            Direction::Inbound => {
                a.str("server.address", d.authority.clone());
                if let Some(source) = &d.source {
                    a.str("signet.peer.spiffe_id", source.as_str());
                }
                if let Some(decision) = d.decision {
                    a.str("signet.authz.decision", decision)
                        .strings("signet.authz.policies", &d.policies);
                }
                Kind::Server
            }
            Direction::Outbound => {
                a.str("server.address", &*self.peer)
                    .int("signet.retry.attempt", i64::from(d.retries));
                if let Some(destination) = &d.destination {
                    a.str("signet.peer.spiffe_id", destination.as_str());
                }
                if let Some(subset) = &d.subset {
                    a.str("signet.upstream.subset", &**subset);
                }
                if let Some(upstream) = d.upstream {
                    a.str("signet.upstream.endpoint", upstream.to_string())
                        .str("network.peer.address", upstream.ip().to_string())
                        .int("network.peer.port", i64::from(upstream.port()));
                }
                Kind::Client
            }
        };
        if self.direction == Direction::Inbound
            && let Some(addr) = self.peer_addr()
        {
            a.str("network.peer.address", addr.ip().to_string())
                .int("network.peer.port", i64::from(addr.port()));
        }
        if let Some(e) = &error {
            a.str("error.type", e.clone());
        }
        // Server spans fail on 5xx only; client spans on any 4xx or 5xx (OTel's HTTP rules).
        let failed = error.or_else(|| {
            let bad = match self.direction {
                Direction::Inbound => self.status >= 500,
                Direction::Outbound => self.status >= 400,
            };
            bad.then(|| self.status.to_string())
        });
        let name = if d.method.is_empty() {
            self.direction.name().to_owned()
        } else {
            d.method.clone()
        };
        span.finish(name, kind, a, failed)
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.details.peer_addr
    }

    /// The access-log entry, taking the details over (the record ends here).
    fn entry(
        self,
        took: Duration,
        (request_bytes, response_bytes): (u64, u64),
        error: Option<String>,
        proxy: &Proxy,
    ) -> Entry {
        let tracing = proxy.telemetry.tracer.is_some();
        let d = self.details;
        let ids = self
            .context
            .map(|c| (c.trace_id, tracing.then_some(c.span_id)));
        Entry {
            start: d.start,
            duration: took,
            upstream_duration: d.upstream_duration,
            direction: self.direction.name(),
            protocol: self.protocol,
            method: d.method,
            authority: d.authority,
            path: d.path,
            status: self.status,
            request_bytes,
            response_bytes,
            source: d.source,
            destination: d.destination,
            peer_service: self.peer,
            route: self.route,
            upstream: match self.direction {
                Direction::Outbound => d.upstream,
                Direction::Inbound => None,
            },
            retries: d.retries,
            subset: d.subset,
            decision: d.decision,
            policies: d.policies,
            error,
            trace: ids,
        }
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A response body that finishes its request's record when it ends, fails or is dropped.
struct Observed {
    inner: Body,
    bytes: u64,
    exchange: Option<Exchange>,
}

impl Observed {
    fn finish(&mut self, failed: Option<String>) {
        if let Some(exchange) = self.exchange.take() {
            exchange.finish(self.bytes, failed);
        }
    }
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.finish(None);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let e = format!("response body: {e}");
                self.finish(Some(e));
            }
            Poll::Ready(None) => self.finish(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // A body dropped before its end: the client went away, or it was empty and never
        // polled. Either way the record ends here.
        let cut = (!self.inner.is_end_stream()).then(|| "cancelled".to_owned());
        self.finish(cut);
    }
}
