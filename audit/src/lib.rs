//! Signet's signed, hash-chained audit log.
//!
//! - [`record`]: what is recorded (decisions, certificates, policy and config changes,
//!   operator actions, gaps), one JSON line per record, the chain computed over the exact
//!   bytes of each line.
//! - [`chain`]: numbering and linking (`seq`, `prev` = SHA-256 of the previous line).
//! - [`checkpoint`]: a signed statement over a range of records and its head, by the
//!   writer's own SVID key, verified against the trust bundle as of signing time.
//! - [`spool`]: bounded segment files on local disk.
//! - [`writer`]: the non-blocking writer (bounded queue, checkpoints every second or N
//!   records, fsync before each checkpoint, gap records for anything dropped).
//! - [`receiver`]: the control plane's copy of a shipped chain, appended idempotently.
//! - [`export`]: SIEM formats (JSON lines, CEF, RFC 5424 syslog).
//! - [`verify`]: locating every missing, altered, reordered, duplicated or unsigned record.
//!
//! The model follows certificate-transparency logs (RFC 9162: an append-only hash chain
//! with signed tree heads) and CloudTrail's digest files (signed statements over what was
//! written, chained so a deleted period shows).

pub mod chain;
pub mod checkpoint;
pub mod export;
pub mod ocsf;
pub mod receiver;
pub mod record;
pub mod spool;
pub mod verify;
pub mod writer;

pub use checkpoint::{KeySigner, Signer};
pub use record::{Decision, Event, Record};
pub use verify::{Finding, Kind, Report, verify_files};
pub use writer::{AuditLog, WriterConfig};
