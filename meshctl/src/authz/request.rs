//! The request inputs `authz test` and `authz explain` share, and how they become a decision.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Args;
use signet_policy::{Authorizer, Caller, Claims, HttpRequest, Inventory, PolicyBundle, Target};
use signet_spiffe::SpiffeId;

use super::PolicyPaths;

#[derive(Debug, Args)]
pub(crate) struct RequestArgs {
    /// The calling workload's SPIFFE ID.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub(crate) principal: String,
    /// `connect`, or an HTTP method (GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE).
    #[arg(long)]
    pub(crate) action: String,
    /// The destination service's name.
    #[arg(long, value_name = "SERVICE")]
    pub(crate) resource: String,
    /// The destination's namespace (default: the principal's, or `default`).
    #[arg(long)]
    namespace: Option<String>,
    /// The destination port (default: the inventory's, or 8080).
    #[arg(long)]
    port: Option<u16>,
    /// A label of the destination service, `key=value` (repeatable; replaces the
    /// inventory's labels of the service).
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,
    /// Take the caller's service and labels, and the destination's namespace, port and
    /// labels, from this inventory (YAML, as `authz diff --entities`): the same lookup the
    /// proxies make. A principal it does not list is unregistered (no service, no labels).
    #[arg(long, value_name = "FILE", conflicts_with = "registry")]
    entities: Option<PathBuf>,
    /// As --entities, with the control plane's registry (`GET /v1/inventory`).
    #[arg(long)]
    registry: bool,
    #[command(flatten)]
    connection: crate::cp::Connection,
    /// Request path (HTTP actions).
    #[arg(long, default_value = "/")]
    pub(crate) path: String,
    /// Request host (default: the service name).
    #[arg(long)]
    host: Option<String>,
    /// Raw query string, without `?`.
    #[arg(long, default_value = "")]
    query: String,
    /// A request header, `name=value` (repeatable).
    #[arg(long = "header", value_name = "K=V")]
    headers: Vec<String>,
    /// End-user JWT claims as a JSON object (sub, iss, groups, roles, other strings).
    #[arg(long, value_name = "FILE")]
    claims: Option<PathBuf>,
    /// Source address of the connection.
    #[arg(long, default_value = "127.0.0.1")]
    source_ip: IpAddr,
    #[command(flatten)]
    pub(crate) policies: PolicyPaths,
}

/// Reads `paths` as a bundle; on problems, one line naming the first and the command that
/// lists them all.
pub(crate) fn load_bundle(paths: &[PathBuf]) -> anyhow::Result<PolicyBundle> {
    PolicyBundle::load(paths).map_err(|e| {
        let more = e.problems.len().saturating_sub(1);
        anyhow::anyhow!(
            "policies are invalid (run `meshctl authz validate`): {}{}",
            e.problems
                .first()
                .map(ToString::to_string)
                .unwrap_or_default(),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        )
    })
}

impl RequestArgs {
    /// Loads the policies and hands `decide` the authorizer and the request's parts.
    pub(crate) fn run<T>(
        &self,
        decide: impl FnOnce(&Authorizer, &Caller<'_>, &Target<'_>, Ask<'_>) -> T,
    ) -> anyhow::Result<T> {
        let principal: SpiffeId = self
            .principal
            .parse()
            .with_context(|| format!("--principal `{}` is not a SPIFFE ID", self.principal))?;
        if !signet_policy::request_actions().any(|a| a == self.action) {
            bail!(
                "--action `{}` is not one of: {}",
                self.action,
                signet_policy::request_actions()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let labels = pairs(&self.labels, "--label")?;
        let headers = pairs(&self.headers, "--header")?;
        let claims = self.claims.as_ref().map(read_claims).transpose()?;
        let bundle = load_bundle(&self.policies.paths)?;
        let inventory = match (&self.entities, self.registry) {
            (Some(file), _) => crate::authz::diff::read_inventory_file(file, false)?,
            (None, true) => crate::cp::policies::registry_inventory(&self.connection.client()?)?,
            (None, false) => Inventory::default(),
        };
        let known = inventory
            .service(&self.resource)
            .filter(|s| self.namespace.as_ref().is_none_or(|ns| *ns == s.namespace));
        let namespace = self
            .namespace
            .clone()
            .or_else(|| known.map(|s| s.namespace.clone()))
            .unwrap_or_else(|| {
                principal
                    .namespace_and_account()
                    .map_or("default", |(ns, _)| ns)
                    .to_owned()
            });
        let labels = match known {
            Some(s) if labels.is_empty() => s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            _ => labels,
        };
        let port = self.port.or(known.map(|s| s.port)).unwrap_or(8080);
        let authorizer = Authorizer::new(Arc::new(bundle));
        let directory = inventory.directory();
        let caller = directory.caller(&principal);
        let target = Target {
            name: &self.resource,
            namespace: &namespace,
            port,
            labels: &labels,
        };
        let request = HttpRequest {
            method: &self.action,
            path: &self.path,
            host: self.host.as_deref().unwrap_or(&self.resource),
            query: &self.query,
            headers: (&headers).into(),
            source_ip: self.source_ip,
            claims: claims.as_ref(),
        };
        let ask = if self.action == "connect" {
            Ask::Connect(self.source_ip)
        } else {
            Ask::Http(&request)
        };
        Ok(decide(&authorizer, &caller, &target, ask))
    }
}

/// What is asked: a connection or an HTTP request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ask<'a> {
    Connect(IpAddr),
    Http(&'a HttpRequest<'a>),
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .with_context(|| format!("{what} `{item}` must look like `name=value`"))
        })
        .collect()
}

fn read_claims(path: &PathBuf) -> anyhow::Result<Claims> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading claims `{}`", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("claims `{}` are not JSON", path.display()))?;
    let Some(obj) = json.as_object() else {
        bail!("claims `{}` must be a JSON object", path.display());
    };
    let text_of = |k: &str| obj.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    let list = |k: &str| -> Vec<String> {
        match obj.get(k) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    };
    let other = obj
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "sub" | "iss" | "groups" | "roles"))
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .collect();
    Ok(Claims {
        sub: text_of("sub"),
        iss: text_of("iss"),
        groups: list("groups"),
        roles: list("roles"),
        other,
    })
}
