//! A small mesh for end-to-end tests: a real `signet-cp`, the cart (an echo app behind a
//! joined `signet-proxy`) and the frontend's proxy calling it, with `meshctl` at hand.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::app::EchoApp;
use crate::client::Http;
use crate::control::{ControlPlane, workspace_binary};
use crate::process::ProxyProcess;

pub const TD: &str = "mesh.test";
pub const FRONTEND: &str = "spiffe://mesh.test/ns/shop/sa/frontend";
pub const CART: &str = "spiffe://mesh.test/ns/shop/sa/cart";

pub fn policies(read_paths: &str) -> String {
    format!(
        r#"
@id("shop-connect")
permit (principal in Mesh::Namespace::"shop", action == Mesh::Action::"connect",
        resource in Mesh::Namespace::"shop");

@id("frontend-reads-cart")
permit (principal == Mesh::Workload::"{FRONTEND}", action in Mesh::Action::"read",
        resource == Mesh::Service::"cart")
when {{ context.path like "{read_paths}" }};
"#
    )
}

pub fn proxy_toml(
    cp: &ControlPlane,
    service: &str,
    token: Option<&str>,
    app: SocketAddr,
    upstreams: &[&str],
) -> String {
    let mut toml = format!(
        "[service]\nname = \"{service}\"\nnamespace = \"shop\"\n\n\
         [control_plane]\naddress = \"{}\"\nca = \"{}\"\ntrust_domain = \"{TD}\"\nstate_dir = \"{service}-state\"\n",
        cp.grpc,
        cp.setting("SIGNET_CA"),
    );
    if let Some(token) = token {
        toml.push_str(&format!("join_token = \"{token}\"\n"));
    }
    toml.push_str(&format!(
        "\n[inbound]\nlisten = \"127.0.0.1:0\"\napp = \"{app}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n"
    ));
    for u in upstreams {
        toml.push_str(&format!(
            "\n[[outbound]]\nservice = \"{u}\"\nlisten = \"127.0.0.1:0\"\n"
        ));
    }
    toml
}

/// A control plane (trust domain [`TD`]), the cart (echo app + proxy) and the frontend's
/// proxy calling it.
#[derive(Debug)]
pub struct Mesh {
    pub dir: tempfile::TempDir,
    pub cp: ControlPlane,
    pub app: EchoApp,
    pub cart: ProxyProcess,
    pub frontend: ProxyProcess,
}

impl Mesh {
    pub async fn start(cp_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--trust-domain", TD, "--heartbeat-interval", "1s"];
        args.extend_from_slice(cp_args);
        let cp = ControlPlane::start(&dir.path().join("cp"), &args);
        let file = dir.path().join("v1.cedar");
        std::fs::write(&file, policies("/api/*")).unwrap();
        cp.meshctl_ok(&[
            "authz",
            "apply",
            "-f",
            file.to_str().unwrap(),
            "-m",
            "first",
            "--allow-widening",
        ]);
        let app = EchoApp::start().await;
        let proxy = workspace_binary("signet-proxy");
        let cart = ProxyProcess::start(
            &proxy,
            dir.path(),
            "cart",
            &proxy_toml(&cp, "cart", Some(&cp.token(CART)), app.addr, &[]),
        );
        let frontend = ProxyProcess::start(
            &proxy,
            dir.path(),
            "frontend",
            &proxy_toml(
                &cp,
                "frontend",
                Some(&cp.token(FRONTEND)),
                app.addr,
                &["cart"],
            ),
        );
        let mesh = Self {
            dir,
            cp,
            app,
            cart,
            frontend,
        };
        mesh.wait_for(200, "/api/items", Duration::from_secs(15))
            .await;
        mesh
    }

    pub fn cart_port(&self) -> SocketAddr {
        self.frontend.outbound["cart"]
    }

    /// One request from the frontend's app to the cart: the status and `x-signet-denied-by`.
    pub async fn call(&self, path: &str) -> (u16, Option<String>) {
        let attempt = async {
            let mut http = Http::h1(self.cart_port()).await;
            let reply = http.get("cart", path, &[]).await;
            (reply.status.as_u16(), reply.header("x-signet-denied-by"))
        };
        tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .unwrap_or((0, None))
    }

    /// Waits until a request gets `status`; panics after `within`. Returns how long it took.
    pub async fn wait_for(&self, status: u16, path: &str, within: Duration) -> Duration {
        let begun = Instant::now();
        loop {
            let (got, _) = self.call(path).await;
            if got == status {
                return begun.elapsed();
            }
            assert!(
                begun.elapsed() < within,
                "{path}: still {got}, not {status}, after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `meshctl authz apply --allow-widening -f <name>` with `text` in it: tests that are
    /// not about the gate accept whatever the change opens.
    pub fn apply(&self, name: &str, text: &str) -> std::process::Output {
        self.apply_with(name, text, &["--allow-widening"])
    }

    /// `meshctl authz apply -f <name> <extra...>` with `text` in it.
    pub fn apply_with(&self, name: &str, text: &str, extra: &[&str]) -> std::process::Output {
        let file = self.dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let mut args = vec!["authz", "apply", "-f", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.cp.meshctl(&args)
    }

    pub fn versions(&self) -> Vec<u64> {
        let out = self.cp.meshctl_ok(&["authz", "history", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect()
    }
}

pub async fn identity_serial(proxy: &ProxyProcess) -> String {
    let (_, body) = proxy.admin_get("/identity").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["serial"].as_str().unwrap().to_owned()
}
