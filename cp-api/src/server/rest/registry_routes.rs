//! The registry: proxies, services, the inventory, and service labels.

use super::*;

/// `unknown`, `healthy` or `unhealthy`.
pub(super) fn health_of(h: crate::api::v1::AppHealth) -> model::AppHealth {
    match h {
        crate::api::v1::AppHealth::Unknown => model::AppHealth::Unknown,
        crate::api::v1::AppHealth::Healthy => model::AppHealth::Healthy,
        crate::api::v1::AppHealth::Unhealthy => model::AppHealth::Unhealthy,
    }
}

pub(super) fn proxy_view(hub: &Hub, p: &ProxyEntry, policy_version: u64) -> model::Proxy {
    model::Proxy {
        instance: p.instance.clone(),
        spiffe_id: p.spiffe_id.as_str().to_owned(),
        service: p.service.clone(),
        namespace: p.namespace.clone(),
        endpoint: p.endpoint.clone(),
        weight: p.weight,
        labels: p
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        admin: p.admin.clone(),
        serial: p.serial.clone(),
        config_version: p.config_version,
        policy_version: p.policy_version,
        traffic_version: p.traffic_version,
        app_health: health_of(p.app_health),
        registered_at: unix_ms(p.registered_at),
        last_heartbeat: unix_ms(p.last_seen),
        in_sync: in_sync(hub, p, policy_version),
        connected_here: p.local,
        trust_bundle: p.trust_bundle,
    }
}

pub(super) async fn proxies(
    State(api): State<Api>,
    op: Operator,
    query: PageResult,
) -> Result<Json<model::ProxyList>, ApiError> {
    api.authorize(
        &op,
        Act::Read {
            collection: "proxies",
        },
    )
    .await?;
    let version = api.hub.applied().meta.as_ref().map_or(0, |m| m.version);
    let (proxies, next_after) = page(query, api.hub.proxies(), |p| {
        format!("{}/{}", p.service, p.instance)
    })?;
    Ok(Json(model::ProxyList {
        proxies: proxies
            .iter()
            .map(|p| proxy_view(&api.hub, p, version))
            .collect(),
        next_after,
    }))
}

pub(super) fn services_of(proxies: &[ProxyEntry]) -> BTreeMap<(String, String), Vec<&ProxyEntry>> {
    let mut by: BTreeMap<(String, String), Vec<&ProxyEntry>> = BTreeMap::new();
    for p in proxies {
        by.entry((p.service.clone(), p.namespace.clone()))
            .or_default()
            .push(p);
    }
    by
}

pub(super) async fn services(
    State(api): State<Api>,
    op: Operator,
    query: PageResult,
) -> Result<Json<model::ServiceList>, ApiError> {
    api.authorize(
        &op,
        Act::Read {
            collection: "services",
        },
    )
    .await?;
    let proxies = api.hub.proxies();
    let (services, next_after) = page(
        query,
        services_of(&proxies).into_iter().collect(),
        |((name, namespace), _)| format!("{name}/{namespace}"),
    )?;
    Ok(Json(model::ServiceList {
        services: services
            .into_iter()
            .map(|((name, namespace), members)| {
                let identities: BTreeSet<&str> =
                    members.iter().map(|p| p.spiffe_id.as_str()).collect();
                model::Service {
                    name,
                    namespace,
                    endpoints: members.iter().map(|p| p.endpoint.clone()).collect(),
                    identities: identities.into_iter().map(str::to_owned).collect(),
                }
            })
            .collect(),
        next_after,
    }))
}

pub(super) async fn inventory(State(api): State<Api>, op: Operator) -> ApiResult<model::Inventory> {
    api.authorize(
        &op,
        Act::Read {
            collection: "inventory",
        },
    )
    .await?;
    let inventory = api.hub.inventory();
    Ok(Json(model::Inventory {
        trust_domain: inventory.trust_domain.clone(),
        workloads: inventory
            .workloads
            .iter()
            .map(|w| model::InventoryWorkload {
                spiffe_id: w.spiffe_id.as_str().to_owned(),
                service: w.service.clone(),
                labels: w.labels.clone(),
            })
            .collect(),
        services: inventory
            .services
            .iter()
            .map(|s| model::InventoryService {
                name: s.name.clone(),
                namespace: s.namespace.clone(),
                port: s.port,
                labels: s.labels.clone(),
            })
            .collect(),
    }))
}

/// Most labels one service may carry.
pub(super) const MAX_LABELS: usize = 64;

pub(super) fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "{what} `{}` must be 1-253 letters, digits, `-`, `_` or `.`",
            name.escape_debug()
        )))
    }
}

/// Sets and removes labels of one service; every proxy receives them as the tags of that
/// service's workloads (when they call) and of the service (when it is called).
pub(super) async fn label_service(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<model::LabelsRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<model::ServiceLabels> {
    use crate::api::convert::{MAX_LABEL_KEY, MAX_LABEL_VALUE, valid_label_key, valid_label_value};
    let Json(body) = body.map_err(rejected)?;
    check_name("service", &body.service)?;
    check_name("namespace", &body.namespace)?;
    for key in body.set.keys().chain(&body.remove) {
        if !valid_label_key(key) {
            return Err(ApiError::bad(format!(
                "label key `{}` must be 1-{MAX_LABEL_KEY} of a-z, 0-9, `-`, `_`, `.`, `/`, starting with a letter or digit",
                key.escape_debug()
            )));
        }
    }
    if let Some((key, _)) = body.set.iter().find(|(_, v)| !valid_label_value(v)) {
        return Err(ApiError::bad(format!(
            "label `{key}`: a value is at most {MAX_LABEL_VALUE} visible ASCII characters"
        )));
    }
    if let Some(key) = body.remove.iter().find(|k| body.set.contains_key(*k)) {
        return Err(ApiError::bad(format!(
            "label `{key}` is both set and removed"
        )));
    }
    api.authorize(
        &op,
        Act::ServiceLabel {
            service: &body.service,
            namespace: &body.namespace,
        },
    )
    .await?;
    let _guard = api.apply_lock.lock().await;
    let service = ServiceRef::new(body.service.clone(), body.namespace.clone());
    let mut labels = api.hub.labels_of(&service);
    for key in &body.remove {
        labels.remove(key);
    }
    labels.extend(body.set);
    if labels.len() > MAX_LABELS {
        return Err(ApiError::bad(format!(
            "a service carries at most {MAX_LABELS} labels"
        )));
    }
    let target = api
        .hub
        .set_labels(crate::server::store::ServiceLabels {
            namespace: body.namespace.clone(),
            name: body.service.clone(),
            labels: labels.clone(),
            updated_at: unix_ms(SystemTime::now()),
            author: op.id.as_str().to_owned(),
        })
        .await?;
    drop(_guard);
    tracing::info!(service = %body.service, namespace = %body.namespace, ?labels, author = %op.id, "labels set");
    let acks = crate::server::acks::wait(
        &api.hub,
        wait_of(body.wait_seconds),
        |_| true,
        |p| p.config_version >= target,
    )
    .await;
    Ok(Json(model::ServiceLabels {
        service: body.service,
        namespace: body.namespace,
        labels,
        enforcement: acks.to_model(|p| p.config_version),
    }))
}
