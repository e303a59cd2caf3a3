//! Active health checks of the local app: HTTP `GET path`, gRPC `grpc.health.v1.Health/Check`
//! or a TCP connection, every `interval`, each within `timeout`. `unhealthy_threshold` failures
//! in a row make the app unhealthy and `healthy_threshold` passes healthy again. The state
//! shows on `/ready` and in metrics, and goes to the control plane at once (the next
//! heartbeat does not wait), which takes the endpoint out of every caller's endpoint set
//! until it passes again.
//!
//! The check comes with the traffic settings (the proxy's own service's `health_check`);
//! without one the state is `Unknown` and nothing is probed.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use signet_traffic::doc::{HealthCheck, Probe};
use tokio::net::TcpStream;

use crate::config::AppProtocol;
use crate::state::Proxy;

/// What the checks say about the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No check configured, or none finished yet.
    Unknown = 0,
    /// Passing.
    Healthy = 1,
    /// Failing.
    Unhealthy = 2,
}

impl State {
    fn from_u8(n: u8) -> Self {
        match n {
            1 => State::Healthy,
            2 => State::Unhealthy,
            _ => State::Unknown,
        }
    }
}

/// The app's health, shared by the checker, `/ready`, metrics and the control-plane link.
#[derive(Debug, Default)]
pub struct AppHealth {
    state: AtomicU8,
    check: ArcSwapOption<HealthCheck>,
    last_failure: Mutex<Option<String>>,
    /// Told whenever the state changes.
    pub changed: tokio::sync::Notify,
    /// Told when the check changes, so the checker starts on it at once.
    reconfigured: tokio::sync::Notify,
}

impl AppHealth {
    /// The state now.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// The check in force.
    pub fn check(&self) -> Option<Arc<HealthCheck>> {
        self.check.load_full()
    }

    /// Why the last probe failed.
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().ok().and_then(|f| f.clone())
    }

    /// Switches to `check` (none: stop checking); the state starts over when it changes.
    pub fn configure(&self, check: Option<HealthCheck>) {
        if self.check.load().as_deref() == check.as_ref() {
            return;
        }
        self.check.store(check.map(Arc::new));
        self.set(State::Unknown);
        self.reconfigured.notify_one();
    }

    fn set(&self, state: State) -> bool {
        let before = self.state.swap(state as u8, Ordering::Relaxed);
        let changed = before != state as u8;
        if changed {
            // One waiter (the heartbeat loop); a permit is kept if it is busy sending.
            self.changed.notify_one();
        }
        changed
    }
}

/// Consecutive results, and the state they lead to.
#[derive(Debug, Default)]
struct Tracker {
    passes: u32,
    failures: u32,
}

impl Tracker {
    /// The new state after a probe that passed (`ok`), if it changes.
    fn observe(&mut self, ok: bool, check: &HealthCheck, now: State) -> Option<State> {
        if ok {
            self.passes += 1;
            self.failures = 0;
            (now != State::Healthy && self.passes >= check.healthy_threshold)
                .then_some(State::Healthy)
        } else {
            self.failures += 1;
            self.passes = 0;
            // Unknown (just started) turns unhealthy at the first failure: a proxy whose app
            // is down from the start is never announced as healthy.
            let limit = if now == State::Unknown {
                1
            } else {
                check.unhealthy_threshold
            };
            (now != State::Unhealthy && self.failures >= limit).then_some(State::Unhealthy)
        }
    }
}

/// Probes the app while a check is configured, until shutdown.
pub async fn run(proxy: Arc<Proxy>) {
    let mut tracker = Tracker::default();
    let mut checking: Option<Arc<HealthCheck>> = None;
    loop {
        let check = proxy.health.check();
        if check != checking {
            tracker = Tracker::default();
            checking.clone_from(&check);
        }
        let Some(check) = check else {
            tokio::select! {
                () = proxy.health.reconfigured.notified() => continue,
                () = proxy.draining() => return,
            }
        };
        let app = proxy.config.inbound.app;
        let h2 = proxy.config.inbound.app_protocol == AppProtocol::Http2;
        let result = match tokio::time::timeout(check.timeout, probe(app, &check.probe, h2)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer within {}",
                signet_traffic::duration::format(check.timeout)
            )),
        };
        let ok = result.is_ok();
        proxy
            .metrics
            .health_probes
            .inc(&[if ok { "pass" } else { "fail" }]);
        if let Err(why) = &result
            && let Ok(mut last) = proxy.health.last_failure.lock()
        {
            *last = Some(why.clone());
        }
        if let Some(next) = tracker.observe(ok, &check, proxy.health.state()) {
            proxy.health.set(next);
            proxy
                .metrics
                .app_health
                .store(next as u8, Ordering::Relaxed);
            match next {
                State::Healthy => tracing::info!("the app passes its health check"),
                _ => tracing::warn!(
                    reason = result.err().unwrap_or_default(),
                    "the app fails its health check"
                ),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(check.interval) => {}
            () = proxy.health.reconfigured.notified() => {}
            () = proxy.draining() => return,
        }
    }
}

/// One probe of the app at `addr`.
async fn probe(addr: std::net::SocketAddr, probe: &Probe, h2: bool) -> Result<(), String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    match probe {
        Probe::Tcp => Ok(()),
        Probe::Http { path } => {
            let request = http::Request::get(path.as_str())
                .header(http::header::HOST, "localhost")
                .header(http::header::USER_AGENT, "signet-proxy-health")
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            let response = send(tcp, request, h2).await?;
            let status = response.status();
            if status.is_success() || status.is_redirection() {
                Ok(())
            } else {
                Err(format!("GET {path}: {status}"))
            }
        }
        Probe::Grpc { service } => {
            let request = http::Request::post("http://localhost/grpc.health.v1.Health/Check")
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header("te", "trailers")
                .body(Full::new(grpc_frame(&check_request(service))))
                .map_err(|e| e.to_string())?;
            let response = send(tcp, request, true).await?;
            let headers_status = response.headers().get("grpc-status").cloned();
            let collected = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?;
            let status = collected
                .trailers()
                .and_then(|t| t.get("grpc-status").cloned())
                .or(headers_status);
            if status.as_ref().map(http::HeaderValue::as_bytes) != Some(b"0") {
                return Err(format!("grpc-status {status:?}"));
            }
            match serving_status(collected.to_bytes()) {
                Some(1) => Ok(()),
                other => Err(format!(
                    "health status {} (not SERVING)",
                    other.unwrap_or(0)
                )),
            }
        }
    }
}

async fn send(
    tcp: TcpStream,
    request: http::Request<Full<Bytes>>,
    h2: bool,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let io = TokioIo::new(tcp);
    if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())
    }
}

/// `HealthCheckRequest { service }` in protobuf: field 1, a string (nothing when empty).
fn check_request(service: &str) -> Vec<u8> {
    if service.is_empty() {
        return Vec::new();
    }
    let mut out = vec![0x0a];
    let mut len = service.len();
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(service.as_bytes());
    out
}

/// A gRPC length-prefixed message, uncompressed.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(message);
    out.into()
}

/// The `status` (field 1) of the `HealthCheckResponse` in a gRPC answer body; 0 (UNKNOWN)
/// when the message leaves it out, `None` when the body is not one message.
fn serving_status(mut body: Bytes) -> Option<u64> {
    if body.len() < 5 || body.get_u8() != 0 {
        return None;
    }
    let len = body.get_u32() as usize;
    if body.len() != len {
        return None;
    }
    let mut status = 0;
    while body.has_remaining() {
        let key = varint(&mut body)?;
        match key & 7 {
            0 => {
                let value = varint(&mut body)?;
                if key >> 3 == 1 {
                    status = value;
                }
            }
            2 => {
                let n = usize::try_from(varint(&mut body)?).ok()?;
                if body.len() < n {
                    return None;
                }
                body.advance(n);
            }
            _ => return None,
        }
    }
    Some(status)
}

fn varint(body: &mut Bytes) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if !body.has_remaining() {
            return None;
        }
        let byte = body.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn check(healthy: u32, unhealthy: u32) -> HealthCheck {
        HealthCheck {
            probe: Probe::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(100),
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
        }
    }

    #[test]
    fn thresholds_decide_when_the_state_changes() {
        let c = check(2, 3);
        let mut t = Tracker::default();
        // Starting: the first pass... needs the healthy threshold.
        assert_eq!(t.observe(true, &c, State::Unknown), None);
        assert_eq!(t.observe(true, &c, State::Unknown), Some(State::Healthy));
        assert_eq!(t.observe(false, &c, State::Healthy), None);
        assert_eq!(t.observe(false, &c, State::Healthy), None);
        assert_eq!(
            t.observe(true, &c, State::Healthy),
            None,
            "a pass starts the count again"
        );
        for _ in 0..2 {
            assert_eq!(t.observe(false, &c, State::Healthy), None);
        }
        assert_eq!(t.observe(false, &c, State::Healthy), Some(State::Unhealthy));
        assert_eq!(t.observe(true, &c, State::Unhealthy), None);
        assert_eq!(t.observe(true, &c, State::Unhealthy), Some(State::Healthy));
        // An app down from the start is unhealthy at its first failure.
        let mut fresh = Tracker::default();
        assert_eq!(
            fresh.observe(false, &c, State::Unknown),
            Some(State::Unhealthy)
        );
    }

    #[test]
    fn grpc_health_messages_are_read_and_written_as_protobuf() {
        assert!(check_request("").is_empty());
        assert_eq!(check_request("shop.Cart"), b"\x0a\x09shop.Cart");
        let frame = |m: &[u8]| grpc_frame(m);
        assert_eq!(serving_status(frame(&[0x08, 0x01])), Some(1));
        assert_eq!(serving_status(frame(&[0x08, 0x02])), Some(2));
        assert_eq!(serving_status(frame(&[])), Some(0), "UNKNOWN is left out");
        // Unknown fields are skipped.
        assert_eq!(
            serving_status(frame(&[0x12, 0x01, b'x', 0x08, 0x01])),
            Some(1)
        );
        assert_eq!(
            serving_status(Bytes::from_static(&[0, 0, 0, 0, 9, 8])),
            None
        );
        assert_eq!(serving_status(frame(&[0x08])), None);
    }
}
