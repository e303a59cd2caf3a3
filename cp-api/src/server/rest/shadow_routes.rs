//! `/v1/policies/shadow`: shadow mode. A candidate bundle is installed beside the enforced
//! one on every proxy; each proxy decides every connection and request with both, acts on
//! the enforced decision only, and records where the candidate disagrees. The report
//! aggregates those records (shipped with each proxy's audit chain) per flow; promoting the
//! candidate applies it through the same gate as `authz apply`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Api, ApiError, ApiResult, Change, Operator, check_files, gate, gate_json, publish, rejected,
    validated, wait_of,
};
use crate::server::acks;
use crate::server::hub::Shadowed;
use crate::server::operators::Act;
use crate::server::store::{AuditRow, NewShadow, ShadowCandidate, ShadowFlow};

/// Most flows a report lists, and examples per flow.
const REPORT_FLOWS: u32 = 500;
const EXAMPLES_PER_FLOW: u32 = 3;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InstallBody {
    files: Vec<crate::server::store::StoredFile>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    wait_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PromoteBody {
    /// The candidate the caller reviewed: promoting another one is refused.
    candidate: u64,
    #[serde(default)]
    expected_version: Option<u64>,
    #[serde(default)]
    allow_widening: bool,
    #[serde(default)]
    wait_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClearBody {
    #[serde(default)]
    wait_seconds: Option<u64>,
}

fn none_installed() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no shadow candidate is installed (meshctl authz apply --shadow -f FILES installs one)",
    )
}

fn candidate_json(c: &ShadowCandidate) -> Value {
    json!({
        "id": c.id,
        "hash": c.hash,
        "policies": c.policies,
        "installed_at": c.installed_at,
        "author": c.author,
        "message": c.message,
    })
}

/// Installs a candidate (replacing any other) and waits for the proxies to run it.
pub(super) async fn install(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<InstallBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
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
    Ok(Json(json!({
        "candidate": candidate_json(&candidate),
        "gate": gate_json(&diff),
        "enforcement": acks.to_json(|p| p.shadow_version),
    })))
}

/// The installed candidate (with its files) and what it disagreed with on live traffic.
pub(super) async fn report(State(api): State<Api>, op: Operator) -> ApiResult {
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
pub(crate) async fn shadow_report(api: &Api) -> Result<Value, ApiError> {
    let shadow = api.hub.shadow();
    let Some(Shadowed { meta, .. }) = shadow.as_ref() else {
        return Ok(json!({ "candidate": null, "flows": [] }));
    };
    let since = u64::try_from(meta.installed_at)
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    let store = &api.hub.store;
    let flows = store.shadow_flows(&meta.hash, since, REPORT_FLOWS).await?;
    let examples = store
        .shadow_examples(&meta.hash, since, EXAMPLES_PER_FLOW)
        .await?;
    let proxies = api.hub.proxies();
    let running = proxies
        .iter()
        .filter(|p| p.shadow_version == meta.id)
        .count();
    let total = |would: &str| -> u64 {
        flows
            .iter()
            .filter(|f| f.would == would)
            .map(|f| f.count)
            .sum()
    };
    Ok(json!({
        "candidate": candidate_json(meta),
        "files": meta.files,
        "running_on": { "proxies": proxies.len(), "running": running },
        "would_allow": total("allow"),
        "would_deny": total("deny"),
        "flows": flows_json(&flows, &examples),
    }))
}

/// Each flow with its newest examples.
fn flows_json(flows: &[ShadowFlow], examples: &[AuditRow]) -> Vec<Value> {
    let mut by_flow: BTreeMap<(&str, &str, &str, &str), Vec<Value>> = BTreeMap::new();
    for row in examples {
        let Ok(record) = serde_json::from_str::<signet_audit::Record>(&row.line) else {
            continue;
        };
        let signet_audit::Event::Shadow(s) = record.event else {
            continue;
        };
        let key = (
            row.principal.as_deref().unwrap_or_default(),
            row.resource.as_deref().unwrap_or_default(),
            row.action.as_deref().unwrap_or_default(),
            row.decision.as_deref().unwrap_or_default(),
        );
        by_flow.entry(key).or_default().push(json!({
            "time": record.time,
            "writer": record.writer,
            "seq": record.seq,
            "path": s.enforced.path,
            "trace": s.enforced.trace,
            "src": s.enforced.src,
            "enforced": s.enforced.decision,
            "enforced_policies": s.enforced.policies,
            "candidate_policies": s.candidate_policies,
        }));
    }
    flows
        .iter()
        .map(|f| {
            let key = (
                f.principal.as_str(),
                f.service.as_str(),
                f.action.as_str(),
                f.would.as_str(),
            );
            json!({
                "principal": f.principal,
                "service": f.service,
                "action": f.action,
                "would": f.would,
                "count": f.count,
                "first": f.first,
                "last": f.last,
                "examples": by_flow.get(&key).cloned().unwrap_or_default(),
            })
        })
        .collect()
}

/// Removes the candidate from every proxy.
pub(super) async fn clear(
    State(api): State<Api>,
    op: Operator,
    body: Option<Json<ClearBody>>,
) -> ApiResult {
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
    Ok(Json(json!({
        "cleared": meta.id,
        "enforcement": acks.to_json(|p| p.shadow_version),
    })))
}

/// Applies the candidate through the gate of `POST /v1/policies`, then ends shadow mode.
pub(super) async fn promote(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<PromoteBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
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
    let Json(mut result) = publish(
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
    let version = result.get("version").and_then(Value::as_u64).unwrap_or(0);
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
    result["promoted"] = json!(meta.id);
    Ok(Json(result))
}
