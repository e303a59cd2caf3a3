//! What `deploy/` ships works as written: every systemd unit passes `systemd-analyze verify`
//! (with the binaries where the units expect them replaced by this build's), a replica
//! finds its key-encryption key as a systemd credential, and the local three-replica
//! script starts PostgreSQL and three replicas that share one CA and one set of duties,
//! and stops all of them on SIGTERM.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is the test failing"
)]

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use signet_tests::control::workspace_binary;
use signet_tests::postgres::Postgres;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn every_systemd_unit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = Vec::new();
    for folder in ["deploy/systemd", "deploy/ha/systemd"] {
        for entry in std::fs::read_dir(repo().join(folder)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if !name.ends_with(".service") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace(
                    "/usr/local/bin/signet-cp",
                    workspace_binary("signet-cp").to_str().unwrap(),
                )
                .replace(
                    "/usr/local/bin/signet-proxy",
                    workspace_binary("signet-proxy").to_str().unwrap(),
                );
            std::fs::write(dir.path().join(&name), text).unwrap();
            // A template is verified through an instance of it.
            let unit = name.replace("@.service", "@1.service");
            let out = Command::new("systemd-analyze")
                .arg("verify")
                .arg(dir.path().join(&unit))
                .output()
                .expect("systemd-analyze (Debian's systemd package)");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{folder}/{name}: {stderr}");
            assert!(stderr.trim().is_empty(), "{folder}/{name}: {stderr}");
            checked.push(name);
        }
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "signet-cp.service",
            "signet-cp@.service",
            "signet-proxy@.service"
        ]
    );
}

/// A replica under systemd gets its KEK as a credential (`LoadCredential=signet-ca-kek:...`
/// puts it in `$CREDENTIALS_DIRECTORY`); without one, on PostgreSQL, it refuses to start.
#[test]
fn a_replica_reads_its_kek_from_a_systemd_credential() {
    let server = Postgres::start();
    let url = server.database();
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::copy(server.kek_file(), credentials.join("signet-ca-kek")).unwrap();
    let start = |credentials: Option<&Path>, data: &str| {
        let mut command = Command::new(workspace_binary("signet-cp"));
        command
            .arg("--data-dir")
            .arg(dir.path().join(data))
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--api-listen",
                "127.0.0.1:0",
            ])
            .args(["--metrics-listen", "off"])
            .env("SIGNET_CP_STORE", &url)
            .env_remove("CREDENTIALS_DIRECTORY");
        if let Some(c) = credentials {
            command.env("CREDENTIALS_DIRECTORY", c);
        }
        command
    };
    let (mut child, started) =
        signet_tests::process::spawn_announcing(start(Some(&credentials), "a"), "signet-cp");
    assert!(started["grpc"].is_string(), "{started}");
    let _ = child.kill();
    let _ = child.wait();
    let refused = start(None, "b").output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--ca-kek-file"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&refused.stderr).contains("postgres://"),
        "the store URL (it may hold a password) is not echoed: {stderr}"
    );
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

/// The script, stopped (SIGTERM: it stops what it started) if the test fails first.
struct Script(std::process::Child);

impl Drop for Script {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn the_local_three_replica_script_runs_one_mesh_control_plane_and_stops_whole() {
    let dir = tempfile::tempdir().unwrap();
    let ha = dir.path().join("ha");
    let bin_dir = workspace_binary("signet-cp")
        .parent()
        .unwrap()
        .to_path_buf();
    let mut script = Script(
        Command::new(repo().join("deploy/ha/local-replicas.sh"))
            .arg(&ha)
            .env("SIGNET_BIN_DIR", &bin_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut stdout = std::io::BufReader::new(script.0.stdout.take().unwrap());
    let started = Instant::now();
    let mut printed = String::new();
    while !printed.contains("Ctrl-C stops everything") {
        let mut line = String::new();
        let read = stdout.read_line(&mut line).unwrap();
        assert!(read > 0, "the script ended: {printed}");
        printed.push_str(&line);
        assert!(started.elapsed() < Duration::from_secs(60), "{printed}");
    }
    assert_eq!(printed.matches("ready http://").count(), 3, "{printed}");
    assert!(printed.contains("address = \""), "{printed}");

    // Any replica sees all three and one holder per duty, and they share one CA.
    let meshctl = |replica: u32, args: &[&str]| {
        let env =
            std::fs::read_to_string(ha.join(format!("replica-{replica}/meshctl.env"))).unwrap();
        let mut command = Command::new(workspace_binary("meshctl"));
        for (k, v) in env.lines().filter_map(|l| l.split_once('=')) {
            command.env(k, v);
        }
        let out = command.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = meshctl(3, &["status"]);
        if status.matches(" alive").count() == 3
            && status.matches(" held by ").count() == signet_cp::server::duties::ALL.len()
        {
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let bundle = |n: u32| std::fs::read_to_string(ha.join(format!("replica-{n}/bundle.pem")));
    assert_eq!(bundle(1).unwrap(), bundle(2).unwrap());
    assert_eq!(bundle(1).unwrap(), bundle(3).unwrap());
    // `meshctl status` into a reader that is already gone (`| true` exits before the
    // TLS handshake is done) ends quietly, exit 0, not with a panic.
    let piped = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -a; . {}; set +a; {} status | true; exit ${{PIPESTATUS[0]}}",
            ha.join("replica-1/meshctl.env").display(),
            workspace_binary("meshctl").display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(piped.status.success(), "{stderr}");

    // SIGTERM stops the replicas and PostgreSQL, and keeps the directory.
    let _ = Command::new("kill")
        .args(["-TERM", &script.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = script.0.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the script did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = processes_mentioning(ha.to_str().unwrap());
    assert!(left.is_empty(), "still running: {left:?}");
    assert!(ha.join("ca.kek").is_file() && ha.join("pg/PG_VERSION").is_file());
    assert!(!ha.join("pg/postmaster.pid").exists(), "PostgreSQL stopped");
}
