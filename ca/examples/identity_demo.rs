//! A tour of Signet's identity layer on one machine: a built-in CA, two workloads with
//! SPIFFE SVIDs talking mutual TLS on 127.0.0.1, and the ways a peer gets refused.
//!
//! Run: `cargo run --release -p signet-ca --example identity_demo [DATA_DIR]`
//! (without DATA_DIR the CA lives in a temporary directory removed on exit).

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::ServerName;
use signet_ca::{Authority as _, BuiltinAuthority, BuiltinOptions, SignRequest};
use signet_spiffe::tls::{
    SharedBundle, SpiffeClientVerifier, SpiffeServerVerifier, SvidResolver, client_config,
    peer_error_in_io, peer_identity, server_config, shared_bundle,
};
use signet_spiffe::verify::{AllowList, DenyList};
use signet_spiffe::{SpiffeId, TrustBundle, TrustDomain, WorkloadKey, X509Svid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// A workload's identity: its SVID and the resolver rustls presents it through.
struct Workload {
    svid: X509Svid,
    certs: Arc<SvidResolver>,
}

fn enroll(ca: &BuiltinAuthority, id: &SpiffeId) -> Result<Workload> {
    // The workload makes its own key; only the CSR goes to the CA.
    let key = WorkloadKey::generate()?;
    let csr = key.csr(id)?;
    let svid = ca.issue(SignRequest {
        csr: &csr,
        id,
        ttl: None,
    })?;
    let certs = Arc::new(SvidResolver::new());
    certs.update(&svid, &key)?;
    Ok(Workload { svid, certs })
}

async fn serve(cart: &Workload, bundle: SharedBundle, deny: Arc<DenyList>) -> Result<SocketAddr> {
    let verifier = Arc::new(SpiffeClientVerifier::new(bundle, deny));
    let acceptor = TlsAcceptor::from(Arc::new(server_config(cart.certs.clone(), verifier)?));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        let who = peer_identity(tls.get_ref().1.peer_certificates())
                            .map_or_else(|e| e.to_string(), |(id, _)| id.to_string());
                        let _ = tls.write_all(format!("hello {who}").as_bytes()).await;
                        let _ = tls.shutdown().await;
                    }
                    Err(e) => {
                        let why =
                            peer_error_in_io(&e).map_or_else(|| e.to_string(), ToString::to_string);
                        println!("    cart's side: handshake failed: {why}");
                    }
                }
            });
        }
    });
    Ok(addr)
}

async fn call(
    addr: SocketAddr,
    client: &Workload,
    bundle: TrustBundle,
    expect: &SpiffeId,
) -> String {
    let verifier = Arc::new(SpiffeServerVerifier::new(
        shared_bundle(bundle),
        Arc::new(AllowList::new([expect.clone()])),
    ));
    let attempt = async {
        let config = client_config(client.certs.clone(), verifier)?;
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("cart")?, tcp)
            .await?;
        let mut reply = String::new();
        tls.read_to_string(&mut reply).await?;
        Ok::<_, Box<dyn Error>>(reply)
    };
    let outcome = match attempt.await {
        Ok(reply) if !reply.is_empty() => format!("ALLOWED  cart answered {reply:?}"),
        Ok(_) => "REFUSED  connection closed without an answer".to_owned(),
        Err(e) => {
            let why = e
                .downcast_ref::<std::io::Error>()
                .and_then(peer_error_in_io)
                .map_or_else(|| e.to_string(), ToString::to_string);
            format!("REFUSED  {why}")
        }
    };
    // Let the server's side of the story print under the same heading.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    outcome
}

fn secs_from_now(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
        .as_secs()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| temp.path().join("ca"), PathBuf::from);
    let td = TrustDomain::new("acme.internal")?;
    let ca = BuiltinAuthority::open(&dir, &td, BuiltinOptions::default())?;
    println!("built-in CA for trust domain {td} in {}", dir.display());
    println!(
        "  intermediate (pathLen 0) valid for {} more days",
        secs_from_now(ca.intermediate_not_after()) / 86400
    );

    let cart = enroll(&ca, &td.service_account("shop", "cart")?)?;
    let frontend = enroll(&ca, &td.service_account("shop", "frontend")?)?;
    for w in [&cart, &frontend] {
        println!(
            "  issued {}  serial {}  expires in {}s, refresh in {}s",
            w.svid.id(),
            w.svid.serial(),
            secs_from_now(w.svid.not_after()),
            secs_from_now(w.svid.refresh_at())
        );
    }

    let bundle = shared_bundle(ca.bundle());
    let deny = Arc::new(DenyList::new());
    let addr = serve(&cart, bundle.clone(), deny.clone()).await?;
    println!("\ncart listens for mutual TLS on {addr}\n");

    println!("1. frontend -> cart, both with SVIDs from our CA:");
    println!(
        "    {}",
        call(addr, &frontend, ca.bundle(), cart.svid.id()).await
    );

    println!("2. frontend expecting payments, but cart answers:");
    let payments = td.service_account("shop", "payments")?;
    println!(
        "    {}",
        call(addr, &frontend, ca.bundle(), &payments).await
    );

    println!("3. an intruder from trust domain evil.example:");
    let evil_dir = tempfile::tempdir()?;
    let evil_td = TrustDomain::new("evil.example")?;
    let evil = BuiltinAuthority::open(evil_dir.path(), &evil_td, BuiltinOptions::default())?;
    let intruder = enroll(&evil, &evil_td.service_account("shop", "frontend")?)?;
    println!(
        "    {}",
        call(addr, &intruder, ca.bundle(), cart.svid.id()).await
    );

    println!("4. frontend after its certificate serial is put on cart's deny-list:");
    deny.replace([], [frontend.svid.serial().clone()]);
    println!(
        "    {}",
        call(addr, &frontend, ca.bundle(), cart.svid.id()).await
    );

    println!(
        "\ntrust bundle (SPIFFE JWKS form):\n{}",
        ca.bundle().to_jwks()?
    );
    Ok(())
}
