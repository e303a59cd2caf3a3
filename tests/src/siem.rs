//! HTTPS receivers that speak Splunk's HTTP Event Collector and Elasticsearch's bulk API the
//! way those servers answer (neither server can run on this machine): token checks, HEC's
//! `{"text","code"}` answers and its documented event envelope ([`hec_event_problem`]), bulk
//! `items` with 201 for a new document and 409 for an id already indexed, 400 for a document
//! without `@timestamp`. What they accepted is kept.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};

use crate::pki::Pki;

/// Which API to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    SplunkHec,
    ElasticBulk,
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct Receiver {
    /// `https://localhost:PORT`.
    pub url: String,
    /// Roots its certificate chains to (PEM file).
    pub ca: PathBuf,
    /// The credential it accepts.
    pub token: String,
    /// Accepted events (HEC) or documents by `_id` (bulk).
    pub accepted: Arc<Mutex<BTreeMap<String, Value>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Why HEC refuses an event, with the status codes Splunk documents for its event endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HecRefusal {
    /// Code 6: not JSON, not an object, or metadata of the wrong type (`time` not epoch
    /// seconds as a number or numeric string; `host`, `source`, `sourcetype`, `index` not
    /// strings).
    InvalidDataFormat,
    /// Code 12: no `event`.
    EventRequired,
    /// Code 13: `event` null, an empty string or an empty object.
    EventBlank,
    /// Code 15: `fields` not a flat object of strings or arrays of strings.
    IndexedFields,
}

impl HecRefusal {
    /// Splunk's answer text and code.
    pub fn text_and_code(self) -> (&'static str, u32) {
        match self {
            HecRefusal::InvalidDataFormat => ("Invalid data format", 6),
            HecRefusal::EventRequired => ("Event field is required", 12),
            HecRefusal::EventBlank => ("Event field cannot be blank", 13),
            HecRefusal::IndexedFields => ("Error in handling indexed fields", 15),
        }
    }
}

/// What HEC's event endpoint would refuse in one event, if anything: the envelope Splunk
/// documents (`event` required and not blank; `time` in epoch seconds; `host`, `source`,
/// `sourcetype` and `index` strings; `fields` flat, string-valued).
pub fn hec_event_problem(event: &Value) -> Option<HecRefusal> {
    let Some(envelope) = event.as_object() else {
        return Some(HecRefusal::InvalidDataFormat);
    };
    match envelope.get("event") {
        None => return Some(HecRefusal::EventRequired),
        Some(Value::Null) => return Some(HecRefusal::EventBlank),
        Some(Value::String(s)) if s.is_empty() => return Some(HecRefusal::EventBlank),
        Some(Value::Object(o)) if o.is_empty() => return Some(HecRefusal::EventBlank),
        Some(_) => {}
    }
    let epoch_seconds = |v: &Value| match v {
        Value::Number(n) => n.as_f64().is_some_and(|t| t >= 0.0),
        Value::String(s) => s.parse::<f64>().is_ok_and(|t| t >= 0.0 && t.is_finite()),
        _ => false,
    };
    if envelope.get("time").is_some_and(|t| !epoch_seconds(t)) {
        return Some(HecRefusal::InvalidDataFormat);
    }
    for key in ["host", "source", "sourcetype", "index"] {
        if envelope.get(key).is_some_and(|v| !v.is_string()) {
            return Some(HecRefusal::InvalidDataFormat);
        }
    }
    if let Some(fields) = envelope.get("fields") {
        let flat = fields.as_object().is_some_and(|f| {
            f.values().all(|v| match v {
                Value::String(_) => true,
                Value::Array(items) => items.iter().all(Value::is_string),
                _ => false,
            })
        });
        if !flat {
            return Some(HecRefusal::IndexedFields);
        }
    }
    None
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(status: u16, body: &Value) -> Response<Full<bytes::Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap()
}

struct State {
    flavor: Flavor,
    token: String,
    accepted: Arc<Mutex<BTreeMap<String, Value>>>,
}

impl State {
    fn handle(
        &self,
        auth: Option<&str>,
        content_type: Option<&str>,
        path: &str,
        body: &[u8],
    ) -> (u16, Value) {
        match self.flavor {
            Flavor::SplunkHec => self.hec(auth, path, body),
            Flavor::ElasticBulk => self.bulk(auth, content_type, path, body),
        }
    }

    fn hec(&self, auth: Option<&str>, path: &str, body: &[u8]) -> (u16, Value) {
        if path != "/services/collector/event" {
            return (
                404,
                json!({ "text": "The requested URL was not found on this server.", "code": 404 }),
            );
        }
        match auth {
            None => return (401, json!({ "text": "Token is required", "code": 2 })),
            Some(a) if a != format!("Splunk {}", self.token) => {
                return (403, json!({ "text": "Invalid token", "code": 4 }));
            }
            Some(_) => {}
        }
        let text = String::from_utf8_lossy(body);
        let mut events = Vec::new();
        for (n, value) in serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .enumerate()
        {
            let refused = match value {
                Ok(v) => match hec_event_problem(&v) {
                    None => {
                        events.push(v);
                        continue;
                    }
                    Some(refused) => refused,
                },
                Err(_) => HecRefusal::InvalidDataFormat,
            };
            // Nothing of a refused request is indexed, and the answer names the event.
            let (text, code) = refused.text_and_code();
            return (
                400,
                json!({ "text": text, "code": code, "invalid-event-number": n }),
            );
        }
        if events.is_empty() {
            return (400, json!({ "text": "No data", "code": 5 }));
        }
        let mut accepted = self.accepted.lock().unwrap();
        for e in events {
            let key = format!("{}", accepted.len());
            accepted.insert(key, e);
        }
        (200, json!({ "text": "Success", "code": 0 }))
    }

    fn bulk(
        &self,
        auth: Option<&str>,
        content_type: Option<&str>,
        path: &str,
        body: &[u8],
    ) -> (u16, Value) {
        if path != "/_bulk" {
            return (
                404,
                json!({ "error": { "type": "resource_not_found_exception", "reason": "no handler" }, "status": 404 }),
            );
        }
        if auth != Some(format!("ApiKey {}", self.token).as_str()) {
            return (
                401,
                json!({ "error": { "type": "security_exception", "reason": "missing authentication credentials" }, "status": 401 }),
            );
        }
        if !content_type.is_some_and(|c| c.starts_with("application/x-ndjson")) {
            return (
                406,
                json!({ "error": "Content-Type header is not supported", "status": 406 }),
            );
        }
        let text = String::from_utf8_lossy(body);
        if !text.ends_with('\n') {
            return (
                400,
                json!({ "error": { "type": "illegal_argument_exception", "reason": "The bulk request must be terminated by a newline [\\n]" }, "status": 400 }),
            );
        }
        let lines: Vec<&str> = text.lines().collect();
        let mut items = Vec::new();
        let mut errors = false;
        let mut accepted = self.accepted.lock().unwrap();
        for pair in lines.chunks(2) {
            let (Some(action), Some(doc)) = (pair.first(), pair.get(1)) else {
                return (
                    400,
                    json!({ "error": { "type": "illegal_argument_exception", "reason": "action without a document" }, "status": 400 }),
                );
            };
            let action: Value = serde_json::from_str(action).unwrap_or(Value::Null);
            let doc: Value = serde_json::from_str(doc).unwrap_or(Value::Null);
            let Some(create) = action.get("create") else {
                return (
                    400,
                    json!({ "error": { "type": "illegal_argument_exception", "reason": "only create actions are expected" }, "status": 400 }),
                );
            };
            let id = create
                .get("_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let index = create.get("_index").cloned().unwrap_or(Value::Null);
            let item = if doc.get("@timestamp").and_then(Value::as_str).is_none() {
                errors = true;
                json!({ "create": { "_index": index, "_id": id, "status": 400, "error": { "type": "document_parsing_exception", "reason": "[@timestamp] is missing" } } })
            } else if accepted.contains_key(&id) {
                errors = true;
                json!({ "create": { "_index": index, "_id": id, "status": 409, "error": { "type": "version_conflict_engine_exception", "reason": format!("[{id}]: version conflict, document already exists") } } })
            } else {
                accepted.insert(id.clone(), doc);
                json!({ "create": { "_index": index, "_id": id, "status": 201, "result": "created" } })
            };
            items.push(item);
        }
        (200, json!({ "took": 1, "errors": errors, "items": items }))
    }
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 with a certificate for `localhost`, its CA written
    /// under `dir`.
    pub async fn start(flavor: Flavor, dir: &Path) -> Self {
        let pki = Pki::new("siem.test");
        let files = pki.localhost_server(dir, "receiver");
        use rustls::pki_types::pem::PemObject as _;
        let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(&files.cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&files.key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(signet_spiffe::tls::provider())
            .with_protocol_versions(signet_spiffe::tls::PROTOCOL_VERSIONS)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let accepted = Arc::new(Mutex::new(BTreeMap::new()));
        let token = format!("token-{}", addr.port());
        let state = Arc::new(State {
            flavor,
            token: token.clone(),
            accepted: Arc::clone(&accepted),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: Request<Incoming>| {
                        let state = Arc::clone(&state);
                        async move {
                            let header = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_owned)
                            };
                            let (auth, ct) = (header("authorization"), header("content-type"));
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await?.to_bytes();
                            let (status, value) =
                                state.handle(auth.as_deref(), ct.as_deref(), &path, &body);
                            Ok::<_, hyper::Error>(answer(status, &value))
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            url: format!("https://localhost:{}", addr.port()),
            ca: files.bundle,
            token,
            accepted,
            task,
        }
    }
}
