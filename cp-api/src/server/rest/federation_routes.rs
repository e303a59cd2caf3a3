//! `/v1/federation`: the trust domains this mesh federates with (`meshctl federation add`,
//! `list`, `remove`). Adding one fetches its bundle from its endpoint at once (authenticated
//! with the bootstrap bundle under `https_spiffe`); proxies then accept its peers, which
//! Cedar policies must still name. Removing one stops trust at once: proxies drop its roots
//! and close its peers' live connections.

use std::str::FromStr;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use signet_spiffe::{SpiffeId, TrustDomain};

use super::{Api, ApiError, ApiResult, Operator, rejected, wait_of};
use crate::model;
use crate::server::federation::{self, Federated, Profile};
use crate::server::operators::Act;
use crate::server::store::{Federation, StoreError, unix_ms};

/// Longest endpoint URL accepted.
const MAX_URL: usize = 2048;

/// A federation as the API shows it.
pub(super) fn describe(f: &Federated) -> model::Federation {
    let r = &f.record;
    model::Federation {
        trust_domain: r.trust_domain.clone(),
        endpoint: r.endpoint.clone(),
        // Checked when it was added; a row that no longer reads is shown as web PKI, the
        // profile that trusts nothing of the bundle for the endpoint itself.
        profile: Profile::from_str(&r.profile).unwrap_or(Profile::HttpsWeb),
        endpoint_spiffe_id: (!r.endpoint_spiffe_id.is_empty())
            .then(|| r.endpoint_spiffe_id.clone()),
        roots: f.bundle.roots().len() as u64,
        jwt_keys: f
            .bundle
            .jwt_authorities()
            .iter()
            .map(|a| a.key_id().to_owned())
            .collect(),
        sequence: f.bundle.sequence(),
        refreshed_at: (r.refreshed_at > 0).then_some(r.refreshed_at),
        next_refresh: r.next_refresh,
        last_error: (!r.last_error.is_empty()).then(|| r.last_error.clone()),
        created_at: r.created_at,
        author: r.author.clone(),
    }
}

/// The add request, checked: what to store, and the bundle to start from (if any).
fn checked(
    api: &Api,
    body: &model::FederationAddRequest,
) -> Result<(TrustDomain, Profile, Option<signet_spiffe::TrustBundle>), ApiError> {
    let td = TrustDomain::new(&body.trust_domain)
        .map_err(|e| ApiError::bad(format!("trust domain `{}`: {e}", body.trust_domain)))?;
    if td == api.hub.trust_domain {
        return Err(ApiError::bad(format!(
            "`{td}` is this mesh's own trust domain"
        )));
    }
    let profile = Profile::from_str(&body.profile).map_err(ApiError::bad)?;
    if body.endpoint.len() > MAX_URL || !body.endpoint.starts_with("https://") {
        return Err(ApiError::bad(format!(
            "endpoint `{}` must be an https:// URL of at most {MAX_URL} bytes",
            body.endpoint
        )));
    }
    reqwest::Url::parse(&body.endpoint)
        .map_err(|e| ApiError::bad(format!("endpoint `{}`: {e}", body.endpoint)))?;
    match (profile, &body.endpoint_spiffe_id) {
        (Profile::HttpsSpiffe, None) => {
            return Err(ApiError::bad(
                "https_spiffe needs the endpoint's SPIFFE ID (--endpoint-spiffe-id)",
            ));
        }
        (Profile::HttpsSpiffe, Some(id)) => {
            let id = SpiffeId::from_str(id)
                .map_err(|e| ApiError::bad(format!("endpoint SPIFFE ID `{id}`: {e}")))?;
            if !id.is_member_of(&td) {
                return Err(ApiError::bad(format!(
                    "endpoint SPIFFE ID `{id}` is not in trust domain `{td}`"
                )));
            }
        }
        (Profile::HttpsWeb, Some(_)) => {
            return Err(ApiError::bad(
                "https_web authenticates the endpoint by its WebPKI certificate: drop the SPIFFE ID",
            ));
        }
        (Profile::HttpsWeb, None) => {}
    }
    if profile == Profile::HttpsSpiffe && body.endpoint_ca.is_some() {
        return Err(ApiError::bad(
            "https_spiffe authenticates the endpoint with the bundle: drop the endpoint CA",
        ));
    }
    if profile == Profile::HttpsSpiffe && body.bootstrap_bundle.is_none() {
        return Err(ApiError::bad(
            "https_spiffe needs a bootstrap bundle to authenticate the first fetch (--bootstrap-bundle)",
        ));
    }
    let bootstrap = body
        .bootstrap_bundle
        .as_deref()
        .map(|text| {
            federation::parse_bundle(&td, text)
                .map_err(|e| ApiError::bad(format!("bootstrap bundle: {e}")))
        })
        .transpose()?;
    Ok((td, profile, bootstrap))
}

/// `POST /v1/federation`.
pub(super) async fn add(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<model::FederationAddRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<model::FederationAdded> {
    let Json(body) = body.map_err(rejected)?;
    let (td, profile, bootstrap) = checked(&api, &body)?;
    api.authorize(
        &op,
        Act::FederationManage {
            operation: "add",
            trust_domain: td.as_str(),
        },
    )
    .await?;
    if api
        .hub
        .federations()
        .iter()
        .any(|f| f.record.trust_domain == td.as_str())
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("`{td}` is already federated; remove it first to change it"),
        ));
    }
    let now = SystemTime::now();
    let mut record = Federation {
        trust_domain: td.to_string(),
        endpoint: body.endpoint.clone(),
        profile: profile.name().to_owned(),
        endpoint_spiffe_id: body.endpoint_spiffe_id.clone().unwrap_or_default(),
        endpoint_ca: body.endpoint_ca.clone().unwrap_or_default(),
        bundle: String::new(),
        refreshed_at: 0,
        next_refresh: 0,
        last_error: String::new(),
        created_at: unix_ms(now),
        author: op.id.as_str().to_owned(),
    };
    let held = bootstrap
        .clone()
        .unwrap_or_else(|| signet_spiffe::TrustBundle::new(td.clone()));
    let bundle = match federation::fetch(&record, &held).await {
        Ok(fetched) => {
            record.refreshed_at = unix_ms(now);
            record.next_refresh = federation::next_refresh(Some(&fetched), &held, now);
            fetched
        }
        // The bootstrap bundle is trusted until a fetch succeeds, as the specification has it.
        Err(e) => match bootstrap {
            Some(bootstrap) => {
                record.last_error = e;
                record.next_refresh = federation::next_refresh(None, &held, now);
                bootstrap
            }
            None => {
                return Err(ApiError::bad(format!(
                    "{e}; with no bootstrap bundle there is nothing to trust"
                )));
            }
        },
    };
    record.bundle = federation::bundle_text(&bundle).map_err(ApiError::bad)?;
    match api.hub.store.put_federation(record.clone(), true).await {
        Ok(()) => {}
        Err(StoreError::Raced(_)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("`{td}` was federated by another operator meanwhile"),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    api.hub.reload_federations().await?;
    tracing::info!(trust_domain = %td, endpoint = %record.endpoint, profile = profile.name(), author = %op.id, "federation added");
    let acks = wait_for_proxies(&api, body.wait_seconds).await;
    let federated = Federated { record, bundle };
    Ok(Json(model::FederationAdded {
        federation: describe(&federated),
        enforcement: acks,
    }))
}

async fn wait_for_proxies(api: &Api, wait_seconds: Option<u64>) -> model::Enforcement {
    let target = api.hub.generation();
    crate::server::acks::wait(
        &api.hub,
        wait_of(wait_seconds),
        |_| true,
        |p| p.trust_version >= target,
    )
    .await
    .to_model(|p| p.trust_version)
}

/// `GET /v1/federation`.
pub(super) async fn list(State(api): State<Api>, op: Operator) -> ApiResult<model::FederationList> {
    api.authorize(
        &op,
        Act::Read {
            collection: "federation",
        },
    )
    .await?;
    Ok(Json(model::FederationList {
        trust_domain: api.hub.trust_domain.as_str().to_owned(),
        federations: api.hub.federations().iter().map(describe).collect(),
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct RemoveQuery {
    #[serde(default)]
    wait_seconds: Option<u64>,
}

/// `DELETE /v1/federation/{trust_domain}`.
pub(super) async fn remove(
    State(api): State<Api>,
    op: Operator,
    Path(trust_domain): Path<String>,
    query: axum::extract::Query<RemoveQuery>,
) -> ApiResult<model::FederationRemoved> {
    let td = TrustDomain::new(&trust_domain)
        .map_err(|e| ApiError::bad(format!("trust domain `{trust_domain}`: {e}")))?;
    api.authorize(
        &op,
        Act::FederationManage {
            operation: "remove",
            trust_domain: td.as_str(),
        },
    )
    .await?;
    if !api.hub.store.remove_federation(td.as_str()).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("`{td}` is not federated"),
        ));
    }
    api.hub.reload_federations().await?;
    tracing::info!(trust_domain = %td, author = %op.id, "federation removed");
    let acks = wait_for_proxies(&api, query.wait_seconds).await;
    Ok(Json(model::FederationRemoved {
        removed: td.as_str().to_owned(),
        enforcement: acks,
    }))
}
