//! A real rsyslog (Debian's `rsyslogd` with `rsyslog-gnutls`) receiving syslog over TLS
//! (RFC 5425) on a free 127.0.0.1 port, writing what it receives to a file.
//!
//! The server certificate names `localhost` and is issued by a test CA whose root is
//! [`Rsyslog::ca`]. `./scripts/test.sh` installs the packages.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pki::Pki;

/// A running rsyslogd, killed on drop.
#[derive(Debug)]
pub struct Rsyslog {
    child: Child,
    /// The TLS port.
    pub port: u16,
    /// The roots its certificate chains to (PEM file).
    pub ca: PathBuf,
    /// Where it writes each message: `MSGID STRUCTURED-DATA MSG`, one per line.
    pub output: PathBuf,
    dir: PathBuf,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `rsyslogd` is.
pub fn binary() -> PathBuf {
    for candidate in ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"] {
        if Path::new(candidate).is_file() {
            return PathBuf::from(candidate);
        }
    }
    panic!("no rsyslogd: run ./scripts/test.sh (it installs Debian's rsyslog and rsyslog-gnutls)");
}

impl Rsyslog {
    /// Starts rsyslogd with a TLS listener in `dir`.
    pub fn start_tls(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let pki = Pki::new("syslog.test");
        let files = pki.localhost_server(dir, "rsyslog");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let output = dir.join("received.log");
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        // Without an explicit priority string this rsyslog (8.2302) offers no cipher suite
        // for an ECDSA certificate: "No supported cipher suites have been found".
        let config = format!(
            r#"global(
  workDirectory="{work}"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="{ca}"
  defaultNetstreamDriverCertFile="{cert}"
  defaultNetstreamDriverKeyFile="{key}"
)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" port="{port}" address="127.0.0.1" gnutlsPriorityString="NORMAL")
template(name="signet" type="string" string="%msgid% %structured-data% %msg%\n")
*.* action(type="omfile" file="{output}" template="signet")
"#,
            work = work.display(),
            ca = files.bundle.display(),
            cert = files.cert.display(),
            key = files.key.display(),
            output = output.display(),
        );
        let conf = dir.join("rsyslog.conf");
        std::fs::write(&conf, config).unwrap();
        let log = std::fs::File::create(dir.join("rsyslogd.log")).unwrap();
        let child = Command::new(binary())
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start rsyslogd: {e}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen: {}",
                std::fs::read_to_string(dir.join("rsyslogd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            ca: files.bundle,
            output,
            dir: dir.to_path_buf(),
        }
    }

    /// The lines written so far once at least `count` arrived; panics after `within`.
    pub fn received(&self, count: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let lines: Vec<String> = std::fs::read_to_string(&self.output)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd received {} of {count} messages: {}",
                lines.len(),
                std::fs::read_to_string(self.dir.join("rsyslogd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
