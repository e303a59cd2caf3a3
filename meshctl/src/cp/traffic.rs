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
use serde_json::Value;

use signet_cp::model;

use super::{Output, Remote, print_structured, print_table, read_as, time_at};
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

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |f| format!("{:.1}%", f * 100.0))
}

fn split(args: &SplitArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let path = format!(
        "/v1/traffic/split?service={}&window_seconds={}",
        super::query_value(&args.service),
        args.window.as_secs()
    );
    let value = client.get(&path)?;
    if super::print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let report: model::SplitReport = read_as(&value, &path)?;
    if report.routes.is_empty() {
        println!("{}: no route splits its traffic", args.service);
    }
    let rows: Vec<Vec<String>> = report
        .routes
        .iter()
        .flat_map(|r| {
            r.split.iter().map(|e| {
                vec![
                    r.route.clone(),
                    e.subset.clone(),
                    e.weight.to_string(),
                    percent(Some(e.share)),
                ]
            })
        })
        .collect();
    if !rows.is_empty() {
        super::print_table(&["ROUTE", "SUBSET", "WEIGHT", "CONFIGURED"], &rows);
        println!();
    }
    let observed: Vec<Vec<String>> = report
        .observed
        .iter()
        .map(|o| {
            vec![
                o.subset
                    .clone()
                    .unwrap_or_else(|| "(in no subset)".to_owned()),
                o.requests.to_string(),
                percent(o.share),
            ]
        })
        .collect();
    println!(
        "answered over the last {}s ({} requests):",
        report.window_seconds, report.requests
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
    let path = format!(
        "/v1/endpoints?service={}",
        super::query_value(&args.service)
    );
    let value = client.get(&path)?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let list: model::EndpointList = read_as(&value, &path)?;
    let rows: Vec<Vec<String>> = list
        .endpoints
        .iter()
        .map(|e| {
            let balancer = if e.ejected {
                format!("ejected ({})", e.ejections)
            } else if e.ejections > 0 {
                format!("in ({} ejections)", e.ejections)
            } else {
                "in".to_owned()
            };
            vec![
                e.endpoint.clone(),
                e.health.as_str().to_owned(),
                e.weight.to_string(),
                balancer,
                e.in_flight.to_string(),
                e.latency_ewma_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}ms")),
                e.caller.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
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

fn print_changes(result: &model::TrafficApplied) {
    if result.changes.is_empty() {
        println!("no change");
        return;
    }
    for c in &result.changes {
        let at = format!("{}.{}", c.service, c.setting);
        match (&c.before, &c.after) {
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
        &model::TrafficApplyRequest {
            document,
            file: Some(file),
            dry_run: false,
            wait_seconds: Some(args.wait.wait.as_secs()),
        },
    )?;
    report(&result, "/v1/traffic", args.remote.output, "applied")
}

fn report(value: &Value, path: &str, output: Output, verb: &str) -> anyhow::Result<Outcome> {
    let table = !print_structured(output, value)?;
    let result: model::TrafficApplied = read_as(value, path)?;
    if table {
        print_changes(&result);
    }
    let version = result.version;
    if !result.applied {
        if table {
            println!("traffic version {version} stays in force");
        }
        return Ok(Outcome::Success);
    }
    if table {
        println!("{verb} traffic version {version}");
    }
    let enforced = super::enforced(
        result.enforcement.as_ref(),
        &format!("traffic version {version}"),
    )?;
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
        &model::TrafficApplyRequest {
            document,
            file: Some(file),
            dry_run: true,
            wait_seconds: None,
        },
    )?;
    if !print_structured(args.remote.output, &result)? {
        print_changes(&read_as(&result, "/v1/traffic")?);
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
            let settings: model::TrafficSettings = read_as(&value, &path)?;
            if settings.version == 0 {
                println!("# no traffic settings applied: every service has the defaults");
            } else {
                println!(
                    "# traffic version {}, applied {} by {}",
                    settings.version,
                    time_at(settings.applied_at),
                    settings.author
                );
            }
            print!("{}", serde_norway::to_string(&settings.document)?);
        }
    }
    Ok(Outcome::Success)
}

fn history(args: &HistoryArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let path = format!("/v1/traffic/history?limit={}", args.limit);
    let value = client.get(&path)?;
    if print_structured(args.remote.output, &value)? {
        return Ok(Outcome::Success);
    }
    let history: model::TrafficHistory = read_as(&value, &path)?;
    let rows: Vec<Vec<String>> = history
        .versions
        .iter()
        .map(|v| {
            vec![
                v.version.to_string(),
                time_at(v.applied_at),
                v.author.clone(),
                v.changes.to_string(),
                v.rollback_of
                    .map_or_else(|| "-".to_owned(), |r| format!("rollback to {r}")),
            ]
        })
        .collect();
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
        &model::TrafficRollbackRequest {
            version: args.version,
            dry_run: false,
            wait_seconds: Some(args.wait.wait.as_secs()),
        },
    )?;
    report(
        &result,
        "/v1/traffic/rollback",
        args.remote.output,
        &format!("rolled back to version {}: applied", args.version),
    )
}
