//! End-user authentication, as operators apply it (`meshctl authn apply`, `POST /v1/authn`):
//! JWT providers (issuer, audiences, keys from an inline JWKS or an `https` URL the control
//! plane fetches and refreshes) and, per service, which providers it accepts and whether a
//! token is required. Each proxy receives its service's part (`ProxyConfig.authn`) with every
//! provider's current keys inline, so proxies never reach out to an identity provider.
//!
//! A document is validated whole before anything is stored: every provider's keys are built
//! with the verifier the proxies use (`signet_policy::jwt`), and a URL's keys are fetched
//! once, so an apply never leaves a provider without keys.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::api::v1 as pb;

/// Largest JWKS fetched or given (real ones are a few KiB), and most providers one service
/// accepts: together they bound what a proxy's configuration message carries for
/// authentication (512 KiB), well inside what the message may hold beside its policies.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
const MAX_PROVIDERS_PER_SERVICE: usize = 8;
/// How long a JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Most providers and service entries in one document.
const MAX_PROVIDERS: usize = 64;
const MAX_SERVICES: usize = 4096;

pub use crate::model::{AuthnDoc, ProviderDoc, ServiceAuthn};

/// The keys of every provider now, by name: inline, or as last fetched.
pub type Keys = BTreeMap<String, String>;

impl AuthnDoc {
    /// Checks everything but the keys of `jwks_uri` providers; every problem found.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.providers.len() > MAX_PROVIDERS {
            problems.push(format!("at most {MAX_PROVIDERS} providers"));
        }
        if self.services.len() > MAX_SERVICES {
            problems.push(format!("at most {MAX_SERVICES} service entries"));
        }
        if !(256..=65_536).contains(&self.max_token_bytes) {
            problems.push("max_token_bytes is between 256 and 65536".to_owned());
        }
        if self.clock_skew_seconds > 600 {
            problems.push("clock_skew_seconds is at most 600".to_owned());
        }
        let mut names = BTreeSet::new();
        for (n, p) in self.providers.iter().enumerate() {
            let at = format!("providers[{n}] (`{}`)", p.name);
            if !valid_name(&p.name) {
                problems.push(format!(
                    "{at}: a name is 1-63 lower-case letters, digits and `-`"
                ));
            }
            if !names.insert(p.name.as_str()) {
                problems.push(format!("{at}: the name is used twice"));
            }
            match (&p.jwks, &p.jwks_uri) {
                (Some(_), Some(_)) | (None, None) => {
                    problems.push(format!("{at}: give exactly one of jwks and jwks_uri"));
                }
                (Some(jwks), None) => {
                    if let Err(e) = self.build(p, jwks) {
                        problems.push(format!("{at}: {e}"));
                    }
                }
                (None, Some(uri)) => {
                    if !uri.starts_with("https://") {
                        problems.push(format!("{at}: jwks_uri must be an https URL"));
                    }
                    if !(1..=86_400).contains(&p.refresh_seconds) {
                        problems.push(format!("{at}: refresh_seconds is between 1 and 86400"));
                    }
                }
            }
            if p.jwks_ca.is_some() && p.jwks_uri.is_none() {
                problems.push(format!("{at}: jwks_ca goes with jwks_uri"));
            }
        }
        let mut services = BTreeSet::new();
        for (n, s) in self.services.iter().enumerate() {
            let at = format!("services[{n}] (`{}/{}`)", s.namespace, s.service);
            if s.service.is_empty() || s.namespace.is_empty() {
                problems.push(format!("{at}: service and namespace are needed"));
            }
            if !services.insert((&s.namespace, &s.service)) {
                problems.push(format!("{at}: listed twice"));
            }
            if s.providers.is_empty() {
                problems.push(format!("{at}: name at least one provider"));
            }
            if s.providers.len() > MAX_PROVIDERS_PER_SERVICE {
                problems.push(format!(
                    "{at}: at most {MAX_PROVIDERS_PER_SERVICE} providers per service"
                ));
            }
            for p in &s.providers {
                if !names.contains(p.as_str()) {
                    problems.push(format!("{at}: no provider `{p}`"));
                }
            }
        }
        problems
    }

    /// `provider` with `jwks` as the verifier builds it: what the proxies will run.
    pub fn build(
        &self,
        provider: &ProviderDoc,
        jwks: &str,
    ) -> Result<signet_policy::jwt::Provider, String> {
        if jwks.len() > MAX_JWKS_BYTES {
            return Err(format!("the JWKS is over {MAX_JWKS_BYTES} bytes"));
        }
        signet_policy::jwt::Provider::new(&crate::api::convert::provider_spec(
            &self.provider_message(provider, jwks),
            Duration::from_secs(u64::from(self.clock_skew_seconds)),
        ))
    }

    fn provider_message(&self, p: &ProviderDoc, jwks: &str) -> pb::JwtProvider {
        pb::JwtProvider {
            name: p.name.clone(),
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            jwks: jwks.to_owned(),
            header: p.header.to_ascii_lowercase(),
            prefix: p.prefix.clone(),
            algorithms: p.algorithms.clone(),
        }
    }

    /// What the proxies of `service` in `namespace` verify, with `keys` as the providers'
    /// keys; `None` when the service accepts no provider.
    pub fn for_service(&self, service: &str, namespace: &str, keys: &Keys) -> Option<pb::Authn> {
        let entry = self
            .services
            .iter()
            .find(|s| s.service == service && s.namespace == namespace)?;
        let providers = entry
            .providers
            .iter()
            .filter_map(|name| self.providers.iter().find(|p| p.name == *name))
            .map(|p| {
                let jwks = keys.get(&p.name).map_or("", String::as_str);
                self.provider_message(p, jwks)
            })
            .collect();
        Some(pb::Authn {
            required: entry.required,
            providers,
            max_token_bytes: self.max_token_bytes,
            clock_skew_seconds: self.clock_skew_seconds,
        })
    }

    /// The inline keys.
    pub fn inline_keys(&self) -> Keys {
        self.providers
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.jwks.clone()?)))
            .collect()
    }
}

fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Fetches `provider`'s keys from its `jwks_uri` and checks they build.
pub async fn fetch(doc: &AuthnDoc, provider: &ProviderDoc) -> Result<String, String> {
    let Some(uri) = &provider.jwks_uri else {
        return Err("no jwks_uri".to_owned());
    };
    let mut builder = crate::server::fetch::https_client(FETCH_TIMEOUT);
    if let Some(pem) = &provider.jwks_ca {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("jwks_ca: {e}"))?;
        if certs.is_empty() {
            return Err("jwks_ca holds no certificate".to_owned());
        }
        builder = builder.tls_certs_only(certs);
    }
    let client = builder.build().map_err(|e| format!("{uri}: {e}"))?;
    let jwks = crate::server::fetch::get_json_text(&client, uri, MAX_JWKS_BYTES, "JWKS").await?;
    doc.build(provider, &jwks)
        .map_err(|e| format!("{uri}: {e}"))?;
    Ok(jwks)
}

/// One pass of the key refresher: fetches, one after another, the keys of every `jwks_uri`
/// provider whose refresh time has come (`last`: when each was last attempted, by applied
/// version and provider), keeps good ones in the store and publishes them.
pub async fn refresh_due(
    hub: &crate::server::hub::Hub,
    last: &mut BTreeMap<(u64, String), std::time::Instant>,
) {
    let state = hub.authn();
    let Some(doc) = state.doc.clone() else {
        return;
    };
    let version = state.version;
    last.retain(|(v, _), _| *v == version);
    let now = std::time::Instant::now();
    for provider in doc.providers.iter().filter(|p| p.jwks_uri.is_some()) {
        let key = (version, provider.name.clone());
        // Applying fetched the keys once already: the first refresh is a period later.
        let since = *last.entry(key.clone()).or_insert(now);
        if now.duration_since(since) < Duration::from_secs(provider.refresh_seconds) {
            continue;
        }
        last.insert(key, now);
        let result = fetch(&doc, provider).await;
        match &result {
            Ok(jwks) if state.keys.get(&provider.name) != Some(jwks) => {
                tracing::info!(provider = %provider.name, "new keys fetched");
                if let Err(e) = hub
                    .store
                    .put_authn_key(provider.name.clone(), jwks.clone())
                    .await
                {
                    tracing::error!(error = %e, "keeping fetched keys failed");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(provider = %provider.name, error = %e, "fetching keys failed; the last good ones stay")
            }
        }
        hub.fetched_keys(version, &provider.name, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> AuthnDoc {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn every_problem_of_a_document_is_named() {
        let providers: Vec<String> = (0..9)
            .map(|n| {
                format!(
                    r#"{{"name":"p{n}","issuer":"i","audiences":["a"],"jwks_uri":"https://idp/{n}"}}"#
                )
            })
            .collect();
        let names: Vec<String> = (0..9).map(|n| format!("\"p{n}\"")).collect();
        let text = format!(
            r#"{{"providers":[{},
                {{"name":"Bad Name","issuer":"i","audiences":["a"],"jwks_uri":"http://idp"}},
                {{"name":"both","issuer":"i","audiences":["a"],"jwks":"{{}}","jwks_uri":"https://x"}}],
               "services":[{{"service":"cart","namespace":"shop","providers":[{}]}},
                           {{"service":"cart","namespace":"shop","providers":["nope"]}}],
               "max_token_bytes":10}}"#,
            providers.join(","),
            names.join(",")
        );
        let problems = doc(&text).problems().join("\n");
        for expected in [
            "max_token_bytes is between",
            "a name is 1-63 lower-case",
            "jwks_uri must be an https URL",
            "give exactly one of jwks and jwks_uri",
            "at most 8 providers per service",
            "listed twice",
            "no provider `nope`",
        ] {
            assert!(problems.contains(expected), "{expected}:\n{problems}");
        }
    }

    #[test]
    fn a_good_document_has_no_problem_and_reaches_only_its_services() {
        let good = doc(
            r#"{"providers":[{"name":"corp","issuer":"i","audiences":["a"],"jwks_uri":"https://idp/jwks"}],
                "services":[{"service":"cart","namespace":"shop","providers":["corp"],"required":true}]}"#,
        );
        assert_eq!(good.problems(), Vec::<String>::new());
        let keys: Keys = [("corp".to_owned(), "{\"keys\":[]}".to_owned())].into();
        let cart = good.for_service("cart", "shop", &keys).unwrap();
        assert!(cart.required);
        assert_eq!(cart.providers[0].jwks, "{\"keys\":[]}");
        assert_eq!(cart.providers[0].header, "authorization");
        assert!(good.for_service("cart", "other", &keys).is_none());
    }
}
