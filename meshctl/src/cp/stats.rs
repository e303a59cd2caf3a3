//! `meshctl stats`: live golden signals per service (or per caller -> service edge), from
//! what the proxies report to the control plane; `--watch` redraws in place.

use std::time::Duration;

use clap::Args;
use signet_cp::model;

use super::{Remote, print_structured, print_table, query_value, read_as};
use crate::Outcome;

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Only this service.
    service: Option<String>,
    /// Time to look back over.
    #[arg(long, default_value = "1m", value_parser = crate::duration::parse)]
    window: Duration,
    /// One row per caller -> service edge instead of per service.
    #[arg(long)]
    edges: bool,
    /// Redraw every two seconds until interrupted.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    remote: Remote,
}

fn number(n: Option<f64>, unit: &str, scale: f64, decimals: usize) -> String {
    n.map_or_else(
        || "-".to_owned(),
        |n| format!("{:.decimals$}{unit}", n * scale),
    )
}

fn print(stats: &model::Stats) {
    let edges = stats.by == model::StatsBy::Edge;
    let rows: Vec<Vec<String>> = stats
        .rows
        .iter()
        .map(|r| {
            let mut row = Vec::new();
            if edges {
                row.push(r.caller.clone().unwrap_or_else(|| "-".to_owned()));
            }
            row.extend([
                r.service.clone(),
                r.namespace.clone(),
                r.proxies.to_string(),
                number(r.success_rate, "%", 100.0, 2),
                number(Some(r.requests_per_second), "", 1.0, 2),
                number(r.latency_ms_p50, "ms", 1.0, 1),
                number(r.latency_ms_p95, "ms", 1.0, 1),
                number(r.latency_ms_p99, "ms", 1.0, 1),
            ]);
            row
        })
        .collect();
    if rows.is_empty() {
        println!("no traffic reported yet");
        return;
    }
    let mut header = Vec::new();
    if edges {
        header.push("CALLER");
    }
    header.extend([
        "SERVICE",
        "NAMESPACE",
        "PROXIES",
        "SUCCESS",
        "RPS",
        "P50",
        "P95",
        "P99",
    ]);
    print_table(&header, &rows);
}

pub(crate) fn run(args: &StatsArgs) -> anyhow::Result<Outcome> {
    let client = args.remote.client()?;
    let mut path = format!(
        "/v1/stats?window_seconds={}&by={}",
        args.window.as_secs(),
        if args.edges { "edge" } else { "service" }
    );
    if let Some(service) = &args.service {
        path.push_str(&format!("&service={}", query_value(service)));
    }
    loop {
        let value = client.get(&path)?;
        if args.watch {
            // Clear the screen and home the cursor, then draw the table anew.
            print!("\x1b[2J\x1b[H");
            println!(
                "golden signals over the last {}s (Ctrl-C to stop)\n",
                args.window.as_secs()
            );
        }
        if !print_structured(args.remote.output, &value)? {
            print(&read_as(&value, "/v1/stats")?);
        }
        if !args.watch {
            return Ok(Outcome::Success);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
