//! `/v1/authn`: end-user authentication (JWT providers and the services that accept them),
//! applied whole after validation, versioned, pushed to the proxies of each listed service.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use super::{Api, ApiError, ApiResult, Operator, rejected, wait_of};
use crate::model;
use crate::server::acks;
use crate::server::authn::fetch;
use crate::server::hub::AuthnState;
use crate::server::operators::Act;

/// The configuration in force and how each provider's keys are doing.
pub(super) async fn current(State(api): State<Api>, op: Operator) -> ApiResult<model::AuthnState> {
    api.authorize(
        &op,
        Act::Read {
            collection: "authn",
        },
    )
    .await?;
    let state = api.hub.authn();
    let providers = state
        .doc
        .iter()
        .flat_map(|d| d.providers.iter())
        .map(|p| model::ProviderKeys {
            name: p.name.clone(),
            issuer: p.issuer.clone(),
            keys_from: p.jwks_uri.as_deref().unwrap_or("inline").to_owned(),
            keys: state.keys.get(&p.name).map_or(0, |k| {
                serde_json::from_str::<Value>(k)
                    .ok()
                    .and_then(|v| v.get("keys").and_then(Value::as_array).map(Vec::len))
                    .unwrap_or(0) as u64
            }),
            fetched_at: state.fetched_at.get(&p.name).copied(),
            error: state.fetch_errors.get(&p.name).cloned(),
        })
        .collect();
    Ok(Json(model::AuthnState {
        version: state.version,
        author: state.author.clone(),
        applied_at: state.applied_at,
        config: state.doc.clone(),
        providers,
    }))
}

/// Validates, fetches every URL's keys, stores and publishes a configuration.
pub(super) async fn apply(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<model::AuthnApplyRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<model::AuthnApplied> {
    let Json(body) = body.map_err(rejected)?;
    let doc = body.config;
    api.authorize(
        &op,
        Act::AuthnApply {
            providers: doc.providers.len(),
            services: doc.services.len(),
        },
    )
    .await?;
    let refused = |problems: Vec<String>| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: "the authentication configuration was rejected; nothing was applied".to_owned(),
        problems,
    };
    let problems = doc.problems();
    if !problems.is_empty() {
        return Err(refused(problems));
    }
    let mut fetched = Vec::new();
    let mut problems = Vec::new();
    for provider in doc.providers.iter().filter(|p| p.jwks_uri.is_some()) {
        match fetch(&doc, provider).await {
            Ok(jwks) => fetched.push((provider.name.clone(), jwks)),
            Err(e) => problems.push(format!("provider `{}`: {e}", provider.name)),
        }
    }
    if !problems.is_empty() {
        return Err(refused(problems));
    }
    let text = serde_json::to_string(&doc)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let guard = api.apply_lock.lock().await;
    let version = api
        .hub
        .store
        .put_authn(text, op.id.as_str().to_owned(), fetched.clone())
        .await?;
    let now = crate::server::store::unix_ms(std::time::SystemTime::now());
    let mut keys = doc.inline_keys();
    let mut fetched_at = BTreeMap::new();
    for (provider, jwks) in fetched {
        fetched_at.insert(provider.clone(), now);
        keys.insert(provider, jwks);
    }
    // Proxies whose configuration changes: those of services listed before or now.
    let previous = api.hub.authn();
    let affected: std::collections::BTreeSet<(String, String)> = previous
        .doc
        .iter()
        .chain(std::iter::once(&doc))
        .flat_map(|d| d.services.iter())
        .map(|s| (s.namespace.clone(), s.service.clone()))
        .collect();
    let summary = format!(
        "{} providers, {} services",
        doc.providers.len(),
        doc.services.len()
    );
    let generation = api.hub.publish_authn(AuthnState {
        version,
        doc: Some(doc),
        author: op.id.as_str().to_owned(),
        applied_at: now,
        keys,
        fetched_at,
        fetch_errors: BTreeMap::new(),
    });
    api.hub.audit.record(signet_audit::Event::Config(
        signet_audit::record::ConfigEvent {
            what: "authn".to_owned(),
            version,
            detail: format!("{summary}, applied by {}", op.id),
        },
    ));
    drop(guard);
    tracing::info!(version, author = %op.id, "end-user authentication applied");
    let acks = acks::wait(
        &api.hub,
        wait_of(body.wait_seconds),
        |p| affected.contains(&(p.namespace.clone(), p.service.clone())),
        |p| p.config_version >= generation,
    )
    .await;
    Ok(Json(model::AuthnApplied {
        version,
        enforcement: acks.to_model(|p| p.config_version),
    }))
}
