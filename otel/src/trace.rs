//! Spans: head sampling, the span a request makes, and the hand-off to the exporter. Only a
//! sampled span costs more than its ids: its attributes are built at its end, and it is
//! offered to a bounded queue that drops (and counts) rather than wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::context::TraceContext;
use crate::otlp::{self, KeyValue, any_value::Value};

/// OTLP `SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Work inside a process (e.g. signing, under the call that asked for it).
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// The exporter's counters.
#[derive(Debug, Default)]
pub struct TraceStats {
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans dropped because the queue was full.
    pub dropped_queue: AtomicU64,
    /// Spans lost with an export that failed (collector unreachable, refused, too slow).
    pub dropped_export: AtomicU64,
    /// Spans the collector said it rejected.
    pub rejected: AtomicU64,
}

/// The request path's handle on tracing.
#[derive(Debug)]
pub struct Tracer {
    spans: mpsc::Sender<otlp::Span>,
    /// `sample_ratio` as a bound on the low 64 bits of a new trace's id.
    threshold: u64,
    pub stats: Arc<TraceStats>,
}

/// A span begun: its own context (what the next hop gets as its parent) and its parent's.
#[derive(Debug, Clone)]
pub struct Begun {
    pub context: TraceContext,
    pub parent: Option<[u8; 8]>,
    pub start: SystemTime,
}

impl Tracer {
    pub(super) fn new(spans: mpsc::Sender<otlp::Span>, sample_ratio: f64) -> Self {
        // The ratio as a fraction of 2^64; 1.0 saturates to u64::MAX (every trace).
        let threshold = (sample_ratio.clamp(0.0, 1.0) * 18_446_744_073_709_551_616.0) as u64;
        Self {
            spans,
            threshold,
            stats: Arc::new(TraceStats::default()),
        }
    }

    /// Begins a span under `parent` (parent-based: its sampling decision holds), or as the
    /// root of a new trace sampled by the ratio on the trace id, as OpenTelemetry's
    /// `TraceIdRatioBased` does, so every proxy would decide alike on one trace id.
    pub fn begin(&self, parent: Option<&TraceContext>) -> Begun {
        let (context, parent) = match parent {
            Some(p) => (p.child(), Some(p.span_id)),
            None => {
                let mut root = TraceContext::root(false);
                let low = u64::from_be_bytes(root.trace_id[8..].try_into().unwrap_or([0; 8]));
                root.sampled = self.threshold == u64::MAX || low < self.threshold;
                (root, None)
            }
        };
        Begun {
            context,
            parent,
            start: SystemTime::now(),
        }
    }

    /// Offers a finished span to the exporter.
    pub fn record(&self, span: otlp::Span) {
        if self.spans.try_send(span).is_err() {
            self.stats.dropped_queue.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A span's attributes, built only for sampled spans.
#[derive(Debug, Default)]
pub struct Attributes(pub Vec<KeyValue>);

impl Attributes {
    pub fn str(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.0.push(KeyValue::string(key, value));
        self
    }

    pub fn int(&mut self, key: &str, value: i64) -> &mut Self {
        self.0.push(KeyValue {
            key: key.to_owned(),
            value: Some(otlp::AnyValue {
                value: Some(Value::IntValue(value)),
            }),
        });
        self
    }

    pub fn strings(&mut self, key: &str, values: &[String]) -> &mut Self {
        let values = values
            .iter()
            .map(|v| otlp::AnyValue {
                value: Some(Value::StringValue(v.clone())),
            })
            .collect();
        self.0.push(KeyValue {
            key: key.to_owned(),
            value: Some(otlp::AnyValue {
                value: Some(Value::ArrayValue(otlp::ArrayValue { values })),
            }),
        });
        self
    }
}

impl Begun {
    /// The finished span, ending now.
    pub fn finish(
        &self,
        name: String,
        kind: Kind,
        attributes: Attributes,
        error: Option<String>,
    ) -> otlp::Span {
        let status = error.map(|message| otlp::Status { message, code: 2 });
        otlp::Span {
            trace_id: self.context.trace_id.to_vec(),
            span_id: self.context.span_id.to_vec(),
            trace_state: self
                .context
                .tracestate
                .as_ref()
                .and_then(|s| s.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name,
            kind: kind as i32,
            start_time_unix_nano: unix_nanos(self.start),
            end_time_unix_nano: unix_nanos(SystemTime::now()),
            attributes: attributes.0,
            status,
            flags: u32::from(self.context.sampled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracer(ratio: f64) -> Tracer {
        let (tx, _rx) = mpsc::channel(1);
        Tracer::new(tx, ratio)
    }

    #[test]
    fn new_traces_are_sampled_by_ratio_and_children_follow_their_parent() {
        let t = tracer(0.25);
        let sampled = (0..20_000)
            .filter(|_| t.begin(None).context.sampled)
            .count();
        assert!((4_500..5_500).contains(&sampled), "{sampled}");
        assert!((0..1000).all(|_| tracer(1.0).begin(None).context.sampled));
        assert!((0..1000).all(|_| !tracer(0.0).begin(None).context.sampled));
        let parent = TraceContext::root(true);
        let child = tracer(0.0).begin(Some(&parent));
        assert!(child.context.sampled);
        assert_eq!(child.parent, Some(parent.span_id));
        assert_eq!(child.context.trace_id, parent.trace_id);
        let unsampled = TraceContext::root(false);
        assert!(!tracer(1.0).begin(Some(&unsampled)).context.sampled);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = mpsc::channel(1);
        let t = Tracer::new(tx, 1.0);
        let span = t
            .begin(None)
            .finish("x".to_owned(), Kind::Server, Attributes::default(), None);
        t.record(span.clone());
        t.record(span);
        assert_eq!(t.stats.dropped_queue.load(Ordering::Relaxed), 1);
    }
}
