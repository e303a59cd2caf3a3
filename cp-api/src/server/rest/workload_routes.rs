//! `/v1/workloads/attestation`: who may take a service's identity from its proxies' SPIFFE
//! Workload API (`meshctl workload attest`). The selectors operators set here replace those
//! of the proxies' own configuration; every one must match the calling process.

use std::str::FromStr;
use std::time::SystemTime;

use crate::model;
use axum::Json;
use axum::extract::State;
use signet_spiffe::selector::Selector;

use super::{Api, ApiError, ApiResult, Operator, check_name, rejected, wait_of};
use crate::server::operators::Act;
use crate::server::store::{WorkloadSelectors, unix_ms};

/// Most selectors one service may have.
const MAX_SELECTORS: usize = 16;

/// The selectors, checked: each parses, none twice, at most [`MAX_SELECTORS`].
fn checked(selectors: &[String]) -> Result<Vec<String>, ApiError> {
    if selectors.len() > MAX_SELECTORS {
        return Err(ApiError::bad(format!(
            "a service has at most {MAX_SELECTORS} selectors"
        )));
    }
    let mut canonical = Vec::with_capacity(selectors.len());
    for text in selectors {
        let selector = Selector::from_str(text).map_err(ApiError::bad)?;
        let shown = selector.to_string();
        if canonical.contains(&shown) {
            return Err(ApiError::bad(format!("selector `{shown}` is given twice")));
        }
        canonical.push(shown);
    }
    Ok(canonical)
}

/// `POST /v1/workloads/attestation`.
pub(super) async fn attest(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<model::AttestRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<model::AttestationSet> {
    let Json(body) = body.map_err(rejected)?;
    check_name("service", &body.service)?;
    check_name("namespace", &body.namespace)?;
    let selectors = checked(&body.selectors)?;
    api.authorize(
        &op,
        Act::WorkloadAttest {
            service: &body.service,
            namespace: &body.namespace,
            selectors: selectors.len(),
        },
    )
    .await?;
    let target = {
        let _guard = api.apply_lock.lock().await;
        api.hub
            .set_selectors(WorkloadSelectors {
                namespace: body.namespace.clone(),
                name: body.service.clone(),
                selectors: selectors.clone(),
                updated_at: unix_ms(SystemTime::now()),
                author: op.id.as_str().to_owned(),
            })
            .await?
    };
    tracing::info!(service = %body.service, namespace = %body.namespace, ?selectors, author = %op.id, "Workload API selectors set");
    let (service, namespace) = (body.service.clone(), body.namespace.clone());
    let acks = crate::server::acks::wait(
        &api.hub,
        wait_of(body.wait_seconds),
        move |p| p.service == service && p.namespace == namespace,
        |p| p.config_version >= target,
    )
    .await;
    Ok(Json(model::AttestationSet {
        service: body.service,
        namespace: body.namespace,
        selectors,
        enforcement: acks.to_model(|p| p.config_version),
    }))
}

/// `GET /v1/workloads/attestation`.
pub(super) async fn list(
    State(api): State<Api>,
    op: Operator,
) -> ApiResult<model::WorkloadSelectorsList> {
    api.authorize(
        &op,
        Act::Read {
            collection: "workloads",
        },
    )
    .await?;
    Ok(Json(model::WorkloadSelectorsList {
        services: api.hub.all_selectors(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_parsed_deduplicated_and_bounded() {
        let given = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            checked(&given(&["unix:uid:1000", "unix:path:/usr/bin/cart"])).unwrap(),
            given(&["unix:uid:1000", "unix:path:/usr/bin/cart"])
        );
        assert!(checked(&[]).unwrap().is_empty(), "empty clears");
        for bad in [
            given(&["uid:1000"]),
            given(&["unix:path:relative"]),
            given(&["unix:uid:1", "unix:uid:1"]),
            vec!["unix:uid:1".to_owned(); MAX_SELECTORS + 1],
        ] {
            assert!(checked(&bad).is_err(), "{bad:?}");
        }
    }
}
