//! PEM writing (reading is `rustls_pki_types::pem::PemObject`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;

/// `der` as one PEM block with the given label, lines of 64 characters.
pub fn block(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Certificates as concatenated PEM blocks, in order.
pub fn certificates(certs: &[CertificateDer<'_>]) -> String {
    certs
        .iter()
        .map(|c| block("CERTIFICATE", c.as_ref()))
        .collect()
}
