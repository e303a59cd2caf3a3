//! `meshctl identity inspect <service|spiffe-id>`: the identity's certificate, its issuer
//! chain, the proxies holding it, and what the applied policies let it do.

use clap::Args;
use serde_json::Value;

use super::{Remote, print_structured, print_table, relative, text, time_of};
use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A service name (as registered) or a SPIFFE ID.
    #[arg(value_name = "SERVICE|SPIFFE-ID")]
    target: String,
    #[command(flatten)]
    remote: Remote,
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn when(v: &Value, key: &str) -> String {
    let t = v.get(key).unwrap_or(&Value::Null);
    format!("{} ({})", time_of(t), relative(t))
}

pub(crate) fn inspect(args: &InspectArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.get(&format!("/v1/identities?id={}", encode(&args.target)))?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    println!("SPIFFE ID      {}", text(&value, "spiffe_id"));
    if let Some(service) = value.get("service").filter(|s| !s.is_null()) {
        println!(
            "service        {} (namespace {})",
            text(service, "name"),
            text(service, "namespace")
        );
    }
    match value.get("certificate").filter(|c| !c.is_null()) {
        Some(cert) => {
            println!("serial         {}", text(cert, "serial"));
            println!("not before     {}", when(cert, "not_before"));
            println!("not after      {}", when(cert, "not_after"));
            println!("refresh at     {}", when(cert, "refresh_at"));
            let how = if text(cert, "kind") == "renew" {
                "renewal over mTLS"
            } else {
                "join token"
            };
            println!("obtained by    {how}");
            println!("issuer chain");
            for (depth, issuer) in cert
                .get("issuer_chain")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                println!(
                    "  {}{}  (expires {})",
                    "  ".repeat(depth),
                    text(issuer, "subject"),
                    time_of(issuer.get("not_after").unwrap_or(&Value::Null))
                );
            }
        }
        None => println!("certificate    none issued"),
    }
    let proxies = value
        .get("proxies")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    println!();
    if proxies.is_empty() {
        println!("held by no registered proxy");
    } else {
        let rows: Vec<Vec<String>> = proxies
            .iter()
            .map(|p| {
                vec![
                    text(p, "instance"),
                    text(p, "endpoint"),
                    text(p, "serial"),
                    relative(p.get("last_renewed").unwrap_or(&Value::Null)),
                    relative(p.get("last_heartbeat").unwrap_or(&Value::Null)),
                ]
            })
            .collect();
        print_table(
            &["PROXY", "ENDPOINT", "SERIAL", "RENEWED", "HEARTBEAT"],
            &rows,
        );
    }
    let authz = value.get("authorization").cloned().unwrap_or(Value::Null);
    println!();
    println!(
        "effective authorization (policy version {}):",
        text(&authz, "policy_version")
    );
    let verdict = |v: &Value| {
        if v.get("connect").and_then(Value::as_bool) == Some(true) {
            "ALLOW"
        } else {
            "DENY"
        }
    };
    let inbound: Vec<Vec<String>> = authz
        .get("inbound")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                text(e, "spiffe_id"),
                verdict(e).to_owned(),
                text(e, "policies"),
            ]
        })
        .collect();
    let outbound: Vec<Vec<String>> = authz
        .get("outbound")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                text(e, "service"),
                verdict(e).to_owned(),
                text(e, "policies"),
            ]
        })
        .collect();
    if inbound.is_empty() {
        println!("  may connect to it: no other registered workload");
    } else {
        println!("  who may connect to it:");
        print_table(&["  CALLER", "CONNECT", "POLICIES"], &indent(inbound));
    }
    if outbound.is_empty() {
        println!("  what it may call: no other registered service");
    } else {
        println!("  what it may call:");
        print_table(&["  SERVICE", "CONNECT", "POLICIES"], &indent(outbound));
    }
    Ok(Outcome::Success)
}

fn indent(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|mut r| {
            if let Some(first) = r.first_mut() {
                *first = format!("  {first}");
            }
            r
        })
        .collect()
}
