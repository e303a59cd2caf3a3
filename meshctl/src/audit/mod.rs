//! `meshctl audit`: the signed audit trail.

use clap::Subcommand;

use crate::Outcome;

mod deliver;
mod export;
pub(crate) mod spools;
mod tail;
pub(crate) mod verify;

#[derive(Debug, Subcommand)]
pub(crate) enum Audit {
    /// Check every chain and checkpoint signature against the trust bundle; exit 1 on any
    /// integrity failure, naming the record and where it is.
    Verify(verify::VerifyArgs),
    /// The newest audit records the control plane holds (or the spools under --data-dir);
    /// --follow for new ones.
    Tail(Box<tail::TailArgs>),
    /// Audit records (the control plane's, or the spools under --data-dir) as JSON lines,
    /// OCSF, CEF, syslog, Splunk HEC or Elasticsearch bulk, to a file or a receiver (syslog
    /// over TCP/TLS, HEC and bulk over HTTPS); resumable with --cursor.
    Export(Box<export::ExportArgs>),
}

pub(crate) fn run(cmd: Audit) -> anyhow::Result<Outcome> {
    match cmd {
        Audit::Verify(args) => verify::run(&args),
        Audit::Tail(args) => tail::run(&args),
        Audit::Export(args) => export::run(&args),
    }
}
