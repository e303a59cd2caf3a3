//! `meshctl authz`: Cedar policies, offline (validate, test, explain, diff) and on the
//! control plane (apply, history, rollback, get).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::Outcome;

pub(crate) mod diff;
mod explain;
mod request;
mod simulate;
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
    /// Validate, show the access-matrix diff against the applied policies, and apply them on
    /// the control plane as a new version (atomically; nothing on any error).
    Apply(crate::cp::policies::ApplyArgs),
    /// The control plane's policy versions.
    History(crate::cp::policies::HistoryArgs),
    /// Apply an earlier version's policies again, as a new version.
    Rollback(crate::cp::policies::RollbackArgs),
    /// Print the applied policies (or an earlier version's).
    Get(crate::cp::policies::GetArgs),
    /// Shadow mode: what a candidate installed with `apply --shadow` would change on live
    /// traffic; promote or clear it.
    #[command(subcommand)]
    Shadow(crate::cp::shadow::Shadow),
    /// Replay recorded decisions against candidate policies; list every one that would
    /// change (exit 3 when any would widen).
    Simulate(Box<simulate::SimulateArgs>),
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
        Authz::Apply(args) => crate::cp::policies::apply(&args),
        Authz::History(args) => crate::cp::policies::history(&args),
        Authz::Rollback(args) => crate::cp::policies::rollback(&args),
        Authz::Get(args) => crate::cp::policies::get(&args),
        Authz::Shadow(cmd) => crate::cp::shadow::run(&cmd),
        Authz::Simulate(args) => simulate::run(&args),
    }
}
