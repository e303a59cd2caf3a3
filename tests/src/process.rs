//! Real `signet-proxy` processes: a configuration written to a file, the binary started,
//! its listening addresses read from the JSON line it prints, killed on drop.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running proxy.
#[derive(Debug)]
pub struct ProxyProcess {
    child: Child,
    /// Its inbound (mTLS) listener.
    pub inbound: SocketAddr,
    /// Its admin listener.
    pub admin: SocketAddr,
    /// Its outbound listeners, by upstream service.
    pub outbound: BTreeMap<String, SocketAddr>,
    /// Its configuration file.
    pub config: PathBuf,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn addr(v: &serde_json::Value) -> SocketAddr {
    v.as_str().and_then(|s| s.parse().ok()).expect("an address")
}

/// Starts `command` (stdout and stderr piped), waits up to 30 s for the JSON line it prints
/// once it is listening, and keeps draining its stderr (shown with `SIGNET_TEST_LOGS=1`).
/// Panics with its stderr if it does not start.
pub fn spawn_announcing(mut command: Command, name: &str) -> (Child, serde_json::Value) {
    let mut child = command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let Ok(started) = serde_json::from_str::<serde_json::Value>(&line) else {
        let _ = child.kill();
        let output = child.wait_with_output().ok();
        let stderr = output
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default();
        panic!("`{name}` did not start: {stderr}");
    };
    if let Some(stderr) = child.stderr.take() {
        let name = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("SIGNET_TEST_LOGS").is_some() {
                    eprintln!("[{name}] {line}");
                }
            }
        });
    }
    (child, started)
}

impl ProxyProcess {
    /// Writes `config` to `dir/<name>.toml` and starts `binary` with it; panics with the
    /// proxy's stderr if it does not start.
    pub fn start(binary: &Path, dir: &Path, name: &str, config: &str) -> Self {
        Self::start_with(Command::new(binary), dir, name, config)
    }

    /// As [`ProxyProcess::start`], with `command` the proxy (run through `ip netns exec`,
    /// say) to which `--config` is added.
    pub fn start_with(mut command: Command, dir: &Path, name: &str, config: &str) -> Self {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        command.arg("--config").arg(&path);
        let (child, started) = spawn_announcing(command, name);
        let listening = &started["listening"];
        Self {
            child,
            inbound: addr(&listening["inbound"]),
            admin: addr(&listening["admin"]),
            outbound: listening["outbound"]
                .as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), addr(v))).collect())
                .unwrap_or_default(),
            config: path,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it with SIGTERM and waits; its exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().ok()?;
        status.code()
    }

    /// GETs an admin path; returns the status and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let mut http = crate::client::Http::h1(self.admin).await;
        let reply = http.get("admin", path, &[]).await;
        (
            reply.status.as_u16(),
            String::from_utf8_lossy(&reply.body).into_owned(),
        )
    }

    /// Waits up to five seconds for a series to reach `at_least`; returns its last value.
    pub async fn metric_reaching(&self, series: &str, at_least: u64) -> u64 {
        let mut value = 0;
        for _ in 0..50 {
            value = self.metric(series).await;
            if value >= at_least {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        value
    }

    /// The value of one Prometheus series (0 if absent).
    pub async fn metric(&self, series: &str) -> u64 {
        let (_, text) = self.admin_get("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    }
}
