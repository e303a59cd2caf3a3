//! `meshctl authz apply --shadow` and `meshctl authz shadow report|promote|clear`: a
//! candidate bundle tried on live traffic before it is enforced.
//!
//! Installing a candidate changes no decision, so it is not gated; the access diff it would
//! make is still printed first. `promote` applies the candidate as the next policy version
//! through the same review and gate as `authz apply`.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use signet_policy::{PolicyBundle, PolicySource};

use super::policies::{bundle_of_files, gate_line, review, send_and_report};
use super::{Remote, print_structured, print_table, relative, text};
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
        &json!({
            "files": sources.iter().map(|s| json!({ "name": s.name, "text": s.text })).collect::<Vec<_>>(),
            "message": message,
            "wait_seconds": wait.as_secs(),
        }),
    )?;
    let table = !print_structured(output, &result)?;
    let candidate = result.get("candidate").unwrap_or(&Value::Null);
    if table {
        println!("{}", gate_line(&result));
        println!(
            "installed shadow candidate {} ({} policies, hash {}) beside version {}: proxies decide with it too, only the applied version acts",
            text(candidate, "id"),
            new.len(),
            short(new.hash()),
            review.current_version
        );
    }
    let running = super::enforcement(
        &result,
        &format!("shadow candidate {}", text(candidate, "id")),
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
    let candidate = value.get("candidate").unwrap_or(&Value::Null);
    if candidate.is_null() {
        println!("no shadow candidate installed (meshctl authz apply --shadow -f FILES)");
        return Ok(Outcome::Success);
    }
    let running = value.get("running_on").unwrap_or(&Value::Null);
    println!(
        "shadow candidate {} ({} policies, hash {}) installed {} by {}; running on {} of {} proxies",
        text(candidate, "id"),
        text(candidate, "policies"),
        short(&text(candidate, "hash")),
        relative(candidate.get("installed_at").unwrap_or(&Value::Null)),
        text(candidate, "author"),
        text(running, "running"),
        text(running, "proxies"),
    );
    println!(
        "since then it would have newly allowed {} and newly denied {} decisions",
        text(&value, "would_allow"),
        text(&value, "would_deny")
    );
    let flows = value
        .get("flows")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if flows.is_empty() {
        println!("no disagreement with the applied policies on live traffic yet");
        return Ok(Outcome::Success);
    }
    let by = |policies: Option<&Value>| {
        let names: Vec<&str> = policies
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if names.is_empty() {
            "default-deny".to_owned()
        } else {
            names.join(",")
        }
    };
    let rows: Vec<Vec<String>> = flows
        .iter()
        .map(|f| {
            let example = f
                .get("examples")
                .and_then(Value::as_array)
                .and_then(|e| e.last())
                .map_or_else(String::new, |e| {
                    format!(
                        "{} (now {} by {}; would be by {})",
                        e.get("path").and_then(Value::as_str).unwrap_or("-"),
                        text(e, "enforced"),
                        by(e.get("enforced_policies")),
                        by(e.get("candidate_policies"))
                    )
                });
            let last_ms = f.get("last").and_then(Value::as_u64).unwrap_or(0) / 1_000_000;
            vec![
                format!(
                    "newly {}",
                    text(f, "would")
                        .replace("allow", "allowed")
                        .replace("deny", "denied")
                ),
                text(f, "count"),
                text(f, "principal"),
                text(f, "service"),
                text(f, "action"),
                relative(&Value::from(last_ms)),
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
    let installed = client.get("/v1/policies/shadow")?;
    let candidate = installed.get("candidate").unwrap_or(&Value::Null);
    let Some(id) = candidate.get("id").and_then(Value::as_u64) else {
        return Err(anyhow!(
            "no shadow candidate is installed (meshctl authz apply --shadow -f FILES installs one)"
        ));
    };
    let new = bundle_of_files(installed.get("files").unwrap_or(&Value::Null))?;
    let review = review(&client, &new, None, output)?;
    let body = json!({
        "candidate": id,
        "expected_version": review.current_version,
        "wait_seconds": args.wait.wait.as_secs(),
    });
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
                text(result, "version"),
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
        &json!({ "wait_seconds": args.wait.wait.as_secs() }),
    )?;
    let table = !print_structured(args.remote.output, &result)?;
    if table {
        println!("cleared shadow candidate {}", text(&result, "cleared"));
    }
    let done = super::enforcement(&result, "clearing the shadow candidate")?;
    if table {
        println!("{}", done.replace("enforced by", "done on"));
    }
    Ok(Outcome::Success)
}
