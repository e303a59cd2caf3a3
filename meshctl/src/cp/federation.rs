//! `meshctl federation add|list|remove`: the trust domains this mesh federates with. Adding
//! one fetches its bundle from its bundle endpoint (authenticated with the bootstrap bundle
//! under `https_spiffe`) and keeps it fresh; proxies then accept that domain's peers, which
//! Cedar policies must still name. Removing one stops trust at once.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use signet_cp::model;

use super::{Remote, print_structured, print_table, read_as, relative_to};
use crate::Outcome;

/// Largest bootstrap bundle or CA file read.
const MAX_FILE: u64 = 1024 * 1024;

#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The other mesh's trust domain.
    #[arg(long, value_name = "TRUST_DOMAIN")]
    trust_domain: String,
    /// Its bundle endpoint (`https://host:port/`).
    #[arg(long, value_name = "URL")]
    endpoint: String,
    /// How the endpoint authenticates: `https_spiffe` (its SVID) or `https_web` (a WebPKI
    /// certificate).
    #[arg(long, default_value = "https_spiffe", value_name = "PROFILE")]
    profile: String,
    /// https_spiffe: the SPIFFE ID the endpoint presents.
    #[arg(long, value_name = "SPIFFE_ID")]
    endpoint_spiffe_id: Option<String>,
    /// The bundle that authenticates the first fetch: PEM roots or the SPIFFE bundle format
    /// (obtained out of band from the other mesh's operators).
    #[arg(long, value_name = "FILE")]
    bootstrap_bundle: Option<PathBuf>,
    /// https_web: roots (PEM) the endpoint's certificate must chain to (default: the
    /// system's).
    #[arg(long, value_name = "FILE")]
    endpoint_ca: Option<PathBuf>,
    #[command(flatten)]
    wait: super::Wait,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// The trust domain to stop trusting.
    #[arg(value_name = "TRUST_DOMAIN")]
    trust_domain: String,
    #[command(flatten)]
    wait: super::Wait,
    #[command(flatten)]
    remote: Remote,
}

fn read(path: &PathBuf, what: &str) -> anyhow::Result<String> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("{what} `{}`", path.display()))?
        .len();
    if len > MAX_FILE {
        anyhow::bail!("{what} `{}` is over {MAX_FILE} bytes", path.display());
    }
    std::fs::read_to_string(path).with_context(|| format!("{what} `{}`", path.display()))
}

pub(crate) fn add(args: &AddArgs) -> anyhow::Result<Outcome> {
    let read_opt =
        |path: &Option<PathBuf>, what: &str| path.as_ref().map(|p| read(p, what)).transpose();
    let body = model::FederationAddRequest {
        trust_domain: args.trust_domain.clone(),
        endpoint: args.endpoint.clone(),
        profile: args.profile.clone(),
        endpoint_spiffe_id: args.endpoint_spiffe_id.clone(),
        bootstrap_bundle: read_opt(&args.bootstrap_bundle, "--bootstrap-bundle")?,
        endpoint_ca: read_opt(&args.endpoint_ca, "--endpoint-ca")?,
        wait_seconds: Some(args.wait.wait.as_secs()),
    };
    let result = args.remote.client()?.post("/v1/federation", &body)?;
    let table = !print_structured(args.remote.output, &result)?;
    let added: model::FederationAdded = read_as(&result, "/v1/federation")?;
    if table {
        let f = &added.federation;
        println!(
            "federated with {}: {} roots and {} JWT keys trusted (bundle sequence {})",
            f.trust_domain,
            f.roots,
            f.jwt_keys.len(),
            f.sequence,
        );
        if let Some(e) = &f.last_error {
            println!(
                "warning: the first fetch failed ({e}); the bootstrap bundle is trusted until one succeeds"
            );
        }
        println!("its peers are accepted, and allowed only what Cedar policies name them for");
    }
    let enforced = super::enforced(Some(&added.enforcement), "the federation")?;
    if table {
        println!("{enforced}");
    }
    Ok(Outcome::Success)
}

pub(crate) fn list(args: &ListArgs) -> anyhow::Result<Outcome> {
    let result = args.remote.client()?.get("/v1/federation")?;
    if print_structured(args.remote.output, &result)? {
        return Ok(Outcome::Success);
    }
    let list: model::FederationList = read_as(&result, "/v1/federation")?;
    if list.federations.is_empty() {
        println!("{} federates with no other trust domain", list.trust_domain);
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = list
        .federations
        .iter()
        .map(|f| {
            vec![
                f.trust_domain.clone(),
                f.profile.name().to_owned(),
                f.endpoint.clone(),
                f.roots.to_string(),
                f.jwt_keys.len().to_string(),
                f.sequence.to_string(),
                f.refreshed_at
                    .map_or_else(|| "never (bootstrap)".to_owned(), relative_to),
                f.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "TRUST DOMAIN",
            "PROFILE",
            "ENDPOINT",
            "ROOTS",
            "JWT KEYS",
            "SEQUENCE",
            "FETCHED",
            "LAST ERROR",
        ],
        &rows,
    );
    Ok(Outcome::Success)
}

pub(crate) fn remove(args: &RemoveArgs) -> anyhow::Result<Outcome> {
    let path = format!(
        "/v1/federation/{}?wait_seconds={}",
        crate::cp::query_value(&args.trust_domain),
        args.wait.wait.as_secs()
    );
    let result = args.remote.client()?.delete(&path, &json!({}))?;
    let table = !print_structured(args.remote.output, &result)?;
    let removed: model::FederationRemoved = read_as(&result, &path)?;
    if table {
        println!(
            "{} is no longer trusted: proxies drop its roots and close its peers' connections",
            removed.removed
        );
    }
    let enforced = super::enforced(Some(&removed.enforcement), "the removal")?;
    if table {
        println!("{enforced}");
    }
    Ok(Outcome::Success)
}
