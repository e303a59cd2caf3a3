//! `[access_log]`: where access-log lines go, and how many. (`[tracing]` is
//! [`signet_otel::config::TracingConfig`].)

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use signet_otel::config::ratio;

fn default_queue() -> usize {
    2048
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

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> AccessLogConfig {
        toml::from_str("path = \"-\"").unwrap()
    }

    #[test]
    fn bad_access_log_settings_are_one_line_each() {
        assert_eq!(log().check(), Ok(()));
        let mut c = log();
        c.fields = vec!["method".into(), "nope".into()];
        let err = c.check().unwrap_err();
        assert!(
            err.contains("`nope` is not a field; the fields are start_time"),
            "{err}"
        );
        let mut c = log();
        c.sample_ratio = -0.1;
        assert!(c.check().unwrap_err().contains("between 0 and 1"));
        let mut c = log();
        c.max_bytes = 100;
        assert!(c.check().unwrap_err().contains("at least 4096"));
        assert!(toml::from_str::<AccessLogConfig>("format = \"xml\"").is_err());
    }
}
