//! `[tracing]`: where spans go, and how many.

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

/// Checks that `r` is a share (0 to 1); one line naming `what` otherwise.
pub fn ratio(what: &str, r: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&r) {
        Ok(())
    } else {
        Err(format!("{what} must be between 0 and 1, not {r}"))
    }
}

impl TracingConfig {
    /// Spans to `otlp_endpoint` over `protocol` for `sample_ratio` of new traces, the rest
    /// at their defaults.
    pub fn new(otlp_endpoint: String, protocol: OtlpProtocol, sample_ratio: f64) -> Self {
        Self {
            otlp_endpoint,
            protocol,
            sample_ratio,
            max_queue: default_queue(),
            max_batch: default_batch(),
            flush_interval: default_flush(),
            export_timeout: default_export_timeout(),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_one_line_each() {
        let good = TracingConfig::new("http://127.0.0.1:4317".into(), OtlpProtocol::Grpc, 0.5);
        assert_eq!(good.check(), Ok(()));
        let with = |f: &dyn Fn(&mut TracingConfig)| {
            let mut c = good.clone();
            f(&mut c);
            c.check().unwrap_err()
        };
        for (err, says) in [
            (
                with(&|c| c.otlp_endpoint = "https://collector:4317".into()),
                "must start with http://",
            ),
            (
                with(&|c| c.otlp_endpoint = "http://collector".into()),
                "must name a host and a port",
            ),
            (with(&|c| c.sample_ratio = 1.5), "between 0 and 1"),
            (with(&|c| c.max_queue = 0), "at least 1"),
            (with(&|c| c.flush_interval = Duration::ZERO), "above zero"),
        ] {
            assert!(err.contains(says), "{err}");
            assert_eq!(err.lines().count(), 1);
        }
    }
}
