//! `meshctl authz apply|history|rollback|get`: the control plane's policy versions.
//!
//! `apply` and `rollback` validate locally first (problems as `file:line:col`), print the
//! access diff against what is applied now (over the workloads and services the registry
//! knows, `connect` and every HTTP method on every path class the policies name) before
//! anything is sent, and apply only if the applied version is still the one the diff was
//! computed against. A change that widens access needs `--allow-widening` (or a yes on a
//! terminal); elsewhere it is refused with exit 3. The control plane computes the same diff
//! itself and refuses a widening change that was not explicitly allowed, so no client can
//! skip the gate.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use clap::Args;
use serde_json::{Value, json};
use signet_cp::model;
use signet_policy::{Authorizer, GateDiff, Inventory, PolicyBundle, PolicySource};

use super::{Remote, print_structured, print_table, read_as};
use crate::Outcome;

/// Largest policy file read.
const MAX_FILE_LEN: u64 = 1024 * 1024;

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// Policy files, or directories whose `.cedar` files are applied (repeatable).
    #[arg(short = 'f', long = "file", required = true, value_name = "FILE|DIR")]
    files: Vec<PathBuf>,
    /// Show the diff and validate on the control plane; apply nothing.
    #[arg(long)]
    dry_run: bool,
    /// More workloads, services and HTTP request samples for the access-matrix diff (YAML,
    /// as `authz diff --entities`); the registry's workloads and services are always used.
    #[arg(long, value_name = "FILE")]
    entities: Option<PathBuf>,
    /// A note kept with the version.
    #[arg(short = 'm', long, default_value = "", value_name = "TEXT")]
    message: String,
    /// Apply even though the diff widens access (without it, a widening change asks on a
    /// terminal and is refused with exit 3 elsewhere). The control plane still asks its
    /// operator policies for `policy.apply_widening`.
    #[arg(long, conflicts_with = "shadow")]
    allow_widening: bool,
    /// Install the policies as a shadow candidate instead: every proxy decides with them too
    /// and records where they disagree with the applied version, which alone keeps acting
    /// (`authz shadow report|promote|clear`).
    #[arg(long, conflicts_with_all = ["dry_run", "entities"])]
    shadow: bool,
    #[command(flatten)]
    wait: super::Wait,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The version whose policies become current again (as a new version).
    #[arg(value_name = "VERSION")]
    version: u64,
    /// Roll back even though it widens access (as `authz apply --allow-widening`).
    #[arg(long)]
    allow_widening: bool,
    #[command(flatten)]
    wait: super::Wait,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// A past version (default: the applied one).
    #[arg(long, value_name = "N")]
    version: Option<u64>,
    #[command(flatten)]
    remote: Remote,
}

/// The files named, directories expanded to their `.cedar` files in name order.
fn read_sources(paths: &[PathBuf]) -> anyhow::Result<Vec<PolicySource>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading `{}`", path.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "cedar") && p.is_file())
                .collect();
            anyhow::ensure!(
                !found.is_empty(),
                "`{}` holds no .cedar files",
                path.display()
            );
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    files
        .iter()
        .map(|f| {
            let len = std::fs::metadata(f)
                .with_context(|| format!("reading `{}`", f.display()))?
                .len();
            anyhow::ensure!(
                len <= MAX_FILE_LEN,
                "`{}` is {len} bytes; the limit is {MAX_FILE_LEN}",
                f.display()
            );
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading `{}`", f.display()))?;
            Ok(PolicySource {
                name: f.display().to_string(),
                text,
            })
        })
        .collect()
}

pub(super) fn bundle_of_files(files: &[model::PolicyFile]) -> anyhow::Result<PolicyBundle> {
    let sources: Vec<PolicySource> = files
        .iter()
        .map(|f| PolicySource {
            name: f.name.clone(),
            text: f.text.clone(),
        })
        .collect();
    PolicyBundle::from_sources(&sources)
        .map_err(|e| anyhow!("the applied policies do not validate here: {e}"))
}

/// Policy sources as the API takes them.
pub(super) fn policy_files(sources: &[PolicySource]) -> Vec<model::PolicyFile> {
    sources
        .iter()
        .map(|s| model::PolicyFile {
            name: s.name.clone(),
            text: s.text.clone(),
        })
        .collect()
}

/// The control plane's registry (`GET /v1/inventory`), as the offline policy tools read
/// an inventory: the same workloads and services the proxies decide over.
pub(crate) fn registry_inventory(client: &super::Client) -> anyhow::Result<Inventory> {
    let registry: model::Inventory = client.get_as("/v1/inventory")?;
    let workloads = registry
        .workloads
        .into_iter()
        .map(|w| {
            Ok(signet_policy::KnownWorkload {
                spiffe_id: w.spiffe_id.parse().map_err(|e| {
                    anyhow!(
                        "the registry's workload `{}` is not a SPIFFE ID: {e}",
                        w.spiffe_id
                    )
                })?,
                service: w.service,
                labels: w.labels,
                // The registry does not say where a workload calls from; the tools' own
                // default.
                source_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let services = registry
        .services
        .into_iter()
        .map(|s| signet_policy::KnownService {
            name: s.name,
            namespace: s.namespace,
            port: s.port,
            labels: s.labels,
        })
        .collect();
    Ok(Inventory {
        workloads,
        services,
        requests: Vec::new(),
        trust_domain: registry.trust_domain,
    })
}

/// The registry's inventory, with the workloads, services and samples of `entities` added.
fn inventory(client: &super::Client, entities: Option<&PathBuf>) -> anyhow::Result<Inventory> {
    let mut inventory = registry_inventory(client)?;
    if let Some(file) = entities {
        let extra = crate::authz::diff::read_inventory_file(file, false)?;
        for w in extra.workloads {
            if !inventory
                .workloads
                .iter()
                .any(|k| k.spiffe_id == w.spiffe_id)
            {
                inventory.workloads.push(w);
            }
        }
        for s in extra.services {
            if !inventory.services.iter().any(|k| k.name == s.name) {
                inventory.services.push(s);
            }
        }
        inventory.requests.extend(extra.requests);
    }
    Ok(inventory)
}

/// What the operator decided about a change that widens access.
enum Verdict {
    /// Send it (with `allow_widening` when it widens).
    Send { allow_widening: bool },
    /// Stop: it widens and nobody agreed.
    Refuse,
}

/// A change that widens goes ahead with `--allow-widening`, or on a terminal when the
/// operator answers yes; anywhere else it is refused.
fn decide_widening(diff: &GateDiff, allow: bool) -> anyhow::Result<Verdict> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    if diff.widened == 0 || allow {
        return Ok(Verdict::Send {
            allow_widening: allow,
        });
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Ok(Verdict::Refuse);
    }
    eprint!(
        "This change opens access ({} decisions newly allowed). Apply it? [y/N] ",
        diff.widened
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(if matches!(answer.trim(), "y" | "Y" | "yes") {
        Verdict::Send {
            allow_widening: true,
        }
    } else {
        Verdict::Refuse
    })
}

/// A policy change under review: what it is against and what it does.
pub(super) struct Review {
    pub(super) current_version: u64,
    pub(super) diff: GateDiff,
}

/// Computes the access diff of `new` against the applied policies and prints it (in table
/// mode) before anything is sent.
pub(super) fn review(
    client: &super::Client,
    new: &PolicyBundle,
    entities: Option<&PathBuf>,
    output: super::Output,
) -> anyhow::Result<Review> {
    let current: model::PolicySet = client.get_as("/v1/policies")?;
    let current_version = current.version;
    let old = bundle_of_files(&current.files)?;
    let inventory = inventory(client, entities)?;
    let (w, s) = (inventory.workloads.len(), inventory.services.len());
    let diff = signet_policy::gate_diff(
        &Authorizer::new(Arc::new(old)),
        &Authorizer::new(Arc::new(new.clone())),
        inventory,
    );
    if output == super::Output::Table {
        for change in &diff.changes {
            println!("{}", change.row());
        }
        println!(
            "access diff against version {current_version} over {w} workloads x {s} services ({} decisions): {} widened, {} narrowed",
            diff.checked, diff.widened, diff.narrowed
        );
    }
    Ok(Review {
        current_version,
        diff,
    })
}

fn review_json(review: &Review) -> Value {
    json!({
        "against_version": review.current_version,
        "checked": review.diff.checked,
        "widened": review.diff.widened,
        "narrowed": review.diff.narrowed,
        "changes": review.diff.changes.iter().map(signet_policy::AccessChange::to_json).collect::<Vec<_>>(),
    })
}

/// Sends a reviewed change to `path`. The control plane runs its own gate: a 409 means it
/// found the change widens (its registry may know more than this review did).
pub(super) fn send_reviewed(
    client: &super::Client,
    path: &str,
    mut body: Value,
    review: &Review,
    allow: bool,
    output: super::Output,
) -> anyhow::Result<Result<Value, Outcome>> {
    let verdict = decide_widening(&review.diff, allow)?;
    let Verdict::Send { allow_widening } = verdict else {
        if output != super::Output::Table {
            print_structured(
                output,
                &json!({ "applied": false, "refused": "widens access", "review": review_json(review) }),
            )?;
        }
        eprintln!(
            "meshctl: refused: this change widens access ({} decisions newly allowed); nothing was applied. Review the diff and pass --allow-widening to apply it.",
            review.diff.widened
        );
        return Ok(Err(Outcome::Widened));
    };
    body["allow_widening"] = json!(allow_widening);
    let (status, answer) = client.post_answer(path, &body)?;
    let refusal = (status == 409 && !allow_widening)
        .then(|| serde_json::from_value::<model::ErrorBody>(answer.clone()).ok())
        .flatten()
        .filter(|e| !e.problems.is_empty());
    if let Some(refusal) = refusal {
        for line in &refusal.problems {
            println!("{line}");
        }
        eprintln!("meshctl: refused by the control plane: {}", refusal.error);
        return Ok(Err(Outcome::Widened));
    }
    if !(200..300).contains(&status) {
        return Err(super::client::refusal(status, &answer));
    }
    Ok(Ok(answer))
}

pub(super) fn gate_line(gate: &model::Gate) -> String {
    format!(
        "control plane's gate: +{} widened / -{} narrowed over {} decisions",
        gate.widened, gate.narrowed, gate.checked
    )
}

pub(crate) fn apply(args: &ApplyArgs) -> anyhow::Result<Outcome> {
    let sources = read_sources(&args.files)?;
    let new = PolicyBundle::from_sources(&sources).map_err(|e| {
        anyhow!(
            "policies are invalid; nothing was applied: {}",
            e.problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    if args.shadow {
        return super::shadow::install(&args.remote, &sources, &new, &args.message, args.wait.wait);
    }
    let client = args.remote.client()?;
    let output = args.remote.output;
    let review = review(&client, &new, args.entities.as_ref(), output)?;
    // `allow_widening` is decided after the review (`send_reviewed`).
    let body = serde_json::to_value(model::PolicyApplyRequest {
        files: policy_files(&sources),
        message: args.message.clone(),
        expected_version: Some(review.current_version),
        dry_run: args.dry_run,
        allow_widening: false,
        wait_seconds: Some(args.wait.wait.as_secs()),
    })?;
    if args.dry_run {
        let result = client.post("/v1/policies", &body)?;
        if !print_structured(
            output,
            &json!({ "dry_run": true, "review": review_json(&review), "control_plane": result }),
        )? {
            let dry: model::DryRun = super::read_as(&result, "/v1/policies")?;
            println!("{}", gate_line(&dry.gate));
            println!(
                "dry run: {} policies valid; nothing applied (version {} stays)",
                new.len(),
                review.current_version
            );
        }
        return Ok(if review.diff.widened > 0 {
            Outcome::Widened
        } else {
            Outcome::Success
        });
    }
    let result = match send_reviewed(
        &client,
        "/v1/policies",
        body,
        &review,
        args.allow_widening,
        output,
    )? {
        Ok(result) => result,
        Err(outcome) => return Ok(outcome),
    };
    let summary = json!({
        "previous_version": review.current_version,
        "version": result.get("version"),
        "hash": new.hash(),
        "policies": new.len(),
        "review": review_json(&review),
        "gate": result.get("gate"),
        "enforcement": result.get("enforcement"),
    });
    let table = !print_structured(output, &summary)?;
    let applied: model::Applied = super::read_as(&result, "/v1/policies")?;
    if table {
        println!("{}", gate_line(&applied.gate));
        println!(
            "applied version {} ({} policies, hash {}); was version {}",
            applied.version,
            new.len(),
            &new.hash()[..12.min(new.hash().len())],
            review.current_version
        );
    }
    let enforced = super::enforced(
        Some(&applied.enforcement),
        &format!("version {}", applied.version),
    )?;
    if table {
        println!("{enforced}");
    }
    Ok(Outcome::Success)
}

pub(crate) fn history(args: &HistoryArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let history: signet_cp::model::PolicyHistory = client.get_as("/v1/policies/history")?;
    if print_structured(args.remote.output, &serde_json::to_value(&history)?)? {
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = history
        .versions
        .iter()
        .map(|v| {
            let mut message = v.message.clone();
            if let Some(from) = v.rolled_back_from
                && message.is_empty()
            {
                message = format!("rollback to {from}");
            }
            let access = match (v.widened, v.narrowed) {
                (Some(w), Some(n)) => format!("+{w} widened / -{n} narrowed"),
                _ => "-".to_owned(),
            };
            vec![
                v.version.to_string(),
                super::time_at(v.created_at),
                v.policies.to_string(),
                access,
                v.hash.get(..12).unwrap_or(&v.hash).to_owned(),
                v.author.clone(),
                message,
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no policies applied yet");
    } else {
        print_table(
            &[
                "VERSION", "APPLIED", "POLICIES", "ACCESS", "HASH", "AUTHOR", "MESSAGE",
            ],
            &rows,
        );
    }
    Ok(Outcome::Success)
}

pub(crate) fn rollback(args: &RollbackArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let output = args.remote.output;
    let earlier: model::PolicyVersionFiles =
        client.get_as(&format!("/v1/policies/{}", args.version))?;
    let new = bundle_of_files(&earlier.files)?;
    let review = review(&client, &new, None, output)?;
    let body = serde_json::to_value(model::PolicyRollbackRequest {
        version: args.version,
        expected_version: Some(review.current_version),
        wait_seconds: Some(args.wait.wait.as_secs()),
        allow_widening: false,
    })?;
    send_and_report(
        &client,
        "/v1/policies/rollback",
        body,
        &review,
        args.allow_widening,
        output,
        |result| {
            format!(
                "applied version {} with the policies of version {} ({} policies)",
                result.version, args.version, result.policies
            )
        },
    )
}

/// Sends a reviewed change (as [`send_reviewed`]) and reports it: the answer in structured
/// output; else the control plane's gate, `applied` of the answer, and how many proxies
/// enforce the new version (an error naming those that do not).
pub(super) fn send_and_report(
    client: &super::Client,
    path: &str,
    body: Value,
    review: &Review,
    allow: bool,
    output: super::Output,
    applied: impl FnOnce(&model::Applied) -> String,
) -> anyhow::Result<Outcome> {
    let result = match send_reviewed(client, path, body, review, allow, output)? {
        Ok(result) => result,
        Err(outcome) => return Ok(outcome),
    };
    let table = !print_structured(output, &result)?;
    let answer: model::Applied = super::read_as(&result, path)?;
    if table {
        println!("{}", gate_line(&answer.gate));
        println!("{}", applied(&answer));
    }
    let enforced = super::enforced(
        Some(&answer.enforcement),
        &format!("version {}", answer.version),
    )?;
    if table {
        println!("{enforced}");
    }
    Ok(Outcome::Success)
}

pub(crate) fn get(args: &GetArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let path = match args.version {
        Some(v) => format!("/v1/policies/{v}"),
        None => "/v1/policies".to_owned(),
    };
    let value = client.get(&path)?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let (version, files) = match args.version {
        Some(_) => {
            let v: model::PolicyVersionFiles = read_as(&value, &path)?;
            (v.version, v.files)
        }
        None => {
            let v: model::PolicySet = read_as(&value, &path)?;
            (v.version, v.files)
        }
    };
    if files.is_empty() {
        println!("// no policies applied: every request is denied");
    }
    println!("// version {version}");
    for f in &files {
        println!("// ---- {}", f.name);
        println!("{}", f.text.trim_end());
    }
    Ok(Outcome::Success)
}
