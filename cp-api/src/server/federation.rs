//! Trust-domain federation (the SPIFFE Trust Domain and Bundle specification): this control
//! plane serves its own bundle on a bundle endpoint, and fetches and refreshes the bundles of
//! the trust domains operators federate with (`meshctl federation add`). Proxies receive the
//! federated bundles with their own: a peer of a federated domain is verified against that
//! domain's roots alone, and Cedar policies must name it before it is allowed anything.
//!
//! Endpoint profiles:
//! - `https_spiffe`: the endpoint presents an X509-SVID of the foreign domain with the
//!   configured SPIFFE ID, verified against the bundle held for that domain (the bootstrap
//!   bundle until the first fetch, then the last one fetched), as the specification asks.
//! - `https_web`: the endpoint presents a WebPKI certificate for its host, verified against
//!   the system's roots or the roots configured with the federation.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signet_spiffe::tls::{SpiffeServerVerifier, SvidResolver, shared_bundle};
use signet_spiffe::verify::AllowList;
use signet_spiffe::{SpiffeId, TrustBundle, TrustDomain};

use crate::server::hub::Hub;
use crate::server::store::{Federation, StoreError, unix_ms};

/// Largest bundle read from an endpoint.
const MAX_BUNDLE_BYTES: usize = 1024 * 1024;
/// Time one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Refresh interval when a bundle names none (the specification leaves it to the consumer).
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Bounds on a publisher's refresh hint: often enough to follow a rotation, never a storm.
const MIN_REFRESH: Duration = Duration::from_secs(1);
const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// How soon a failed fetch is tried again (at most; a shorter hint wins).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// How a bundle endpoint authenticates.
pub use crate::model::FederationProfile as Profile;

/// A federation with its bundle parsed.
#[derive(Debug, Clone)]
pub struct Federated {
    pub record: Federation,
    pub bundle: TrustBundle,
}

/// Reads a bundle for `td` given as the SPIFFE bundle format (JSON) or PEM roots; it must
/// hold at least one root or JWT key.
pub fn parse_bundle(td: &TrustDomain, text: &str) -> Result<TrustBundle, String> {
    let bundle = if text.trim_start().starts_with('{') {
        TrustBundle::from_jwks(td.clone(), text).map_err(|e| e.to_string())?
    } else {
        TrustBundle::from_pem(td.clone(), text).map_err(|e| e.to_string())?
    };
    if bundle.is_empty() && bundle.jwt_authorities().is_empty() {
        return Err("the bundle holds neither roots nor JWT keys".to_owned());
    }
    Ok(bundle)
}

/// The bundle as it is kept and served: the SPIFFE bundle format.
pub fn bundle_text(bundle: &TrustBundle) -> Result<String, String> {
    bundle.to_jwks().map_err(|e| e.to_string())
}

/// When to fetch again after a fetch at `now` that gave `bundle` (`None`: it failed).
pub fn next_refresh(bundle: Option<&TrustBundle>, held: &TrustBundle, now: SystemTime) -> i64 {
    let hint = held
        .refresh_hint_secs()
        .map_or(DEFAULT_REFRESH, Duration::from_secs)
        .clamp(MIN_REFRESH, MAX_REFRESH);
    let wait = match bundle {
        Some(b) => b
            .refresh_hint_secs()
            .map_or(DEFAULT_REFRESH, Duration::from_secs)
            .clamp(MIN_REFRESH, MAX_REFRESH),
        None => hint.min(RETRY_AFTER_FAILURE),
    };
    unix_ms(now + wait)
}

/// Fetches `record`'s bundle from its endpoint, authenticating the endpoint with `held` (the
/// bundle currently trusted for the domain) under the https_spiffe profile.
pub async fn fetch(record: &Federation, held: &TrustBundle) -> Result<TrustBundle, String> {
    let td = TrustDomain::new(&record.trust_domain).map_err(|e| e.to_string())?;
    let profile: Profile = record.profile.parse()?;
    let builder = crate::server::fetch::https_client(FETCH_TIMEOUT);
    let builder = match profile {
        Profile::HttpsSpiffe => {
            let id = SpiffeId::from_str(&record.endpoint_spiffe_id).map_err(|e| e.to_string())?;
            let verifier = SpiffeServerVerifier::new(
                shared_bundle(held.clone()),
                Arc::new(AllowList::new([id])),
            );
            let tls = signet_spiffe::tls::client_config(
                Arc::new(SvidResolver::new()),
                Arc::new(verifier),
            )
            .map_err(|e| e.to_string())?;
            builder.use_preconfigured_tls(tls)
        }
        Profile::HttpsWeb if !record.endpoint_ca.is_empty() => {
            let certs = reqwest::Certificate::from_pem_bundle(record.endpoint_ca.as_bytes())
                .map_err(|e| format!("the endpoint's CA: {e}"))?;
            if certs.is_empty() {
                return Err("the endpoint's CA holds no certificate".to_owned());
            }
            builder.tls_certs_only(certs)
        }
        Profile::HttpsWeb => builder,
    };
    let client = builder.build().map_err(|e| e.to_string())?;
    let url = &record.endpoint;
    let text =
        crate::server::fetch::get_json_text(&client, url, MAX_BUNDLE_BYTES, "bundle").await?;
    if !text.trim_start().starts_with('{') {
        return Err(format!("{url}: not a SPIFFE bundle (JSON)"));
    }
    parse_bundle(&td, &text).map_err(|e| format!("{url}: {e}"))
}

/// Fetches `federated` once and writes the outcome (new bundle, or the error) to the store;
/// returns the record written.
pub async fn refresh(hub: &Hub, federated: &Federated) -> Result<Federation, StoreError> {
    let now = SystemTime::now();
    let mut record = federated.record.clone();
    match fetch(&record, &federated.bundle).await {
        Ok(bundle) => {
            if bundle != federated.bundle {
                tracing::info!(trust_domain = %record.trust_domain, sequence = bundle.sequence(), "federated bundle updated");
            }
            record.bundle = bundle_text(&bundle).map_err(StoreError::Backend)?;
            record.refreshed_at = unix_ms(now);
            record.last_error = String::new();
            record.next_refresh = next_refresh(Some(&bundle), &federated.bundle, now);
        }
        Err(e) => {
            tracing::warn!(trust_domain = %record.trust_domain, error = %e, "fetching a federated bundle failed; keeping the one held");
            record.last_error = e;
            record.next_refresh = next_refresh(None, &federated.bundle, now);
        }
    }
    hub.store.put_federation(record.clone(), false).await?;
    if let Err(e) = hub.reload_federations().await {
        tracing::warn!(error = %e, "publishing a refreshed federated bundle failed");
    }
    Ok(record)
}

/// One pass of the refresher (the `federation-refresh` duty): every federation whose
/// refresh time has come is fetched, one after another.
pub async fn refresh_due(hub: &Hub) {
    let now = unix_ms(SystemTime::now());
    for federated in hub.federations().iter() {
        if federated.record.next_refresh > now {
            continue;
        }
        match refresh(hub, federated).await {
            Ok(_) | Err(StoreError::Raced(_)) => {}
            Err(e) => tracing::warn!(error = %e, "keeping a federated bundle failed"),
        }
    }
}

pub mod endpoint;

#[cfg(test)]
mod tests {
    use super::*;
    use signet_spiffe::test_pki::TestCa;

    #[test]
    fn bundles_are_read_as_pem_or_spiffe_json_and_must_hold_something() {
        let td = TrustDomain::new("partner.example").unwrap();
        let ca = TestCa::new("partner.example");
        let pem = ca.bundle().to_pem();
        let from_pem = parse_bundle(&td, &pem).unwrap();
        let from_json = parse_bundle(&td, &ca.bundle().to_jwks().unwrap()).unwrap();
        assert_eq!(from_pem, from_json);
        assert!(parse_bundle(&td, "{\"keys\": []}").is_err());
        assert!(parse_bundle(&td, "not a bundle").is_err());
    }

    #[test]
    fn refreshes_follow_the_publishers_hint_within_bounds() {
        let td = TrustDomain::new("partner.example").unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let with_hint = |hint: u64| {
            TrustBundle::from_jwks(
                td.clone(),
                &format!("{{\"keys\": [], \"spiffe_refresh_hint\": {hint}}}"),
            )
            .unwrap()
        };
        let plain = TrustBundle::new(td.clone());
        assert_eq!(next_refresh(Some(&with_hint(60)), &plain, now), 1_060_000);
        assert_eq!(next_refresh(Some(&plain), &plain, now), 1_300_000);
        assert_eq!(next_refresh(Some(&with_hint(0)), &plain, now), 1_001_000);
        assert_eq!(
            next_refresh(Some(&with_hint(10_000_000)), &plain, now),
            1_000_000 + 86_400_000
        );
        // A failure is retried within 30 s, sooner when the hint is shorter.
        assert_eq!(next_refresh(None, &plain, now), 1_030_000);
        assert_eq!(next_refresh(None, &with_hint(5), now), 1_005_000);
    }

    #[test]
    fn profiles_are_the_specifications() {
        assert_eq!("https_spiffe".parse(), Ok(Profile::HttpsSpiffe));
        assert_eq!("https_web".parse(), Ok(Profile::HttpsWeb));
        assert!("http".parse::<Profile>().is_err());
    }
}
