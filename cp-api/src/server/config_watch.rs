//! `signet.v1.Config`: one stream per proxy carrying everything it enforces. The stream
//! sends the proxy's view at once, then again whenever the control plane changes something
//! that view contains (a policy version, the bundle, the deny-list, an upstream's
//! endpoints); changes elsewhere in the mesh send nothing.
//!
//! A second stream, `WatchTrust`, carries only the trust bundle and the deny-list: small,
//! and independent of the policies, so no policy (however large, or however broken on the
//! proxy's side) can hold back a revocation or a new root.

use std::pin::Pin;
use std::sync::Arc;

use signet_policy::ServiceRef;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api::v1 as pb;
use crate::server::hub::Hub;
use crate::server::identity::caller;

/// Most upstreams one proxy may ask for.
const MAX_UPSTREAMS: usize = 256;

/// The service a SPIFFE ID runs as: `ns/<namespace>/sa/<service>`.
pub fn service_of(id: &signet_spiffe::SpiffeId) -> Result<ServiceRef, Status> {
    id.namespace_and_account()
        .map(|(ns, sa)| ServiceRef::new(sa, ns))
        .ok_or_else(|| {
            Status::failed_precondition(format!(
                "`{id}` does not name a service (expected spiffe://<trust-domain>/ns/<namespace>/sa/<service>)"
            ))
        })
}

/// The service.
#[derive(Debug, Clone)]
pub struct ConfigService {
    hub: Arc<Hub>,
}

impl ConfigService {
    /// The service over `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

type ConfigStream = Pin<Box<dyn Stream<Item = Result<pb::ProxyConfig, Status>> + Send>>;
type TrustStream = Pin<Box<dyn Stream<Item = Result<pb::TrustUpdate, Status>> + Send>>;

/// Everything but the version: a field added to `ProxyConfig` is compared without anyone
/// having to remember to list it here.
fn same_content(a: &pb::ProxyConfig, b: &pb::ProxyConfig) -> bool {
    let unversioned = |c: &pb::ProxyConfig| pb::ProxyConfig {
        version: 0,
        ..c.clone()
    };
    unversioned(a) == unversioned(b)
}

#[tonic::async_trait]
impl pb::config_server::Config for ConfigService {
    type WatchStream = ConfigStream;
    type WatchTrustStream = TrustStream;

    async fn watch_trust(
        &self,
        request: Request<pb::WatchTrustRequest>,
    ) -> Result<Response<Self::WatchTrustStream>, Status> {
        let id = caller(&request, &self.hub)?;
        tracing::debug!(spiffe_id = %id, "trust stream opened");
        let stream = self.hub.follow(
            "trust",
            |hub| pb::TrustUpdate {
                version: hub.generation(),
                bundle: Some(hub.bundle()),
                deny: Some((*hub.deny_list()).clone()),
            },
            |a, b| a.bundle == b.bundle && a.deny == b.deny,
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let id = caller(&request, &self.hub)?;
        let service = service_of(&id)?;
        let mut upstreams = request.into_inner().upstreams;
        if upstreams.len() > MAX_UPSTREAMS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_UPSTREAMS} upstreams"
            )));
        }
        upstreams.sort();
        upstreams.dedup();
        tracing::info!(spiffe_id = %id, upstreams = ?upstreams, "config stream opened");
        let stream = self.hub.follow(
            "config",
            move |hub| hub.config_for(&service, &upstreams),
            same_content,
        );
        Ok(Response::new(Box::pin(stream)))
    }
}
