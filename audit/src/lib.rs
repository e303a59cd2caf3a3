//! Signet's signed, hash-chained audit log.
//!
//! Empty for now: record types, the chain, checkpoints, the spool and exporters arrive with
//! the audit issue (see `docs/architecture.md`).
