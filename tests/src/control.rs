//! A real `signet-cp` process and the `meshctl` binary pointed at it.
//!
//! Binaries of other packages are found beside the test executable's directory
//! (`target/<profile>/`): building the workspace's tests builds every binary.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

/// `target/<profile>/<name>`.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "`{}` is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    child: Child,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its gRPC address.
    pub grpc: SocketAddr,
    /// Its REST address.
    pub api: SocketAddr,
    /// Its metrics address (plain HTTP).
    pub metrics: SocketAddr,
    /// Its bundle endpoint, when it serves one (`--bundle-endpoint-listen`).
    pub bundle_endpoint: Option<SocketAddr>,
    /// `SIGNET_CP`, `SIGNET_TOKEN`, `SIGNET_CA`.
    pub env: Vec<(String, String)>,
    /// Its trust domain, as it announced at start.
    pub trust_domain: String,
    args: Vec<String>,
    /// What its commands (and `meshctl`'s) are run through: nothing, or `ip netns exec NS`.
    prefix: Vec<String>,
}

/// `binary` run through `prefix` (e.g. `ip netns exec NS`), or directly.
fn prefixed(prefix: &[String], binary: &Path) -> Command {
    match prefix.split_first() {
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(binary);
            command
        }
        None => Command::new(binary),
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ControlPlane {
    /// Starts `signet-cp` on `data_dir` with ports chosen by the OS and `extra` arguments.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_on(&[], data_dir, "127.0.0.1:0", "127.0.0.1:0", extra)
    }

    /// Starts `signet-cp` through `prefix` (`ip netns exec NS`), its gRPC and REST listeners
    /// on `ip` with ports chosen by the OS; `meshctl` runs through the same prefix.
    pub fn start_in(prefix: &[&str], data_dir: &Path, ip: &str, extra: &[&str]) -> Self {
        let prefix: Vec<String> = prefix.iter().map(|s| (*s).to_owned()).collect();
        let any = format!("{ip}:0");
        Self::start_on(&prefix, data_dir, &any, &any, extra)
    }

    fn start_on(prefix: &[String], data_dir: &Path, grpc: &str, api: &str, extra: &[&str]) -> Self {
        let binary = workspace_binary("signet-cp");
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--grpc-listen".into(),
            grpc.into(),
            "--api-listen".into(),
            api.into(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut command = prefixed(prefix, &binary);
        command.args(&args);
        let (child, started) = crate::process::spawn_announcing(command, "signet-cp");
        let env_file = started["env"].as_str().expect("env file");
        let env = std::fs::read_to_string(env_file)
            .expect("meshctl.env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let addr = |k: &str| started[k].as_str().and_then(|s| s.parse().ok()).expect(k);
        Self {
            child,
            data_dir: data_dir.to_path_buf(),
            grpc: addr("grpc"),
            api: addr("api"),
            metrics: addr("metrics"),
            bundle_endpoint: started["bundle_endpoint"]
                .as_str()
                .and_then(|s| s.parse().ok()),
            env,
            trust_domain: started["trust_domain"]
                .as_str()
                .expect("trust domain")
                .to_owned(),
            args: extra.iter().map(|s| (*s).to_owned()).collect(),
            prefix: prefix.to_vec(),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it with SIGTERM; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().ok()?.code()
    }

    /// Kills it (SIGKILL: no draining, as a crash) and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same data directory and ports.
    pub fn restart(&mut self) {
        let extra: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let next = Self::start_on(
            &self.prefix,
            &self.data_dir,
            &self.grpc.to_string(),
            &self.api.to_string(),
            &extra,
        );
        *self = next;
    }

    /// The value of one of the `meshctl.env` settings.
    pub fn setting(&self, key: &str) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .expect(key)
    }

    /// `meshctl` set up to talk to this control plane, not started (for commands that keep
    /// running, such as `audit tail --follow`).
    pub fn meshctl_command(&self, args: &[&str]) -> Command {
        let mut command = prefixed(&self.prefix, &workspace_binary("meshctl"));
        command.args(args).env_remove("SIGNET_TOKEN");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command.env("XDG_CONFIG_HOME", &self.data_dir);
        command
    }

    /// Runs `meshctl` against this control plane.
    pub fn meshctl(&self, args: &[&str]) -> Output {
        self.meshctl_command(args).output().expect("run meshctl")
    }

    /// Runs `meshctl` and returns its stdout, panicking with its stderr if it failed.
    pub fn meshctl_ok(&self, args: &[&str]) -> String {
        let out = self.meshctl(args);
        assert!(
            out.status.success(),
            "meshctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A one-time join token for `spiffe_id`.
    pub fn token(&self, spiffe_id: &str) -> String {
        self.meshctl_ok(&["token", "create", "--spiffe-id", spiffe_id])
            .trim()
            .to_owned()
    }

    /// An operator certificate for `id`, enrolled by the admin and kept under `dir`; the
    /// `--cert`/`--key` arguments that present it.
    pub fn enroll(&self, dir: &Path, id: &str) -> [String; 4] {
        let token = self.token(id);
        let out = dir.join(id.rsplit('/').next().expect("a SPIFFE ID path"));
        self.meshctl_ok(&[
            "identity",
            "issue",
            "--spiffe-id",
            id,
            "--join-token",
            &token,
            "--out",
            out.to_str().expect("UTF-8 path"),
        ]);
        [
            "--cert".to_owned(),
            out.join("operator.crt").display().to_string(),
            "--key".to_owned(),
            out.join("operator.key").display().to_string(),
        ]
    }

    /// `meshctl` as the operator whose certificate `as_op` names (no bearer token).
    pub fn meshctl_as(&self, as_op: &[String; 4], args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(as_op.iter().map(String::as_str));
        self.meshctl_command(&all)
            .env_remove("SIGNET_TOKEN")
            .output()
            .expect("run meshctl")
    }

    /// Appends `text` to the operator policies and restarts the control plane to load them.
    pub fn add_operator_policies(&mut self, text: &str) {
        let operators = self.data_dir.join("operators.cedar");
        let mut all = std::fs::read_to_string(&operators).expect("operators.cedar");
        all.push_str(text);
        std::fs::write(&operators, all).expect("write operators.cedar");
        self.stop();
        self.restart();
    }
}

/// TLS towards a control plane: its certificate must chain to `bundle` and name the control
/// plane of the bundle's trust domain; `client` is presented (an empty resolver: none).
pub fn control_plane_tls(
    bundle: &signet_spiffe::TrustBundle,
    client: std::sync::Arc<dyn rustls::client::ResolvesClientCert>,
    alpn: &[u8],
) -> rustls::ClientConfig {
    use std::sync::Arc;
    let cp_id = bundle
        .trust_domain()
        .workload("/signet/control-plane")
        .expect("control-plane ID");
    let verifier = Arc::new(signet_spiffe::tls::SpiffeServerVerifier::new(
        signet_spiffe::tls::shared_bundle(bundle.clone()),
        Arc::new(signet_spiffe::verify::AllowList::new([cp_id])),
    ));
    let mut config = signet_spiffe::tls::client_config(client, verifier).expect("TLS config");
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

/// A lazily connecting gRPC channel to `addr` over `tls`.
pub fn grpc_channel(addr: SocketAddr, tls: rustls::ClientConfig) -> tonic::transport::Channel {
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
}

/// An answer from the control plane's REST API.
#[derive(Debug)]
pub struct RestReply {
    /// The HTTP status.
    pub status: u16,
    /// The body as JSON (`Null` when it is not JSON).
    pub json: serde_json::Value,
    /// The body's length in bytes.
    pub len: usize,
}

impl ControlPlane {
    /// The control plane's trust bundle, as operators get it (`SIGNET_CA`).
    pub fn bundle(&self) -> signet_spiffe::TrustBundle {
        let pem = std::fs::read_to_string(self.setting("SIGNET_CA")).expect("SIGNET_CA");
        let td = signet_spiffe::TrustDomain::new(&self.trust_domain).expect("trust domain");
        signet_spiffe::TrustBundle::from_pem(td, &pem).expect("bundle")
    }

    /// Sends one REST request (`body` as JSON), with the admin's bearer token unless
    /// `bearer` names another (`Some("")`: none) or `client` presents a certificate.
    pub async fn rest(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> RestReply {
        self.rest_as(
            std::sync::Arc::new(signet_spiffe::tls::SvidResolver::new()),
            method,
            path,
            bearer,
            body,
        )
        .await
    }

    /// Redeems a fresh join token for `id` over `POST /v1/svid` with a key made here, as
    /// `meshctl identity issue` does (`ttl_seconds`: the lifetime asked for): the 200
    /// answer and the key.
    pub async fn svid_over_rest(
        &self,
        id: &str,
        ttl_seconds: Option<u64>,
    ) -> (RestReply, signet_spiffe::WorkloadKey) {
        let key = signet_spiffe::WorkloadKey::generate().expect("a key");
        let csr = key.csr(&id.parse().expect("a SPIFFE ID")).expect("a CSR");
        let mut body = serde_json::json!({
            "join_token": self.token(id),
            "csr": signet_spiffe::pem_block("CERTIFICATE REQUEST", csr.as_ref()),
        });
        if let Some(ttl) = ttl_seconds {
            body["ttl_seconds"] = serde_json::json!(ttl);
        }
        let reply = self
            .rest(
                "POST",
                "/v1/svid",
                Some(""),
                Some(body.to_string().into_bytes()),
            )
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        (reply, key)
    }

    /// A client-certificate resolver presenting a fresh SVID for `id`
    /// ([`ControlPlane::svid_over_rest`]).
    pub async fn resolver_over_rest(
        &self,
        id: &str,
    ) -> std::sync::Arc<signet_spiffe::tls::SvidResolver> {
        let (reply, key) = self.svid_over_rest(id, None).await;
        self.resolver_of(&reply, &key)
    }

    /// A resolver presenting the SVID of a `POST /v1/svid` answer, with its key.
    pub fn resolver_of(
        &self,
        reply: &RestReply,
        key: &signet_spiffe::WorkloadKey,
    ) -> std::sync::Arc<signet_spiffe::tls::SvidResolver> {
        let chain: Vec<_> = rustls::pki_types::pem::PemObject::pem_slice_iter(
            reply.json["chain"].as_str().expect("a chain").as_bytes(),
        )
        .map(|c| c.expect("a PEM certificate"))
        .collect();
        let td = signet_spiffe::TrustDomain::new(&self.trust_domain).expect("trust domain");
        let svid = signet_spiffe::X509Svid::parse(chain, &td, std::time::SystemTime::now())
            .expect("an SVID");
        let resolver = std::sync::Arc::new(signet_spiffe::tls::SvidResolver::new());
        resolver.update(&svid, key).expect("the SVID and its key");
        resolver
    }

    /// [`ControlPlane::rest`], presenting what `client` resolves.
    pub async fn rest_as(
        &self,
        client: std::sync::Arc<dyn rustls::client::ResolvesClientCert>,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> RestReply {
        let admin = self.setting("SIGNET_TOKEN");
        let token = bearer.unwrap_or(&admin);
        let mut headers = vec![("content-type", "application/json".to_owned())];
        if !token.is_empty() {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        let reply = self
            .https(client, method, path, &headers, body.unwrap_or_default())
            .await;
        RestReply {
            status: reply.status,
            json: serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null),
            len: reply.body.len(),
        }
    }

    /// One HTTPS/1.1 request to the API listener with exactly these headers (and `Host`),
    /// presenting what `client` resolves.
    pub async fn https(
        &self,
        client: std::sync::Arc<dyn rustls::client::ResolvesClientCert>,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> HttpsReply {
        use http_body_util::BodyExt as _;
        let tls = control_plane_tls(&self.bundle(), client, b"http/1.1");
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
        let tcp = tokio::net::TcpStream::connect(self.api)
            .await
            .expect("connect");
        // Without it, a request written in two segments waits on the server's delayed ACK.
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        let name = rustls::pki_types::ServerName::IpAddress(self.api.ip().into());
        let tls = connector.connect(name, tcp).await.expect("TLS");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .expect("HTTP/1.1");
        tokio::spawn(conn);
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.api.to_string());
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        HttpsReply {
            status,
            headers,
            body,
        }
    }
}

/// A whole HTTPS answer.
#[derive(Debug)]
pub struct HttpsReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpsReply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }

    /// The first value of header `name`, or "".
    pub fn header(&self, name: &str) -> String {
        self.all(name).into_iter().next().unwrap_or_default()
    }
}
