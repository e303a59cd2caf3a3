//! `meshctl authz test --principal <id> --action <connect|GET|…> --resource <service> …`

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Args;
use signet_policy::{Authorizer, Caller, Claims, Decision, HttpRequest, PolicyBundle, Target};
use signet_spiffe::SpiffeId;

use super::{Format, PolicyPaths};
use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// The calling workload's SPIFFE ID.
    #[arg(long, value_name = "SPIFFE_ID")]
    principal: String,
    /// `connect`, or an HTTP method (GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE).
    #[arg(long)]
    action: String,
    /// The destination service's name.
    #[arg(long, value_name = "SERVICE")]
    resource: String,
    /// The destination's namespace (default: the principal's, or `default`).
    #[arg(long)]
    namespace: Option<String>,
    /// The destination port.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// A label of the destination service, `key=value` (repeatable).
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,
    /// Request path (HTTP actions).
    #[arg(long, default_value = "/")]
    path: String,
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
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: Format,
    #[command(flatten)]
    policies: PolicyPaths,
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

pub(crate) fn run(args: &TestArgs) -> anyhow::Result<Outcome> {
    let principal: SpiffeId = args
        .principal
        .parse()
        .with_context(|| format!("--principal `{}` is not a SPIFFE ID", args.principal))?;
    let labels = pairs(&args.labels, "--label")?;
    let headers = pairs(&args.headers, "--header")?;
    let claims = args.claims.as_ref().map(read_claims).transpose()?;
    let bundle = PolicyBundle::load(&args.policies.paths).map_err(|e| {
        anyhow::anyhow!(
            "policies are invalid (run `meshctl authz validate`): {}",
            e.problems
                .first()
                .map(ToString::to_string)
                .unwrap_or_default()
        )
    })?;
    let namespace = args.namespace.clone().unwrap_or_else(|| {
        principal
            .namespace_and_account()
            .map_or("default", |(ns, _)| ns)
            .to_owned()
    });
    let authorizer = Authorizer::new(Arc::new(bundle));
    let caller = Caller {
        id: Some(&principal),
        ..Caller::default()
    };
    let target = Target {
        name: &args.resource,
        namespace: &namespace,
        port: args.port,
        labels: &labels,
    };
    let decision = if args.action == "connect" {
        authorizer.connect(&caller, &target, args.source_ip)
    } else {
        let request = HttpRequest {
            method: &args.action,
            path: &args.path,
            host: args.host.as_deref().unwrap_or(&args.resource),
            query: &args.query,
            headers: &headers,
            source_ip: args.source_ip,
            claims: claims.as_ref(),
        };
        authorizer.request(&caller, &target, &request)
    };
    print(&decision, args.output);
    Ok(if decision.is_allowed() {
        Outcome::Success
    } else {
        Outcome::Denied
    })
}

fn print(decision: &Decision, format: Format) {
    match format {
        Format::Table => {
            let effect = if decision.is_allowed() {
                "ALLOW"
            } else {
                "DENY"
            };
            println!("{effect}  {}", decision.reason());
            for e in &decision.errors {
                println!("  error: {e}");
            }
        }
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "decision": if decision.is_allowed() { "allow" } else { "deny" },
                "policies": decision.policies,
                "errors": decision.errors,
            })
        ),
    }
}
