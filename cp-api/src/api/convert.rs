//! Protobuf <-> domain: the one place a control-plane message becomes the types a proxy
//! enforces, and back.
//!
//! Every conversion is strict: a value that does not parse is an error naming its field
//! (`deny.serials[3]`, `workloads[0].labels[1].key`), never an entry skipped. The control
//! plane validates what it stores, so a malformed entry means a broken or forged message;
//! the proxy refuses that part of the update, keeps what it enforced, and reports it (the
//! `reload_failures` metric and a log line), as the file source does for a bad file.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

use rustls_pki_types::CertificateDer;
use signet_policy::{Directory, PolicySource};
use signet_spiffe::jwt::JwtAuthority;
use signet_spiffe::{Serial, SpiffeId, TrustBundle, TrustDomain};

use crate::api::v1 as pb;

/// A field that does not convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    /// Where it is, as a path into the message (`deny.spiffe_ids[2]`).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConvertError {
    fn new(field: impl Into<String>, problem: impl fmt::Display) -> Self {
        Self {
            field: field.into(),
            problem: problem.to_string(),
        }
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.problem)
    }
}

impl std::error::Error for ConvertError {}

/// The deny-list: identities and certificate serials no peer may present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deny {
    pub ids: Vec<SpiffeId>,
    pub serials: Vec<Serial>,
}

impl TryFrom<&pb::DenyList> for Deny {
    type Error = ConvertError;

    fn try_from(list: &pb::DenyList) -> Result<Self, Self::Error> {
        let ids = list
            .spiffe_ids
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<SpiffeId>()
                    .map_err(|e| ConvertError::new(format!("deny.spiffe_ids[{i}]"), e))
            })
            .collect::<Result<_, _>>()?;
        let serials = list
            .serials
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Serial::from_hex(s).ok_or_else(|| {
                    ConvertError::new(
                        format!("deny.serials[{i}]"),
                        format!("`{}` is not a serial in hex", s.escape_debug()),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { ids, serials })
    }
}

impl From<&Deny> for pb::DenyList {
    fn from(deny: &Deny) -> Self {
        Self {
            spiffe_ids: deny.ids.iter().map(|i| i.as_str().to_owned()).collect(),
            serials: deny.serials.iter().map(ToString::to_string).collect(),
        }
    }
}

/// The trust bundle of `td` in `bundle`, with the federated domains' bundles it carries;
/// empty bundles and other trust domains' are refused.
pub fn trust_bundle(
    td: &TrustDomain,
    bundle: &pb::TrustBundle,
) -> Result<TrustBundle, ConvertError> {
    let own = domain_bundle(td, bundle, "bundle")?;
    let mut federated = Vec::with_capacity(bundle.federated.len());
    for (i, f) in bundle.federated.iter().enumerate() {
        let at = format!("bundle.federated[{i}]");
        let other = TrustDomain::new(&f.trust_domain)
            .map_err(|e| ConvertError::new(format!("{at}.trust_domain"), e))?;
        if other == *td {
            return Err(ConvertError::new(
                format!("{at}.trust_domain"),
                "a trust domain does not federate with itself",
            ));
        }
        if f.roots.is_empty() && f.jwt_authorities.is_empty() {
            return Err(ConvertError::new(at, "neither roots nor JWT keys"));
        }
        federated.push(domain_bundle(&other, f, &at)?);
    }
    Ok(own.with_federated(federated))
}

/// One trust domain's part of a bundle message, its fields named under `at`.
fn domain_bundle(
    td: &TrustDomain,
    bundle: &pb::TrustBundle,
    at: &str,
) -> Result<TrustBundle, ConvertError> {
    let own = at == "bundle";
    if !bundle.trust_domain.is_empty() && bundle.trust_domain != td.as_str() {
        return Err(ConvertError::new(
            format!("{at}.trust_domain"),
            format!(
                "`{}` is not this proxy's trust domain `{td}`",
                bundle.trust_domain
            ),
        ));
    }
    if own && bundle.roots.is_empty() {
        return Err(ConvertError::new("bundle.roots", "no root certificates"));
    }
    let roots = bundle.roots.iter().cloned().map(CertificateDer::from);
    let mut converted = TrustBundle::from_roots(td.clone(), roots)
        .map_err(|e| ConvertError::new(format!("{at}.roots"), e))?;
    for (i, a) in bundle.jwt_authorities.iter().enumerate() {
        let at = || format!("{at}.jwt_authorities[{i}]");
        let authority =
            JwtAuthority::from_jwk_json(&a.jwk).map_err(|e| ConvertError::new(at(), e))?;
        if authority.key_id() != a.key_id {
            return Err(ConvertError::new(
                at(),
                "the key ID differs from the JWK's `kid`",
            ));
        }
        converted
            .add_jwt_authority(authority)
            .map_err(|e| ConvertError::new(at(), e))?;
    }
    converted.set_sequence(bundle.sequence);
    Ok(converted)
}

/// One upstream service's endpoints and the identities they may present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub service: String,
    pub endpoints: Vec<SocketAddr>,
    /// Each endpoint's weight, in the order of `endpoints`.
    pub weights: Vec<u32>,
    /// Each endpoint's labels, in the order of `endpoints`.
    pub labels: Vec<signet_traffic::labels::Labels>,
    pub identities: Vec<SpiffeId>,
    /// The addresses unmodified clients dial for the service (its apps' host:port).
    pub addresses: Vec<SocketAddr>,
}

/// The upstream at position `index` of a `ProxyConfig`.
pub fn endpoints(index: usize, upstream: &pb::Upstream) -> Result<Endpoints, ConvertError> {
    let at = |field: &str, i: usize| format!("upstreams[{index}].{field}[{i}]");
    let endpoints = upstream
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.parse::<SocketAddr>().map_err(|_| {
                ConvertError::new(
                    at("endpoints", i),
                    format!("`{}` is not host:port", e.escape_debug()),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let weights = if upstream.weights.is_empty() {
        vec![signet_traffic::weight::DEFAULT; upstream.endpoints.len()]
    } else if upstream.weights.len() == upstream.endpoints.len() {
        upstream
            .weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                signet_traffic::weight::check(*w)
                    .map_err(|e| ConvertError::new(at("weights", i), e))
            })
            .collect::<Result<_, _>>()?
    } else {
        return Err(ConvertError::new(
            format!("upstreams[{index}].weights"),
            format!(
                "{} weights for {} endpoints",
                upstream.weights.len(),
                upstream.endpoints.len()
            ),
        ));
    };
    let labels = if upstream.labels.is_empty() {
        vec![signet_traffic::labels::Labels::new(); upstream.endpoints.len()]
    } else if upstream.labels.len() == upstream.endpoints.len() {
        upstream
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let labels: signet_traffic::labels::Labels = l
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                signet_traffic::labels::check(&labels)
                    .map(|()| labels)
                    .map_err(|e| ConvertError::new(at("labels", i), e))
            })
            .collect::<Result<_, _>>()?
    } else {
        return Err(ConvertError::new(
            format!("upstreams[{index}].labels"),
            format!(
                "{} label sets for {} endpoints",
                upstream.labels.len(),
                upstream.endpoints.len()
            ),
        ));
    };
    let identities = upstream
        .identities
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<SpiffeId>()
                .map_err(|e| ConvertError::new(at("identities", i), e))
        })
        .collect::<Result<_, _>>()?;
    let addresses = upstream
        .addresses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.parse::<SocketAddr>().map_err(|_| {
                ConvertError::new(
                    at("addresses", i),
                    format!("`{}` is not host:port", a.escape_debug()),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Endpoints {
        service: upstream.service.clone(),
        endpoints,
        weights,
        labels,
        identities,
        addresses,
    })
}

/// A policy slice: its version and its files, to validate as a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub version: u64,
    pub bundle_hash: String,
    pub sources: Vec<PolicySource>,
}

impl TryFrom<&pb::PolicySlice> for Slice {
    type Error = ConvertError;

    fn try_from(slice: &pb::PolicySlice) -> Result<Self, Self::Error> {
        let mut names = BTreeSet::new();
        let sources = slice
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if f.name.is_empty() || !names.insert(f.name.as_str()) {
                    return Err(ConvertError::new(
                        format!("policies.files[{i}].name"),
                        format!("`{}` is empty or repeated", f.name.escape_debug()),
                    ));
                }
                Ok(PolicySource {
                    name: f.name.clone(),
                    text: f.text.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            version: slice.version,
            bundle_hash: slice.bundle_hash.clone(),
            sources,
        })
    }
}

/// The workload directory a `ProxyConfig` carries.
pub fn directory(workloads: &[pb::Workload]) -> Result<Directory, ConvertError> {
    let mut directory = Directory::new();
    for (i, w) in workloads.iter().enumerate() {
        let id: SpiffeId = w
            .spiffe_id
            .parse()
            .map_err(|e| ConvertError::new(format!("workloads[{i}].spiffe_id"), e))?;
        if directory.get(&id).is_some() {
            return Err(ConvertError::new(
                format!("workloads[{i}].spiffe_id"),
                format!("`{id}` is listed twice"),
            ));
        }
        let labels = checked_labels(&format!("workloads[{i}].labels"), &w.labels)?;
        directory.insert(id, w.service.clone(), labels);
    }
    Ok(directory)
}
/// The labels of the proxy's own service (`ProxyConfig.labels`), sorted by key.
pub fn labels(labels: &[pb::Label]) -> Result<Vec<(String, String)>, ConvertError> {
    checked_labels("labels", labels)
}

/// `labels` (at `field`) sorted by key, each key valid and once, each value valid.
fn checked_labels(
    field: &str,
    labels: &[pb::Label],
) -> Result<Vec<(String, String)>, ConvertError> {
    let mut out = std::collections::BTreeMap::new();
    for (i, label) in labels.iter().enumerate() {
        if !valid_label_key(&label.key) || out.contains_key(&label.key) {
            return Err(ConvertError::new(
                format!("{field}[{i}].key"),
                format!(
                    "`{}` is not a label key, or is repeated",
                    label.key.escape_debug()
                ),
            ));
        }
        if !valid_label_value(&label.value) {
            return Err(ConvertError::new(
                format!("{field}[{i}].value"),
                "not a label value (at most 253 visible ASCII characters)",
            ));
        }
        out.insert(label.key.clone(), label.value.clone());
    }
    Ok(out.into_iter().collect())
}

/// The workloads of `directory` as a `ProxyConfig` carries them (sorted by SPIFFE ID).
pub fn workloads_message(directory: &Directory) -> Vec<pb::Workload> {
    directory
        .iter()
        .map(|(id, entry)| pb::Workload {
            spiffe_id: id.as_str().to_owned(),
            service: entry.service.clone(),
            labels: entry
                .labels
                .iter()
                .map(|(key, value)| pb::Label {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
        })
        .collect()
}

/// Longest label key and value.
pub const MAX_LABEL_KEY: usize = 63;
pub const MAX_LABEL_VALUE: usize = 253;

/// A label key: 1-63 of `a-z 0-9 - _ . /`, starting with a letter or digit (a Kubernetes
/// label key, so labels carry over from there unchanged).
pub fn valid_label_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_LABEL_KEY
        && key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_./".contains(&b))
}

/// A label value: at most 253 visible ASCII characters.
pub fn valid_label_value(value: &str) -> bool {
    value.len() <= MAX_LABEL_VALUE && value.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;

/// A service's end-user authentication (`None`: no providers), every provider's keys
/// parsed and checked.
pub fn authn(
    message: Option<&pb::Authn>,
) -> Result<Option<signet_policy::jwt::Authn>, ConvertError> {
    let Some(message) = message else {
        return Ok(None);
    };
    let skew = std::time::Duration::from_secs(u64::from(message.clock_skew_seconds));
    let providers = message
        .providers
        .iter()
        .enumerate()
        .map(|(n, p)| {
            signet_policy::jwt::Provider::new(&provider_spec(p, skew))
                .map_err(|e| ConvertError::new(format!("authn.providers[{n}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if message.required && providers.is_empty() {
        return Err(ConvertError::new(
            "authn.required",
            "a token is required but no provider is given",
        ));
    }
    let max = usize::try_from(message.max_token_bytes).unwrap_or(usize::MAX);
    if max == 0 {
        return Err(ConvertError::new(
            "authn.max_token_bytes",
            "must be positive",
        ));
    }
    Ok(Some(signet_policy::jwt::Authn::new(
        providers,
        message.required,
        max,
    )))
}

/// A provider message as the verifier's input.
pub fn provider_spec(
    p: &pb::JwtProvider,
    skew: std::time::Duration,
) -> signet_policy::jwt::ProviderSpec {
    signet_policy::jwt::ProviderSpec {
        name: p.name.clone(),
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        jwks: p.jwks.clone(),
        header: p.header.clone(),
        prefix: p.prefix.clone(),
        algorithms: p.algorithms.clone(),
        skew,
    }
}
