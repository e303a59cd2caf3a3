//! A real PostgreSQL server for a test: Debian's `postgresql` binaries (`initdb`, `pg_ctl`),
//! a cluster in a temporary directory, listening on 127.0.0.1 on a free port, stopped and
//! removed on drop. Run as root (as the tests are here), the server runs as the `postgres`
//! user, since PostgreSQL refuses to run as root. The test command installs the package.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A running server.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// The role the tests connect as (trusted on loopback: a test cluster only).
pub const USER: &str = "signet";

static DATABASES: AtomicU32 = AtomicU32::new(0);

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map(|v| v.join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .expect("PostgreSQL's binaries under /usr/lib/postgresql (./scripts/test.sh installs them)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program` from PostgreSQL's binaries, as the `postgres` user when this process is root.
fn as_server_user(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(bin.join(program));
        command
    } else {
        Command::new(bin.join(program))
    }
}

fn checked(what: &str, output: std::io::Result<Output>) {
    let output = output.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Postgres {
    /// Makes a cluster and starts it.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Makes a cluster that takes connections over TLS only (`hostssl` rules; plain TCP
    /// is refused), with the server certificate chain and key given as PEM.
    pub fn start_tls(chain_pem: &str, key_pem: &str) -> Self {
        Self::start_with(Some((chain_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Self {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("a temporary directory");
        if is_root() {
            checked(
                "chown the cluster directory",
                Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(dir.path())
                    .output(),
            );
        }
        let data = dir.path().join("data");
        checked(
            "initdb",
            as_server_user(&bin, "initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"])
                .output(),
        );
        let mut tls_options = String::new();
        if let Some((chain, key)) = tls {
            use std::os::unix::fs::PermissionsExt as _;
            let cert_file = data.join("server.crt");
            let key_file = data.join("server.key");
            std::fs::write(&cert_file, chain).expect("writing the server certificate");
            std::fs::write(&key_file, key).expect("writing the server key");
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
                .expect("securing the server key");
            // Only TLS from TCP clients; the Unix socket stays for the harness's tools.
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
            )
            .expect("writing pg_hba.conf");
            if is_root() {
                checked(
                    "chown the TLS files",
                    Command::new("chown")
                        .args(["postgres:postgres"])
                        .arg(&cert_file)
                        .arg(&key_file)
                        .arg(data.join("pg_hba.conf"))
                        .output(),
                );
            }
            tls_options =
                " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".to_owned();
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200{tls_options}",
            dir.path().display()
        );
        checked(
            "pg_ctl start",
            as_server_user(&bin, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-o", &options, "-l"])
                .arg(dir.path().join("server.log"))
                .args(["-w", "start"])
                .output(),
        );
        Self { dir, bin, port }
    }

    /// A key-encryption key file (0600) for the control planes on this cluster: replicas
    /// of one database must share it. Its path.
    pub fn kek_file(&self) -> String {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.path().join("ca.kek");
        if !path.exists() {
            let key: String = (0..32).map(|i| format!("{:02x}", i * 7 + 3)).collect();
            std::fs::write(&path, format!("{key}\n")).expect("writing the KEK file");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("securing the KEK file");
        }
        path.display().to_string()
    }

    /// Runs `sql` with `psql` on the database at `url`; its rows, one per line, columns
    /// separated by `|`.
    pub fn query(&self, url: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([url, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("running psql");
        assert!(
            output.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "signet_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        checked(
            "createdb",
            Command::new(self.bin.join("createdb"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    USER,
                    &name,
                ])
                .output(),
        );
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    fn pg_ctl(&self, action: &[&str]) -> Output {
        as_server_user(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(action)
            .output()
            .expect("run pg_ctl")
    }

    /// Stops the server (fast shutdown), keeping its data.
    pub fn stop(&self) {
        let out = self.pg_ctl(&["-m", "fast", "-w", "stop"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts it again after [`Postgres::stop`], on the same port.
    pub fn restart(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let log = log.display().to_string();
        let out = self.pg_ctl(&["-o", &options, "-l", &log, "-w", "start"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }
}
