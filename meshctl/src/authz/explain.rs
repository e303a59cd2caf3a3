//! `meshctl authz explain …`: the decision, the text and location of each policy that made
//! it, and for a default deny the permits that came closest.

use clap::Args;
use signet_policy::{Cited, Explanation, Miss};

use super::Format;
use super::request::{Ask, RequestArgs};
use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    #[command(flatten)]
    request: RequestArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: Format,
}

pub(crate) fn run(args: &ExplainArgs) -> anyhow::Result<Outcome> {
    let explanation = args
        .request
        .run(|authorizer, caller, target, ask| match ask {
            Ask::Connect(ip) => authorizer.explain_connect(caller, target, ip),
            Ask::Http(request) => authorizer.explain_request(caller, target, request),
        })?;
    match args.output {
        Format::Table => print_table(&explanation, &args.request),
        Format::Json => println!("{}", json(&explanation)),
    }
    Ok(Outcome::of(&explanation.decision))
}

fn print_table(e: &Explanation, request: &RequestArgs) {
    let d = &e.decision;
    let effect = if d.is_allowed() { "ALLOW" } else { "DENY" };
    let what = if request.action == "connect" {
        "connect".to_owned()
    } else {
        format!("{} {}", request.action, request.path)
    };
    println!(
        "{effect}  {} -> {}: {what}",
        request.principal, request.resource
    );
    for error in &d.errors {
        println!("  error: {error}");
    }
    if e.determining.is_empty() {
        if d.errors.is_empty() {
            println!("  no policy permits this (default deny)");
        }
    } else {
        let role = if d.is_allowed() {
            "permitted by"
        } else if d.errors.is_empty() {
            "forbidden by"
        } else {
            "failed to evaluate"
        };
        println!("  {role}:");
        for policy in &e.determining {
            print_policy(policy, "");
        }
    }
    if !e.closest.is_empty() {
        println!("  closest permits:");
        for near in &e.closest {
            let why = match &near.miss {
                Miss::ConditionFalse => "scope matches; its condition is false".to_owned(),
                Miss::OtherAction(actions) => format!("for {} only", actions.join(", ")),
            };
            print_policy(&near.policy, &format!(": {why}"));
        }
    }
}

/// `- id (file:line:col)<note>`, then the policy's text.
fn print_policy(policy: &Cited, note: &str) {
    match &policy.origin {
        Some(o) => {
            println!("  - {} ({}:{}:{}){note}", policy.id, o.file, o.line, o.col);
            for line in o.text.lines() {
                println!("      {line}");
            }
        }
        None => println!("  - {}{note}", policy.id),
    }
}

fn cited(policy: &Cited) -> serde_json::Value {
    serde_json::json!({
        "id": policy.id,
        "file": policy.origin.as_ref().map(|o| &o.file),
        "line": policy.origin.as_ref().map(|o| o.line),
        "col": policy.origin.as_ref().map(|o| o.col),
        "text": policy.origin.as_ref().map(|o| &o.text),
    })
}

fn json(e: &Explanation) -> serde_json::Value {
    serde_json::json!({
        "decision": if e.decision.is_allowed() { "allow" } else { "deny" },
        "policies": e.decision.policies,
        "errors": e.decision.errors,
        "determining": e.determining.iter().map(cited).collect::<Vec<_>>(),
        "closest": e.closest.iter().map(|n| {
            let mut v = cited(&n.policy);
            v["miss"] = match &n.miss {
                Miss::ConditionFalse => serde_json::json!({"kind": "condition-false"}),
                Miss::OtherAction(a) => serde_json::json!({"kind": "other-action", "actions": a}),
            };
            v
        }).collect::<Vec<_>>(),
    })
}
