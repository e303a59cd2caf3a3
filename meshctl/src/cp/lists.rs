//! `meshctl status`, `meshctl services list`, `meshctl proxies list`.

use clap::Args;
use signet_cp::model;

use super::{Remote, print_structured, print_table, relative_to, time_at};
use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    remote: Remote,
}

pub(crate) fn status(args: &ListArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let status: model::Status = client.get_as("/v1/status")?;
    if print_structured(args.remote.output, &serde_json::to_value(&status)?)? {
        return Ok(Outcome::Success);
    }
    let health = match &status.store_error {
        Some(e) => format!("NOT READY (its database: {e})"),
        None => "healthy".to_owned(),
    };
    println!(
        "control plane  {health}, trust domain {}, up {}s",
        status.trust_domain, status.uptime_seconds
    );
    let ca = &status.ca;
    let issuing = ca.intermediate.as_ref().map(|c| c.not_after);
    println!(
        "CA             {}; intermediate expires {} ({})",
        ca.kind,
        issuing.map_or_else(|| "-".to_owned(), time_at),
        issuing.map_or_else(|| "-".to_owned(), relative_to)
    );
    for root in &ca.roots {
        println!(
            "  root         {} expires {}",
            root.subject,
            root.not_after.map_or_else(|| "-".to_owned(), time_at)
        );
    }
    let policy = &status.policy;
    println!(
        "policy         version {} ({} policies, hash {})",
        policy.version,
        policy.policies,
        policy.hash.get(..12).unwrap_or_default()
    );
    let proxies = &status.proxies;
    println!(
        "proxies        {} registered: {} in sync, {} stale{}",
        proxies.total,
        proxies.in_sync,
        proxies.stale,
        if proxies.on_other_replicas > 0 {
            format!(", {} on other replicas", proxies.on_other_replicas)
        } else {
            String::new()
        }
    );
    for replica in &status.replicas {
        println!(
            "replica        {} grpc {} api {} {}{}",
            replica.id,
            replica.grpc,
            replica.api,
            if replica.alive { "alive" } else { "gone" },
            if replica.this { " (this one)" } else { "" }
        );
    }
    for duty in &status.duties {
        match &duty.holder {
            Some(holder) => println!(
                "duty           {} held by {holder}{}",
                duty.name,
                if duty.this { " (this one)" } else { "" }
            ),
            None => println!("duty           {} not held", duty.name),
        }
    }
    Ok(Outcome::Success)
}

pub(crate) fn services(args: &ListArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let list: model::ServiceList = client.get_all_as("/v1/services", "services")?;
    if print_structured(args.remote.output, &serde_json::to_value(&list)?)? {
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = list
        .services
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.namespace.clone(),
                s.endpoints.join(","),
                s.identities.join(","),
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
    let list: model::ProxyList = client.get_all_as("/v1/proxies", "proxies")?;
    if print_structured(args.remote.output, &serde_json::to_value(&list)?)? {
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = list
        .proxies
        .iter()
        .map(|p| {
            vec![
                p.instance.clone(),
                p.service.clone(),
                p.endpoint.clone(),
                p.policy_version.to_string(),
                p.traffic_version.to_string(),
                match p.app_health {
                    model::AppHealth::Unknown => "unknown",
                    model::AppHealth::Healthy => "healthy",
                    model::AppHealth::Unhealthy => "unhealthy",
                }
                .to_owned(),
                if p.in_sync { "in sync" } else { "stale" }.to_owned(),
                relative_to(p.last_heartbeat),
                p.spiffe_id.clone(),
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
