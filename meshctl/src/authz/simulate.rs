//! `meshctl authz simulate --policies <candidate> [--since T] [--data-dir DIR]`: replays the
//! decisions the audit trail recorded against a candidate bundle and lists every recorded
//! request whose decision would change, with counts (a sampled record counts for the
//! decisions it stands for). Exit 3 when anything would widen, like `authz diff`.
//!
//! What is replayed is what was recorded: caller, service, method, path, source address.
//! Headers, query strings and labels are not in the records, so policies that read them are
//! evaluated without them (said in the output).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};
use signet_audit::record::{Event, Record};
use signet_policy::{Authorizer, Caller, HttpRequest, Target};
use signet_spiffe::SpiffeId;

use super::request::load_bundle;
use crate::Outcome;
use crate::cp::{Remote, print_structured};

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// The candidate policies (files or directories; repeatable).
    #[arg(long = "policies", required = true, value_name = "POLICIES")]
    policies: Vec<PathBuf>,
    /// Only decisions recorded since this time (RFC 3339, e.g. 2026-11-21T10:00:00Z, or a
    /// duration ago: 30m, 2h, 1d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Read the records from the spools under this directory instead of the control plane.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Most records read from the control plane.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    limit: u32,
    #[command(flatten)]
    remote: Remote,
}

fn records_from_control_plane(args: &SimulateArgs, since: u64) -> anyhow::Result<Vec<Record>> {
    let client = args.remote.client()?;
    let mut path = format!("/v1/audit?limit={}", args.limit);
    if since > 0 {
        path.push_str(&format!("&since={since}"));
    }
    let page: signet_cp::model::AuditPage = client.get_as(&path)?;
    Ok(page
        .records
        .iter()
        .filter_map(|r| serde_json::from_str::<Record>(&r.line).ok())
        .collect())
}

#[derive(Debug, Default)]
struct Change {
    count: u64,
    old_policies: Vec<String>,
    new_policies: Vec<String>,
}

pub(crate) fn run(args: &SimulateArgs) -> anyhow::Result<Outcome> {
    let candidate = Authorizer::new(Arc::new(load_bundle(&args.policies).context("--policies")?));
    let since = args
        .since
        .as_deref()
        .map(|t| crate::duration::instant_ns(t, "--since"))
        .transpose()?
        .unwrap_or(0);
    let records = match &args.data_dir {
        Some(dir) => crate::audit::spools::records(dir, since)?,
        None => records_from_control_plane(args, since)?,
    };
    // (was allowed, principal, resource, action, path) → change.
    let mut changes: BTreeMap<(bool, String, String, String, String), Change> = BTreeMap::new();
    let mut replayed = 0u64;
    for record in &records {
        let Event::Decision(d) = &record.event else {
            continue;
        };
        let Ok(principal) = d.principal.parse::<SpiffeId>() else {
            continue;
        };
        replayed += u64::from(d.sample.max(1));
        let source: IpAddr = d
            .src
            .parse::<SocketAddr>()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let port = d.dst.parse::<SocketAddr>().map_or(0, |a| a.port());
        let caller = Caller {
            id: Some(&principal),
            ..Caller::default()
        };
        let target = Target {
            name: &d.resource,
            namespace: &d.namespace,
            port,
            labels: &[],
        };
        let now = if d.action == "connect" {
            candidate.connect(&caller, &target, source)
        } else {
            candidate.request(
                &caller,
                &target,
                &HttpRequest {
                    method: &d.action,
                    path: d.path.as_deref().unwrap_or("/"),
                    host: &d.resource,
                    query: "",
                    headers: signet_policy::Headers::NONE,
                    source_ip: source,
                    claims: None,
                },
            )
        };
        let was_allowed = d.decision == "allow";
        if now.is_allowed() == was_allowed {
            continue;
        }
        let key = (
            was_allowed,
            d.principal.clone(),
            d.resource.clone(),
            d.action.clone(),
            d.path.clone().unwrap_or_default(),
        );
        let change = changes.entry(key).or_default();
        change.count += u64::from(d.sample.max(1));
        change.old_policies.clone_from(&d.policies);
        change.new_policies.clone_from(&now.policies);
    }
    let widened: u64 = changes
        .iter()
        .filter(|((was, ..), _)| !was)
        .map(|(_, c)| c.count)
        .sum();
    let narrowed: u64 = changes
        .iter()
        .filter(|((was, ..), _)| *was)
        .map(|(_, c)| c.count)
        .sum();
    let reason = |p: &[String]| {
        if p.is_empty() {
            "default-deny".to_owned()
        } else {
            p.join(",")
        }
    };
    let list: Vec<Value> = changes
        .iter()
        .map(|((was, principal, resource, action, path), c)| {
            json!({
                "kind": if *was { "narrowed" } else { "widened" },
                "principal": principal, "resource": resource, "action": action, "path": path,
                "count": c.count,
                "before": { "decision": if *was { "allow" } else { "deny" }, "policies": c.old_policies },
                "after": { "decision": if *was { "deny" } else { "allow" }, "policies": c.new_policies },
            })
        })
        .collect();
    let summary = json!({
        "replayed": replayed, "widened": widened, "narrowed": narrowed, "changes": list,
    });
    if !print_structured(args.remote.output, &summary)? {
        for ((was, principal, resource, action, path), c) in &changes {
            let (mark, before, after) = if *was {
                ("- NARROWED", "ALLOW", "DENY")
            } else {
                ("+ WIDENED ", "DENY", "ALLOW")
            };
            let what = if path.is_empty() {
                action.clone()
            } else {
                format!("{action} {path}")
            };
            println!(
                "{mark}  {principal} -> {resource}: {what}  x{}  (was {before} by {}, would be {after} by {})",
                c.count,
                reason(&c.old_policies),
                reason(&c.new_policies)
            );
        }
        println!(
            "{replayed} recorded decisions replayed: {widened} would widen, {narrowed} would narrow (headers, query strings and labels are not recorded; policies reading them see none)"
        );
    }
    Ok(if widened > 0 {
        Outcome::Widened
    } else {
        Outcome::Success
    })
}
