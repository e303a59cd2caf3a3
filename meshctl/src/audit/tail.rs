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
    /// Read the spools under this directory (a proxy's state dir, a control plane's data
    /// dir, a demo's) instead of asking the control plane.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<std::path::PathBuf>,
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
    if let Some(dir) = &args.data_dir {
        return from_spools(args, dir);
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
        print_records(args, &records)?;
        if !args.follow {
            return Ok(Outcome::Success);
        }
        limit = 1000;
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn print_records(args: &TailArgs, records: &[Value]) -> anyhow::Result<()> {
    if args.remote.output != Output::Table {
        if !records.is_empty() || !args.follow {
            print_structured(
                args.remote.output,
                &serde_json::json!({ "records": records }),
            )?;
        }
        return Ok(());
    }
    if records.is_empty() {
        return Ok(());
    }
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
    Ok(())
}

/// A decision record in the shape the control plane's index returns.
fn row(record: &signet_audit::record::Record) -> Option<Value> {
    let signet_audit::record::Event::Decision(d) = &record.event else {
        return None;
    };
    Some(serde_json::json!({
        "writer": record.writer, "seq": record.seq, "time": record.time, "type": "decision",
        "decision": d.decision, "action": d.action, "principal": d.principal,
        "resource": d.resource, "path": d.path, "policies": d.policies.join(","),
    }))
}

fn from_spools(args: &TailArgs, dir: &std::path::Path) -> anyhow::Result<Outcome> {
    let wanted = |r: &Value| {
        let is =
            |key: &str, want: &Option<String>| want.as_ref().is_none_or(|w| text(r, key) == *w);
        is("decision", &args.decision)
            && is("principal", &args.principal)
            && is("resource", &args.resource)
            && args
                .policy
                .as_ref()
                .is_none_or(|p| text(r, "policies").split(',').any(|x| x == p))
    };
    let mut since = 0;
    let mut first = true;
    loop {
        let mut rows: Vec<Value> = crate::audit::spools::records(dir, since)?
            .iter()
            .filter_map(row)
            .filter(|r| wanted(r))
            .collect();
        rows.sort_by_key(|r| r.get("time").and_then(Value::as_u64).unwrap_or(0));
        if first {
            let keep = usize::try_from(args.lines).unwrap_or(usize::MAX);
            rows = rows.split_off(rows.len().saturating_sub(keep));
            first = false;
        }
        if let Some(t) = rows
            .last()
            .and_then(|r| r.get("time"))
            .and_then(Value::as_u64)
        {
            since = t + 1;
        }
        print_records(args, &rows)?;
        if !args.follow {
            return Ok(Outcome::Success);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
