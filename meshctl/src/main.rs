//! `meshctl`, the operator command line.
//!
//! Not built yet: the policy and control-plane issues add its subcommands.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("meshctl: no subcommands yet; see docs/architecture.md for the plan");
    ExitCode::from(2)
}
