//! `/v1/ca`: the CA's state, `ca setup` (checks, then a rotation to a Vault backend) and
//! `ca rotate` (a rotation to a fresh successor of the active backend).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use signet_ca::SystemClock;
use signet_ca::vault::{VaultAuth, VaultMode, VaultSettings, preflight};

use super::{Api, ApiError, ApiResult, Operator, der_not_after, der_subject};
use crate::model;
use crate::server::ca::{Backend, CaError, Opened};
use crate::server::hub::Hub;
use crate::server::jwt_keys::Phase;
use crate::server::rotation;

/// Warn this long before an issuing CA expires (a Vault intermediate is re-signed when a
/// third of its life remains, ten days for the default thirty) and before a root does.
const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 86400);
const ROOT_EXPIRY_WARNING: Duration = Duration::from_secs(90 * 86400);

fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn fingerprint(der: &[u8]) -> String {
    super::sha256(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The CA as `GET /v1/ca` and `meshctl ca status` show it.
pub(crate) fn describe(hub: &Hub) -> model::CaStatus {
    let ca = &hub.ca;
    let active = ca.active();
    let status = active.authority.status();
    let now = SystemTime::now();
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut warnings = Vec::new();
    let chain: Vec<model::ChainCertificate> = status
        .chain
        .iter()
        .map(|c| {
            let warn_before = if c.role == "root" {
                ROOT_EXPIRY_WARNING
            } else {
                EXPIRY_WARNING
            };
            if c.not_after < now_secs + warn_before.as_secs() {
                warnings.push(format!(
                    "{} `{}` expires in {}h",
                    c.role,
                    c.subject,
                    c.not_after.saturating_sub(now_secs) / 3600
                ));
            }
            model::ChainCertificate {
                role: c.role.to_owned(),
                subject: c.subject.clone(),
                sha256: c.sha256.clone(),
                not_after: ms(c.not_after),
            }
        })
        .collect();
    let staged = ca.staged();
    let staged_roots = staged
        .as_ref()
        .map(|s| s.authority.bundle())
        .unwrap_or_else(|| signet_spiffe::TrustBundle::new(hub.trust_domain.clone()));
    let active_roots = active.authority.bundle();
    let retiring = ca.retiring();
    let bundle = ca.bundle();
    let roots: Vec<model::Root> = bundle
        .roots()
        .map(|r| {
            let retire = retiring.iter().find(|(_, b, _)| b.contains(r));
            let (state, retire_at) = if active_roots.contains(r) {
                (model::RootState::Active, None)
            } else if staged_roots.contains(r) {
                (model::RootState::Staged, None)
            } else {
                (
                    model::RootState::Retiring,
                    retire.map(|(_, _, until)| ms(*until)),
                )
            };
            model::Root {
                subject: der_subject(r),
                sha256: fingerprint(r),
                not_after: der_not_after(r),
                state,
                retire_at,
            }
        })
        .collect();
    let rotation = staged.as_ref().map(|s| {
        let waiting = rotation::lagging(hub);
        if !waiting.is_empty() {
            warnings.push(format!(
                "rotation to {} waits for {} proxies to receive the new bundle",
                s.backend.name(),
                waiting.len()
            ));
        }
        let since = ca.staged_since().unwrap_or(0);
        model::Rotation {
            phase: "staged".to_owned(),
            to: s.backend.name().to_owned(),
            since: ms(since),
            waiting_for: waiting,
            promote_by: ms(since + rotation::patience(hub).as_secs()),
            not_before: ms(since + rotation::federation_delay(hub).as_secs()),
        }
    });
    let upkeep = ca.upkeep();
    let last_error = upkeep.last_error.clone().or(status.last_error.clone());
    if let Some(e) = &last_error {
        warnings.push(format!("the last call to the CA backend failed: {e}"));
    }
    if let Some(v) = &status.vault
        && !v.token_renewable
        && v.token_ttl.is_some_and(|t| t < 3600)
        && v.auth == "token"
    {
        warnings.push(format!(
            "the Vault token expires in {}s and cannot be renewed",
            v.token_ttl.unwrap_or(0)
        ));
    }
    let intermediate = status.chain.first().filter(|c| c.role != "root");
    let jwt = jwt_keys(hub, &mut warnings);
    model::CaStatus {
        trust_domain: hub.trust_domain.as_str().to_owned(),
        kind: status.backend.to_owned(),
        backend: status.backend.to_owned(),
        chain,
        intermediate: intermediate.map(|c| model::IssuingCertificate {
            subject: c.subject.clone(),
            not_after: ms(c.not_after),
        }),
        roots,
        bundle_sequence: bundle.sequence(),
        vault: status.vault.as_ref().map(|v| model::VaultStatus {
            address: v.address.clone(),
            mount: v.mount.clone(),
            role: v.role.clone(),
            auth: if v.auth == "approle" {
                model::VaultAuthMethod::AppRole
            } else {
                model::VaultAuthMethod::Token
            },
            token_ttl_seconds: v.token_ttl,
            token_renewable: v.token_renewable,
            logins: v.logins,
            renewals: v.renewals,
        }),
        next_renewal: status.next_renewal.map(ms),
        last_error,
        rotation,
        warnings,
        svid_ttl_seconds: ca.profile().default_ttl.as_secs(),
        jwt,
    }
}

/// The JWT-SVID signing keys and their rotation, as `GET /v1/ca` and `GET /v1/identities`
/// show them.
pub(super) fn jwt_keys(hub: &Hub, warnings: &mut Vec<String>) -> model::JwtStatus {
    let ca = &hub.ca;
    let profile = ca.jwt_profile();
    let keys: Vec<model::JwtKey> = ca
        .jwt_keys()
        .into_iter()
        .map(|(kid, phase, created)| {
            let (state, retire_at) = match phase {
                Phase::Retiring { until } => (model::JwtKeyState::Retiring, Some(ms(until))),
                Phase::Staged { .. } => (model::JwtKeyState::Staged, None),
                Phase::Active => (model::JwtKeyState::Active, None),
            };
            model::JwtKey {
                kid,
                algorithm: "ES256".to_owned(),
                state,
                created: ms(created),
                retire_at,
            }
        })
        .collect();
    let rotation = ca.jwt_staged().map(|(since, sequence)| {
        let waiting = rotation::lagging_behind(hub, sequence);
        if !waiting.is_empty() && ca.staged().is_none() {
            warnings.push(format!(
                "the staged JWT signing key waits for {} proxies to receive it",
                waiting.len()
            ));
        }
        model::JwtRotation {
            since: ms(since),
            waiting_for: waiting,
            promote_by: ms(since + rotation::patience(hub).as_secs()),
        }
    });
    if ca.jwt_signer().is_none() {
        warnings.push("no JWT signing key is active: JWT-SVIDs cannot be issued".to_owned());
    }
    model::JwtStatus {
        svid_ttl_seconds: profile.ttl.as_secs(),
        key_lifetime_seconds: profile.key_lifetime.as_secs(),
        signing_kid: ca.jwt_signer().map(|s| s.key_id().to_owned()),
        keys,
        rotation,
    }
}

pub(super) async fn status(State(api): State<Api>, op: Operator) -> ApiResult<model::CaStatus> {
    api.authorize(&op, super::Act::Read { collection: "ca" })
        .await?;
    Ok(Json(describe(&api.hub)))
}

/// `POST /v1/ca/setup`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetupRequest {
    address: String,
    #[serde(default)]
    ca_cert_pem: Option<String>,
    auth: VaultAuth,
    mount: String,
    #[serde(default)]
    role: Option<String>,
    mode: VaultMode,
    #[serde(default)]
    intermediate_ttl_secs: Option<u64>,
    /// Run the checks only.
    #[serde(default)]
    check_only: bool,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) async fn setup(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<SetupRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(super::rejected)?;
    api.authorize(&op, super::Act::CaManage { operation: "setup" })
        .await?;
    let hub = &api.hub;
    refuse_while_staged(hub)?;
    if body.mode == VaultMode::Sign && body.role.is_none() {
        return Err(ApiError::bad("--mode sign needs --vault-role"));
    }
    let sub = format!("vault-{}", unix_now());
    let dir: PathBuf = hub.ca.dir().join(&sub);
    // The Vault server's CA certificate: written where this replica reads it, and kept in
    // the store for the others.
    let ca_cert = match &body.ca_cert_pem {
        Some(pem) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            let path = dir.join("vault-ca.pem");
            std::fs::write(&path, pem)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            Some(path)
        }
        None => None,
    };
    let settings = VaultSettings {
        address: body.address,
        ca_cert,
        auth: body.auth,
        mount: body.mount,
        role: body.role,
        mode: body.mode,
        intermediate_ttl_secs: body.intermediate_ttl_secs.unwrap_or(30 * 86400),
    };
    let checked = preflight(
        settings.clone(),
        &hub.trust_domain,
        hub.ca.profile(),
        Arc::new(SystemClock),
        dir.clone(),
    )
    .await;
    let checks: Vec<model::CaCheck> = checked
        .checks
        .iter()
        .map(|c| model::CaCheck {
            name: c.name.clone(),
            ok: c.ok,
            detail: c.detail.clone(),
        })
        .collect();
    let Some(authority) = checked.authority else {
        let _ = std::fs::remove_dir_all(&dir);
        let failed = checked.checks.iter().find(|c| !c.ok);
        let message = failed.map_or_else(
            || "the checks did not pass".to_owned(),
            |c| format!("check `{}` failed: {}", c.name, c.detail),
        );
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(model::CaSetupRefused {
                error: message,
                checks,
            }),
        )
            .into_response());
    };
    if body.check_only {
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(Json(model::CaSetup {
            checks,
            switched: false,
            ca: None,
        })
        .into_response());
    }
    stage(
        hub,
        Opened::vault(
            Backend::Vault { settings, dir: sub },
            authority,
            body.ca_cert_pem,
        ),
    )
    .await?;
    Ok(Json(model::CaSetup {
        checks,
        switched: true,
        ca: Some(describe(hub)),
    })
    .into_response())
}

/// One rotation at a time.
fn refuse_while_staged(hub: &Hub) -> Result<(), ApiError> {
    match hub.ca.staged() {
        Some(s) => Err(ApiError::new(
            StatusCode::CONFLICT,
            CaError::Busy(s.backend.name().to_owned()).to_string(),
        )),
        None => Ok(()),
    }
}

async fn stage(hub: &Hub, next: Opened) -> Result<(), ApiError> {
    let name = next.backend.name();
    hub.ca.stage(next).await.map_err(|e| match e {
        CaError::Busy(_) | CaError::Raced => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        CaError::Failed(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m),
    })?;
    hub.changed();
    hub.audit.record(signet_audit::Event::Config(
        signet_audit::record::ConfigEvent {
            what: "ca".to_owned(),
            version: hub.ca.bundle().sequence(),
            detail: format!("staged {name}: its roots joined the trust bundle"),
        },
    ));
    tracing::info!(
        backend = name,
        "CA rotation staged: new roots pushed to proxies"
    );
    Ok(())
}

pub(super) async fn rotate(State(api): State<Api>, op: Operator) -> ApiResult<model::CaRotated> {
    api.authorize(
        &op,
        super::Act::CaManage {
            operation: "rotate",
        },
    )
    .await?;
    let hub = &api.hub;
    refuse_while_staged(hub)?;
    let next = hub
        .ca
        .successor()
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e))?;
    stage(hub, next).await?;
    Ok(Json(model::CaRotated { ca: describe(hub) }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn setup_requests_are_strict() {
        let ok: SetupRequest = serde_json::from_value(json!({
            "address": "http://127.0.0.1:8200",
            "auth": { "method": "approle", "role_id": "r", "secret_id": "s" },
            "mount": "pki",
            "mode": "intermediate",
        }))
        .unwrap();
        assert!(matches!(ok.auth, VaultAuth::AppRole { ref mount, .. } if mount == "approle"));
        let typo = serde_json::from_value::<SetupRequest>(json!({
            "address": "x", "auth": { "method": "token", "token": "t" },
            "mount": "pki", "mode": "intermediate", "moud": 1,
        }));
        assert!(typo.is_err());
        let bad_mode = serde_json::from_value::<SetupRequest>(json!({
            "address": "x", "auth": { "method": "token", "token": "t" },
            "mount": "pki", "mode": "both",
        }));
        assert!(bad_mode.is_err());
    }
}
