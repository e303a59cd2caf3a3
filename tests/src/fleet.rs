//! A frontend proxy calling three cart endpoints, each a `signet-proxy` in front of its own
//! [`FaultyApp`], with the frontend's traffic settings read from a file: for the traffic
//! stack's end-to-end tests and its latency benchmark.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::client::{self, Http};
use crate::faulty::FaultyApp;
use crate::pki::Pki;
use crate::process::ProxyProcess;

/// The frontend's identity.
pub const FRONTEND: &str = "spiffe://acme.internal/ns/shop/sa/frontend";
/// Every cart endpoint's identity.
pub const CART: &str = "spiffe://acme.internal/ns/shop/sa/cart";

/// What each cart proxy enforces: the frontend may do anything.
pub const CART_POLICIES: &str = r#"
@id("frontend-calls-cart")
permit (principal == Mesh::Workload::"spiffe://acme.internal/ns/shop/sa/frontend",
        action, resource == Mesh::Service::"cart");
"#;

pub fn proxy_toml(
    service: &str,
    dir: &Path,
    pki: &Pki,
    id: &str,
    app: std::net::SocketAddr,
    extra: &str,
) -> String {
    let files = pki.identity(dir, service, id);
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let text = if service == "cart" { CART_POLICIES } else { "" };
    std::fs::write(policies.join("p.cedar"), text).unwrap();
    format!(
        r#"
[service]
name = "{service}"
namespace = "shop"

[identity]
cert = "{cert}"
key = "{key}"
bundle = "{bundle}"

[policy]
dir = "{policies}"

[inbound]
listen = "127.0.0.1:0"
app = "{app}"

[admin]
listen = "127.0.0.1:0"

[limits]
reload_interval = "100ms"
{extra}
"#,
        cert = files.cert.display(),
        key = files.key.display(),
        bundle = files.bundle.display(),
        policies = policies.display(),
    )
}

/// Three cart endpoints and a frontend proxy whose `cart` port balances over them.
#[derive(Debug)]
pub struct Fleet {
    /// Everything's files.
    pub dir: tempfile::TempDir,
    /// The cart apps, by endpoint.
    pub apps: Vec<FaultyApp>,
    /// The cart proxies (`None` once a test killed one).
    pub carts: Vec<Option<ProxyProcess>>,
    /// The frontend's proxy.
    pub frontend: ProxyProcess,
    /// The traffic document the frontend reads (rewrite it to change its settings).
    pub traffic: PathBuf,
}

impl Fleet {
    /// Starts the fleet with `binary` as every proxy, the frontend reading `traffic`.
    pub async fn start(binary: &Path, traffic: &str) -> Self {
        let pki = Pki::new("acme.internal");
        let dir = tempfile::tempdir().unwrap();
        let mut apps = Vec::new();
        let mut carts = Vec::new();
        for n in 0..3 {
            let app = FaultyApp::start(&format!("cart-{n}")).await;
            let cart_dir = dir.path().join(format!("cart-{n}"));
            std::fs::create_dir_all(&cart_dir).unwrap();
            let toml = proxy_toml("cart", &cart_dir, &pki, CART, app.addr, "");
            carts.push(Some(ProxyProcess::start(
                binary,
                dir.path(),
                &format!("cart-{n}"),
                &toml,
            )));
            apps.push(app);
        }
        let endpoints: Vec<String> = carts
            .iter()
            .flatten()
            .map(|c| format!("\"{}\"", c.inbound))
            .collect();
        let traffic_path = dir.path().join("traffic.yaml");
        std::fs::write(&traffic_path, traffic).unwrap();
        let frontend_dir = dir.path().join("frontend");
        std::fs::create_dir_all(&frontend_dir).unwrap();
        let outbound = format!(
            "\n[traffic]\nfile = \"{}\"\n\n[[outbound]]\nservice = \"cart\"\nlisten = \"127.0.0.1:0\"\nendpoints = [{}]\nidentities = [\"{CART}\"]\n",
            traffic_path.display(),
            endpoints.join(", ")
        );
        let unused: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let toml = proxy_toml("frontend", &frontend_dir, &pki, FRONTEND, unused, &outbound);
        let frontend = ProxyProcess::start(binary, dir.path(), "frontend", &toml);
        Self {
            dir,
            apps,
            carts,
            frontend,
            traffic: traffic_path,
        }
    }

    pub fn to_cart(&self) -> std::net::SocketAddr {
        self.frontend.outbound["cart"]
    }

    pub fn attempts(&self) -> u64 {
        self.apps.iter().map(FaultyApp::requests).sum()
    }

    pub async fn get(&self, path: &str) -> client::Reply {
        let mut http = Http::h1(self.to_cart()).await;
        http.get("cart", path, &[]).await
    }

    /// `total` GETs over `concurrency` connections; the statuses seen, in any order.
    pub async fn load(&self, total: u64, concurrency: u64, path: &str) -> Vec<u16> {
        let left = Arc::new(AtomicU64::new(total));
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let left = Arc::clone(&left);
            let addr = self.to_cart();
            let path = path.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut http = Http::h1(addr).await;
                while left
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                    .is_ok()
                {
                    if http.is_closed() {
                        http = Http::h1(addr).await;
                    }
                    match http.call("GET", "cart", &path).await {
                        Ok(reply) => seen.push(reply.status.as_u16()),
                        Err(_) => seen.push(0),
                    }
                }
                seen
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    }

    pub async fn metric(&self, series: &str) -> u64 {
        self.frontend.metric(series).await
    }
}

impl Fleet {
    /// The address the frontend knows endpoint `n` by.
    pub fn frontend_endpoint(&self, n: usize) -> String {
        let config = std::fs::read_to_string(&self.frontend.config).unwrap();
        let line = config
            .lines()
            .find(|l| l.starts_with("endpoints = "))
            .unwrap();
        line.trim_start_matches("endpoints = [")
            .trim_end_matches(']')
            .split(", ")
            .nth(n)
            .unwrap()
            .trim_matches('"')
            .to_owned()
    }
}
