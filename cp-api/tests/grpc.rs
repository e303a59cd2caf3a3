//! The gRPC API of a real `signet-cp` as a proxy (or an intruder) speaks it: identity comes
//! from the client certificate, never from a request field, and every refusal has the
//! status a client can act on.
#![expect(clippy::unwrap_used, reason = "tests: a failure is the test failing")]

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::CertificateDer;
use signet_cp::api::v1 as pb;
use signet_spiffe::tls::SvidResolver;
use signet_spiffe::{SpiffeId, TrustBundle, TrustDomain, WorkloadKey, X509Svid};
use signet_tests::control::{ControlPlane, control_plane_tls, grpc_channel};
use tonic::Code;
use tonic::transport::Channel;

const TD: &str = "grpc.test";
const CART: &str = "spiffe://grpc.test/ns/shop/sa/cart";

struct Api {
    cp: ControlPlane,
    _dir: tempfile::TempDir,
    td: TrustDomain,
    bundle: TrustBundle,
}

impl Api {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::start(&dir.path().join("cp"), &["--trust-domain", TD]);
        let td = TrustDomain::new(TD).unwrap();
        let pem = std::fs::read_to_string(cp.setting("SIGNET_CA")).unwrap();
        let bundle = TrustBundle::from_pem(td.clone(), &pem).unwrap();
        Self {
            cp,
            _dir: dir,
            td,
            bundle,
        }
    }

    fn channel(&self, client: Arc<dyn ResolvesClientCert>) -> Channel {
        grpc_channel(self.cp.grpc, control_plane_tls(&self.bundle, client, b"h2"))
    }

    fn anonymous(&self) -> Channel {
        self.channel(Arc::new(SvidResolver::new()))
    }

    async fn issue(
        &self,
        token: &str,
        csr_for: &SpiffeId,
    ) -> Result<(Arc<SvidResolver>, X509Svid), tonic::Status> {
        let key = WorkloadKey::generate().unwrap();
        let csr = key.csr(csr_for).unwrap();
        let response = pb::identity_client::IdentityClient::new(self.anonymous())
            .issue(pb::IssueRequest {
                join_token: token.to_owned(),
                csr: csr.as_ref().to_vec(),
                ttl_seconds: 0,
            })
            .await?
            .into_inner();
        let chain = response
            .chain
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        let svid = X509Svid::parse(chain, &self.td, std::time::SystemTime::now()).unwrap();
        let resolver = Arc::new(SvidResolver::new());
        resolver.update(&svid, &key).unwrap();
        Ok((resolver, svid))
    }
}

#[tokio::test]
async fn issue_renew_and_watch_with_the_identity_of_the_certificate() {
    let api = Api::start();
    let cart: SpiffeId = CART.parse().unwrap();
    let token = api.cp.token(CART);

    // A CSR for another identity is refused, and the token is not spent by it.
    let other: SpiffeId = "spiffe://grpc.test/ns/shop/sa/payments".parse().unwrap();
    let err = api.issue(&token, &other).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let (resolver, first) = api.issue(&token, &cart).await.unwrap();
    assert_eq!(first.id(), &cart);
    // Spent now.
    let err = api.issue(&token, &cart).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("already used"));
    // Malformed and unknown tokens.
    let err = api.issue("nonsense", &cart).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let unknown = format!("{}.{}", "0".repeat(16), "0".repeat(64));
    assert_eq!(
        api.issue(&unknown, &cart).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // Renew: over mTLS, for the certificate's identity.
    let key = WorkloadKey::generate().unwrap();
    let csr = key.csr(&cart).unwrap().as_ref().to_vec();
    let renewed = pb::identity_client::IdentityClient::new(api.channel(resolver.clone()))
        .renew(pb::RenewRequest {
            csr: csr.clone(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewed.spiffe_id, CART);
    let chain = renewed
        .chain
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let second = X509Svid::parse(chain, &api.td, std::time::SystemTime::now()).unwrap();
    assert_ne!(second.serial(), first.serial());
    // Without a certificate there is no one to renew for.
    let err = pb::identity_client::IdentityClient::new(api.anonymous())
        .renew(pb::RenewRequest {
            csr,
            ttl_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // The bundle stream starts with the bundle the control plane wrote for operators.
    let mut bundles = pb::identity_client::IdentityClient::new(api.channel(resolver.clone()))
        .watch_bundle(pb::WatchBundleRequest {})
        .await
        .unwrap()
        .into_inner();
    let bundle = bundles.message().await.unwrap().unwrap();
    assert_eq!(bundle.trust_domain, TD);
    let roots: Vec<Vec<u8>> = api.bundle.roots().map(|r| r.to_vec()).collect();
    assert_eq!(bundle.roots, roots);
    let err = pb::identity_client::IdentityClient::new(api.anonymous())
        .watch_bundle(pb::WatchBundleRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // The config stream: the cart's view, with no policies applied yet.
    let mut configs = pb::config_client::ConfigClient::new(api.channel(resolver.clone()))
        .watch(pb::WatchRequest {
            upstreams: vec!["payments".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let config = configs.message().await.unwrap().unwrap();
    assert_eq!(config.policies.unwrap().version, 0);
    assert_eq!(config.upstreams.len(), 1);
    assert!(config.upstreams[0].endpoints.is_empty());
    let err = pb::config_client::ConfigClient::new(api.anonymous())
        .watch(pb::WatchRequest { upstreams: vec![] })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_proxy_registers_only_as_its_own_service() {
    let api = Api::start();
    let cart: SpiffeId = CART.parse().unwrap();
    let (resolver, _) = api.issue(&api.cp.token(CART), &cart).await.unwrap();
    let mut registry = pb::registry_client::RegistryClient::new(api.channel(resolver));
    let register = |service: &str, endpoint: &str| pb::RegisterRequest {
        instance: "i-1".into(),
        service: service.into(),
        namespace: "shop".into(),
        endpoint: endpoint.into(),
        admin: String::new(),
        config_version: 0,
        policy_version: 0,
        trust_version: 0,
        shadow_version: 0,
        traffic_version: 0,
        app_health: 0,
        weight: 0,
        labels: Default::default(),
        service_address: String::new(),
    };
    let err = registry
        .register(register("payments", "127.0.0.1:9"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message()
            .contains("may register only as service `cart`")
    );
    for bad in ["0.0.0.0:9", "127.0.0.1:0", "localhost"] {
        let err = registry.register(register("cart", bad)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
    }
    // A weight beyond the bound is refused, not clamped: no endpoint claims an unbounded
    // share of its service's traffic.
    let mut too_heavy = register("cart", "127.0.0.1:9");
    too_heavy.weight = 10_001;
    let err = registry.register(too_heavy).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("not between 1 and 10000"), "{err:?}");
    // So are labels that could not be a subset's (or a metric's) label.
    let mut bad_labels = register("cart", "127.0.0.1:9");
    bad_labels.labels = [("version".to_owned(), "v 2".to_owned())].into();
    let err = registry.register(bad_labels).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("labels: label `version`"), "{err:?}");
    // A service address must be host:port on the endpoint's own host: a workload cannot
    // claim connections callers make to somewhere else.
    for (address, says) in [
        ("cart:8080", "not host:port"),
        ("127.0.0.1:0", "not reachable"),
        ("10.9.9.9:8080", "not on the endpoint's host"),
    ] {
        let mut bad = register("cart", "127.0.0.1:9");
        bad.service_address = address.into();
        let err = registry.register(bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{address}");
        assert!(err.message().contains(says), "{address}: {err:?}");
    }
    let mut bad_instance = register("cart", "127.0.0.1:9");
    bad_instance.instance = "../etc".into();
    assert_eq!(
        registry.register(bad_instance).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    let mut weighted = register("cart", "127.0.0.1:9");
    weighted.weight = 250;
    weighted.service_address = "127.0.0.1:8080".into();
    let ok = registry.register(weighted).await.unwrap().into_inner();
    assert!(ok.heartbeat_interval_seconds >= 1);
    let heartbeat = |instance: &str| pb::HeartbeatRequest {
        instance: instance.into(),
        config_version: 1,
        policy_version: 0,
        trust_version: 0,
        shadow_version: 0,
        traffic_version: 0,
        app_health: 0,
        endpoints: Vec::new(),
        stats: Vec::new(),
        serial: String::new(),
    };
    registry.heartbeat(heartbeat("i-1")).await.unwrap();
    let proxies = api.cp.meshctl_ok(&["proxies", "list", "-o", "json"]);
    let proxies: serde_json::Value = serde_json::from_str(&proxies).unwrap();
    assert_eq!(proxies["proxies"][0]["weight"], 250, "{proxies}");
    let err = registry
        .heartbeat(heartbeat("i-unknown"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let services = api.cp.meshctl_ok(&["services", "list", "-o", "json"]);
    assert!(services.contains("127.0.0.1:9"), "{services}");

    // Another identity cannot take over the cart's registry entry by reusing its instance
    // id (the entry would then point the cart's callers at the other proxy's endpoint).
    const OTHER: &str = "spiffe://grpc.test/ns/shop/sa/payments";
    let other: SpiffeId = OTHER.parse().unwrap();
    let (resolver, _) = api.issue(&api.cp.token(OTHER), &other).await.unwrap();
    let mut intruder = pb::registry_client::RegistryClient::new(api.channel(resolver));
    let mut takeover = register("payments", "127.0.0.1:7");
    takeover.instance = "i-1".into();
    let err = intruder.register(takeover).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("another identity"), "{err:?}");
    let services = api.cp.meshctl_ok(&["services", "list", "-o", "json"]);
    assert!(services.contains("127.0.0.1:9"), "{services}");
    assert!(!services.contains("127.0.0.1:7"), "{services}");
    // Nor can it announce the cart's app address as its own: intercepting callers would
    // then hand it connections meant for the cart.
    let mut squatter = register("payments", "127.0.0.1:7");
    squatter.instance = "p-1".into();
    squatter.service_address = "127.0.0.1:8080".into();
    let err = intruder.register(squatter.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("service `cart`"), "{err:?}");
    squatter.service_address = "127.0.0.1:8081".into();
    intruder.register(squatter).await.unwrap();

    // One identity's instances are capped.
    for n in 2..=64 {
        let mut more = register("cart", "127.0.0.1:9");
        more.instance = format!("i-{n}");
        registry.register(more).await.unwrap();
    }
    let mut one_too_many = register("cart", "127.0.0.1:9");
    one_too_many.instance = "i-65".into();
    let err = registry.register(one_too_many).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // Re-registering a held instance still works.
    registry
        .register(register("cart", "127.0.0.1:9"))
        .await
        .unwrap();
}
