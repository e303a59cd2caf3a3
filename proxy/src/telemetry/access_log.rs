//! Access logs: one line per request (sampled), JSON or text, to standard output or a file
//! rotated by size. The request path only fills an [`Entry`] and offers it to a bounded
//! queue; formatting and writing happen on the writer's own thread, and a full queue drops
//! the line (counted) rather than wait.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::config::{AccessLogConfig, AccessLogFormat};

/// What one request did, as logged.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub start: Option<SystemTime>,
    pub duration: Duration,
    pub upstream_duration: Option<Duration>,
    pub direction: &'static str,
    pub protocol: &'static str,
    pub method: String,
    pub authority: String,
    pub path: String,
    pub status: u16,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// The calling workload's SPIFFE ID.
    pub source: String,
    /// The called workload's SPIFFE ID (outbound: as the endpoint's certificate said).
    pub destination: String,
    pub peer_service: String,
    pub route: String,
    pub upstream: Option<String>,
    pub retries: u32,
    pub decision: Option<&'static str>,
    pub policies: Vec<String>,
    pub error: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
}

/// The fields a line can hold, in their default order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    StartTime,
    Direction,
    Source,
    Destination,
    PeerService,
    Method,
    Authority,
    Path,
    Protocol,
    Status,
    RequestBytes,
    ResponseBytes,
    DurationMs,
    UpstreamDurationMs,
    Upstream,
    Route,
    Retries,
    Decision,
    Policies,
    Error,
    TraceId,
    SpanId,
}

impl Field {
    pub const ALL: [Field; 22] = [
        Field::StartTime,
        Field::Direction,
        Field::Source,
        Field::Destination,
        Field::PeerService,
        Field::Method,
        Field::Authority,
        Field::Path,
        Field::Protocol,
        Field::Status,
        Field::RequestBytes,
        Field::ResponseBytes,
        Field::DurationMs,
        Field::UpstreamDurationMs,
        Field::Upstream,
        Field::Route,
        Field::Retries,
        Field::Decision,
        Field::Policies,
        Field::Error,
        Field::TraceId,
        Field::SpanId,
    ];

    pub const NAMES: [&'static str; 22] = [
        "start_time",
        "direction",
        "source",
        "destination",
        "peer_service",
        "method",
        "authority",
        "path",
        "protocol",
        "status",
        "request_bytes",
        "response_bytes",
        "duration_ms",
        "upstream_duration_ms",
        "upstream",
        "route",
        "retries",
        "decision",
        "policies",
        "error",
        "trace_id",
        "span_id",
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Self::ALL[i])
    }

    fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|f| *f == self).unwrap_or(0)]
    }

    fn value(self, e: &Entry) -> Value {
        let ms = |d: Duration| Value::from((d.as_secs_f64() * 1e6).round() / 1e3);
        let text = |s: &str| {
            if s.is_empty() {
                Value::Null
            } else {
                Value::from(s)
            }
        };
        match self {
            Field::StartTime => e.start.map_or(Value::Null, |t| Value::from(rfc3339(t))),
            Field::Direction => Value::from(e.direction),
            Field::Source => text(&e.source),
            Field::Destination => text(&e.destination),
            Field::PeerService => text(&e.peer_service),
            Field::Method => text(&e.method),
            Field::Authority => text(&e.authority),
            Field::Path => text(&e.path),
            Field::Protocol => Value::from(e.protocol),
            Field::Status => Value::from(e.status),
            Field::RequestBytes => Value::from(e.request_bytes),
            Field::ResponseBytes => Value::from(e.response_bytes),
            Field::DurationMs => ms(e.duration),
            Field::UpstreamDurationMs => e.upstream_duration.map_or(Value::Null, ms),
            Field::Upstream => e.upstream.as_deref().map_or(Value::Null, Value::from),
            Field::Route => text(&e.route),
            Field::Retries => Value::from(e.retries),
            Field::Decision => e.decision.map_or(Value::Null, Value::from),
            Field::Policies => Value::from(e.policies.clone()),
            Field::Error => e.error.as_deref().map_or(Value::Null, Value::from),
            Field::TraceId => e.trace_id.as_deref().map_or(Value::Null, Value::from),
            Field::SpanId => e.span_id.as_deref().map_or(Value::Null, Value::from),
        }
    }
}

/// RFC 3339 in UTC, to the microsecond.
fn rfc3339(t: SystemTime) -> String {
    let ns = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    signet_audit::export::rfc3339(ns)
}

/// `entry` as one line (without the newline).
pub fn format_line(entry: &Entry, fields: &[Field], format: AccessLogFormat) -> String {
    match format {
        AccessLogFormat::Json => {
            let mut map = Map::new();
            for f in fields {
                map.insert(f.name().to_owned(), f.value(entry));
            }
            Value::Object(map).to_string()
        }
        AccessLogFormat::Text => fields
            .iter()
            .map(|f| text_value(&f.value(entry)))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// A value in a text line: `-` for none, lists joined by commas, and anything with a space,
/// a quote or a control character quoted (as JSON strings are), so a line splits back into
/// its fields.
fn text_value(v: &Value) -> String {
    let plain = match v {
        Value::Null => return "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => return "-".to_owned(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    if plain.is_empty()
        || plain
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '\\' || c.is_control())
    {
        Value::from(plain).to_string()
    } else {
        plain
    }
}

/// The writer's counters.
#[derive(Debug, Default)]
pub struct Stats {
    pub written: AtomicU64,
    /// Lines dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Lines lost to write errors.
    pub failed: AtomicU64,
}

/// The handle the request path uses.
#[derive(Debug)]
pub struct AccessLog {
    lines: mpsc::Sender<Entry>,
    sample_ratio: f64,
    pub stats: Arc<Stats>,
}

impl AccessLog {
    /// Opens the destination and starts the writer thread.
    pub fn start(config: &AccessLogConfig) -> Result<Self, String> {
        let fields: Vec<Field> = if config.fields.is_empty() {
            Field::ALL.to_vec()
        } else {
            config
                .fields
                .iter()
                .map(|f| Field::parse(f).ok_or_else(|| format!("access_log.fields: `{f}`")))
                .collect::<Result<_, _>>()?
        };
        let sink = Sink::open(config)?;
        let (lines, rx) = mpsc::channel(config.max_queue);
        let stats = Arc::new(Stats::default());
        let writer = Writer {
            sink,
            fields,
            format: config.format,
            stats: Arc::clone(&stats),
        };
        std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || writer.run(rx))
            .map_err(|e| format!("access log: starting its writer: {e}"))?;
        Ok(Self {
            lines,
            sample_ratio: config.sample_ratio,
            stats,
        })
    }

    /// Whether this request is logged (decided before its entry is filled).
    pub fn sampled(&self) -> bool {
        self.sample_ratio >= 1.0 || crate::traffic::rand::fraction() < self.sample_ratio
    }

    /// Queues a line; drops it if the writer is behind.
    pub fn log(&self, entry: Entry) {
        if self.lines.try_send(entry).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Where lines go.
enum Sink {
    Stdout(std::io::Stdout),
    File {
        path: PathBuf,
        file: std::io::BufWriter<std::fs::File>,
        size: u64,
        max_bytes: u64,
        keep: u32,
    },
}

fn open_append(path: &Path) -> Result<(std::fs::File, u64), String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("access log `{}`: {e}", path.display()))?;
    let size = file.metadata().map_or(0, |m| m.len());
    Ok((file, size))
}

impl Sink {
    fn open(config: &AccessLogConfig) -> Result<Self, String> {
        if config.path.as_os_str() == "-" {
            return Ok(Sink::Stdout(std::io::stdout()));
        }
        let (file, size) = open_append(&config.path)?;
        Ok(Sink::File {
            path: config.path.clone(),
            file: std::io::BufWriter::new(file),
            size,
            max_bytes: config.max_bytes,
            keep: config.keep,
        })
    }

    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        match self {
            Sink::Stdout(out) => {
                let mut out = out.lock();
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")
            }
            Sink::File {
                path,
                file,
                size,
                max_bytes,
                keep,
            } => {
                let len = line.len() as u64 + 1;
                if *size > 0 && *size + len > *max_bytes {
                    file.flush()?;
                    rotate(path, *keep)?;
                    let (fresh, _) = open_append(path).map_err(std::io::Error::other)?;
                    *file = std::io::BufWriter::new(fresh);
                    *size = 0;
                }
                file.write_all(line.as_bytes())?;
                file.write_all(b"\n")?;
                *size += len;
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(out) => out.flush(),
            Sink::File { file, .. } => file.flush(),
        }
    }
}

/// `path` becomes `path.1`, `path.1` becomes `path.2`, ... up to `keep` (the oldest goes).
fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    let numbered = |n: u32| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    };
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1))?;
        }
    }
    std::fs::rename(path, numbered(1))
}

struct Writer {
    sink: Sink,
    fields: Vec<Field>,
    format: AccessLogFormat,
    stats: Arc<Stats>,
}

impl Writer {
    /// Writes lines until every sender is gone, flushing whenever the queue runs dry.
    fn run(mut self, mut rx: mpsc::Receiver<Entry>) {
        while let Some(entry) = rx.blocking_recv() {
            self.write(&entry);
            while let Ok(entry) = rx.try_recv() {
                self.write(&entry);
            }
            if let Err(e) = self.sink.flush() {
                tracing::warn!(error = %e, "access log: flushing failed");
            }
        }
        let _ = self.sink.flush();
    }

    fn write(&mut self, entry: &Entry) {
        let line = format_line(entry, &self.fields, self.format);
        match self.sink.write_line(&line) {
            Ok(()) => {
                self.stats.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                if self.stats.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(error = %e, "access log: writing failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            start: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            duration: Duration::from_micros(2_500),
            upstream_duration: Some(Duration::from_micros(1_250)),
            direction: "outbound",
            protocol: "HTTP/1.1",
            method: "GET".to_owned(),
            authority: "cart".to_owned(),
            path: "/api/items a\"b".to_owned(),
            status: 200,
            request_bytes: 0,
            response_bytes: 42,
            source: "spiffe://td/ns/shop/sa/frontend".to_owned(),
            destination: "spiffe://td/ns/shop/sa/cart".to_owned(),
            peer_service: "cart".to_owned(),
            route: "default".to_owned(),
            upstream: Some("127.0.0.1:9".to_owned()),
            retries: 1,
            decision: Some("allow"),
            policies: vec!["a".to_owned(), "b".to_owned()],
            error: None,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
            span_id: None,
        }
    }

    #[test]
    fn json_lines_hold_every_field_by_default() {
        let line = format_line(&entry(), &Field::ALL, AccessLogFormat::Json);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["start_time"], "2023-11-14T22:13:20.123000Z");
        assert_eq!(v["duration_ms"], 2.5);
        assert_eq!(v["upstream_duration_ms"], 1.25);
        assert_eq!(v["policies"], serde_json::json!(["a", "b"]));
        assert_eq!(v["span_id"], Value::Null);
        assert_eq!(v.as_object().unwrap().len(), Field::ALL.len());
    }

    #[test]
    fn text_lines_keep_their_fields_apart() {
        let fields: Vec<Field> = ["method", "path", "status", "policies", "error"]
            .iter()
            .map(|f| Field::parse(f).unwrap())
            .collect();
        let line = format_line(&entry(), &fields, AccessLogFormat::Text);
        assert_eq!(line, r#"GET "/api/items a\"b" 200 a,b -"#);
        assert_eq!(Field::parse("nope"), None);
    }

    #[test]
    fn files_rotate_by_size_keeping_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let config = AccessLogConfig {
            path: path.clone(),
            format: AccessLogFormat::Text,
            fields: Vec::new(),
            sample_ratio: 1.0,
            max_bytes: 100,
            keep: 2,
            max_queue: 16,
        };
        let mut sink = Sink::open(&config).unwrap();
        for i in 0..10 {
            sink.write_line(&format!("{i:040}")).unwrap();
        }
        sink.flush().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        // 41 bytes a line, two to a file: 8 and 9 now, 6 and 7 before, 4 and 5 before that.
        assert_eq!(read(&path).lines().count(), 2);
        assert!(read(&path).ends_with(&format!("{:040}\n", 9)));
        assert!(read(&dir.path().join("access.log.1")).starts_with(&format!("{:040}", 6)));
        assert!(read(&dir.path().join("access.log.2")).starts_with(&format!("{:040}", 4)));
        assert!(!dir.path().join("access.log.3").exists());
    }
}
