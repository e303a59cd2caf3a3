//! `meshctl authz`: Cedar policies, offline (validate, test) for now.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::Outcome;

mod test;
mod validate;

#[derive(Debug, Subcommand)]
pub(crate) enum Authz {
    /// Check policy files against the mesh schema; print each problem as file:line:col.
    Validate(validate::ValidateArgs),
    /// Decide one request under a set of policies: ALLOW (exit 0) or DENY (exit 2).
    Test(Box<test::TestArgs>),
}

/// Output format.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub(crate) enum Format {
    /// For people.
    #[default]
    Table,
    /// For scripts.
    Json,
}

/// Policy files or directories of `.cedar` files.
#[derive(Debug, Args)]
pub(crate) struct PolicyPaths {
    /// Policy files, or directories whose `.cedar` files are read.
    #[arg(required = true, value_name = "POLICIES")]
    pub(crate) paths: Vec<PathBuf>,
}

pub(crate) fn run(cmd: Authz) -> anyhow::Result<Outcome> {
    match cmd {
        Authz::Validate(args) => validate::run(&args),
        Authz::Test(args) => test::run(&args),
    }
}
