//! `meshctl authz validate <file.cedar|dir>...`

use clap::Args;
use signet_policy::PolicyBundle;

use super::{Format, PolicyPaths};
use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    #[command(flatten)]
    policies: PolicyPaths,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: Format,
}

pub(crate) fn run(args: &ValidateArgs) -> anyhow::Result<Outcome> {
    match PolicyBundle::load(&args.policies.paths) {
        Ok(bundle) => {
            match args.output {
                Format::Table => println!(
                    "OK: {} policies valid (sha256 {})",
                    bundle.len(),
                    bundle.hash()
                ),
                Format::Json => println!(
                    "{}",
                    serde_json::json!({
                        "valid": true,
                        "policies": bundle.origins().keys().collect::<Vec<_>>(),
                        "hash": bundle.hash(),
                    })
                ),
            }
            Ok(Outcome::Success)
        }
        Err(e) => {
            match args.output {
                Format::Table => {
                    for p in &e.problems {
                        eprintln!("{p}");
                    }
                }
                Format::Json => println!(
                    "{}",
                    serde_json::json!({
                        "valid": false,
                        "problems": e.problems.iter().map(|p| serde_json::json!({
                            "file": p.file, "line": p.line, "col": p.col, "message": p.message,
                        })).collect::<Vec<_>>(),
                    })
                ),
            }
            anyhow::bail!(
                "{} problem{} found",
                e.problems.len(),
                if e.problems.len() == 1 { "" } else { "s" }
            )
        }
    }
}
