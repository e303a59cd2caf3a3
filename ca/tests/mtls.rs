//! Mutual TLS over real sockets on 127.0.0.1, with SVIDs from the built-in CA and the SPIFFE
//! verifiers on both sides.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed setup is the test failing"
)]

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use signet_ca::{Authority as _, BuiltinAuthority, BuiltinOptions, SignRequest};
use signet_spiffe::tls::{
    SpiffeClientVerifier, SpiffeServerVerifier, SvidResolver, client_config, peer_error_in_io,
    peer_identity, server_config, shared_bundle,
};
use signet_spiffe::verify::{AdmitAll, AllowList, DenyList, PeerFilter};
use signet_spiffe::{Serial, SpiffeId, TrustDomain, WorkloadKey, X509Svid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

struct Workload {
    svid: X509Svid,
    resolver: Arc<SvidResolver>,
}

fn workload(ca: &BuiltinAuthority, id: &SpiffeId) -> Workload {
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr(id).unwrap();
    let svid = ca
        .issue(SignRequest {
            csr: &csr,
            id,
            ttl: None,
        })
        .unwrap();
    let resolver = Arc::new(SvidResolver::new());
    resolver.update(&svid, &key).unwrap();
    Workload { svid, resolver }
}

fn open_ca(td: &str) -> (tempfile::TempDir, BuiltinAuthority) {
    let dir = tempfile::tempdir().unwrap();
    let ca = BuiltinAuthority::open(
        dir.path(),
        &TrustDomain::new(td).unwrap(),
        BuiltinOptions::default(),
    )
    .unwrap();
    (dir, ca)
}

/// What the server saw of one connection.
type Accepted = Result<(SpiffeId, Serial), String>;

/// A server that accepts connections forever, answers "hello <peer id>" and reports each
/// accepted peer (or handshake error) on the channel.
async fn serve(
    server: &Workload,
    ca: &BuiltinAuthority,
    filter: Arc<dyn PeerFilter>,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Accepted>,
) {
    let verifier = Arc::new(SpiffeClientVerifier::new(
        shared_bundle(ca.bundle()),
        filter,
    ));
    let config = server_config(server.resolver.clone(), verifier).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        let peer = peer_identity(tls.get_ref().1.peer_certificates()).unwrap();
                        let _ = tx.send(Ok(peer.clone()));
                        let mut buf = [0u8; 5];
                        if tls.read_exact(&mut buf).await.is_ok() {
                            let reply = format!("hello {}", peer.0);
                            let _ = tls.write_all(reply.as_bytes()).await;
                            let _ = tls.shutdown().await;
                        }
                    }
                    Err(e) => {
                        let reason = peer_error_in_io(&e)
                            .map_or_else(|| e.to_string(), |p| p.reason().to_owned());
                        let _ = tx.send(Err(reason));
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Connects as `client`, expecting the server to be one of `expect`; returns the server's
/// identity and its reply.
async fn call(
    addr: std::net::SocketAddr,
    client: &Workload,
    ca: &BuiltinAuthority,
    expect: Arc<dyn PeerFilter>,
) -> Result<(SpiffeId, String), String> {
    let verifier = Arc::new(SpiffeServerVerifier::new(
        shared_bundle(ca.bundle()),
        expect,
    ));
    let config = client_config(client.resolver.clone(), verifier).unwrap();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("cart.acme.internal").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (server_id, _) = peer_identity(tls.get_ref().1.peer_certificates()).unwrap();
    tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_string(&mut reply))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok((server_id, reply))
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

#[tokio::test]
async fn both_sides_see_each_others_spiffe_id() {
    let (_d, ca) = open_ca("acme.internal");
    let cart = workload(&ca, &id("spiffe://acme.internal/ns/shop/sa/cart"));
    let frontend = workload(&ca, &id("spiffe://acme.internal/ns/shop/sa/frontend"));
    let (addr, mut seen) = serve(&cart, &ca, Arc::new(DenyList::new())).await;

    let expect = Arc::new(AllowList::new([cart.svid.id().clone()]));
    let (server_id, reply) = call(addr, &frontend, &ca, expect).await.unwrap();
    assert_eq!(&server_id, cart.svid.id());
    assert_eq!(reply, "hello spiffe://acme.internal/ns/shop/sa/frontend");
    let (client_id, serial) = seen.recv().await.unwrap().unwrap();
    assert_eq!(&client_id, frontend.svid.id());
    assert_eq!(&serial, frontend.svid.serial());
}

#[tokio::test]
async fn a_client_from_a_foreign_trust_domain_is_refused() {
    let (_d, ca) = open_ca("acme.internal");
    let (_e, evil) = open_ca("evil.example");
    let cart = workload(&ca, &id("spiffe://acme.internal/ns/shop/sa/cart"));
    let intruder = workload(&evil, &id("spiffe://evil.example/ns/shop/sa/frontend"));
    let (addr, mut seen) = serve(&cart, &ca, Arc::new(AdmitAll)).await;

    // The intruder trusts our CA (so it would accept our server); we must not accept it.
    let result = call(addr, &intruder, &ca, Arc::new(AdmitAll)).await;
    assert!(result.is_err(), "intruder got through: {result:?}");
    // Not a domain this one federates with: refused before any root is tried.
    assert_eq!(
        seen.recv().await.unwrap(),
        Err("wrong_trust_domain".to_owned())
    );
}

#[tokio::test]
async fn a_client_on_the_deny_list_is_refused_from_the_next_handshake() {
    let (_d, ca) = open_ca("acme.internal");
    let cart = workload(&ca, &id("spiffe://acme.internal/ns/shop/sa/cart"));
    let frontend = workload(&ca, &id("spiffe://acme.internal/ns/shop/sa/frontend"));
    let deny = Arc::new(DenyList::new());
    let (addr, mut seen) = serve(&cart, &ca, deny.clone()).await;

    assert!(call(addr, &frontend, &ca, Arc::new(AdmitAll)).await.is_ok());
    assert!(seen.recv().await.unwrap().is_ok());

    deny.replace([], [frontend.svid.serial().clone()]);
    assert!(
        call(addr, &frontend, &ca, Arc::new(AdmitAll))
            .await
            .is_err()
    );
    assert_eq!(seen.recv().await.unwrap(), Err("refused".to_owned()));
}

#[tokio::test]
async fn a_server_with_an_unexpected_identity_is_refused_by_the_client() {
    let (_d, ca) = open_ca("acme.internal");
    let payments = workload(&ca, &id("spiffe://acme.internal/ns/shop/sa/payments"));
    let frontend = workload(&ca, &id("spiffe://acme.internal/ns/shop/sa/frontend"));
    let (addr, _seen) = serve(&payments, &ca, Arc::new(AdmitAll)).await;

    let expect_cart = Arc::new(AllowList::new([id(
        "spiffe://acme.internal/ns/shop/sa/cart",
    )]));
    let err = call(addr, &frontend, &ca, expect_cart).await.unwrap_err();
    assert!(err.contains("not one of the expected identities"), "{err}");
}

#[tokio::test]
async fn a_rotated_svid_is_presented_on_the_next_handshake_without_a_restart() {
    let (_d, ca) = open_ca("acme.internal");
    let cart_id = id("spiffe://acme.internal/ns/shop/sa/cart");
    let cart = workload(&ca, &cart_id);
    let frontend = workload(&ca, &id("spiffe://acme.internal/ns/shop/sa/frontend"));
    let (addr, mut seen) = serve(&cart, &ca, Arc::new(AdmitAll)).await;

    call(addr, &frontend, &ca, Arc::new(AdmitAll))
        .await
        .unwrap();
    let (_, first) = seen.recv().await.unwrap().unwrap();

    // Rotate the client's SVID in place; resumption is off, so the next handshake is full
    // and carries the new certificate.
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr(frontend.svid.id()).unwrap();
    let fresh = ca
        .issue(SignRequest {
            csr: &csr,
            id: frontend.svid.id(),
            ttl: None,
        })
        .unwrap();
    frontend.resolver.update(&fresh, &key).unwrap();

    call(addr, &frontend, &ca, Arc::new(AdmitAll))
        .await
        .unwrap();
    let (_, second) = seen.recv().await.unwrap().unwrap();
    assert_ne!(first, second);
    assert_eq!(&second, fresh.serial());
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let (_d, ca) = open_ca("acme.internal");
    let cart = workload(&ca, &id("spiffe://acme.internal/ns/shop/sa/cart"));
    let (addr, mut seen) = serve(&cart, &ca, Arc::new(AdmitAll)).await;

    let empty = Workload {
        svid: cart.svid.clone(),
        resolver: Arc::new(SvidResolver::new()),
    };
    assert!(call(addr, &empty, &ca, Arc::new(AdmitAll)).await.is_err());
    assert!(seen.recv().await.unwrap().is_err());
}
