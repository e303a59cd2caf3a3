//! `signet.v1.Identity`: SVIDs for proxies. A join token buys the first one; after that a
//! proxy renews over mTLS with the SVID it holds, and only for the identity it names.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateSigningRequestDer;
use signet_ca::csr::check_csr;
use signet_ca::token::{TokenRecord, TokenStoreError};
use signet_ca::{AuthorityError, BoxFuture, JoinTokens, SignRequest, TokenError, TokenStore};
use signet_otel::context::TraceContext;
use signet_spiffe::jwt::check_audience;
use signet_spiffe::{SpiffeId, X509Svid};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api::v1 as pb;
use crate::server::hub::Hub;
use crate::server::store::{IssuedCertificate, Store, unix_ms};
use crate::server::tls::Peer;

/// Largest CSR accepted.
const MAX_CSR_LEN: usize = 16 * 1024;

/// Join tokens kept in the control plane's store.
#[derive(Debug, Clone)]
pub struct Tokens(pub Arc<dyn Store>);

impl TokenStore for Tokens {
    fn insert(&self, record: TokenRecord) -> BoxFuture<'_, Result<(), TokenStoreError>> {
        self.0.insert_token(record)
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenRecord>, TokenStoreError>> {
        self.0.get_token(id)
    }

    fn mark_used<'a>(
        &'a self,
        id: &'a str,
        at: SystemTime,
    ) -> BoxFuture<'a, Result<bool, TokenStoreError>> {
        self.0.mark_token_used(id, at)
    }
}

/// The service.
#[derive(Debug, Clone)]
pub struct IdentityService {
    hub: Arc<Hub>,
    tokens: JoinTokens<Tokens>,
}

impl IdentityService {
    /// The service over `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        let tokens = JoinTokens::new(Tokens(Arc::clone(&hub.store)));
        Self { hub, tokens }
    }

    /// [`Self::sign`], timed into the issuance histogram by kind and outcome, and a span
    /// under the call's (`parent`) when it is traced.
    async fn timed_sign(
        &self,
        id: &SpiffeId,
        csr: Vec<u8>,
        (ttl_seconds, kind): (u32, &'static str),
        parent: Option<TraceContext>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let span = parent.and_then(|p| crate::server::spans::child(&self.hub, &p));
        let started = std::time::Instant::now();
        let signed = self.sign(id, csr, ttl_seconds, kind).await;
        let outcome = if signed.is_ok() { "ok" } else { "error" };
        self.hub
            .metrics
            .issuance
            .observe(&[kind, outcome], started.elapsed(), 0, 0);
        if let Some(span) = span {
            let mut a = signet_otel::trace::Attributes::default();
            a.str("signet.svid.kind", kind)
                .str("signet.spiffe_id", id.as_str())
                .str("signet.ca.backend", self.hub.ca.active().backend.name());
            let failed = signed.as_ref().err().map(|s| s.message().to_owned());
            crate::server::spans::end(
                &self.hub,
                &span,
                ("svid.sign".to_owned(), signet_otel::trace::Kind::Internal),
                a,
                failed,
            );
        }
        signed.map(Response::new)
    }

    async fn sign(
        &self,
        id: &SpiffeId,
        csr: Vec<u8>,
        ttl_seconds: u32,
        kind: &str,
    ) -> Result<pb::IssueResponse, Status> {
        if csr.len() > MAX_CSR_LEN {
            return Err(Status::invalid_argument("CSR is too large"));
        }
        let csr = CertificateSigningRequestDer::from(csr);
        let requested = (ttl_seconds > 0).then(|| Duration::from_secs(u64::from(ttl_seconds)));
        let ttl = self.hub.ca.profile().workload_request(requested);
        let svid = self
            .hub
            .ca
            .sign(SignRequest { csr: &csr, id, ttl })
            .await
            .map_err(authority_status)?;
        self.hub
            .store
            .record_certificate(record(&svid, kind))
            .await
            // Not handed out unrecorded; the database away is worth a retry.
            .map_err(|e| Status::unavailable(e.to_string()))?;
        self.hub.audit.record(certificate_event(&svid, kind));
        tracing::info!(spiffe_id = %id, serial = %svid.serial(), kind, "SVID issued");
        Ok(pb::IssueResponse {
            spiffe_id: id.as_str().to_owned(),
            chain: svid.chain().iter().map(|c| c.to_vec()).collect(),
            bundle: Some(self.hub.bundle()),
        })
    }
}

impl IdentityService {
    /// Signs a JWT-SVID for `id`, which the call's client certificate proved; each one is
    /// audited by its `jti` (the token itself never is).
    fn mint(
        &self,
        id: &SpiffeId,
        body: &pb::MintJwtSvidRequest,
    ) -> Result<pb::MintJwtSvidResponse, Status> {
        check_audience(&body.audience).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let signer = self
            .hub
            .ca
            .jwt_signer()
            .ok_or_else(|| Status::unavailable("no JWT-SVID signing key is active"))?;
        let ttl = self.hub.ca.jwt_profile().grant(body.ttl_seconds);
        let mut jti = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut jti)
            .map_err(|_| Status::internal("no secure random source"))?;
        let jti: String = jti.iter().map(|b| format!("{b:02x}")).collect();
        let minted = signer
            .sign(id, &body.audience, SystemTime::now(), ttl, &jti)
            .map_err(|e| Status::internal(e.to_string()))?;
        let expires_at = minted
            .expires
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.hub.audit.record(signet_audit::Event::Certificate(
            signet_audit::record::CertificateEvent {
                kind: "jwt-svid".to_owned(),
                spiffe_id: id.as_str().to_owned(),
                serial: jti,
                not_after: expires_at.saturating_mul(1_000_000_000),
            },
        ));
        tracing::debug!(spiffe_id = %id, audience = ?body.audience, kid = signer.key_id(), "JWT-SVID issued");
        Ok(pb::MintJwtSvidResponse {
            spiffe_id: id.as_str().to_owned(),
            token: minted.token,
            expires_at,
        })
    }
}

/// The audit record of an issued SVID.
pub fn certificate_event(svid: &X509Svid, kind: &str) -> signet_audit::Event {
    signet_audit::Event::Certificate(signet_audit::record::CertificateEvent {
        kind: kind.to_owned(),
        spiffe_id: svid.id().as_str().to_owned(),
        serial: svid.serial().to_string(),
        not_after: svid
            .not_after()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
    })
}

/// What the store keeps of an issued SVID.
pub fn record(svid: &X509Svid, kind: &str) -> IssuedCertificate {
    IssuedCertificate {
        serial: svid.serial().to_string(),
        spiffe_id: svid.id().as_str().to_owned(),
        not_before: unix_ms(svid.not_before()),
        not_after: unix_ms(svid.not_after()),
        issued_at: unix_ms(SystemTime::now()),
        kind: kind.to_owned(),
    }
}

fn authority_status(e: AuthorityError) -> Status {
    match e {
        AuthorityError::Csr(e) => Status::invalid_argument(format!("CSR refused: {e}")),
        AuthorityError::ForeignId { .. } => Status::permission_denied(e.to_string()),
        AuthorityError::NoPath(_) => Status::invalid_argument(e.to_string()),
        AuthorityError::Unavailable(_) => Status::unavailable(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

fn token_status(e: TokenError) -> Status {
    match e {
        // The database away: a retriable condition, not the caller's fault.
        TokenError::Store(e) => Status::unavailable(e.to_string()),
        TokenError::Malformed => Status::invalid_argument(e.to_string()),
        other => Status::unauthenticated(other.to_string()),
    }
}

/// The caller's current certificate, or the status that refuses the call.
pub fn caller<T>(request: &Request<T>, hub: &Hub) -> Result<SpiffeId, Status> {
    let peer = request
        .extensions()
        .get::<Peer>()
        .and_then(|p| p.certificate.clone())
        .ok_or_else(|| Status::unauthenticated("this call needs a client SVID"))?;
    if !peer.is_current() {
        return Err(Status::unauthenticated("the client SVID has expired"));
    }
    let deny = hub.deny_list();
    if deny.spiffe_ids.iter().any(|d| d == peer.id.as_str())
        || deny.serials.iter().any(|s| *s == peer.serial.to_string())
    {
        return Err(Status::permission_denied("the client SVID is deny-listed"));
    }
    Ok(peer.id)
}

type BundleStream = Pin<Box<dyn Stream<Item = Result<pb::TrustBundle, Status>> + Send>>;

#[tonic::async_trait]
impl pb::identity_server::Identity for IdentityService {
    async fn issue(
        &self,
        request: Request<pb::IssueRequest>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let remote = request.extensions().get::<Peer>().map(|p| p.remote);
        let parent = request.extensions().get::<TraceContext>().cloned();
        let body = request.into_inner();
        let refused = |e: TokenError| {
            tracing::warn!(?remote, error = %e, "join refused");
            token_status(e)
        };
        // The CSR is checked before the token is spent, so a bad request costs no token.
        let id = self.tokens.peek(&body.join_token).await.map_err(refused)?;
        check_csr(
            &CertificateSigningRequestDer::from(body.csr.as_slice()),
            &id,
        )
        .map_err(|e| Status::invalid_argument(format!("CSR refused: {e}")))?;
        let id = self
            .tokens
            .redeem(&body.join_token)
            .await
            .map_err(refused)?;
        self.timed_sign(&id, body.csr, (body.ttl_seconds, "issue"), parent)
            .await
    }

    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let id = caller(&request, &self.hub)?;
        let parent = request.extensions().get::<TraceContext>().cloned();
        let body = request.into_inner();
        self.timed_sign(&id, body.csr, (body.ttl_seconds, "renew"), parent)
            .await
    }

    async fn mint_jwt_svid(
        &self,
        request: Request<pb::MintJwtSvidRequest>,
    ) -> Result<Response<pb::MintJwtSvidResponse>, Status> {
        let id = caller(&request, &self.hub)?;
        let body = request.into_inner();
        let started = std::time::Instant::now();
        let minted = self.mint(&id, &body);
        let outcome = if minted.is_ok() { "ok" } else { "error" };
        self.hub
            .metrics
            .issuance
            .observe(&["jwt", outcome], started.elapsed(), 0, 0);
        minted.map(Response::new)
    }

    type WatchBundleStream = BundleStream;

    async fn watch_bundle(
        &self,
        request: Request<pb::WatchBundleRequest>,
    ) -> Result<Response<Self::WatchBundleStream>, Status> {
        caller(&request, &self.hub)?;
        Ok(Response::new(Box::pin(self.hub.follow(
            "bundle",
            Hub::bundle,
            |a, b| a == b,
        ))))
    }
}
