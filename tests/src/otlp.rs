//! Tracing in tests: a real OTLP receiver (`tests/otlp/receiver.py`, on the official
//! `opentelemetry-proto` bindings) collecting the spans proxies send, and a relay app that
//! calls the next service and carries the trace headers on, as an instrumented app does.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::client::Http;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("otlp")
        .join(name)
}

/// A running OTLP receiver and the spans it printed.
#[derive(Debug)]
pub struct Receiver {
    child: Child,
    /// OTLP/gRPC: `http://127.0.0.1:<port>`.
    pub grpc: String,
    /// OTLP/HTTP base: `http://127.0.0.1:<port>`.
    pub http: String,
    spans: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    pub fn start() -> Self {
        let mut child = Command::new("python3")
            .arg(script("receiver.py"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start receiver.py");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = Arc::clone(&spans);
        let (ports_tx, ports_rx) = std::sync::mpsc::channel();
        // One reader for the whole output: the first line gives the ports, each later one
        // is a span.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let _ = ports_tx.send(lines.next().unwrap_or_default());
            for line in lines {
                if let Ok(span) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(span);
                }
            }
        });
        let line = ports_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_default();
        let ports: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("receiver.py did not start: {line:?}")
        });
        let port = |k: &str| ports[k].as_u64().expect("a port");
        Self {
            grpc: format!("http://127.0.0.1:{}", port("grpc")),
            http: format!("http://127.0.0.1:{}", port("http")),
            child,
            spans,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<serde_json::Value> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of `trace_id`, once there are at least `n` (panics after 20 s).
    pub async fn trace(&self, trace_id: &str, n: usize) -> Vec<serde_json::Value> {
        let started = Instant::now();
        loop {
            let spans: Vec<serde_json::Value> = self
                .spans()
                .into_iter()
                .filter(|s| s["trace_id"] == trace_id)
                .collect();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} of {n} spans of {trace_id}; all: {:#?}",
                spans.len(),
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs the OpenTelemetry Python SDK client (`tests/otlp/client.py`) against `url`, its
/// own span exported to `collector` (an OTLP/HTTP base URL): `{status, trace_id, span_id}`.
pub fn sdk_client(url: &str, collector: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(script("client.py"))
        .args([url, collector])
        .output()
        .expect("run client.py");
    assert!(
        out.status.success(),
        "client.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client.py prints JSON")
}

/// An app that answers each request by calling the next hop (its proxy's outbound port, set
/// with [`RelayApp::forward_to`]) with the same path, carrying `traceparent` and `tracestate`
/// on, and answering with the status it got; with no next hop it answers 200 itself.
#[derive(Debug)]
pub struct RelayApp {
    pub addr: SocketAddr,
    next: Arc<std::sync::OnceLock<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RelayApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(request: Request<Incoming>, next: Option<SocketAddr>) -> Response<Full<Bytes>> {
    let Some(next) = next else {
        return Response::new(Full::new(Bytes::from_static(b"end of the chain")));
    };
    let carried: Vec<(String, String)> = ["traceparent", "tracestate"]
        .iter()
        .filter_map(|h| {
            request
                .headers()
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .map(|v| ((*h).to_owned(), v.to_owned()))
        })
        .collect();
    let headers: Vec<(&str, &str)> = carried
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut http = Http::h1(next).await;
    let reply = http.get("next", request.uri().path(), &headers).await;
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = reply.status;
    response
}

impl RelayApp {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let next = Arc::new(std::sync::OnceLock::new());
        let hop = Arc::clone(&next);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let hop = Arc::clone(&hop);
                tokio::spawn(async move {
                    let service = service_fn(move |r| {
                        let next = hop.get().copied();
                        async move { Ok::<_, Infallible>(relay(r, next).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self { addr, next, task }
    }

    /// Sends every request on to `next` from now on.
    pub fn forward_to(&self, next: SocketAddr) {
        let _ = self.next.set(next);
    }
}
