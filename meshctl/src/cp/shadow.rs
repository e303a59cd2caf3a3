//! `meshctl authz apply --shadow` and `meshctl authz shadow report|promote|clear`: a
//! candidate bundle tried on live traffic before it is enforced.
//!
//! Installing a candidate changes no decision, so it is not gated; the access diff it would
//! make is still printed first. `promote` applies the candidate as the next policy version
//! through the same review and gate as `authz apply`.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use signet_cp::model;
use signet_policy::{PolicyBundle, PolicySource};

use super::policies::{bundle_of_files, gate_line, policy_files, review, send_and_report};
use super::{Remote, print_structured, print_table, read_as, relative_to};
use crate::Outcome;

#[derive(Debug, Subcommand)]
pub(crate) enum Shadow {
    /// What the installed candidate would change on live traffic: per caller, service and
    /// action, how many decisions it would newly allow or deny, with examples.
    Report(ReportArgs),
    /// Apply the installed candidate as the next policy version (through the widening gate
    /// of `authz apply`), ending shadow mode.
    Promote(PromoteArgs),
    /// Remove the installed candidate from every proxy.
    Clear(ClearArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct PromoteArgs {
    /// Promote even though the candidate widens access (as `authz apply --allow-widening`).
    #[arg(long)]
    allow_widening: bool,
    #[command(flatten)]
    wait: super::Wait,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct ClearArgs {
    #[command(flatten)]
    wait: super::Wait,
    #[command(flatten)]
    remote: Remote,
}

pub(crate) fn run(cmd: &Shadow) -> anyhow::Result<Outcome> {
    match cmd {
        Shadow::Report(args) => report(args),
        Shadow::Promote(args) => promote(args),
        Shadow::Clear(args) => clear(args),
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// `authz apply --shadow`: installs `sources` (already validated as `new`) as the candidate.
pub(crate) fn install(
    remote: &Remote,
    sources: &[PolicySource],
    new: &PolicyBundle,
    message: &str,
    wait: std::time::Duration,
) -> anyhow::Result<Outcome> {
    let client = remote.client()?;
    let output = remote.output;
    let review = review(&client, new, None, output)?;
    let result = client.post(
        "/v1/policies/shadow",
        &model::ShadowInstallRequest {
            files: policy_files(sources),
            message: message.to_owned(),
            wait_seconds: Some(wait.as_secs()),
        },
    )?;
    let table = !print_structured(output, &result)?;
    let installed: model::ShadowInstalled = read_as(&result, "/v1/policies/shadow")?;
    let id = installed.candidate.id;
    if table {
        println!("{}", gate_line(&installed.gate));
        println!(
            "installed shadow candidate {id} ({} policies, hash {}) beside version {}: proxies decide with it too, only the applied version acts",
            new.len(),
            short(new.hash()),
            review.current_version
        );
    }
    let running = super::enforced(
        Some(&installed.enforcement),
        &format!("shadow candidate {id}"),
    )?;
    if table {
        println!("{}", running.replace("enforced by", "running on"));
        println!("see what it would change on live traffic: meshctl authz shadow report");
    }
    Ok(Outcome::Success)
}

fn report(args: &ReportArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.get("/v1/policies/shadow")?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let report: model::ShadowReport = read_as(&value, "/v1/policies/shadow")?;
    let Some(candidate) = &report.candidate else {
        println!("no shadow candidate installed (meshctl authz apply --shadow -f FILES)");
        return Ok(Outcome::Success);
    };
    println!(
        "shadow candidate {} ({} policies, hash {}) installed {} by {}; running on {} of {} proxies",
        candidate.id,
        candidate.policies,
        short(&candidate.hash),
        relative_to(candidate.installed_at),
        candidate.author,
        report.running_on.running,
        report.running_on.proxies,
    );
    println!(
        "since then it would have newly allowed {} and newly denied {} decisions",
        report.would_allow, report.would_deny
    );
    if report.flows.is_empty() {
        println!("no disagreement with the applied policies on live traffic yet");
        return Ok(Outcome::Success);
    }
    let by = |policies: &[String]| {
        if policies.is_empty() {
            "default-deny".to_owned()
        } else {
            policies.join(",")
        }
    };
    let rows: Vec<Vec<String>> = report
        .flows
        .iter()
        .map(|f| {
            let example = f.examples.last().map_or_else(String::new, |e| {
                format!(
                    "{} (now {} by {}; would be by {})",
                    e.path.as_deref().unwrap_or("-"),
                    e.enforced.as_str(),
                    by(&e.enforced_policies),
                    by(&e.candidate_policies)
                )
            });
            let would = match f.would {
                model::Decision::Allow => "newly allowed",
                model::Decision::Deny => "newly denied",
            };
            vec![
                would.to_owned(),
                f.count.to_string(),
                f.principal.clone(),
                f.service.clone(),
                f.action.clone(),
                relative_to(f.last),
                example,
            ]
        })
        .collect();
    print_table(
        &[
            "WOULD BE", "COUNT", "CALLER", "SERVICE", "ACTION", "LAST", "EXAMPLE",
        ],
        &rows,
    );
    Ok(Outcome::Success)
}

fn promote(args: &PromoteArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let output = args.remote.output;
    let installed: model::ShadowReport = client.get_as("/v1/policies/shadow")?;
    let Some(id) = installed.candidate.as_ref().map(|c| c.id) else {
        return Err(anyhow!(
            "no shadow candidate is installed (meshctl authz apply --shadow -f FILES installs one)"
        ));
    };
    let new = bundle_of_files(&installed.files)?;
    let review = review(&client, &new, None, output)?;
    let body = serde_json::to_value(model::ShadowPromoteRequest {
        candidate: id,
        expected_version: Some(review.current_version),
        allow_widening: false,
        wait_seconds: Some(args.wait.wait.as_secs()),
    })?;
    send_and_report(
        &client,
        "/v1/policies/shadow/promote",
        body,
        &review,
        args.allow_widening,
        output,
        |result| {
            format!(
                "promoted shadow candidate {id}: applied version {} ({} policies); was version {}",
                result.version,
                new.len(),
                review.current_version
            )
        },
    )
}

fn clear(args: &ClearArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let result = client.delete(
        "/v1/policies/shadow",
        &model::ShadowClearRequest {
            wait_seconds: Some(args.wait.wait.as_secs()),
        },
    )?;
    let table = !print_structured(args.remote.output, &result)?;
    let cleared: model::ShadowCleared = read_as(&result, "/v1/policies/shadow")?;
    if table {
        println!("cleared shadow candidate {}", cleared.cleared);
    }
    let done = super::enforced(Some(&cleared.enforcement), "clearing the shadow candidate")?;
    if table {
        println!("{}", done.replace("enforced by", "done on"));
    }
    Ok(Outcome::Success)
}
