//! Commands that talk to a running control plane, and how they find it: `--cp`, `--token`
//! and `--ca` flags, else `SIGNET_CP`, `SIGNET_TOKEN`, `SIGNET_CA`, else the same lines in
//! `$XDG_CONFIG_HOME/signet/meshctl.env` (or `~/.config/signet/meshctl.env`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use clap::{Args, ValueEnum};
use serde_json::Value;

pub(crate) mod authn;
pub(crate) mod ca;
pub(crate) mod client;
pub(crate) mod console;
pub(crate) mod federation;
pub(crate) mod identity;
pub(crate) mod labels;
pub(crate) mod lists;
pub(crate) mod policies;
pub(crate) mod shadow;
pub(crate) mod stats;
pub(crate) mod token;
pub(crate) mod traffic;
pub(crate) mod workload;

pub(crate) use client::Client;

/// Output format of commands that read the control plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// For people.
    #[default]
    Table,
    /// For scripts.
    Json,
    /// For scripts and people.
    Yaml,
}

/// Where the control plane is and how to authenticate, and how to print.
#[derive(Debug, Clone, Args)]
pub(crate) struct Remote {
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub(crate) output: Output,
}

impl Remote {
    /// See [`Connection::client`].
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        self.connection.client()
    }

    /// See [`Connection::anonymous`].
    pub(crate) fn anonymous(&self) -> anyhow::Result<Client> {
        self.connection.anonymous()
    }
}

/// Where the control plane is and how to authenticate.
#[derive(Debug, Clone, Args)]
pub(crate) struct Connection {
    /// The control plane's API (https://host:port) [env: SIGNET_CP].
    #[arg(long, value_name = "URL")]
    cp: Option<String>,
    /// Bearer token [env: SIGNET_TOKEN].
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// The control plane's trust bundle (PEM) [env: SIGNET_CA].
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Authenticate with this client certificate (an operator SVID, PEM chain) instead of a
    /// token [env: SIGNET_CERT].
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's key (PKCS#8 PEM) [env: SIGNET_KEY].
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
}

fn config_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("signet").join("meshctl.env"))
}

fn file_settings() -> BTreeMap<String, String> {
    let Some(path) = config_file() else {
        return BTreeMap::new();
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

impl Connection {
    /// One setting: the flag, else the environment, else the config-home file.
    fn setting(
        file: &BTreeMap<String, String>,
        flag: Option<String>,
        name: &str,
    ) -> Option<String> {
        flag.or_else(|| std::env::var(name).ok().filter(|v| !v.is_empty()))
            .or_else(|| file.get(name).cloned())
    }

    /// The control plane's address and the PEM of its trust bundle.
    fn endpoint(&self, file: &BTreeMap<String, String>) -> anyhow::Result<(String, String)> {
        let cp = Self::setting(file, self.cp.clone(), "SIGNET_CP").ok_or_else(|| {
            anyhow!(
                "no control plane: pass --cp or set SIGNET_CP (`set -a; . <data-dir>/meshctl.env`)"
            )
        })?;
        let ca = Self::setting(
            file,
            self.ca.as_ref().map(|p| p.display().to_string()),
            "SIGNET_CA",
        )
        .ok_or_else(|| {
            anyhow!("no trust bundle for the control plane: pass --ca or set SIGNET_CA")
        })?;
        let ca_pem =
            std::fs::read_to_string(&ca).with_context(|| format!("reading SIGNET_CA `{ca}`"))?;
        Ok((cp, ca_pem))
    }

    /// The control plane's address and trust, without credentials (for calls a join token
    /// authorizes).
    pub(crate) fn anonymous(&self) -> anyhow::Result<Client> {
        let (cp, ca_pem) = self.endpoint(&file_settings())?;
        Client::with_identity(&cp, None, ca_pem, None)
    }

    /// The client these settings describe.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let file = file_settings();
        let (cp, ca_pem) = self.endpoint(&file)?;
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let cert = Self::setting(&file, path(&self.cert), "SIGNET_CERT");
        let key = Self::setting(&file, path(&self.key), "SIGNET_KEY");
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some(client::ClientIdentity::load(&cert, &key)?),
            (None, None) => None,
            _ => return Err(anyhow!("SIGNET_CERT and SIGNET_KEY go together")),
        };
        // A certificate replaces the token, unless a token is given on the command line.
        let token = match (&identity, &self.token) {
            (Some(_), None) => None,
            _ => Self::setting(&file, self.token.clone(), "SIGNET_TOKEN"),
        };
        Client::with_identity(&cp, token, ca_pem, identity)
    }
}

/// Prints `value` as JSON or YAML; `false` for the table format (the caller prints it).
pub(crate) fn print_structured(output: Output, value: &Value) -> anyhow::Result<bool> {
    match output {
        Output::Table => Ok(false),
        Output::Json => {
            println!("{}", serde_json::to_string_pretty(value)?);
            Ok(true)
        }
        Output::Yaml => {
            print!("{}", serde_norway::to_string(value)?);
            Ok(true)
        }
    }
}

/// A table with left-aligned columns.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// `s` percent-encoded for a URL query value.
pub(crate) fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A string field of `v`, or "".
pub(crate) fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Unix milliseconds as an RFC 3339 UTC time.
pub(crate) fn time_at(ms: i64) -> String {
    signet_cp::model::rfc3339(ms)
}

/// How long ago (or until) unix milliseconds `ms` is, for people.
pub(crate) fn relative_to(ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    relative_between(ms, now)
}

/// How far `ms` is from `now` (both Unix milliseconds), for people.
fn relative_between(ms: i64, now: i64) -> String {
    let delta = (ms - now) / 1000;
    let span = |s: i64| match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    };
    if delta == 0 {
        "now".to_owned()
    } else if delta > 0 {
        format!("in {}", span(delta))
    } else {
        format!("{} ago", span(-delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_as_rfc3339() {
        assert_eq!(time_at(0), "1970-01-01T00:00:00Z");
        assert_eq!(time_at(1_795_000_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn times_relative_to_now_read_as_people_say_them() {
        let now = 1_795_000_000_000;
        assert_eq!(relative_between(now + 400, now), "now");
        assert_eq!(relative_between(now - 900, now), "now");
        assert_eq!(relative_between(now + 90_000, now), "in 90s");
        assert_eq!(relative_between(now - 3 * 3_600_000, now), "3h ago");
        assert_eq!(relative_between(now + 3 * 86_400_000, now), "in 3d");
    }
}

/// `--wait`: how long a change waits for every proxy to report that it enforces it.
#[derive(Debug, Clone, Args)]
pub(crate) struct Wait {
    /// How long to wait for every registered proxy to enforce the change (`0s`: do not
    /// wait); proxies still behind when it ends are named and the exit status is 1.
    #[arg(long = "wait", default_value = "10s", value_parser = parse_wait, value_name = "DURATION")]
    pub(crate) wait: std::time::Duration,
}

fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    if s == "0" || s == "0s" {
        return Ok(std::time::Duration::ZERO);
    }
    let wait = crate::duration::parse(s)?;
    if wait > std::time::Duration::from_secs(300) {
        return Err("--wait is at most 5m".to_owned());
    }
    Ok(wait)
}

/// `value`, the control plane's answer to `path`, read as the API's type `T`.
pub(crate) fn read_as<T: serde::de::DeserializeOwned>(
    value: &Value,
    path: &str,
) -> anyhow::Result<T> {
    T::deserialize(value).map_err(|e| {
        anyhow!("the control plane's answer to {path} is not what this meshctl reads: {e}")
    })
}

/// The sentence saying how many proxies enforce `what`; an error naming those that do not.
/// An answer without an enforcement (no proxy to wait for) reads as none pending.
pub(crate) fn enforced(
    e: Option<&signet_cp::model::Enforcement>,
    what: &str,
) -> anyhow::Result<String> {
    let Some(e) = e else {
        return Ok("enforced by 0 of 0 proxies".to_owned());
    };
    let pending: Vec<String> = e
        .pending
        .iter()
        .map(|p| {
            format!(
                "{} (instance {}, at {})",
                p.spiffe_id, p.instance, p.enforces
            )
        })
        .collect();
    if pending.is_empty() {
        return Ok(format!(
            "enforced by {} of {} proxies",
            e.enforced_by, e.proxies
        ));
    }
    Err(anyhow!(
        "{what} is stored, but {} of {} proxies do not enforce it yet: {}",
        pending.len(),
        e.proxies,
        pending.join(", ")
    ))
}
