//! `/v1/traffic`: the mesh's traffic settings (routes, timeouts, retries, balancing,
//! breakers, outlier detection), applied whole after validation, versioned, diffed against
//! what is in force, pushed to every proxy and recorded in the control plane's audit chain.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use signet_traffic::TrafficDoc;
use signet_traffic::diff::{Change, diff};

use super::{Api, ApiError, ApiResult, Operator, health_of, rejected, wait_of};
use crate::model;
use crate::server::acks;
use crate::server::hub::TrafficState;
use crate::server::operators::Act;
use crate::server::store::StoredTraffic;

/// Most versions `history` lists.
const MAX_HISTORY: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VersionQuery {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

fn changes_model(changes: &[Change]) -> Vec<model::SettingChange> {
    changes
        .iter()
        .map(|c| model::SettingChange {
            service: c.service.clone(),
            setting: c.setting.clone(),
            before: c.before.clone(),
            after: c.after.clone(),
        })
        .collect()
}

/// The settings in force (or `?version=N`).
pub(super) async fn current(
    State(api): State<Api>,
    op: Operator,
    Query(q): Query<VersionQuery>,
) -> ApiResult<model::TrafficSettings> {
    api.authorize(
        &op,
        Act::Read {
            collection: "traffic",
        },
    )
    .await?;
    if let Some(version) = q.version.filter(|v| *v != api.hub.traffic().version) {
        let stored = api
            .hub
            .store
            .traffic_versions(Some(version), 1)
            .await?
            .pop()
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no traffic version {version}"),
                )
            })?;
        let doc = parse_stored(&stored)?;
        return Ok(Json(model::TrafficSettings {
            version: stored.version,
            author: stored.author,
            applied_at: stored.created_at,
            document: document_of(&doc)?,
        }));
    }
    let state = api.hub.traffic();
    Ok(Json(model::TrafficSettings {
        version: state.version,
        author: state.author.clone(),
        applied_at: state.applied_at,
        document: document_of(&state.doc)?,
    }))
}

/// The versions, newest first.
pub(super) async fn history(
    State(api): State<Api>,
    op: Operator,
    Query(q): Query<VersionQuery>,
) -> ApiResult<model::TrafficHistory> {
    api.authorize(
        &op,
        Act::Read {
            collection: "traffic",
        },
    )
    .await?;
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_HISTORY);
    let versions = api
        .hub
        .store
        .traffic_versions(None, limit)
        .await?
        .into_iter()
        .map(|v| model::TrafficVersion {
            version: v.version,
            author: v.author,
            applied_at: v.created_at,
            changes: v.changes,
            rollback_of: v.rollback_of,
        })
        .collect();
    Ok(Json(model::TrafficHistory { versions }))
}

/// A document as the API shows it, every default written out.
fn document_of(doc: &TrafficDoc) -> Result<Value, ApiError> {
    serde_json::to_value(doc)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn parse_stored(stored: &StoredTraffic) -> Result<TrafficDoc, ApiError> {
    signet_traffic::load(&stored.doc, "stored").map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "stored traffic version {} does not load: {e}",
                stored.version
            ),
        )
    })
}

/// Checks, diffs, stores and publishes a document.
pub(super) async fn apply(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<model::TrafficApplyRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<model::TrafficApplied> {
    let Json(body) = body.map_err(rejected)?;
    let file = body.file.as_deref().unwrap_or("document");
    // Checked before the operator policies see it: their context counts its entries.
    let doc = signet_traffic::load(&body.document, file).map_err(|e| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: "the traffic document was rejected; nothing was applied".to_owned(),
        problems: e.problems,
    })?;
    let changes = diff(&api.hub.traffic().doc, &doc);
    api.authorize(
        &op,
        Act::TrafficApply {
            operation: "apply",
            services: doc.services.len(),
            changes: changes.len(),
        },
    )
    .await?;
    publish(&api, &op, doc, None, body.dry_run, body.wait_seconds).await
}

/// Restores an older version's document as a new version.
pub(super) async fn rollback(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<model::TrafficRollbackRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<model::TrafficApplied> {
    let Json(body) = body.map_err(rejected)?;
    let stored = api
        .hub
        .store
        .traffic_versions(Some(body.version), 1)
        .await?
        .pop()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no traffic version {}", body.version),
            )
        })?;
    let doc = parse_stored(&stored)?;
    let changes = diff(&api.hub.traffic().doc, &doc);
    api.authorize(
        &op,
        Act::TrafficApply {
            operation: "rollback",
            services: doc.services.len(),
            changes: changes.len(),
        },
    )
    .await?;
    publish(
        &api,
        &op,
        doc,
        Some(body.version),
        body.dry_run,
        body.wait_seconds,
    )
    .await
}

/// Stores `doc` as the next version unless it changes nothing, publishes it and waits for
/// the proxies to apply it.
async fn publish(
    api: &Api,
    op: &Operator,
    doc: TrafficDoc,
    rollback_of: Option<u64>,
    dry_run: bool,
    wait_seconds: Option<u64>,
) -> ApiResult<model::TrafficApplied> {
    let guard = api.apply_lock.lock().await;
    let before = api.hub.traffic();
    let changes = diff(&before.doc, &doc);
    if dry_run || changes.is_empty() {
        return Ok(Json(model::TrafficApplied {
            version: before.version,
            applied: false,
            changes: changes_model(&changes),
            enforcement: None,
        }));
    }
    let version = api
        .hub
        .store
        .put_traffic(
            doc.to_json(),
            op.id.as_str().to_owned(),
            changes.len() as u64,
            rollback_of,
        )
        .await?;
    let services: std::collections::BTreeSet<&str> =
        changes.iter().map(|c| c.service.as_str()).collect();
    let detail = match rollback_of {
        Some(v) => format!(
            "rollback to {v}: {} settings of {services:?}, by {}",
            changes.len(),
            op.id
        ),
        None => format!("{} settings of {services:?}, by {}", changes.len(), op.id),
    };
    api.hub.publish_traffic(TrafficState {
        version,
        doc,
        author: op.id.as_str().to_owned(),
        applied_at: crate::server::store::unix_ms(std::time::SystemTime::now()),
    });
    api.hub.audit.record(signet_audit::Event::Config(
        signet_audit::record::ConfigEvent {
            what: "traffic".to_owned(),
            version,
            detail,
        },
    ));
    drop(guard);
    tracing::info!(version, author = %op.id, changes = changes.len(), "traffic settings applied");
    let acks = acks::wait(
        &api.hub,
        wait_of(wait_seconds),
        |_| true,
        |p| p.traffic_version >= version,
    )
    .await;
    Ok(Json(model::TrafficApplied {
        version,
        applied: true,
        changes: changes_model(&changes),
        enforcement: Some(acks.to_model(|p| p.traffic_version)),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointsQuery {
    service: String,
}

/// A service's endpoints as its callers' balancers see them (from their last heartbeats),
/// with each endpoint's own health-check state.
pub(super) async fn endpoints(
    State(api): State<Api>,
    op: Operator,
    query: Result<Query<EndpointsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<model::EndpointList> {
    let Query(q) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    api.authorize(
        &op,
        Act::Read {
            collection: "proxies",
        },
    )
    .await?;
    let proxies = api.hub.proxies();
    let registered = |address: &str| {
        proxies
            .iter()
            .find(|p| p.service == q.service && p.endpoint == address)
    };
    let health_at = |address: &str| {
        registered(address).map_or(model::EndpointHealth::Unregistered, |p| {
            endpoint_health(p.app_health)
        })
    };
    let labels_of = |address: &str| {
        registered(address)
            .map(|p| p.labels.clone())
            .unwrap_or_default()
    };
    let mut rows = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for caller in &proxies {
        for e in caller.endpoints.iter().filter(|e| e.service == q.service) {
            seen.insert(e.address.clone());
            rows.push(model::EndpointView {
                endpoint: e.address.clone(),
                health: health_at(&e.address),
                caller: Some(caller.spiffe_id.as_str().to_owned()),
                caller_instance: Some(caller.instance.clone()),
                ejected: e.ejected,
                ejections: u64::from(e.ejections),
                in_flight: u64::from(e.in_flight),
                latency_ewma_ms: Some(e.latency_ewma_us as f64 / 1000.0),
                weight: e.weight,
                labels: labels_of(&e.address),
            });
        }
    }
    // Endpoints no caller reported (none calls the service, or they were left out because
    // their app is unhealthy).
    for p in proxies
        .iter()
        .filter(|p| p.service == q.service && !seen.contains(&p.endpoint))
    {
        rows.push(model::EndpointView {
            endpoint: p.endpoint.clone(),
            health: endpoint_health(p.app_health),
            caller: None,
            caller_instance: None,
            ejected: false,
            ejections: 0,
            in_flight: 0,
            latency_ewma_ms: None,
            weight: p.weight,
            labels: p.labels.clone(),
        });
    }
    Ok(Json(model::EndpointList {
        service: q.service,
        endpoints: rows,
    }))
}

fn endpoint_health(h: crate::api::v1::AppHealth) -> model::EndpointHealth {
    match health_of(h) {
        model::AppHealth::Unknown => model::EndpointHealth::Unknown,
        model::AppHealth::Healthy => model::EndpointHealth::Healthy,
        model::AppHealth::Unhealthy => model::EndpointHealth::Unhealthy,
    }
}

/// `GET /v1/traffic/split?service=NAME&window_seconds=60`: each split route's configured
/// shares, and the share of the service's requests each subset's endpoints answered over the
/// window (from the proxies' heartbeats).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SplitQuery {
    service: String,
    #[serde(default)]
    window_seconds: Option<u64>,
}

pub(super) async fn split(
    State(api): State<Api>,
    op: Operator,
    query: Result<Query<SplitQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<model::SplitReport> {
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let window = query.window_seconds.unwrap_or(60);
    if window == 0 || window > crate::server::stats::MAX_WINDOW.as_secs() {
        return Err(ApiError::bad(format!(
            "window_seconds must be between 1 and {}",
            crate::server::stats::MAX_WINDOW.as_secs()
        )));
    }
    api.authorize(
        &op,
        Act::Read {
            collection: "traffic",
        },
    )
    .await?;
    let traffic = api.hub.traffic();
    let settings = traffic.doc.service(&query.service);
    let routes = settings
        .routes
        .iter()
        .filter(|r| !r.split.is_empty())
        .map(|r| {
            let total: u32 = r.split.iter().map(|s| s.weight).sum();
            model::SplitRoute {
                route: r.name.clone(),
                split: r
                    .split
                    .iter()
                    .map(|s| model::SplitShare {
                        subset: s.subset.clone(),
                        weight: s.weight,
                        share: f64::from(s.weight) / f64::from(total.max(1)),
                    })
                    .collect(),
            }
        })
        .collect();
    // Observed: each instance's inbound requests, by the subsets its labels put it in.
    let counts = api
        .hub
        .stats
        .inbound_by_instance(&query.service, std::time::Duration::from_secs(window));
    let proxies = api.hub.proxies();
    let labels_of = |instance: &str| {
        proxies
            .iter()
            .find(|p| p.instance == instance)
            .map(|p| p.labels.clone())
            .unwrap_or_default()
    };
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let share = |n: u64| (total > 0).then(|| n as f64 / total as f64);
    let mut observed: Vec<model::ObservedShare> = settings
        .subsets
        .iter()
        .map(|subset| {
            let n: u64 = counts
                .iter()
                .filter(|(i, _)| signet_traffic::labels::selects(&subset.labels, &labels_of(i)))
                .map(|(_, n)| n)
                .sum();
            model::ObservedShare {
                subset: Some(subset.name.clone()),
                requests: n,
                share: share(n),
            }
        })
        .collect();
    let in_none: u64 = counts
        .iter()
        .filter(|(i, _)| {
            let labels = labels_of(i);
            !settings
                .subsets
                .iter()
                .any(|s| signet_traffic::labels::selects(&s.labels, &labels))
        })
        .map(|(_, n)| n)
        .sum();
    observed.push(model::ObservedShare {
        subset: None,
        requests: in_none,
        share: share(in_none),
    });
    Ok(Json(model::SplitReport {
        service: query.service,
        version: traffic.version,
        window_seconds: window,
        routes,
        observed,
        requests: total,
    }))
}
