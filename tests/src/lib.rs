//! Signet's end-to-end test harness: test certificates written to files, an echo app, real
//! `signet-proxy` processes on 127.0.0.1 (every port chosen by the OS), and small HTTP and
//! TLS clients to drive them.

#![expect(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness: a failure here is the test failing, with the message saying why"
)]

pub mod app;
pub mod client;
pub mod control;
pub mod faulty;
pub mod fleet;
pub mod jwt;
pub mod mesh;
pub mod netns;
pub mod openbao;
pub mod otlp;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod rsyslog;
pub mod siem;
pub mod validators;
pub mod workload;

/// The `p` quantile (0 to 1) of `sorted` durations, by nearest rank; the benchmarks'.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
