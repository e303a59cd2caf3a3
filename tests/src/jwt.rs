//! End-user tokens and an identity provider's key endpoint, made by an independent JWT stack
//! (PyJWT with `cryptography`, which `scripts/test.sh` installs): `tests/jwt/mint.py` and
//! `tests/jwt/jwks_server.py`.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("jwt").join(name)
}

/// Mints the test tokens for `issuer` and `audience` (name -> token, as `mint.py` lists
/// them) and writes their keys to `dir/jwks.json`.
pub fn mint(dir: &Path, issuer: &str, audience: &str) -> serde_json::Value {
    std::fs::create_dir_all(dir).unwrap();
    let out = std::process::Command::new("python3")
        .arg(script("mint.py"))
        .arg(dir)
        .arg(issuer)
        .arg(audience)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "minting tokens with PyJWT failed (pip install pyjwt cryptography): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An identity provider's key endpoint serving `dir/jwks.json` over HTTPS on 127.0.0.1, its
/// CA in `dir/idp-ca.pem`; stopped when dropped.
#[derive(Debug)]
pub struct Idp {
    child: std::process::Child,
    pub port: u16,
}

impl Idp {
    pub fn start(dir: &Path) -> Self {
        let mut child = std::process::Command::new("python3")
            .arg(script("jwks_server.py"))
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("jwks_server.py did not start ({e}): {line}"));
        Self {
            port: u16::try_from(started["port"].as_u64().unwrap()).unwrap(),
            child,
        }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
