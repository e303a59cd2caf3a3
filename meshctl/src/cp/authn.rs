//! `meshctl authn apply -f providers.yaml` and `meshctl authn get`: end-user authentication.
//!
//! The file names JWT providers and the services that accept them:
//!
//! ```yaml
//! providers:
//!   - name: corp
//!     issuer: https://idp.example.com
//!     audiences: [shop]
//!     jwks_file: corp-jwks.json          # read here and sent inline, or:
//!     # jwks_uri: https://idp.example.com/jwks.json   (fetched by the control plane)
//!     # jwks_ca_file: idp-ca.pem         (roots to trust for jwks_uri)
//!     # refresh_seconds: 300
//!     # header: authorization / prefix: "Bearer " / algorithms: [ES256, RS256, EdDSA]
//! services:
//!   - service: cart
//!     namespace: shop
//!     providers: [corp]
//!     required: true
//! ```
//!
//! Files are read relative to the YAML file. The control plane validates the whole document
//! (every key built as the proxies will, every URL fetched once) before storing anything.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{Value, json};

use signet_cp::model;

use super::{Remote, print_structured, print_table, read_as, time_at};
use crate::Outcome;

/// Largest file read (the YAML, a JWKS, a CA bundle).
const MAX_FILE: u64 = 1024 * 1024;

#[derive(Debug, Subcommand)]
pub(crate) enum Authn {
    /// Apply JWT providers and the services that accept them (the whole configuration, as
    /// a new version); every listed service's proxies verify tokens from then on.
    Apply(ApplyArgs),
    /// The configuration in force and the state of each provider's keys.
    Get(GetArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The providers file (YAML).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    wait: super::Wait,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    providers: Vec<Provider>,
    #[serde(default)]
    services: Vec<Value>,
    #[serde(default)]
    max_token_bytes: Option<u32>,
    #[serde(default)]
    clock_skew_seconds: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Provider {
    name: String,
    issuer: String,
    audiences: Vec<String>,
    #[serde(default)]
    jwks_file: Option<PathBuf>,
    #[serde(default)]
    jwks_uri: Option<String>,
    #[serde(default)]
    jwks_ca_file: Option<PathBuf>,
    #[serde(default)]
    refresh_seconds: Option<u64>,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
}

pub(crate) fn run(cmd: &Authn) -> anyhow::Result<Outcome> {
    match cmd {
        Authn::Apply(args) => apply(args),
        Authn::Get(args) => get(args),
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading `{}`", path.display()))?
        .len();
    anyhow::ensure!(
        len <= MAX_FILE,
        "`{}` is {len} bytes; the limit is {MAX_FILE}",
        path.display()
    );
    std::fs::read_to_string(path).with_context(|| format!("reading `{}`", path.display()))
}

/// The document the control plane takes, files read relative to `base`.
fn document(file: File, base: &Path) -> anyhow::Result<Value> {
    let mut providers = Vec::new();
    for p in file.providers {
        let mut v = json!({ "name": p.name, "issuer": p.issuer, "audiences": p.audiences });
        if let Some(path) = &p.jwks_file {
            v["jwks"] = json!(read(&base.join(path))?);
        }
        if let Some(uri) = p.jwks_uri {
            v["jwks_uri"] = json!(uri);
        }
        if let Some(path) = &p.jwks_ca_file {
            v["jwks_ca"] = json!(read(&base.join(path))?);
        }
        for (key, value) in [
            ("refresh_seconds", p.refresh_seconds.map(Value::from)),
            ("header", p.header.map(Value::from)),
            ("prefix", p.prefix.map(Value::from)),
            ("algorithms", p.algorithms.map(Value::from)),
        ] {
            if let Some(value) = value {
                v[key] = value;
            }
        }
        providers.push(v);
    }
    let mut doc = json!({ "providers": providers, "services": file.services });
    if let Some(n) = file.max_token_bytes {
        doc["max_token_bytes"] = json!(n);
    }
    if let Some(n) = file.clock_skew_seconds {
        doc["clock_skew_seconds"] = json!(n);
    }
    Ok(doc)
}

fn apply(args: &ApplyArgs) -> anyhow::Result<Outcome> {
    let yaml = read(&args.file)?;
    let file: File =
        serde_norway::from_str(&yaml).map_err(|e| anyhow!("`{}`: {e}", args.file.display()))?;
    let base = args.file.parent().unwrap_or(Path::new("."));
    let doc = document(file, base)?;
    let client = args.remote.client()?;
    let result = client.post(
        "/v1/authn",
        &model::AuthnApplyRequest {
            // Read here as the control plane will: a field it would refuse is named now.
            config: serde_json::from_value(doc)
                .map_err(|e| anyhow!("`{}`: {e}", args.file.display()))?,
            wait_seconds: Some(args.wait.wait.as_secs()),
        },
    )?;
    let table = !print_structured(args.remote.output, &result)?;
    let applied: model::AuthnApplied = read_as(&result, "/v1/authn")?;
    if table {
        println!(
            "applied end-user authentication version {}",
            applied.version
        );
    }
    let enforced = super::enforced(
        Some(&applied.enforcement),
        &format!("authentication version {}", applied.version),
    )?;
    if table {
        println!("{enforced}");
    }
    Ok(Outcome::Success)
}

fn get(args: &GetArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.get("/v1/authn")?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let state: model::AuthnState = read_as(&value, "/v1/authn")?;
    let Some(config) = &state.config else {
        println!("no end-user authentication applied (meshctl authn apply -f providers.yaml)");
        return Ok(Outcome::Success);
    };
    println!(
        "version {} applied {} by {}",
        state.version,
        time_at(state.applied_at),
        state.author
    );
    let rows: Vec<Vec<String>> = state
        .providers
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.issuer.clone(),
                p.keys_from.clone(),
                p.keys.to_string(),
                p.fetched_at.map_or_else(|| "-".to_owned(), time_at),
                p.error.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    print_table(
        &[
            "PROVIDER",
            "ISSUER",
            "KEYS FROM",
            "KEYS",
            "FETCHED",
            "LAST ERROR",
        ],
        &rows,
    );
    let services: Vec<Vec<String>> = config
        .services
        .iter()
        .map(|s| {
            vec![
                format!("{}/{}", s.namespace, s.service),
                s.providers.join(","),
                if s.required { "required" } else { "optional" }.to_owned(),
            ]
        })
        .collect();
    println!();
    print_table(&["SERVICE", "PROVIDERS", "TOKEN"], &services);
    Ok(Outcome::Success)
}
