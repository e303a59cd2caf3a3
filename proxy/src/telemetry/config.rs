//! `[tracing]` and `[access_log]`: where spans and access-log lines go, and how many.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Spans over OTLP.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// The collector: `http://host:port`. For `grpc` the collector's OTLP/gRPC port
    /// (4317 by convention); for `http` its OTLP/HTTP base (4318), `/v1/traces` appended
    /// unless the URL has a path of its own.
    pub otlp_endpoint: String,
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Share of new traces recorded (0 to 1). A request that arrives in a trace follows
    /// its caller's decision (parent-based), so a trace is whole or absent.
    #[serde(default = "default_ratio")]
    pub sample_ratio: f64,
    /// Spans waiting to be sent; beyond it new spans are dropped (and counted), never
    /// waited for.
    #[serde(default = "default_queue")]
    pub max_queue: usize,
    /// Most spans in one export.
    #[serde(default = "default_batch")]
    pub max_batch: usize,
    /// Longest a finished span waits for its batch to fill.
    #[serde(default = "default_flush", with = "signet_traffic::duration")]
    pub flush_interval: Duration,
    /// Time one export may take before its spans are given up.
    #[serde(default = "default_export_timeout", with = "signet_traffic::duration")]
    pub export_timeout: Duration,
}

/// How spans reach the collector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OtlpProtocol {
    /// OTLP/gRPC (`TraceService/Export`).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`POST /v1/traces`).
    #[serde(rename = "http/protobuf", alias = "http")]
    HttpProtobuf,
}

fn default_ratio() -> f64 {
    0.01
}
fn default_queue() -> usize {
    2048
}
fn default_batch() -> usize {
    512
}
fn default_flush() -> Duration {
    Duration::from_secs(1)
}
fn default_export_timeout() -> Duration {
    Duration::from_secs(5)
}

/// One line per request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// `-` for standard output, else a file (rotated by size).
    #[serde(default = "default_path")]
    pub path: PathBuf,
    #[serde(default)]
    pub format: AccessLogFormat,
    /// Which fields, in this order (see docs/observability.md for the list); every field
    /// by default.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Share of requests logged (0 to 1).
    #[serde(default = "one")]
    pub sample_ratio: f64,
    /// A file is rotated when it reaches this size.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`access.log.1` newest).
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// Lines waiting to be written; beyond it lines are dropped (and counted).
    #[serde(default = "default_queue")]
    pub max_queue: usize,
}

/// How a line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Space-separated values in the order of `fields`, quoted where they hold spaces, `-`
    /// for none (in the style of Envoy's and Apache's default formats).
    Text,
}

fn default_path() -> PathBuf {
    PathBuf::from("-")
}
fn one() -> f64 {
    1.0
}
fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_keep() -> u32 {
    5
}

fn ratio(what: &str, r: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&r) {
        Ok(())
    } else {
        Err(format!("{what} must be between 0 and 1, not {r}"))
    }
}

impl TracingConfig {
    /// One line for the first problem.
    pub fn check(&self) -> Result<(), String> {
        let url = self.otlp_endpoint.as_str();
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("tracing.otlp_endpoint: `{url}` must start with http:// (a local collector or agent)")
        })?;
        let authority = rest.split('/').next().unwrap_or("");
        if authority
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(format!(
                "tracing.otlp_endpoint: `{url}` must name a host and a port"
            ));
        }
        ratio("tracing.sample_ratio", self.sample_ratio)?;
        if self.max_queue == 0 || self.max_batch == 0 {
            return Err("tracing.max_queue and tracing.max_batch must be at least 1".to_owned());
        }
        if self.flush_interval.is_zero() || self.export_timeout.is_zero() {
            return Err(
                "tracing.flush_interval and tracing.export_timeout must be above zero".to_owned(),
            );
        }
        Ok(())
    }
}

impl AccessLogConfig {
    /// One line for the first problem.
    pub fn check(&self) -> Result<(), String> {
        ratio("access_log.sample_ratio", self.sample_ratio)?;
        for f in &self.fields {
            if super::access_log::Field::parse(f).is_none() {
                return Err(format!(
                    "access_log.fields: `{f}` is not a field; the fields are {}",
                    super::access_log::Field::NAMES.join(", ")
                ));
            }
        }
        if self.max_bytes < 4096 {
            return Err("access_log.max_bytes must be at least 4096".to_owned());
        }
        if self.max_queue == 0 {
            return Err("access_log.max_queue must be at least 1".to_owned());
        }
        Ok(())
    }
}
