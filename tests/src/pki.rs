//! Test certificate authorities whose SVIDs and bundles are written to files.

use std::path::{Path, PathBuf};

use signet_spiffe::test_pki::{LeafSpec, TestCa};
use signet_spiffe::{WorkloadKey, certificates_to_pem};

/// Files of one identity, as a proxy's `[identity]` section names them.
#[derive(Debug, Clone)]
pub struct IdentityFiles {
    /// SVID chain, PEM.
    pub cert: PathBuf,
    /// PKCS#8 key, PEM.
    pub key: PathBuf,
    /// Trust bundle, PEM.
    pub bundle: PathBuf,
}

/// A trust domain's CA.
#[derive(Debug)]
pub struct Pki {
    /// The CA.
    pub ca: TestCa,
}

impl Pki {
    /// A CA for `trust_domain`.
    pub fn new(trust_domain: &str) -> Self {
        Self {
            ca: TestCa::new(trust_domain),
        }
    }

    /// Issues `spec` and writes it, its key and the bundle under `dir` as `<name>.crt`,
    /// `<name>.key` and `bundle.pem`.
    pub fn write(&self, dir: &Path, name: &str, spec: &LeafSpec) -> IdentityFiles {
        let (chain, key) = self.ca.issue(spec);
        write_identity(dir, name, &chain, &key, &self.bundle_pem())
    }

    /// A well-formed SVID for `id`, written as [`Pki::write`] does.
    pub fn identity(&self, dir: &Path, name: &str, id: &str) -> IdentityFiles {
        self.write(dir, name, &LeafSpec::for_id(id))
    }

    /// A TLS server certificate for `localhost` (no SPIFFE ID), valid for an hour, written
    /// as [`Pki::write`] does: for receivers the exporters verify by host name.
    pub fn localhost_server(&self, dir: &Path, name: &str) -> IdentityFiles {
        let now = std::time::SystemTime::now();
        let spec = LeafSpec {
            uris: Vec::new(),
            dns: vec!["localhost".to_owned()],
            is_ca: false,
            not_before: now - std::time::Duration::from_secs(60),
            not_after: now + std::time::Duration::from_secs(3600),
            eku: Vec::new(),
            ku: Vec::new(),
            without_key_usage: false,
        };
        self.write(dir, name, &spec)
    }

    /// The bundle, PEM.
    pub fn bundle_pem(&self) -> String {
        self.ca.bundle().to_pem()
    }
}

/// Writes a chain, key and bundle; the key file is written last and renamed into place so a
/// watching proxy never reads a half-written pair.
pub fn write_identity(
    dir: &Path,
    name: &str,
    chain: &[rustls::pki_types::CertificateDer<'static>],
    key: &WorkloadKey,
    bundle_pem: &str,
) -> IdentityFiles {
    std::fs::create_dir_all(dir).unwrap();
    let files = IdentityFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        bundle: dir.join("bundle.pem"),
    };
    let atomic = |path: &Path, text: &str| {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    };
    atomic(&files.bundle, bundle_pem);
    atomic(&files.key, &key.to_pkcs8_pem());
    atomic(&files.cert, &certificates_to_pem(chain));
    files
}
