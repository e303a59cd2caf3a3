//! Access logs: one line per request (sampled), JSON or text, to standard output or a file
//! rotated by size. The request path only fills an [`Entry`] and offers it to a bounded
//! queue; formatting and writing happen on the writer's own thread, and a full queue drops
//! the line (counted) rather than wait.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use signet_spiffe::SpiffeId;

use super::config::{AccessLogConfig, AccessLogFormat};

/// What one request did, as logged. Filled on the request path by moving what the request's
/// record already holds; everything is formatted on the writer's thread.
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
    pub source: Option<Arc<SpiffeId>>,
    /// The called workload's SPIFFE ID (outbound: as the endpoint's certificate said).
    pub destination: Option<Arc<SpiffeId>>,
    pub peer_service: Arc<str>,
    pub route: Arc<str>,
    pub upstream: Option<SocketAddr>,
    pub retries: u32,
    /// The subset a route's split sent it to (outbound).
    pub subset: Option<Arc<str>>,
    pub decision: Option<&'static str>,
    pub policies: Vec<String>,
    pub error: Option<String>,
    /// The trace id, and this proxy's span id when it traces.
    pub trace: Option<([u8; 16], Option<[u8; 8]>)>,
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
    Subset,
    Decision,
    Policies,
    Error,
    TraceId,
    SpanId,
}

impl Field {
    pub const ALL: [Field; 23] = [
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
        Field::Subset,
        Field::Decision,
        Field::Policies,
        Field::Error,
        Field::TraceId,
        Field::SpanId,
    ];

    pub const NAMES: [&'static str; 23] = [
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
        "subset",
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

    /// Writes this field's value of `e` as JSON.
    fn json(self, e: &Entry, out: &mut Vec<u8>) {
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        match self {
            Field::StartTime => match e.start {
                Some(t) => json_str(out, &rfc3339(t)),
                None => out.extend_from_slice(b"null"),
            },
            Field::Direction => json_str(out, e.direction),
            Field::Source => json_opt(out, e.source.as_deref().map(SpiffeId::as_str)),
            Field::Destination => json_opt(out, e.destination.as_deref().map(SpiffeId::as_str)),
            Field::PeerService => json_opt(out, Some(&*e.peer_service)),
            Field::Method => json_opt(out, Some(&e.method)),
            Field::Authority => json_opt(out, Some(&e.authority)),
            Field::Path => json_opt(out, Some(&e.path)),
            Field::Protocol => json_str(out, e.protocol),
            Field::Status => json_num(out, e.status),
            Field::RequestBytes => json_num(out, e.request_bytes),
            Field::ResponseBytes => json_num(out, e.response_bytes),
            Field::DurationMs => json_num(out, ms(e.duration)),
            Field::UpstreamDurationMs => match e.upstream_duration {
                Some(d) => json_num(out, ms(d)),
                None => out.extend_from_slice(b"null"),
            },
            Field::Upstream => match e.upstream {
                Some(u) => json_str(out, &u.to_string()),
                None => out.extend_from_slice(b"null"),
            },
            Field::Route => json_opt(out, Some(&e.route)),
            Field::Retries => json_num(out, e.retries),
            Field::Subset => json_opt(out, e.subset.as_deref()),
            Field::Decision => json_opt(out, e.decision),
            Field::Policies => {
                out.push(b'[');
                for (i, p) in e.policies.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    json_str(out, p);
                }
                out.push(b']');
            }
            Field::Error => json_opt(out, e.error.as_deref()),
            Field::TraceId => json_opt(out, e.trace.map(|t| hex(&t.0)).as_deref()),
            Field::SpanId => json_opt(out, e.trace.and_then(|t| t.1).map(|s| hex(&s)).as_deref()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    super::context::hex(bytes)
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A string, or `null` when absent or empty.
fn json_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) if !s.is_empty() => json_str(out, s),
        _ => out.extend_from_slice(b"null"),
    }
}

fn json_num(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    use std::io::Write as _;
    let _ = write!(out, "{n}");
}

/// RFC 3339 in UTC, to the microsecond.
fn rfc3339(t: SystemTime) -> String {
    let ns = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    signet_audit::export::rfc3339(ns)
}

/// `entry` as one line (without the newline), appended to `out`.
pub fn format_line(entry: &Entry, fields: &[Field], format: AccessLogFormat, out: &mut Vec<u8>) {
    match format {
        AccessLogFormat::Json => {
            out.push(b'{');
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str(out, f.name());
                out.push(b':');
                f.json(entry, out);
            }
            out.push(b'}');
        }
        AccessLogFormat::Text => {
            let mut value = Vec::new();
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                value.clear();
                f.json(entry, &mut value);
                text_value(&value, out);
            }
        }
    }
}

/// A field's JSON value as text: `-` for none, lists joined by commas, a string bare unless it
/// holds a space, a quote, a backslash or a control character (then it stays a quoted JSON
/// string), so a line splits back into its fields.
fn text_value(json: &[u8], out: &mut Vec<u8>) {
    match json {
        b"null" | b"[]" => out.push(b'-'),
        [b'[', .., b']'] => {
            let items: Vec<String> =
                serde_json::from_slice::<Vec<String>>(json).unwrap_or_default();
            let joined = items.join(",");
            if joined.contains([' ', '"', '\\']) || joined.chars().any(char::is_control) {
                json_str(out, &joined);
            } else {
                out.extend_from_slice(joined.as_bytes());
            }
        }
        [b'"', inner @ .., b'"'] => {
            // A JSON string with no escapes and no space is printed bare.
            if inner.iter().any(|b| *b == b'\\' || *b == b' ') || inner.is_empty() {
                out.extend_from_slice(json);
            } else {
                out.extend_from_slice(inner);
            }
        }
        other => out.extend_from_slice(other),
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
    lines: std::sync::mpsc::SyncSender<Entry>,
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
        let (lines, rx) = std::sync::mpsc::sync_channel(config.max_queue);
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

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout(out) => {
                let mut out = out.lock();
                out.write_all(line)?;
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
                file.write_all(line)?;
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

/// How long the writer sleeps when it found nothing to write. It looks rather than waits to
/// be told: a wake-up per line would cost the request path a system call.
const IDLE_POLL: Duration = Duration::from_millis(20);

impl Writer {
    /// Writes what the queue holds, flushes, sleeps, again, until every sender is gone.
    fn run(mut self, rx: std::sync::mpsc::Receiver<Entry>) {
        let mut line = Vec::with_capacity(1024);
        loop {
            let mut wrote = false;
            loop {
                match rx.try_recv() {
                    Ok(entry) => {
                        self.write(&entry, &mut line);
                        wrote = true;
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        let _ = self.sink.flush();
                        return;
                    }
                }
            }
            if wrote && let Err(e) = self.sink.flush() {
                tracing::warn!(error = %e, "access log: flushing failed");
            }
            std::thread::sleep(IDLE_POLL);
        }
    }

    fn write(&mut self, entry: &Entry, line: &mut Vec<u8>) {
        line.clear();
        format_line(entry, &self.fields, self.format, line);
        match self.sink.write_line(line) {
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
        let id = |s: &str| Some(Arc::new(s.parse::<SpiffeId>().unwrap()));
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
            source: id("spiffe://td/ns/shop/sa/frontend"),
            destination: id("spiffe://td/ns/shop/sa/cart"),
            peer_service: Arc::from("cart"),
            route: Arc::from("default"),
            upstream: Some("127.0.0.1:9".parse().unwrap()),
            retries: 1,
            subset: Some(Arc::from("v2")),
            decision: Some("allow"),
            policies: vec!["a".to_owned(), "b".to_owned()],
            error: None,
            trace: Some(([0x4b; 16], None)),
        }
    }

    fn line(e: &Entry, fields: &[Field], format: AccessLogFormat) -> String {
        let mut out = Vec::new();
        format_line(e, fields, format, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_lines_hold_every_field_by_default() {
        let text = line(&entry(), &Field::ALL, AccessLogFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["start_time"], "2023-11-14T22:13:20.123000Z");
        assert_eq!(v["duration_ms"], 2.5);
        assert_eq!(v["upstream_duration_ms"], 1.25);
        assert_eq!(v["path"], "/api/items a\"b");
        assert_eq!(v["source"], "spiffe://td/ns/shop/sa/frontend");
        assert_eq!(v["upstream"], "127.0.0.1:9");
        assert_eq!(v["policies"], serde_json::json!(["a", "b"]));
        assert_eq!(v["trace_id"], "4b".repeat(16));
        assert_eq!(v["subset"], "v2");
        assert_eq!(v["span_id"], serde_json::Value::Null);
        assert_eq!(v.as_object().unwrap().len(), Field::ALL.len());
    }

    #[test]
    fn text_lines_keep_their_fields_apart() {
        let fields: Vec<Field> = ["method", "path", "status", "policies", "error", "route"]
            .iter()
            .map(|f| Field::parse(f).unwrap())
            .collect();
        let text = line(&entry(), &fields, AccessLogFormat::Text);
        assert_eq!(text, r#"GET "/api/items a\"b" 200 a,b - default"#);
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
            sink.write_line(format!("{i:040}").as_bytes()).unwrap();
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
