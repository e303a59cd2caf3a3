//! An app whose behaviour a test changes while traffic runs: answer 200, answer a given
//! status, answer late, or never answer. It counts what it receives (requests by method), so
//! a test can tell how many attempts reached it, not only what the caller saw. HTTP/1.1 and
//! HTTP/2 without TLS, as a workload behind a proxy.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// What the app does with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 200, naming the app.
    Ok,
    /// This status.
    Status(u16),
    /// 200 after this long.
    Slow(Duration),
    /// Reads the request and never answers.
    Hang,
}

/// A running app.
#[derive(Debug)]
pub struct FaultyApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name, in every 200 body.
    pub name: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    behaviour: Mutex<Behaviour>,
    requests: AtomicU64,
    posts: AtomicU64,
    /// Requests to paths other than `/healthz` (what callers sent, not health probes).
    calls: AtomicU64,
    /// Bytes of request bodies received whole.
    body_bytes: AtomicU64,
}

impl Drop for FaultyApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultyApp {
    /// Starts on 127.0.0.1 (port chosen by the OS), answering 200 as `name`.
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            behaviour: Mutex::new(Behaviour::Ok),
            requests: AtomicU64::new(0),
            posts: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
        });
        let shared = Arc::clone(&state);
        let body_name = name.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                let name = body_name.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = Arc::clone(&state);
                        let name = name.clone();
                        async move { Ok::<_, Infallible>(answer(request, &state, &name).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            name: name.to_owned(),
            state,
            task,
        }
    }

    /// Changes what it does from the next request on.
    pub fn set(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    /// Requests received so far (every attempt that reached it).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Requests received so far to any path but `/healthz` (callers' requests, without the
    /// health probes of a proxy in front).
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::Relaxed)
    }

    /// POST requests received so far.
    pub fn posts(&self) -> u64 {
        self.state.posts.load(Ordering::Relaxed)
    }

    /// Bytes of request bodies received whole so far (a body that broke off counts nothing).
    pub fn body_bytes(&self) -> u64 {
        self.state.body_bytes.load(Ordering::Relaxed)
    }
}

async fn answer(request: Request<Incoming>, state: &State, name: &str) -> Response<Full<Bytes>> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    if request.uri().path() != "/healthz" {
        state.calls.fetch_add(1, Ordering::Relaxed);
    }
    if request.method() == http::Method::POST {
        state.posts.fetch_add(1, Ordering::Relaxed);
    }
    let behaviour = *state.behaviour.lock().unwrap();
    if let Ok(body) = request.into_body().collect().await {
        let len = u64::try_from(body.to_bytes().len()).unwrap_or(u64::MAX);
        state.body_bytes.fetch_add(len, Ordering::Relaxed);
    }
    let status = match behaviour {
        Behaviour::Ok => StatusCode::OK,
        Behaviour::Status(code) => StatusCode::from_u16(code).unwrap(),
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK
        }
        Behaviour::Hang => {
            std::future::pending::<()>().await;
            StatusCode::OK
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(name.to_owned())));
    *response.status_mut() = status;
    response
}
