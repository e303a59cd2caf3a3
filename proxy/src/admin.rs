//! The admin port: `/live`, `/ready`, `/metrics`, `/identity`, `/config`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::state::Proxy;

/// Serves the admin endpoints until shutdown.
pub async fn run(listener: TcpListener, proxy: Arc<Proxy>) {
    let shared = Arc::clone(&proxy);
    crate::accept::serve(
        listener,
        proxy,
        "admin",
        |_| Ok(()),
        move |tcp, _, ()| {
            let proxy = Arc::clone(&shared);
            async move {
                let service = service_fn(move |request| {
                    let proxy = Arc::clone(&proxy);
                    async move { Ok::<_, Infallible>(route(&request, &proxy)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            }
        },
    )
    .await;
}

fn reply(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    reply(StatusCode::OK, "application/json", format!("{value:#}\n"))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn seconds_until(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::now()) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// What `/ready` adds about the control plane: the proxy stays ready without it (it serves
/// its last configuration), but says so.
fn control_plane_detail(proxy: &Proxy) -> String {
    use std::sync::atomic::Ordering;
    let cp = &proxy.metrics.control_plane;
    if !cp.enabled.load(Ordering::Relaxed) {
        return String::new();
    }
    if cp.connected.load(Ordering::Relaxed) {
        return "; control plane: connected".to_owned();
    }
    let last = cp.last_contact.load(Ordering::Relaxed);
    if last == 0 {
        "; control plane: not reached yet".to_owned()
    } else {
        format!(
            "; control plane: unreachable, last contact {}s ago; serving the last configuration",
            unix(SystemTime::now()).saturating_sub(last)
        )
    }
}

/// Why the proxy is not ready, if it is not.
fn not_ready(proxy: &Proxy) -> Vec<String> {
    let mut why = Vec::new();
    let credentials = proxy.identity.current.borrow().clone();
    if credentials.svid.not_after() <= SystemTime::now() {
        why.push(format!(
            "the SVID expired at unix {}",
            unix(credentials.svid.not_after())
        ));
    }
    if !proxy.identity.resolver.is_loaded() {
        why.push("no SVID loaded".to_owned());
    }
    if *proxy.shutdown.borrow() {
        why.push("draining".to_owned());
    }
    if let Some(check) = proxy.health.check() {
        match proxy.health.state() {
            crate::health::State::Healthy => {}
            crate::health::State::Unknown => why.push(format!(
                "the app has not passed its health check ({}) yet",
                probe_name(&check.probe)
            )),
            crate::health::State::Unhealthy => why.push(format!(
                "the app fails its health check ({}): {}",
                probe_name(&check.probe),
                proxy.health.last_failure().unwrap_or_default()
            )),
        }
    }
    why
}

fn probe_name(probe: &signet_traffic::doc::Probe) -> String {
    match probe {
        signet_traffic::doc::Probe::Http { path } => format!("http {path}"),
        signet_traffic::doc::Probe::Grpc { service } => format!("grpc `{service}`"),
        signet_traffic::doc::Probe::Tcp => "tcp".to_owned(),
    }
}

fn upstreams(proxy: &Proxy) -> &[std::sync::Arc<crate::outbound::Upstream>] {
    proxy.upstreams.get().map_or(&[], Vec::as_slice)
}

fn route(request: &Request<Incoming>, proxy: &Proxy) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    let text = "text/plain; charset=utf-8";
    match request.uri().path() {
        "/live" => reply(StatusCode::OK, text, "live\n".into()),
        "/ready" => {
            let why = not_ready(proxy);
            if why.is_empty() {
                reply(
                    StatusCode::OK,
                    text,
                    format!("ready{}\n", control_plane_detail(proxy)),
                )
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    text,
                    format!("not ready: {}\n", why.join("; ")),
                )
            }
        }
        "/metrics" => {
            let not_after = proxy.identity.current.borrow().svid.not_after();
            let mut text = proxy.metrics.render(seconds_until(not_after));
            crate::outbound::render_endpoint_gauges(upstreams(proxy), &mut text);
            proxy.telemetry.render(&mut text);
            if let Some(audit) = &proxy.audit {
                crate::audit::render_stats(audit.stats(), &mut text);
            }
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            )
        }
        "/endpoints" => json(&crate::outbound::endpoints_json(upstreams(proxy))),
        "/identity" => {
            let c = proxy.identity.current.borrow().clone();
            json(&serde_json::json!({
                "spiffe_id": c.svid.id().as_str(),
                "serial": c.svid.serial().to_string(),
                "not_before_unix": unix(c.svid.not_before()),
                "not_after_unix": unix(c.svid.not_after()),
                "expires_in_seconds": seconds_until(c.svid.not_after()),
                "refresh_in_seconds": seconds_until(c.svid.refresh_at()),
                "trust_domain": c.bundle.trust_domain().to_string(),
                "bundle_roots": c.bundle.roots().len(),
            }))
        }
        "/config" => {
            let authorizer = proxy.policies.current();
            let bundle = authorizer.bundle();
            let traffic: Vec<_> = upstreams(proxy).iter().map(|u| u.traffic()).collect();
            json(&serde_json::json!({
                "config": proxy.config,
                "traffic": {
                    "version": proxy.metrics.traffic_version.load(std::sync::atomic::Ordering::Relaxed),
                    "services": traffic,
                },
                "policy": {
                    "version": bundle.version(),
                    "hash": bundle.hash(),
                    "policies": bundle.origins().keys().collect::<Vec<_>>(),
                },
            }))
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            text,
            "not found; try /live /ready /metrics /identity /config /endpoints\n".into(),
        ),
    }
}
