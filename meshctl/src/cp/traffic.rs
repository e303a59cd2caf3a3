//! `meshctl traffic`: the mesh's traffic settings as a versioned resource.
//!
//! - `apply -f traffic.yaml`: checked here first (every problem at `file:line`), then by the
//!   control plane, stored as the next version and pushed to every proxy; prints what
//!   changed, setting by setting, and waits for the proxies.
//! - `diff -f traffic.yaml`: what applying would change, nothing stored.
//! - `get [--version N]`: the document in force (YAML), every default written out.
//! - `history`, `rollback VERSION`, `schema` (the JSON Schema documents are checked against).

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{Output, Remote, print_structured, print_table, text, time_of};
use crate::Outcome;

#[derive(Debug, Subcommand)]
pub(crate) enum Traffic {
    /// Apply a traffic document (the whole mesh's settings, as a new version).
    Apply(ApplyArgs),
    /// What applying a document would change; nothing is stored.
    Diff(DiffArgs),
    /// The document in force, or an older version.
    Get(GetArgs),
    /// The versions applied, newest first.
    History(HistoryArgs),
    /// Apply an older version's document again, as a new version.
    Rollback(RollbackArgs),
    /// The traffic document's JSON Schema.
    Schema,
    /// A service's split routes: configured shares per subset against the shares its
    /// endpoints answered over a window.
    Split(SplitArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SplitArgs {
    /// The service.
    service: String,
    /// Time to look back over.
    #[arg(long, default_value = "1m", value_parser = crate::duration::parse)]
    window: std::time::Duration,
    #[command(flatten)]
    remote: Remote,
}

fn percent(v: Option<&serde_json::Value>) -> String {
    v.and_then(serde_json::Value::as_f64)
        .map_or_else(|| "-".to_owned(), |f| format!("{:.1}%", f * 100.0))
}

fn split(args: &SplitArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.get(&format!(
        "/v1/traffic/split?service={}&window_seconds={}",
        super::query_value(&args.service),
        args.window.as_secs()
    ))?;
    if super::print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let empty = Vec::new();
    let routes = value["routes"].as_array().unwrap_or(&empty);
    if routes.is_empty() {
        println!("{}: no route splits its traffic", args.service);
    }
    let mut rows = Vec::new();
    for r in routes {
        for e in r["split"].as_array().unwrap_or(&empty) {
            rows.push(vec![
                super::text(r, "route"),
                super::text(e, "subset"),
                super::text(e, "weight"),
                percent(e.get("share")),
            ]);
        }
    }
    if !rows.is_empty() {
        super::print_table(&["ROUTE", "SUBSET", "WEIGHT", "CONFIGURED"], &rows);
        println!();
    }
    let observed: Vec<Vec<String>> = value["observed"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|o| {
            vec![
                o["subset"]
                    .as_str()
                    .map_or_else(|| "(in no subset)".to_owned(), str::to_owned),
                super::text(o, "requests"),
                percent(o.get("share")),
            ]
        })
        .collect();
    println!(
        "answered over the last {}s ({} requests):",
        args.window.as_secs(),
        value["requests"]
    );
    super::print_table(&["SUBSET", "REQUESTS", "OBSERVED"], &observed);
    Ok(Outcome::Success)
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The traffic document (YAML or JSON).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    wait: super::Wait,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The traffic document (YAML or JSON).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// An older version instead of the one in force.
    #[arg(long, value_name = "N")]
    version: Option<u64>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// How many versions.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The version whose document to apply again.
    version: u64,
    #[command(flatten)]
    wait: super::Wait,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub(crate) struct EndpointsArgs {
    /// The service.
    service: String,
    #[command(flatten)]
    remote: Remote,
}

/// `meshctl proxies endpoints SERVICE`.
pub(crate) fn endpoints(args: &EndpointsArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.get(&format!(
        "/v1/endpoints?service={}",
        super::query_value(&args.service)
    ))?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = value["endpoints"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    let ejected = if e["ejected"].as_bool() == Some(true) {
                        format!("ejected ({})", text(e, "ejections"))
                    } else if e["ejections"].as_u64().unwrap_or(0) > 0 {
                        format!("in ({} ejections)", text(e, "ejections"))
                    } else {
                        "in".to_owned()
                    };
                    vec![
                        text(e, "endpoint"),
                        text(e, "health"),
                        text(e, "weight"),
                        ejected,
                        text(e, "in_flight"),
                        e["latency_ewma_ms"]
                            .as_f64()
                            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}ms")),
                        e["caller"].as_str().unwrap_or("-").to_owned(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        println!("no endpoints of `{}` registered or reported", args.service);
        return Ok(Outcome::Success);
    }
    print_table(
        &[
            "ENDPOINT",
            "APP",
            "WEIGHT",
            "BALANCER",
            "IN FLIGHT",
            "LATENCY",
            "CALLER",
        ],
        &rows,
    );
    Ok(Outcome::Success)
}

pub(crate) fn run(cmd: &Traffic) -> anyhow::Result<Outcome> {
    match cmd {
        Traffic::Apply(args) => apply(args),
        Traffic::Diff(args) => diff(args),
        Traffic::Get(args) => get(args),
        Traffic::History(args) => history(args),
        Traffic::Rollback(args) => rollback(args),
        Traffic::Split(args) => split(args),
        Traffic::Schema => {
            print!("{}", signet_traffic::SCHEMA);
            Ok(Outcome::Success)
        }
    }
}

/// The file's text and name, after checking it here as the control plane will: a bad
/// document is refused before anything is sent, each problem on its own line.
fn read_checked(path: &PathBuf) -> anyhow::Result<(String, String)> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading `{}`", path.display()))?
        .len();
    anyhow::ensure!(
        len <= signet_traffic::load::MAX_DOCUMENT_BYTES as u64,
        "`{}` is {len} bytes; the limit is {}",
        path.display(),
        signet_traffic::load::MAX_DOCUMENT_BYTES
    );
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading `{}`", path.display()))?;
    let name = path.display().to_string();
    if let Err(e) = signet_traffic::load(&text, &name) {
        for problem in &e.problems {
            eprintln!("meshctl: {problem}");
        }
        return Err(anyhow!(
            "{} refused ({} problems); nothing was sent",
            name,
            e.problems.len()
        ));
    }
    Ok((text, name))
}

fn print_changes(result: &Value) {
    let changes = result["changes"].as_array().cloned().unwrap_or_default();
    if changes.is_empty() {
        println!("no change");
        return;
    }
    for c in &changes {
        let at = format!("{}.{}", text(c, "service"), text(c, "setting"));
        let value = |key: &str| c.get(key).and_then(Value::as_str).map(str::to_owned);
        match (value("before"), value("after")) {
            (None, Some(a)) => println!("+ {at}: {a}"),
            (Some(b), None) => println!("- {at}: {b}"),
            (Some(b), Some(a)) => println!("~ {at}: {b} -> {a}"),
            (None, None) => println!("  {at}"),
        }
    }
}

fn apply(args: &ApplyArgs) -> anyhow::Result<Outcome> {
    let (document, file) = read_checked(&args.file)?;
    let client = args.remote.client()?;
    let result = client.post(
        "/v1/traffic",
        &json!({ "document": document, "file": file, "wait_seconds": args.wait.wait.as_secs() }),
    )?;
    report(&result, args.remote.output, "applied")
}

fn report(result: &Value, output: Output, verb: &str) -> anyhow::Result<Outcome> {
    let table = !print_structured(output, result)?;
    if table {
        print_changes(result);
    }
    if result["applied"].as_bool() != Some(true) {
        if table {
            println!("traffic version {} stays in force", text(result, "version"));
        }
        return Ok(Outcome::Success);
    }
    let version = text(result, "version");
    if table {
        println!("{verb} traffic version {version}");
    }
    let enforced = super::enforcement(result, &format!("traffic version {version}"))?;
    if table {
        println!("{enforced}");
    }
    Ok(Outcome::Success)
}

fn diff(args: &DiffArgs) -> anyhow::Result<Outcome> {
    let (document, file) = read_checked(&args.file)?;
    let client = args.remote.client()?;
    let result = client.post(
        "/v1/traffic",
        &json!({ "document": document, "file": file, "dry_run": true }),
    )?;
    if !print_structured(args.remote.output, &result)? {
        print_changes(&result);
    }
    Ok(Outcome::Success)
}

fn get(args: &GetArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let path = match args.version {
        Some(v) => format!("/v1/traffic?version={v}"),
        None => "/v1/traffic".to_owned(),
    };
    let value = client.get(&path)?;
    match args.remote.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&value)?),
        // The document itself, ready to edit and apply again.
        Output::Yaml | Output::Table => {
            if text(&value, "version") == "0" {
                println!("# no traffic settings applied: every service has the defaults");
            } else {
                println!(
                    "# traffic version {}, applied {} by {}",
                    text(&value, "version"),
                    time_of(value.get("applied_at").unwrap_or(&Value::Null)),
                    text(&value, "author")
                );
            }
            print!("{}", serde_norway::to_string(&value["document"])?);
        }
    }
    Ok(Outcome::Success)
}

fn history(args: &HistoryArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let value = client.get(&format!("/v1/traffic/history?limit={}", args.limit))?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = value["versions"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|v| {
                    vec![
                        text(v, "version"),
                        time_of(v.get("applied_at").unwrap_or(&Value::Null)),
                        text(v, "author"),
                        text(v, "changes"),
                        v.get("rollback_of")
                            .and_then(Value::as_u64)
                            .map_or_else(|| "-".to_owned(), |r| format!("rollback to {r}")),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        println!("no traffic settings applied (meshctl traffic apply -f traffic.yaml)");
        return Ok(Outcome::Success);
    }
    print_table(&["VERSION", "APPLIED", "BY", "CHANGES", "NOTE"], &rows);
    Ok(Outcome::Success)
}

fn rollback(args: &RollbackArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let result = client.post(
        "/v1/traffic/rollback",
        &json!({ "version": args.version, "wait_seconds": args.wait.wait.as_secs() }),
    )?;
    report(
        &result,
        args.remote.output,
        &format!("rolled back to version {}: applied", args.version),
    )
}
