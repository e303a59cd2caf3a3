//! The demo's traffic: each flow sends through the calling app's proxy (its outbound port),
//! and what came back says whether the destination's proxy allowed it and, if not, which
//! policies denied it (`x-signet-denied-by`), or whether it was a fault injected by the
//! destination's proxy (`x-signet-error: injected`); an allowed answer names the app version
//! that served it, so the split between subsets shows. Allowing policies are read from the
//! destination proxy's metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

const DENIED_BY: &str = "x-signet-denied-by";
const PROXY_ERROR: &str = "x-signet-error";
const TIMEOUT: Duration = Duration::from_secs(5);

/// One caller -> service flow.
#[derive(Debug)]
pub(super) struct Flow {
    pub(super) name: &'static str,
    address: String,
    path: &'static str,
    grpc: bool,
    destination_admin: String,
    /// Requests sent each round (more where a split's shares should show).
    pub(super) per_round: u32,
    /// Faults are injected into this flow's requests (by the traffic settings).
    pub(super) faulted: bool,
}

/// What one request came back with.
#[derive(Debug)]
pub(super) enum Sent {
    /// Allowed, and served by the app of this version (if it said).
    Allowed(Option<String>),
    Denied(String),
    /// Answered by the destination's proxy as an injected fault, with this status.
    Injected(u16),
    Failed(String),
}

/// Counts for one flow.
#[derive(Debug, Default)]
pub(super) struct Tally {
    sent: u64,
    allowed: u64,
    denied: u64,
    injected: u64,
    failed: u64,
    denied_by: BTreeSet<String>,
    /// Allowed requests by the version that served them.
    versions: BTreeMap<String, u64>,
    injected_statuses: BTreeSet<u16>,
    last_failure: String,
}

impl Tally {
    pub(super) fn record(&mut self, sent: Sent) {
        self.sent += 1;
        match sent {
            Sent::Allowed(version) => {
                self.allowed += 1;
                if let Some(version) = version {
                    *self.versions.entry(version).or_default() += 1;
                }
            }
            Sent::Injected(status) => {
                self.injected += 1;
                self.injected_statuses.insert(status);
            }
            Sent::Denied(by) => {
                self.denied += 1;
                self.denied_by
                    .extend(by.split(',').map(|p| p.trim().to_owned()));
            }
            Sent::Failed(why) => {
                self.failed += 1;
                self.last_failure = why;
            }
        }
    }
}

impl Flow {
    pub(super) fn http(
        name: &'static str,
        address: String,
        path: &'static str,
        admin: &str,
    ) -> Self {
        Self {
            name,
            address,
            path,
            grpc: false,
            destination_admin: admin.to_owned(),
            per_round: 1,
            faulted: false,
        }
    }

    /// The same flow, `n` requests a round.
    pub(super) fn rounds_of(self, n: u32) -> Self {
        Self {
            per_round: n,
            ..self
        }
    }

    /// The same flow, with faults injected into it.
    pub(super) fn with_faults(self) -> Self {
        Self {
            faulted: true,
            ..self
        }
    }

    pub(super) fn grpc(
        name: &'static str,
        address: String,
        path: &'static str,
        admin: &str,
    ) -> Self {
        Self {
            grpc: true,
            ..Self::http(name, address, path, admin)
        }
    }

    /// One request.
    pub(super) async fn send(&self) -> Sent {
        match tokio::time::timeout(TIMEOUT, self.exchange()).await {
            Ok(Ok(sent)) => sent,
            Ok(Err(e)) => Sent::Failed(e.to_string()),
            Err(_) => Sent::Failed("timed out".to_owned()),
        }
    }

    async fn exchange(&self) -> anyhow::Result<Sent> {
        let tcp = TcpStream::connect(&self.address).await?;
        let io = TokioIo::new(tcp);
        let response = if self.grpc {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            let request = Request::post(format!("http://{}{}", self.address, self.path))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                // One empty message: flag 0, length 0.
                .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))?;
            sender.send_request(request).await?
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            let request = Request::get(self.path)
                .header("host", "demo")
                .body(Full::new(Bytes::new()))?;
            sender.send_request(request).await?
        };
        let denied_by = response
            .headers()
            .get(DENIED_BY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = response.status();
        let injected = response
            .headers()
            .get(PROXY_ERROR)
            .is_some_and(|v| v.as_bytes() == b"injected");
        let header_grpc = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let collected = response.into_body().collect().await?;
        if self.grpc {
            let grpc_status = header_grpc.or_else(|| {
                collected
                    .trailers()
                    .and_then(|t| t.get("grpc-status"))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            });
            return Ok(match (grpc_status.as_deref(), denied_by) {
                (Some("0"), _) => Sent::Allowed(None),
                (Some("7"), Some(by)) => Sent::Denied(by),
                (other, _) => Sent::Failed(format!("HTTP {status}, grpc-status {other:?}")),
            });
        }
        let body = collected.to_bytes();
        Ok(match (status.as_u16(), denied_by) {
            (200, _) => Sent::Allowed(
                serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("version")?.as_str().map(str::to_owned)),
            ),
            (403, Some(by)) => Sent::Denied(by),
            (code, _) if injected => Sent::Injected(code),
            (code, _) => Sent::Failed(format!(
                "HTTP {code}: {}",
                String::from_utf8_lossy(&body).trim()
            )),
        })
    }

    /// The policies that allowed requests at the destination's proxy (from its metrics).
    pub(super) async fn allow_policies(&self) -> Vec<String> {
        let Ok(Ok(text)) = tokio::time::timeout(TIMEOUT, metrics(&self.destination_admin)).await
        else {
            return Vec::new();
        };
        text.lines()
            .filter(|l| {
                l.starts_with(
                    "signet_proxy_authz_decisions_total{action=\"request\",decision=\"allow\"",
                )
            })
            .filter_map(|l| {
                l.split("policy=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(str::to_owned)
            })
            .collect()
    }
}

async fn metrics(admin: &str) -> anyhow::Result<String> {
    let tcp = TcpStream::connect(admin).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let request = Request::get("/metrics")
        .header("host", admin)
        .body(Full::new(Bytes::new()))?;
    let body = sender
        .send_request(request)
        .await?
        .into_body()
        .collect()
        .await?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

/// Waits until the proxy at `admin` applies traffic settings of `version` (or newer).
pub(super) async fn wait_for_traffic_version(
    admin: &str,
    wanted: u64,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let applied = metrics(admin)
            .await
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("signet_proxy_traffic_version ")?
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
            })
            .unwrap_or(0);
        if applied >= wanted {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the frontend's proxy never applied traffic version {wanted}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every flow gets an answer from the destination's proxy (allowed or denied):
/// then every proxy has registered and every caller knows its upstreams' endpoints.
pub(super) async fn wait_for_endpoints(flows: &[Flow], within: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    for flow in flows {
        loop {
            match flow.send().await {
                Sent::Allowed(_) | Sent::Denied(_) | Sent::Injected(_) => break,
                Sent::Failed(why) if tokio::time::Instant::now() >= deadline => {
                    bail!("{} never reached its destination: {why}", flow.name)
                }
                Sent::Failed(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}

/// The live summary.
pub(super) fn print_summary(
    flows: &[Flow],
    tallies: &[Tally],
    allows: &[Vec<String>],
    elapsed: Duration,
) {
    println!("traffic after {}s:", elapsed.as_secs());
    let mut rows = Vec::new();
    for ((flow, t), allow) in flows.iter().zip(tallies).zip(allows) {
        let mut decided = Vec::new();
        if t.allowed > 0 {
            decided.push(format!("allowed by {}", allow.join(", ")));
        }
        if t.denied > 0 {
            decided.push(format!(
                "denied by {}",
                t.denied_by.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if t.versions.len() > 1 {
            decided.push(format!("served by {}", shares(&t.versions)));
        }
        if t.injected > 0 {
            let statuses: Vec<String> = t.injected_statuses.iter().map(u16::to_string).collect();
            decided.push(format!(
                "{} injected faults ({}, x-signet-error: injected)",
                t.injected,
                statuses.join(", ")
            ));
        }
        if t.failed > 0 {
            decided.push(format!("{} failed: {}", t.failed, t.last_failure));
        }
        rows.push(vec![
            format!("  {}", flow.name),
            t.sent.to_string(),
            t.allowed.to_string(),
            t.denied.to_string(),
            t.injected.to_string(),
            decided.join("; "),
        ]);
    }
    crate::cp::print_table(
        &[
            "  FLOW",
            "SENT",
            "ALLOWED",
            "DENIED",
            "INJECTED",
            "DECIDED BY",
        ],
        &rows,
    );
}

/// `v1 108 (90 %), v2 12 (10 %)`.
fn shares(versions: &BTreeMap<String, u64>) -> String {
    let total: u64 = versions.values().sum();
    versions
        .iter()
        .map(|(version, n)| {
            let percent = (*n as f64) * 100.0 / (total.max(1) as f64);
            format!("{version} {n} ({percent:.0} %)")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The demo's promise: frontend may call cart, cart may call payments, frontend may not call
/// payments (denied by `frontend-never-calls-payments`); faults are injected into the flows
/// the traffic settings name and no other; the cart's v2 canary answers some of its share.
pub(super) fn check(flows: &[Flow], tallies: &[Tally]) -> anyhow::Result<()> {
    for (flow, t) in flows.iter().zip(tallies) {
        let expect_allowed = flow.name != "frontend -> payments";
        let ok = if expect_allowed {
            t.allowed > 0 && t.denied == 0
        } else {
            t.denied > 0 && t.allowed == 0 && t.denied_by.contains("frontend-never-calls-payments")
        };
        if !ok {
            bail!(
                "{}: expected {}, got {} allowed, {} denied ({:?}), {} failed",
                flow.name,
                if expect_allowed {
                    "allowed"
                } else {
                    "denied by frontend-never-calls-payments"
                },
                t.allowed,
                t.denied,
                t.denied_by,
                t.failed
            );
        }
        // A fault injected where none was asked for, or none at all where a fifth of the
        // requests should have one (over enough requests: 0.8^50 is about 1 in 70,000).
        let wrong_faults = if flow.faulted {
            t.sent >= 50 && t.injected == 0
        } else {
            t.injected > 0
        };
        if wrong_faults {
            bail!(
                "{}: {} injected faults in {} requests, {}",
                flow.name,
                t.injected,
                t.sent,
                if flow.faulted {
                    "expected some"
                } else {
                    "expected none"
                }
            );
        }
        // The canary's 10 %: 0.9^100 is about 1 in 38,000.
        if t.versions.contains_key("v1") && t.allowed >= 100 && !t.versions.contains_key("v2") {
            bail!(
                "{}: {} requests and none served by the v2 canary",
                flow.name,
                t.allowed
            );
        }
    }
    Ok(())
}
