//! `meshctl status`, `meshctl services list`, `meshctl proxies list`.

use clap::Args;
use serde_json::Value;

use super::{Remote, print_structured, print_table, relative, text, time_of};
use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    remote: Remote,
}

pub(crate) fn status(args: &ListArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.get("/v1/status")?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let ca = value.get("ca").cloned().unwrap_or(Value::Null);
    let policy = value.get("policy").cloned().unwrap_or(Value::Null);
    let proxies = value.get("proxies").cloned().unwrap_or(Value::Null);
    let intermediate = ca.get("intermediate").cloned().unwrap_or(Value::Null);
    let health = match value.get("store_error").and_then(Value::as_str) {
        Some(e) => format!("NOT READY (its database: {e})"),
        None => "healthy".to_owned(),
    };
    println!(
        "control plane  {health}, trust domain {}, up {}s",
        text(&value, "trust_domain"),
        text(&value, "uptime_seconds")
    );
    println!(
        "CA             {}; intermediate expires {} ({})",
        text(&ca, "kind"),
        time_of(intermediate.get("not_after").unwrap_or(&Value::Null)),
        relative(intermediate.get("not_after").unwrap_or(&Value::Null))
    );
    for root in ca
        .get("roots")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!(
            "  root         {} expires {}",
            text(root, "subject"),
            time_of(root.get("not_after").unwrap_or(&Value::Null))
        );
    }
    println!(
        "policy         version {} ({} policies, hash {})",
        text(&policy, "version"),
        text(&policy, "policies"),
        text(&policy, "hash").get(..12).unwrap_or_default()
    );
    let elsewhere = proxies
        .get("on_other_replicas")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    println!(
        "proxies        {} registered: {} in sync, {} stale{}",
        text(&proxies, "total"),
        text(&proxies, "in_sync"),
        text(&proxies, "stale"),
        if elsewhere > 0 {
            format!(", {elsewhere} on other replicas")
        } else {
            String::new()
        }
    );
    for replica in value
        .get("replicas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let alive = replica.get("alive").and_then(Value::as_bool) == Some(true);
        let this = replica.get("this").and_then(Value::as_bool) == Some(true);
        println!(
            "replica        {} grpc {} api {} {}{}",
            text(replica, "id"),
            text(replica, "grpc"),
            text(replica, "api"),
            if alive { "alive" } else { "gone" },
            if this { " (this one)" } else { "" }
        );
    }
    for duty in value
        .get("duties")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let this = duty.get("this").and_then(Value::as_bool) == Some(true);
        match duty.get("holder").and_then(Value::as_str) {
            Some(holder) => println!(
                "duty           {} held by {holder}{}",
                text(duty, "name"),
                if this { " (this one)" } else { "" }
            ),
            None => println!("duty           {} not held", text(duty, "name")),
        }
    }
    Ok(Outcome::Success)
}

pub(crate) fn services(args: &ListArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.get_all("/v1/services", "services")?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let join = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = value
        .get("services")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                text(s, "name"),
                text(s, "namespace"),
                join(s, "endpoints"),
                join(s, "identities"),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no services registered");
    } else {
        print_table(&["SERVICE", "NAMESPACE", "ENDPOINTS", "IDENTITIES"], &rows);
    }
    Ok(Outcome::Success)
}

pub(crate) fn proxies(args: &ListArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.get_all("/v1/proxies", "proxies")?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = value
        .get("proxies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                text(p, "instance"),
                text(p, "service"),
                text(p, "endpoint"),
                text(p, "policy_version"),
                text(p, "traffic_version"),
                text(p, "app_health"),
                if p.get("in_sync").and_then(Value::as_bool) == Some(true) {
                    "in sync".to_owned()
                } else {
                    "stale".to_owned()
                },
                relative(p.get("last_heartbeat").unwrap_or(&Value::Null)),
                text(p, "spiffe_id"),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no proxies registered");
    } else {
        print_table(
            &[
                "PROXY",
                "SERVICE",
                "ENDPOINT",
                "POLICY",
                "TRAFFIC",
                "APP",
                "STATE",
                "HEARTBEAT",
                "SPIFFE ID",
            ],
            &rows,
        );
    }
    Ok(Outcome::Success)
}
