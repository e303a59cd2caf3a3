//! `/v1/policies/shadow`: shadow mode. A candidate bundle is installed beside the enforced
//! one on every proxy; each proxy decides every connection and request with both, acts on
//! the enforced decision only, and records where the candidate disagrees. The report
//! aggregates those records (shipped with each proxy's audit chain) per flow; promoting the
//! candidate applies it through the same gate as `authz apply`.

use std::collections::BTreeMap;

use super::{
    Api, ApiError, ApiResult, Change, Operator, check_files, gate, gate_model, publish, rejected,
    validated, wait_of,
};
use crate::model;
use crate::server::acks;
use crate::server::hub::Shadowed;
use crate::server::operators::Act;
use crate::server::store::{AuditRow, NewShadow, ShadowCandidate, ShadowFlow};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

/// Most flows a report lists, and examples per flow.
const REPORT_FLOWS: u32 = 500;
const EXAMPLES_PER_FLOW: u32 = 3;

fn none_installed() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no shadow candidate is installed (meshctl authz apply --shadow -f FILES installs one)",
    )
}

fn candidate_model(c: &ShadowCandidate) -> model::ShadowCandidate {
    model::ShadowCandidate {
        id: c.id,
        hash: c.hash.clone(),
        policies: c.policies,
        installed_at: c.installed_at,
        author: c.author.clone(),
        message: c.message.clone(),
    }
}

/// Unix nanoseconds (as audit records keep them) in the API's milliseconds.
fn ms_of_ns(ns: u64) -> i64 {
    i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
}

/// Installs a candidate (replacing any other) and waits for the proxies to run it.
pub(super) async fn install(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<model::ShadowInstallRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<model::ShadowInstalled> {
    let Json(body) = body.map_err(rejected)?;
    check_files(&body.files)?;
    api.authorize(
        &op,
        Act::PolicyShadow {
            operation: "install",
            files: body.files.len(),
        },
    )
    .await?;
    let (bundle, files) = validated(
        body.files,
        "the candidate was rejected; nothing was installed",
    )
    .await?;
    // What the candidate would change over the registry, for the operator to compare with
    // what live traffic then shows.
    let diff = gate(&api, &bundle).await?;
    let guard = api.apply_lock.lock().await;
    let candidate = api
        .hub
        .store
        .install_shadow(NewShadow {
            hash: bundle.hash().to_owned(),
            policies: bundle.len() as u64,
            author: op.id.as_str().to_owned(),
            message: body.message,
            files,
        })
        .await?;
    api.hub.publish_shadow(Some((candidate.clone(), bundle)));
    drop(guard);
    tracing::info!(candidate = candidate.id, hash = %candidate.hash, author = %op.id, "shadow candidate installed");
    let id = candidate.id;
    let acks = acks::wait(
        &api.hub,
        wait_of(body.wait_seconds),
        |_| true,
        |p| p.shadow_version == id,
    )
    .await;
    Ok(Json(model::ShadowInstalled {
        candidate: candidate_model(&candidate),
        gate: gate_model(&diff),
        enforcement: acks.to_model(|p| p.shadow_version),
    }))
}

/// The installed candidate (with its files) and what it disagreed with on live traffic.
pub(super) async fn report(State(api): State<Api>, op: Operator) -> ApiResult<model::ShadowReport> {
    api.authorize(
        &op,
        Act::Read {
            collection: "policies",
        },
    )
    .await?;
    shadow_report(&api).await.map(Json)
}

/// The shadow report as `GET /v1/policies/shadow` and the console show it.
pub(crate) async fn shadow_report(api: &Api) -> Result<model::ShadowReport, ApiError> {
    let shadow = api.hub.shadow();
    let proxies = api.hub.proxies();
    let Some(Shadowed { meta, .. }) = shadow.as_ref() else {
        return Ok(model::ShadowReport {
            candidate: None,
            files: Vec::new(),
            running_on: model::ShadowRunning {
                proxies: proxies.len() as u64,
                running: 0,
            },
            would_allow: 0,
            would_deny: 0,
            flows: Vec::new(),
        });
    };
    let since = u64::try_from(meta.installed_at)
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let store = &api.hub.store;
    let flows = store.shadow_flows(&meta.hash, since, REPORT_FLOWS).await?;
    let examples = store
        .shadow_examples(&meta.hash, since, EXAMPLES_PER_FLOW)
        .await?;
    let running = proxies
        .iter()
        .filter(|p| p.shadow_version == meta.id)
        .count();
    let flows = flows_model(&flows, &examples);
    let total = |would: model::Decision| -> u64 {
        flows
            .iter()
            .filter(|f| f.would == would)
            .map(|f| f.count)
            .sum()
    };
    Ok(model::ShadowReport {
        candidate: Some(candidate_model(meta)),
        files: meta.files.clone(),
        running_on: model::ShadowRunning {
            proxies: proxies.len() as u64,
            running: running as u64,
        },
        would_allow: total(model::Decision::Allow),
        would_deny: total(model::Decision::Deny),
        flows,
    })
}

fn decision_of(s: &str) -> Option<model::Decision> {
    match s {
        "allow" => Some(model::Decision::Allow),
        "deny" => Some(model::Decision::Deny),
        _ => None,
    }
}

/// Each flow with its newest examples. A record or flow whose decision is neither allow
/// nor deny (none is written so) is left out rather than shown as one.
fn flows_model(flows: &[ShadowFlow], examples: &[AuditRow]) -> Vec<model::ShadowFlow> {
    let mut by_flow: BTreeMap<(&str, &str, &str, &str), Vec<model::ShadowExample>> =
        BTreeMap::new();
    for row in examples {
        let Ok(record) = serde_json::from_str::<signet_audit::Record>(&row.line) else {
            continue;
        };
        let signet_audit::Event::Shadow(s) = record.event else {
            continue;
        };
        let Some(enforced) = decision_of(&s.enforced.decision) else {
            continue;
        };
        let key = (
            row.principal.as_deref().unwrap_or_default(),
            row.resource.as_deref().unwrap_or_default(),
            row.action.as_deref().unwrap_or_default(),
            row.decision.as_deref().unwrap_or_default(),
        );
        by_flow.entry(key).or_default().push(model::ShadowExample {
            time: ms_of_ns(record.time),
            writer: record.writer,
            seq: record.seq,
            path: s.enforced.path,
            trace: s.enforced.trace,
            src: s.enforced.src,
            enforced,
            enforced_policies: s.enforced.policies,
            candidate_policies: s.candidate_policies,
        });
    }
    flows
        .iter()
        .filter_map(|f| {
            let key = (
                f.principal.as_str(),
                f.service.as_str(),
                f.action.as_str(),
                f.would.as_str(),
            );
            Some(model::ShadowFlow {
                principal: f.principal.clone(),
                service: f.service.clone(),
                action: f.action.clone(),
                would: decision_of(&f.would)?,
                count: f.count,
                first: ms_of_ns(f.first),
                last: ms_of_ns(f.last),
                examples: by_flow.remove(&key).unwrap_or_default(),
            })
        })
        .collect()
}

/// Removes the candidate from every proxy.
pub(super) async fn clear(
    State(api): State<Api>,
    op: Operator,
    body: Option<Json<model::ShadowClearRequest>>,
) -> ApiResult<model::ShadowCleared> {
    let wait = wait_of(body.unwrap_or_default().0.wait_seconds);
    api.authorize(
        &op,
        Act::PolicyShadow {
            operation: "clear",
            files: 0,
        },
    )
    .await?;
    let guard = api.apply_lock.lock().await;
    let shadow = api.hub.shadow();
    let Some(Shadowed { meta, .. }) = shadow.as_ref() else {
        return Err(none_installed());
    };
    api.hub.store.end_shadow(meta.id, "cleared").await?;
    api.hub.publish_shadow(None);
    drop(guard);
    tracing::info!(candidate = meta.id, author = %op.id, "shadow candidate cleared");
    let acks = acks::wait(&api.hub, wait, |_| true, |p| p.shadow_version == 0).await;
    Ok(Json(model::ShadowCleared {
        cleared: meta.id,
        enforcement: acks.to_model(|p| p.shadow_version),
    }))
}

/// Applies the candidate through the gate of `POST /v1/policies`, then ends shadow mode.
pub(super) async fn promote(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<model::ShadowPromoteRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<model::ShadowPromoted> {
    let Json(body) = body.map_err(rejected)?;
    let shadow = api.hub.shadow();
    let Some(Shadowed { meta, .. }) = shadow.as_ref() else {
        return Err(none_installed());
    };
    if meta.id != body.candidate {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the installed shadow candidate is {}, not {}: review it again",
                meta.id, body.candidate
            ),
        ));
    }
    api.authorize(
        &op,
        Act::PolicyApply {
            files: meta.files.len(),
            dry_run: false,
            expected_version: body.expected_version,
        },
    )
    .await?;
    let Json(applied) = publish(
        &api,
        &op,
        Change {
            files: meta.files.clone(),
            message: format!("promoted shadow candidate {}", meta.id),
            expected: body.expected_version,
            rolled_back_from: None,
            wait: wait_of(body.wait_seconds),
            allow_widening: body.allow_widening,
        },
    )
    .await?;
    let version = applied.version;
    let guard = api.apply_lock.lock().await;
    // Only if it is still the current candidate: one installed meanwhile stays.
    if api
        .hub
        .store
        .end_shadow(meta.id, &format!("promoted to version {version}"))
        .await?
    {
        api.hub.publish_shadow(None);
    }
    drop(guard);
    Ok(Json(model::ShadowPromoted {
        applied,
        promoted: meta.id,
    }))
}
