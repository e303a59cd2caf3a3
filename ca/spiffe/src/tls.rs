//! The one place TLS is configured: TLS 1.3 only, the ring provider, explicit suites and key
//! exchange groups, no session resumption, SPIFFE verification in both directions.
//!
//! Resumption is off on both sides because a resumed session reports the peer certificate of
//! the original handshake and skips verification: it would hide a rotated certificate from
//! authorization and let a peer put on the deny-list keep reconnecting.

use std::fmt;
use std::sync::{Arc, OnceLock};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, ResolvesClientCert, Resumption};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::verify::{PeerError, PeerFilter, Usage, verify_and_admit};
use crate::{SpiffeId, TrustBundle, WorkloadKey, X509Svid};

/// The only protocol version Signet speaks.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The pinned crypto provider: ring, TLS 1.3 AEAD suites, X25519 then P-256 key exchange.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                cipher_suites: vec![
                    ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
                    ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
                    ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
                ],
                kx_groups: vec![ring::kx_group::X25519, ring::kx_group::SECP256R1],
                ..ring::default_provider()
            })
        })
        .clone()
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    provider().signature_verification_algorithms
}

/// The trust bundle a verifier checks against; swap it to apply an update to new handshakes.
pub type SharedBundle = Arc<ArcSwap<TrustBundle>>;

/// Wraps a bundle for sharing between verifiers and the code that updates it.
pub fn shared_bundle(bundle: TrustBundle) -> SharedBundle {
    Arc::new(ArcSwap::from_pointee(bundle))
}

/// What both verifiers share: the bundle, the filter, and the signature checks.
#[derive(Debug)]
struct PeerCheck {
    bundle: SharedBundle,
    filter: Arc<dyn PeerFilter>,
}

impl PeerCheck {
    fn chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: Usage,
    ) -> Result<(), Error> {
        let bundle = self.bundle.load();
        verify_and_admit(
            &bundle,
            self.filter.as_ref(),
            end_entity,
            intermediates,
            now,
            usage,
        )
        .map(drop)
        .map_err(to_rustls)
    }

    fn tls12_signature() -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General("TLS 1.2 is not allowed".to_owned()))
    }

    fn tls13_signature(
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }
}

/// A server's verifier of client certificates: a client must present an SVID of the bundle's
/// trust domain that passes the filter.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    check: PeerCheck,
    mandatory: bool,
}

impl SpiffeClientVerifier {
    /// Verifies against `bundle` and then `filter` (a deny-list, usually).
    pub fn new(bundle: SharedBundle, filter: Arc<dyn PeerFilter>) -> Self {
        Self {
            check: PeerCheck { bundle, filter },
            mandatory: true,
        }
    }

    /// Like [`Self::new`], but a client may also connect without a certificate (the control
    /// plane's join call, operators with a bearer token); one that presents a certificate is
    /// verified just the same. Whoever serves must then tell the two apart.
    pub fn optional(bundle: SharedBundle, filter: Arc<dyn PeerFilter>) -> Self {
        Self {
            mandatory: false,
            ..Self::new(bundle, filter)
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.check
            .chain(end_entity, intermediates, now, Usage::Client)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        PeerCheck::tls12_signature()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        PeerCheck::tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

/// A client's verifier of server certificates: the server must present an SVID of the
/// bundle's trust domain that passes the filter (an [`crate::verify::AllowList`] of the
/// upstream's expected identities, usually). The TLS server name is not used: SPIFFE
/// identities are checked instead of DNS names.
#[derive(Debug)]
pub struct SpiffeServerVerifier(PeerCheck);

impl SpiffeServerVerifier {
    /// Verifies against `bundle` and then `filter`.
    pub fn new(bundle: SharedBundle, filter: Arc<dyn PeerFilter>) -> Self {
        Self(PeerCheck { bundle, filter })
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.0
            .chain(end_entity, intermediates, now, Usage::Server)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        PeerCheck::tls12_signature()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        PeerCheck::tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

fn to_rustls(e: PeerError) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// The SPIFFE reason a handshake failed, if it failed on the peer's certificate.
pub fn peer_error(e: &Error) -> Option<&PeerError> {
    match e {
        Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<PeerError>()
        }
        _ => None,
    }
}

/// The SPIFFE reason inside an I/O error from a tokio-rustls handshake, if there is one.
pub fn peer_error_in_io(e: &std::io::Error) -> Option<&PeerError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
        .and_then(peer_error)
}

/// The current SVID and key, swapped in place when the SVID rotates: listeners and
/// connectors keep running and new handshakes present the new certificate.
#[derive(Default)]
pub struct SvidResolver {
    current: ArcSwapOption<CertifiedKey>,
}

impl SvidResolver {
    /// A resolver with nothing to present yet (handshakes fail until `update`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Presents `svid` with `key` from the next handshake on.
    pub fn update(&self, svid: &X509Svid, key: &WorkloadKey) -> Result<(), Error> {
        let signing = provider()
            .key_provider
            .load_private_key(key.private_key_der())?;
        let certified = CertifiedKey::new(svid.chain().to_vec(), signing);
        certified.keys_match()?;
        self.current.store(Some(Arc::new(certified)));
        Ok(())
    }

    /// Whether an SVID is loaded.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }
}

impl fmt::Debug for SvidResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidResolver")
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

impl ResolvesServerCert for SvidResolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

impl ResolvesClientCert for SvidResolver {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }

    fn has_certs(&self) -> bool {
        self.is_loaded()
    }
}

/// A server configuration that requires client SVIDs.
pub fn server_config(
    certs: Arc<dyn ResolvesServerCert>,
    clients: Arc<SpiffeClientVerifier>,
) -> Result<ServerConfig, Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_client_cert_verifier(clients)
        .with_cert_resolver(certs);
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A client configuration that presents an SVID and checks the server's.
pub fn client_config(
    certs: Arc<dyn ResolvesClientCert>,
    servers: Arc<SpiffeServerVerifier>,
) -> Result<ClientConfig, Error> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(servers)
        .with_client_cert_resolver(certs);
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// The SPIFFE ID and serial of an established connection's peer
/// (`conn.peer_certificates()`).
///
/// Only meaningful after a handshake under one of the verifiers above: the chain was checked
/// then, so this only reads the leaf.
pub fn peer_identity(
    certs: Option<&[CertificateDer<'_>]>,
) -> Result<(SpiffeId, crate::Serial), PeerError> {
    let leaf = certs
        .and_then(<[_]>::first)
        .ok_or(PeerError::NoCertificate)?;
    let cert = crate::svid::parse_cert(leaf, 0).map_err(PeerError::NotSvid)?;
    let id = crate::svid::spiffe_id_of(&cert).map_err(PeerError::NotSvid)?;
    Ok((id, crate::Serial::from_bytes(cert.raw_serial())))
}
