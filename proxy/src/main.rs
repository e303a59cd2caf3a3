//! `signet-proxy`, the data-plane sidecar.
//!
//! Not built yet: the proxy issue fills it (see `docs/architecture.md`).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("signet-proxy: not implemented yet; see docs/architecture.md for the plan");
    ExitCode::from(2)
}
