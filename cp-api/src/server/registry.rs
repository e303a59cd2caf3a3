//! `signet.v1.Registry`: proxies announce their service's endpoint and keep it alive with
//! heartbeats. A proxy may register only as the service its SPIFFE ID names, so the
//! identities other proxies expect for a service are exactly those of its registered members.

use std::net::SocketAddr;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::api::v1 as pb;
use crate::server::config_watch::service_of;
use crate::server::hub::{Hub, RegisterError, Registration, Versions};
use crate::server::identity::caller;

/// Longest instance id accepted.
const MAX_INSTANCE_LEN: usize = 128;

/// The service.
#[derive(Debug, Clone)]
pub struct RegistryService {
    hub: Arc<Hub>,
}

impl RegistryService {
    /// The service over `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

fn check_instance(instance: &str) -> Result<(), Status> {
    if instance.is_empty()
        || instance.len() > MAX_INSTANCE_LEN
        || !instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Status::invalid_argument(
            "instance must be 1-128 characters of letters, digits, `-` and `_`",
        ));
    }
    Ok(())
}

/// A registration's service address: empty is none; otherwise `host:port` with a port and a
/// host other proxies can dial.
pub fn service_address(text: &str) -> Result<Option<SocketAddr>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let address: SocketAddr = text
        .parse()
        .map_err(|_| format!("service address `{text}` is not host:port"))?;
    if address.port() == 0 || address.ip().is_unspecified() {
        return Err(format!(
            "service address `{address}` is not reachable by other workloads"
        ));
    }
    Ok(Some(address))
}

#[tonic::async_trait]
impl pb::registry_server::Registry for RegistryService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let id = caller(&request, &self.hub)?;
        let serial = request
            .extensions()
            .get::<crate::server::tls::Peer>()
            .and_then(|p| p.certificate.as_ref())
            .map(|c| c.serial.to_string())
            .unwrap_or_default();
        let body = request.into_inner();
        check_instance(&body.instance)?;
        let service = service_of(&id)?;
        if body.service != service.name || body.namespace != service.namespace {
            return Err(Status::permission_denied(format!(
                "`{id}` may register only as service `{}` in namespace `{}`",
                service.name, service.namespace
            )));
        }
        let endpoint: SocketAddr = body.endpoint.parse().map_err(|_| {
            Status::invalid_argument(format!("endpoint `{}` is not host:port", body.endpoint))
        })?;
        if endpoint.port() == 0 || endpoint.ip().is_unspecified() {
            return Err(Status::invalid_argument(format!(
                "endpoint `{endpoint}` is not reachable by other proxies"
            )));
        }
        if !body.admin.is_empty() && body.admin.parse::<SocketAddr>().is_err() {
            return Err(Status::invalid_argument("admin is not host:port"));
        }
        // A proxy that says nothing has the default weight; one out of bounds is refused
        // rather than clamped, so its operator learns of it.
        let weight = match body.weight {
            0 => signet_traffic::weight::DEFAULT,
            w => signet_traffic::weight::check(w).map_err(Status::invalid_argument)?,
        };
        tracing::info!(spiffe_id = %id, instance = %body.instance, %endpoint, weight, "proxy registered");
        let health = body.app_health();
        let labels: signet_traffic::labels::Labels = body.labels.into_iter().collect();
        signet_traffic::labels::check(&labels)
            .map_err(|e| Status::invalid_argument(format!("labels: {e}")))?;
        let service_address =
            service_address(&body.service_address).map_err(Status::invalid_argument)?;
        // The app sits beside its proxy: an address on another host would let a workload
        // claim connections meant for somewhere else.
        if let Some(address) = service_address
            && address.ip() != endpoint.ip()
        {
            return Err(Status::invalid_argument(format!(
                "service address {address} is not on the endpoint's host {}",
                endpoint.ip()
            )));
        }
        let registration = Registration {
            labels,
            service_address,
            instance: body.instance,
            spiffe_id: id,
            service: service.name,
            namespace: service.namespace,
            endpoint: endpoint.to_string(),
            weight,
            admin: body.admin,
            serial,
        };
        let member = registration.to_member(std::time::SystemTime::now());
        self.hub
            .register(
                registration,
                Versions {
                    config: body.config_version,
                    policy: body.policy_version,
                    trust: body.trust_version,
                    shadow: body.shadow_version,
                    traffic: body.traffic_version,
                    health,
                },
            )
            .map_err(|e| match e {
                RegisterError::Taken { .. } => Status::permission_denied(e.to_string()),
                RegisterError::TooMany { .. } => Status::resource_exhausted(e.to_string()),
                RegisterError::AddressTaken { .. } => Status::already_exists(e.to_string()),
            })?;
        // Kept so that a restarted control plane still knows this endpoint until the proxy
        // heartbeats again; the registration stands even if the write fails.
        let kept = self
            .hub
            .metrics
            .store_call("put_member", self.hub.store.put_member(member));
        if let Err(e) = kept.await {
            tracing::error!(error = %e, "keeping the registration failed");
        }
        Ok(Response::new(pb::RegisterResponse {
            heartbeat_interval_seconds: u32::try_from(self.hub.heartbeat_interval.as_secs())
                .unwrap_or(u32::MAX)
                .max(1),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let id = caller(&request, &self.hub)?;
        let body = request.into_inner();
        let versions = Versions {
            config: body.config_version,
            policy: body.policy_version,
            trust: body.trust_version,
            shadow: body.shadow_version,
            traffic: body.traffic_version,
            health: body.app_health(),
        };
        if self.hub.heartbeat(
            &body.instance,
            &id,
            versions,
            body.serial,
            body.endpoints,
            body.stats,
        ) {
            Ok(Response::new(pb::HeartbeatResponse {}))
        } else {
            Err(Status::not_found("not registered; register again"))
        }
    }
}
