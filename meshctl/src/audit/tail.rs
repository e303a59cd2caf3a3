//! `meshctl audit tail [--follow] [--decision deny] [--principal ID] [--resource SVC]
//! [--policy ID] [-n N]`: the newest audit records the control plane holds, oldest first;
//! `--follow` keeps printing new ones.

use clap::Args;
use serde_json::Value;

use crate::Outcome;
use crate::cp::{Output, Remote, print_structured, print_table, text};

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Keep printing records as they arrive (Ctrl-C stops).
    #[arg(short, long)]
    follow: bool,
    /// allow | deny.
    #[arg(long, value_name = "DECISION")]
    decision: Option<String>,
    /// The caller's SPIFFE ID.
    #[arg(long, value_name = "ID")]
    principal: Option<String>,
    /// The destination service.
    #[arg(long, value_name = "SERVICE")]
    resource: Option<String>,
    /// A determining policy id.
    #[arg(long, value_name = "ID")]
    policy: Option<String>,
    /// How many of the newest records to show first.
    #[arg(short = 'n', long, default_value_t = 20, value_name = "N")]
    lines: u32,
    #[command(flatten)]
    remote: Remote,
}

pub(crate) fn run(args: &TailArgs) -> anyhow::Result<Outcome> {
    if let Some(d) = &args.decision {
        anyhow::ensure!(
            d == "allow" || d == "deny",
            "--decision is allow or deny, not `{d}`"
        );
    }
    let client = args.remote.client()?;
    let mut query = Vec::new();
    for (key, value) in [
        ("decision", &args.decision),
        ("principal", &args.principal),
        ("resource", &args.resource),
        ("policy", &args.policy),
    ] {
        if let Some(v) = value {
            query.push(format!("{key}={}", crate::cp::query_value(v)));
        }
    }
    let mut after = 0i64;
    let mut limit = args.lines;
    loop {
        let mut q = query.clone();
        q.push(format!("limit={limit}"));
        q.push(format!("after={after}"));
        let value = client.get(&format!("/v1/audit?{}", q.join("&")))?;
        let records = value
            .get("records")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(last) = records
            .last()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_i64)
        {
            after = last;
        }
        if args.remote.output != Output::Table {
            if !records.is_empty() || !args.follow {
                print_structured(
                    args.remote.output,
                    &serde_json::json!({ "records": records }),
                )?;
            }
        } else if !records.is_empty() {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    let time = r.get("time").and_then(Value::as_u64).unwrap_or(0) / 1_000_000;
                    vec![
                        crate::cp::time_of(&Value::from(time)),
                        text(r, "decision").to_uppercase(),
                        text(r, "principal"),
                        text(r, "action"),
                        format!("{}{}", text(r, "resource"), text(r, "path")),
                        text(r, "policies"),
                    ]
                })
                .collect();
            print_table(
                &[
                    "TIME",
                    "DECISION",
                    "PRINCIPAL",
                    "ACTION",
                    "RESOURCE",
                    "POLICIES",
                ],
                &rows,
            );
        }
        if !args.follow {
            return Ok(Outcome::Success);
        }
        limit = 1000;
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
