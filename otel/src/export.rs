//! The span exporter: batches finished spans and sends them over OTLP/gRPC or OTLP/HTTP
//! (protobuf). It runs beside the request path and never holds it up: a slow or absent
//! collector only makes the queue fill, and what does not fit is dropped and counted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::sync::mpsc;

use crate::config::{OtlpProtocol, TracingConfig};
use crate::otlp::{self, ExportTraceServiceRequest, ExportTraceServiceResponse};
use crate::trace::{TraceStats, Tracer};

/// Largest answer read from a collector.
const MAX_ANSWER: usize = 64 * 1024;

/// Starts the exporter for `config` (in the current runtime); `resource` describes this
/// proxy (`service.name`, ...).
pub fn start(config: &TracingConfig, resource: Vec<otlp::KeyValue>) -> Result<Tracer, String> {
    config.check()?;
    let (tx, rx) = mpsc::channel(config.max_queue);
    let tracer = Tracer::new(tx, config.sample_ratio);
    let transport = Transport::new(config)?;
    let exporter = Exporter {
        resource,
        transport,
        max_batch: config.max_batch,
        flush_interval: config.flush_interval,
        timeout: config.export_timeout,
        stats: Arc::clone(&tracer.stats),
    };
    tokio::spawn(exporter.run(rx));
    Ok(tracer)
}

struct Exporter {
    resource: Vec<otlp::KeyValue>,
    transport: Transport,
    max_batch: usize,
    flush_interval: Duration,
    timeout: Duration,
    stats: Arc<TraceStats>,
}

/// How often the exporter looks at its queue. Finished spans are not announced one by one
/// (a wake-up per span would cost the request path more than the span itself); the
/// exporter drains what arrived at this pace, or at the flush interval if shorter.
const POLL: Duration = Duration::from_millis(100);

impl Exporter {
    async fn run(mut self, mut rx: mpsc::Receiver<otlp::Span>) {
        let mut failures = 0u64;
        let mut tick = tokio::time::interval(POLL.min(self.flush_interval));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::new();
        let mut first_at: Option<tokio::time::Instant> = None;
        let mut closed = false;
        while !closed || !batch.is_empty() {
            tick.tick().await;
            loop {
                match rx.try_recv() {
                    Ok(span) => {
                        first_at.get_or_insert_with(tokio::time::Instant::now);
                        batch.push(span);
                        if batch.len() >= self.max_batch {
                            break;
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            let due = first_at.is_some_and(|t| t.elapsed() >= self.flush_interval);
            if batch.is_empty() || !(due || closed || batch.len() >= self.max_batch) {
                continue;
            }
            first_at = None;
            let spans = std::mem::take(&mut batch);
            let n = spans.len() as u64;
            let request = self.request(spans);
            match tokio::time::timeout(self.timeout, self.transport.export(request)).await {
                Ok(Ok(rejected)) => {
                    failures = 0;
                    self.stats
                        .exported
                        .fetch_add(n.saturating_sub(rejected), Ordering::Relaxed);
                    self.stats.rejected.fetch_add(rejected, Ordering::Relaxed);
                }
                failed => {
                    self.stats.dropped_export.fetch_add(n, Ordering::Relaxed);
                    // Said once, then again only every hundredth time: a collector that
                    // stays away must not flood the proxy's own log.
                    if failures.is_multiple_of(100) {
                        let why = match failed {
                            Ok(Err(e)) => e,
                            _ => format!("no answer within {:?}", self.timeout),
                        };
                        tracing::warn!(error = %why, spans = n, "span export failed; spans dropped");
                    }
                    failures += 1;
                    self.transport.reset();
                }
            }
        }
    }

    fn request(&self, spans: Vec<otlp::Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![otlp::ResourceSpans {
                resource: Some(otlp::Resource {
                    attributes: self.resource.clone(),
                }),
                scope_spans: vec![otlp::ScopeSpans {
                    scope: Some(otlp::InstrumentationScope {
                        name: "signet-proxy".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                    }),
                    spans,
                }],
            }],
        }
    }
}

enum Transport {
    Grpc(tonic::client::Grpc<tonic::transport::Channel>),
    Http {
        authority: String,
        path: String,
        conn: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    },
}

impl Transport {
    fn new(config: &TracingConfig) -> Result<Self, String> {
        let url = config.otlp_endpoint.trim_end_matches('/');
        Ok(match config.protocol {
            OtlpProtocol::Grpc => {
                let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
                    .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?
                    .connect_timeout(config.export_timeout);
                Transport::Grpc(tonic::client::Grpc::new(endpoint.connect_lazy()))
            }
            OtlpProtocol::HttpProtobuf => {
                let rest = url.strip_prefix("http://").unwrap_or(url);
                let (authority, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, "/v1/traces"),
                };
                Transport::Http {
                    authority: authority.to_owned(),
                    path: path.to_owned(),
                    conn: None,
                }
            }
        })
    }

    /// Forgets a connection that failed, so the next export makes a new one.
    fn reset(&mut self) {
        if let Transport::Http { conn, .. } = self {
            *conn = None;
        }
    }

    /// Sends one batch; how many spans the collector rejected.
    async fn export(&mut self, request: ExportTraceServiceRequest) -> Result<u64, String> {
        let answer = match self {
            Transport::Grpc(grpc) => {
                grpc.ready().await.map_err(|e| e.to_string())?;
                let codec = tonic_prost::ProstCodec::<
                    ExportTraceServiceRequest,
                    ExportTraceServiceResponse,
                >::default();
                grpc.unary(
                    tonic::Request::new(request),
                    http::uri::PathAndQuery::from_static(otlp::EXPORT_PATH),
                    codec,
                )
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
                .into_inner()
            }
            Transport::Http {
                authority,
                path,
                conn,
            } => http_export(authority, path, conn, request).await?,
        };
        Ok(answer
            .partial_success
            .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0)))
    }
}

async fn http_export(
    authority: &str,
    path: &str,
    conn: &mut Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    request: ExportTraceServiceRequest,
) -> Result<ExportTraceServiceResponse, String> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        let tcp = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connecting to {authority}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *conn = Some(send);
    }
    let Some(send) = conn.as_mut() else {
        return Err("no connection".to_owned());
    };
    send.ready().await.map_err(|e| e.to_string())?;
    let http_request = http::Request::post(path)
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(Bytes::from(request.encode_to_vec())))
        .map_err(|e| e.to_string())?;
    let response = send
        .send_request(http_request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("reading the collector's answer: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("collector answered {status}"));
    }
    Ok(ExportTraceServiceResponse::decode(body).unwrap_or_default())
}
