//! The demo's apps, served in-process on loopback: frontend and cart (two versions, v1 and
//! the v2 canary) answer HTTP/1.1 with JSON, payments is a gRPC service (HTTP/2 without TLS:
//! its proxy does the TLS). Each answers with what it saw, including the caller identity its
//! proxy vouched for, and its version.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

/// Where the apps listen.
#[derive(Debug, Clone, Copy)]
pub(super) struct Apps {
    pub(super) frontend: SocketAddr,
    pub(super) cart: SocketAddr,
    pub(super) cart_v2: SocketAddr,
    pub(super) payments: SocketAddr,
}

type Body = BoxBody<Bytes, Infallible>;

fn peer(request: &Request<Incoming>) -> String {
    request
        .headers()
        .get("x-signet-peer-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_owned()
}

async fn http_app(
    name: &'static str,
    version: &'static str,
    request: Request<Incoming>,
) -> Response<Body> {
    let body = json!({
        "service": name,
        "version": version,
        "path": request.uri().path(),
        "caller": peer(&request),
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A gRPC answer: one length-prefixed message, then `grpc-status: 0` in the trailers.
async fn payments(request: Request<Incoming>) -> Response<Body> {
    let message = format!("charged for {}", peer(&request));
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap_or(0).to_be_bytes());
    framed.extend_from_slice(message.as_bytes());
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = vec![
        Ok::<_, Infallible>(Frame::data(Bytes::from(framed))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut response = Response::new(StreamBody::new(tokio_stream::iter(frames)).boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |r| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(r).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// Starts the apps.
pub(super) async fn start() -> anyhow::Result<Apps> {
    let bind = || TcpListener::bind("127.0.0.1:0");
    let (f, c, c2, p) = (bind().await?, bind().await?, bind().await?, bind().await?);
    let apps = Apps {
        frontend: f.local_addr()?,
        cart: c.local_addr()?,
        cart_v2: c2.local_addr()?,
        payments: p.local_addr()?,
    };
    tokio::spawn(serve(f, |r| http_app("frontend", "v1", r)));
    tokio::spawn(serve(c, |r| http_app("cart", "v1", r)));
    tokio::spawn(serve(c2, |r| http_app("cart", "v2", r)));
    tokio::spawn(serve(p, payments));
    Ok(apps)
}
