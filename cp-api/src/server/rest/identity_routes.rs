//! Identities: join tokens, SVIDs over REST, `identity inspect`, and the deny-list.

use super::*;

pub(super) async fn create_token(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<model::TokenRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<model::TokenCreated> {
    let Json(body) = body.map_err(rejected)?;
    // Validated before it is authorized and recorded: nothing unchecked reaches the log.
    let id = SpiffeId::from_str(&body.spiffe_id).map_err(|e| ApiError::bad(e.to_string()))?;
    if !id.is_member_of(&api.hub.trust_domain) {
        return Err(ApiError::bad(format!(
            "`{id}` is not in this control plane's trust domain `{}`",
            api.hub.trust_domain
        )));
    }
    if reserved(&id, &api.hub.trust_domain) {
        return Err(ApiError::bad(format!(
            "`{id}` is the control plane's own identity; no token can grant it"
        )));
    }
    if id.path().is_empty() {
        return Err(ApiError::bad(format!(
            "`{id}` has no path: an SVID names a workload (spiffe://{}/ns/NS/sa/NAME)",
            api.hub.trust_domain
        )));
    }
    let ttl = Duration::from_secs(body.ttl_seconds.unwrap_or(600));
    if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
        return Err(ApiError::bad("ttl must be between 1 second and 7 days"));
    }
    api.authorize(
        &op,
        Act::TokenCreate {
            id: &id,
            operator: is_operator_identity(&id, &api.hub.trust_domain),
            ttl_seconds: ttl.as_secs(),
        },
    )
    .await?;
    let new = api
        .tokens
        .create(id, ttl)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(model::TokenCreated {
        token: new.token,
        id: new.record.id,
        spiffe_id: new.record.spiffe_id.as_str().to_owned(),
        expires_at: unix_ms(new.record.expires_at),
    }))
}

/// Identities no join token may grant: the control plane's own.
pub(super) fn reserved(id: &SpiffeId, td: &signet_spiffe::TrustDomain) -> bool {
    id.is_member_of(td) && id.path() == "/signet/control-plane"
}

#[derive(Debug, Deserialize)]
pub(super) struct IdentityQuery {
    id: String,
}

pub(super) async fn identity(
    State(api): State<Api>,
    op: Operator,
    Query(q): Query<IdentityQuery>,
) -> ApiResult<model::IdentityReport> {
    api.authorize(
        &op,
        Act::Read {
            collection: "identity",
        },
    )
    .await?;
    inspect(&api, &q.id).await.map(Json)
}

/// What `meshctl identity inspect` and the console's service page show of an identity (a
/// SPIFFE ID, or a service running under one identity): its SVIDs, proxies, the
/// authorization it has under the applied policies, and its trust material.
pub(crate) async fn inspect(api: &Api, name: &str) -> Result<model::IdentityReport, ApiError> {
    let q = IdentityQuery {
        id: name.to_owned(),
    };
    let hub = &api.hub;
    let proxies = hub.proxies();
    let id = if q.id.starts_with("spiffe://") {
        SpiffeId::from_str(&q.id).map_err(|e| ApiError::bad(format!("`{}`: {e}", q.id)))?
    } else {
        let ids: BTreeSet<&SpiffeId> = proxies
            .iter()
            .filter(|p| p.service == q.id)
            .map(|p| &p.spiffe_id)
            .collect();
        match ids.len() {
            1 => ids
                .into_iter()
                .next()
                .cloned()
                .ok_or_else(|| ApiError::bad("unreachable"))?,
            0 => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no proxy of service `{}` is registered; name its SPIFFE ID instead",
                        q.id
                    ),
                ));
            }
            _ => {
                return Err(ApiError::bad(format!(
                    "service `{}` runs under several identities ({}); name one",
                    q.id,
                    ids.iter()
                        .map(|i| i.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    };
    let certificates = hub.store.certificates_for(id.as_str(), 10).await?;
    let holders: Vec<&ProxyEntry> = proxies.iter().filter(|p| p.spiffe_id == id).collect();
    let current = holders
        .iter()
        .filter_map(|p| certificates.iter().find(|c| c.serial == p.serial))
        .max_by_key(|c| c.issued_at)
        .or_else(|| certificates.first());
    // The chain of the backend issuing now (during a rotation, an SVID issued before it was
    // promoted chains to the previous one).
    let issuer_chain: Vec<model::IssuingCertificate> = hub
        .ca
        .active()
        .authority
        .status()
        .chain
        .iter()
        .map(|c| model::IssuingCertificate {
            subject: c.subject.clone(),
            not_after: i64::try_from(c.not_after)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000),
        })
        .collect();
    let current = current.map(|c| model::CurrentSvid {
        serial: c.serial.clone(),
        not_before: c.not_before,
        not_after: c.not_after,
        refresh_at: c.not_before + (c.not_after - c.not_before) / 2,
        issued_at: c.issued_at,
        kind: issue_kind(&c.kind),
        issuer_chain,
    });
    let version = hub.applied().meta.as_ref().map_or(0, |m| m.version);
    let holders = holders
        .iter()
        .map(|p| model::Holder {
            proxy: proxy_view(hub, p, version),
            last_renewed: certificates
                .iter()
                .find(|c| c.serial == p.serial)
                .map(|c| c.issued_at),
        })
        .collect();
    // Every caller and service, each action on every path class: CPU work, kept off the
    // async workers.
    let authorization = {
        let (hub, id) = (Arc::clone(&api.hub), id.clone());
        tokio::task::spawn_blocking(move || effective_authorization(&hub, &id))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    };
    Ok(model::IdentityReport {
        spiffe_id: id.as_str().to_owned(),
        service: id
            .namespace_and_account()
            .map(|(ns, sa)| model::ServiceName {
                name: sa.to_owned(),
                namespace: ns.to_owned(),
            }),
        certificate: current,
        certificates: certificates
            .iter()
            .map(|c| model::IssuedCertificate {
                serial: c.serial.clone(),
                spiffe_id: c.spiffe_id.clone(),
                not_before: c.not_before,
                not_after: c.not_after,
                issued_at: c.issued_at,
                kind: issue_kind(&c.kind),
            })
            .collect(),
        proxies: holders,
        authorization,
        jwt: ca_routes::jwt_keys(hub, &mut Vec::new()),
        federated_bundles: hub
            .federations()
            .iter()
            .map(|f| model::FederatedBundle {
                trust_domain: f.record.trust_domain.clone(),
                roots: f.bundle.roots().len() as u64,
                jwt_keys: f.bundle.jwt_authorities().len() as u64,
                sequence: f.bundle.sequence(),
            })
            .collect(),
        workload_selectors: id
            .namespace_and_account()
            .and_then(|(ns, sa)| hub.selectors_of(&ServiceRef::new(sa, ns))),
    })
}

/// The store writes `issue` or `renew`.
fn issue_kind(kind: &str) -> model::IssueKind {
    if kind == "renew" {
        model::IssueKind::Renew
    } else {
        model::IssueKind::Issue
    }
}

/// A decision of the policy reports as the API shows it.
pub(super) fn access_model(access: &signet_policy::Access) -> model::Access {
    let paths = |list: &[(String, Vec<String>)]| {
        list.iter()
            .map(|(path, policies)| model::PathAccess {
                path: path.clone(),
                policies: policies.clone(),
            })
            .collect()
    };
    match access {
        signet_policy::Access::Allowed(p) => model::Access::Allow {
            policies: p.clone(),
        },
        signet_policy::Access::Denied(p) => model::Access::Deny {
            policies: p.clone(),
        },
        signet_policy::Access::Depends {
            reads,
            allowed,
            denied,
        } => model::Access::Depends {
            reads: reads.iter().map(|r| (*r).to_owned()).collect(),
            allowed: paths(allowed),
            denied: paths(denied),
        },
    }
}

/// Who may call `id`'s service and what it may call, under the applied policies, over every
/// identity and service the registry knows: per caller and service, `connect` and each
/// request action (groups when their methods agree), allowed, denied or depending on the
/// request, with the deciding policies. Callers are built from the registry's directory,
/// as the proxies build them.
pub(super) fn effective_authorization(hub: &Hub, id: &SpiffeId) -> model::EffectiveAuthorization {
    let applied = hub.applied();
    let authorizer = Authorizer::new(Arc::clone(&applied.bundle));
    let paths = signet_policy::path_classes(&[&applied.bundle]);
    let inventory = hub.inventory();
    let directory = inventory.directory();
    let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let own_service = id
        .namespace_and_account()
        .map(|(ns, sa)| ServiceRef::new(sa, ns));
    let actions = |caller: &SpiffeId, service: &signet_policy::KnownService| {
        let labels: Vec<(String, String)> = service
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let target = signet_policy::Target {
            name: &service.name,
            namespace: &service.namespace,
            port: service.port,
            labels: &labels,
        };
        let rows = signet_policy::access_between(
            &authorizer,
            &directory.caller(caller),
            &target,
            source,
            &paths,
        );
        let connect = rows
            .first()
            .is_some_and(|r| matches!(r.access, signet_policy::Access::Allowed(_)));
        let actions: Vec<model::ActionAccess> = rows
            .iter()
            .map(|r| model::ActionAccess {
                action: r.action.clone(),
                access: access_model(&r.access),
            })
            .collect();
        (connect, actions)
    };
    let own = own_service.as_ref().and_then(|svc| {
        inventory
            .services
            .iter()
            .find(|s| s.name == svc.name && s.namespace == svc.namespace)
    });
    let inbound = own
        .map(|svc| {
            directory
                .iter()
                .filter(|(c, _)| *c != id)
                .map(|(c, entry)| {
                    let (connect, actions) = actions(c, svc);
                    model::InboundAccess {
                        spiffe_id: c.as_str().to_owned(),
                        service: entry.service.clone(),
                        connect,
                        actions,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let outbound = inventory
        .services
        .iter()
        .filter(|s| {
            own_service
                .as_ref()
                .is_none_or(|o| !(o.name == s.name && o.namespace == s.namespace))
        })
        .map(|s| {
            let (connect, actions) = actions(id, s);
            model::OutboundAccess {
                service: s.name.clone(),
                namespace: s.namespace.clone(),
                connect,
                actions,
            }
        })
        .collect();
    model::EffectiveAuthorization {
        policy_version: applied.meta.as_ref().map_or(0, |m| m.version),
        registered: directory.get(id).is_some(),
        paths: paths.into_iter().collect(),
        inbound,
        outbound,
    }
}

pub(super) async fn deny_list(
    State(api): State<Api>,
    op: Operator,
    query: PageResult,
) -> ApiResult<model::DenyList> {
    api.authorize(&op, Act::Read { collection: "deny" }).await?;
    let (entries, next_after) = page(query, api.hub.store.deny_list().await?, |e| {
        format!("{}/{}", e.kind, e.value)
    })?;
    Ok(Json(model::DenyList {
        entries,
        next_after,
    }))
}

pub(super) async fn deny(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<model::DenyRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<model::Denied> {
    let Json(body) = body.map_err(rejected)?;
    if body.reason.len() > MAX_REASON {
        return Err(ApiError::bad(format!(
            "the reason is longer than {MAX_REASON} bytes"
        )));
    }
    let (kind, value) = match (body.spiffe_id, body.serial) {
        (Some(id), None) => {
            let id = SpiffeId::from_str(&id).map_err(|e| ApiError::bad(e.to_string()))?;
            if reserved(&id, &api.hub.trust_domain) {
                return Err(ApiError::bad(format!(
                    "`{id}` is the control plane's own identity; denying it would cut every \
                     proxy off from the control plane"
                )));
            }
            api.authorize(&op, Act::DenyId { id: &id }).await?;
            ("spiffe_id", id.as_str().to_owned())
        }
        (None, Some(serial)) => {
            let serial = serial.to_ascii_lowercase();
            if signet_spiffe::Serial::from_hex(&serial).is_none() || serial.len() > 64 {
                return Err(ApiError::bad(format!(
                    "serial `{}` is not hex (at most 64 digits)",
                    serial.chars().take(64).collect::<String>()
                )));
            }
            api.authorize(&op, Act::DenySerial { serial: &serial })
                .await?;
            ("serial", serial)
        }
        _ => return Err(ApiError::bad("give exactly one of spiffe_id and serial")),
    };
    {
        use prost::Message as _;
        let size = api.hub.deny_list().encoded_len() + value.len() + 8;
        if size > crate::api::MAX_DENY_BYTES {
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                format!(
                    "the deny-list is full ({} bytes at most): deny by serial, or let short-lived \
                     SVIDs expire",
                    crate::api::MAX_DENY_BYTES
                ),
            ));
        }
    }
    let entry = DenyEntry {
        kind: kind.to_owned(),
        value: value.clone(),
        reason: body.reason,
        created_at: unix_ms(SystemTime::now()),
    };
    api.hub.store.deny(entry.clone()).await?;
    api.hub.audit.record(signet_audit::Event::Certificate(
        signet_audit::record::CertificateEvent {
            kind: "revoke".to_owned(),
            spiffe_id: if kind == "spiffe_id" {
                value.clone()
            } else {
                String::new()
            },
            serial: if kind == "serial" {
                value.clone()
            } else {
                String::new()
            },
            not_after: 0,
        },
    ));
    api.hub
        .reload_deny_list()
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let target = api.hub.deny_generation();
    // The denied identity's own proxies cannot report any more (the control plane refuses
    // them too): they are not waited for.
    let revoked = |p: &ProxyEntry| match kind {
        "spiffe_id" => p.spiffe_id.as_str() == value,
        _ => p.serial.eq_ignore_ascii_case(&value),
    };
    let acks = crate::server::acks::wait(
        &api.hub,
        wait_of(body.wait_seconds),
        |p| !revoked(p),
        |p| p.trust_version >= target,
    )
    .await;
    Ok(Json(model::Denied {
        denied: entry,
        enforcement: acks.to_model(|p| p.trust_version),
    }))
}

/// Redeems a join token for an SVID, as `Identity.Issue` does, for clients that speak
/// REST: operators obtaining a client certificate (`meshctl identity issue`). The token is
/// the authorization; no operator policy is consulted.
pub(super) async fn issue_svid(
    State(api): State<Api>,
    body: Result<Json<model::SvidRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<model::SvidIssued> {
    use rustls_pki_types::pem::PemObject as _;
    let Json(body) = body.map_err(rejected)?;
    let csr = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(body.csr.as_bytes())
        .map_err(|e| ApiError::bad(format!("csr: {e}")))?;
    let id = api
        .tokens
        .redeem(&body.join_token)
        .await
        .map_err(|e| match e {
            // The database away: worth a retry, as the status says.
            signet_ca::TokenError::Store(e) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            other => ApiError::new(StatusCode::UNAUTHORIZED, other.to_string()),
        })?;
    let ttl = api
        .hub
        .ca
        .profile()
        .workload_request(body.ttl_seconds.map(Duration::from_secs));
    let svid = api
        .hub
        .ca
        .sign(signet_ca::SignRequest {
            csr: &csr,
            id: &id,
            ttl,
        })
        .await
        .map_err(|e| ApiError::bad(e.to_string()))?;
    api.hub
        .store
        .record_certificate(crate::server::identity::record(&svid, "issue"))
        .await?;
    api.hub
        .audit
        .record(crate::server::identity::certificate_event(&svid, "issue"));
    tracing::info!(spiffe_id = %id, serial = %svid.serial(), "SVID issued over REST");
    Ok(Json(model::SvidIssued {
        spiffe_id: id.as_str().to_owned(),
        chain: svid.to_pem(),
        bundle: api.hub.ca.bundle().to_pem(),
        not_after: unix_ms(svid.not_after()),
    }))
}
