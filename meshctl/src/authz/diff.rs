//! `meshctl authz diff --old <policies> --new <policies> --entities <file.yaml>`: every
//! (workload, action, service) whose decision changes, marked widened or narrowed. Exits 3
//! when anything widens, so a CI pipeline can stop a change that opens access.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use signet_policy::{AccessChange, Authorizer, ChangeKind, Inventory, access_diff};

use super::Format;
use super::request::load_bundle;
use crate::Outcome;

/// Largest entities file read.
const MAX_ENTITIES_LEN: u64 = 16 * 1024 * 1024;

#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The policies in force now (files or directories; repeatable).
    #[arg(long, required = true, value_name = "POLICIES")]
    old: Vec<PathBuf>,
    /// The proposed policies (files or directories; repeatable).
    #[arg(long, required = true, value_name = "POLICIES")]
    new: Vec<PathBuf>,
    /// Known workloads, services and HTTP request samples (YAML).
    #[arg(long, value_name = "FILE")]
    entities: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: Format,
}

pub(crate) fn run(args: &DiffArgs) -> anyhow::Result<Outcome> {
    let inventory = read_inventory_file(&args.entities, true)?;
    let old = load_bundle(&args.old).context("--old")?;
    let new = load_bundle(&args.new).context("--new")?;
    let (old_hash, new_hash) = (old.hash().to_owned(), new.hash().to_owned());
    let changes = access_diff(
        &Authorizer::new(Arc::new(old)),
        &Authorizer::new(Arc::new(new)),
        &inventory,
    );
    let widened = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Widened)
        .count();
    let checked =
        inventory.workloads.len() * inventory.services.len() * (1 + inventory.requests.len());
    match args.output {
        Format::Table => {
            for change in &changes {
                println!("{}", change.row());
            }
            println!(
                "{} change{} in {checked} decisions: {widened} widened, {} narrowed",
                changes.len(),
                if changes.len() == 1 { "" } else { "s" },
                changes.len() - widened
            );
        }
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "old_hash": old_hash,
                "new_hash": new_hash,
                "checked": checked,
                "widened": widened,
                "narrowed": changes.len() - widened,
                "changes": changes.iter().map(AccessChange::to_json).collect::<Vec<_>>(),
            })
        ),
    }
    Ok(if widened > 0 {
        Outcome::Widened
    } else {
        Outcome::Success
    })
}

/// Reads and checks an inventory file; `require_entries`: it must list at least one
/// workload and one service.
pub(crate) fn read_inventory_file(
    path: &PathBuf,
    require_entries: bool,
) -> anyhow::Result<Inventory> {
    let shown = path.display();
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading entities `{shown}`"))?
        .len();
    anyhow::ensure!(
        len <= MAX_ENTITIES_LEN,
        "entities `{shown}` is {len} bytes; the limit is {MAX_ENTITIES_LEN}"
    );
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading entities `{shown}`"))?;
    let inventory: Inventory =
        serde_norway::from_str(&text).map_err(|e| anyhow::anyhow!("entities `{shown}`: {e}"))?;
    inventory
        .check()
        .map_err(|e| anyhow::anyhow!("entities `{shown}`: {e}"))?;
    anyhow::ensure!(
        !require_entries || (!inventory.workloads.is_empty() && !inventory.services.is_empty()),
        "entities `{shown}` must list at least one workload and one service"
    );
    Ok(inventory)
}
