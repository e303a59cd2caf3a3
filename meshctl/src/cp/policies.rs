//! `meshctl authz apply|history|rollback|get`: the control plane's policy versions.
//!
//! `apply` validates locally first (problems as `file:line:col`), shows the access-matrix
//! diff against what is applied now over the workloads and services the registry knows, and
//! applies only if the applied version is still the one the diff was computed against.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use clap::Args;
use serde_json::{Value, json};
use signet_policy::{Authorizer, ChangeKind, Inventory, PolicyBundle, PolicySource, access_diff};

use super::{Remote, print_structured, print_table, text, time_of};
use crate::Outcome;
use crate::authz::diff::{json as change_json, row};

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

fn bundle_of_files(files: &Value) -> anyhow::Result<PolicyBundle> {
    let sources: Vec<PolicySource> = files
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| PolicySource {
                    name: text(f, "name"),
                    text: text(f, "text"),
                })
                .collect()
        })
        .unwrap_or_default();
    PolicyBundle::from_sources(&sources)
        .map_err(|e| anyhow!("the applied policies do not validate here: {e}"))
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
    let client = args.remote.client()?;
    let current = client.get("/v1/policies")?;
    let current_version = current.get("version").and_then(Value::as_u64).unwrap_or(0);
    let old = bundle_of_files(current.get("files").unwrap_or(&Value::Null))?;
    let mut inventory: Inventory = serde_json::from_value(client.get("/v1/inventory")?)
        .context("reading the registry's inventory")?;
    if let Some(file) = &args.entities {
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
    let changes = access_diff(
        &Authorizer::new(Arc::new(old)),
        &Authorizer::new(Arc::new(new.clone())),
        &inventory,
    );
    let widened = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Widened)
        .count();
    let body = json!({
        "files": sources.iter().map(|s| json!({ "name": s.name, "text": s.text })).collect::<Vec<_>>(),
        "message": args.message,
        "expected_version": current_version,
        "dry_run": args.dry_run,
        "wait_seconds": args.wait.wait.as_secs(),
    });
    let result = client.post("/v1/policies", &body)?;
    let summary = json!({
        "dry_run": args.dry_run,
        "previous_version": current_version,
        "version": result.get("version"),
        "hash": new.hash(),
        "policies": new.len(),
        "widened": widened,
        "narrowed": changes.len() - widened,
        "changes": changes.iter().map(change_json).collect::<Vec<_>>(),
        "enforcement": result.get("enforcement"),
    });
    if !print_structured(args.remote.output, &summary)? {
        for change in &changes {
            println!("{}", row(change));
        }
        println!(
            "access matrix over {} workloads x {} services x {} actions: {widened} widened, {} narrowed",
            inventory.workloads.len(),
            inventory.services.len(),
            1 + inventory.requests.len(),
            changes.len() - widened
        );
        if inventory.requests.is_empty() {
            println!("(connect decisions only: add HTTP request samples with --entities FILE)");
        }
        if args.dry_run {
            println!(
                "dry run: {} policies valid; nothing applied (version {current_version} stays)",
                new.len()
            );
        } else {
            println!(
                "applied version {} ({} policies, hash {}); was version {current_version}",
                text(&result, "version"),
                new.len(),
                &new.hash()[..12.min(new.hash().len())]
            );
        }
    }
    if !args.dry_run {
        let enforced =
            super::enforcement(&result, &format!("version {}", text(&result, "version")))?;
        if args.remote.output == super::Output::Table {
            println!("{enforced}");
        }
    }
    Ok(Outcome::Success)
}

pub(crate) fn history(args: &HistoryArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.get("/v1/policies/history")?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = value
        .get("versions")
        .and_then(Value::as_array)
        .map(|versions| {
            versions
                .iter()
                .map(|v| {
                    let hash = text(v, "hash");
                    let mut message = text(v, "message");
                    if let Some(from) = v.get("rolled_back_from").and_then(Value::as_u64)
                        && message.is_empty()
                    {
                        message = format!("rollback to {from}");
                    }
                    vec![
                        text(v, "version"),
                        time_of(v.get("created_at").unwrap_or(&Value::Null)),
                        text(v, "policies"),
                        hash.get(..12).unwrap_or(&hash).to_owned(),
                        text(v, "author"),
                        message,
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        println!("no policies applied yet");
    } else {
        print_table(
            &[
                "VERSION", "APPLIED", "POLICIES", "HASH", "AUTHOR", "MESSAGE",
            ],
            &rows,
        );
    }
    Ok(Outcome::Success)
}

pub(crate) fn rollback(args: &RollbackArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let result = client.post(
        "/v1/policies/rollback",
        &json!({ "version": args.version, "wait_seconds": args.wait.wait.as_secs() }),
    )?;
    let table = !print_structured(args.remote.output, &result)?;
    if table {
        println!(
            "applied version {} with the policies of version {} ({} policies)",
            text(&result, "version"),
            args.version,
            text(&result, "policies")
        );
    }
    let enforced = super::enforcement(&result, &format!("version {}", text(&result, "version")))?;
    if table {
        println!("{enforced}");
    }
    Ok(Outcome::Success)
}

pub(crate) fn get(args: &GetArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = match args.version {
        Some(v) => client.get(&format!("/v1/policies/{v}"))?,
        None => client.get("/v1/policies")?,
    };
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let files = value
        .get("files")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if files.is_empty() {
        println!("// no policies applied: every request is denied");
    }
    println!("// version {}", text(&value, "version"));
    for f in files {
        println!("// ---- {}", text(&f, "name"));
        println!("{}", text(&f, "text").trim_end());
    }
    Ok(Outcome::Success)
}
