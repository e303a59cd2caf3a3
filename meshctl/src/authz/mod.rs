//! `meshctl authz`: Cedar policies, offline (validate, test, explain, diff).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::Outcome;

mod diff;
mod explain;
mod request;
mod test;
mod validate;

#[derive(Debug, Subcommand)]
pub(crate) enum Authz {
    /// Check policy files against the mesh schema; print each problem as file:line:col.
    Validate(validate::ValidateArgs),
    /// Decide one request under a set of policies: ALLOW (exit 0) or DENY (exit 2).
    Test(Box<test::TestArgs>),
    /// Explain one decision: the policies that made it, with their text and location, and
    /// for a default deny the permits that came closest.
    Explain(Box<explain::ExplainArgs>),
    /// The access-matrix changes between two policy sets over known workloads and services;
    /// exit 3 when access widens.
    Diff(diff::DiffArgs),
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
        Authz::Explain(args) => explain::run(&args),
        Authz::Diff(args) => diff::run(&args),
    }
}
