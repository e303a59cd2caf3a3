//! `meshctl audit tail [--follow] [--decision deny] [--principal ID] [--resource SVC]
//! [--policy ID] [-n N]`: the newest audit records the control plane holds, oldest first;
//! `--follow` keeps printing new ones.

use clap::Args;
use signet_cp::model::{AuditKind, AuditPage, AuditRecord};

use crate::Outcome;
use crate::cp::{Output, Remote, print_structured, print_table};

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
        let page: AuditPage = client.get_as(&format!("/v1/audit?{}", q.join("&")))?;
        if let Some(last) = page.records.last() {
            after = last.id;
        }
        print_records(args, &page.records)?;
        if !args.follow {
            return Ok(Outcome::Success);
        }
        limit = 1000;
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn print_records(args: &TailArgs, records: &[AuditRecord]) -> anyhow::Result<()> {
    if args.remote.output != Output::Table {
        if !records.is_empty() || !args.follow {
            print_structured(
                args.remote.output,
                &serde_json::to_value(AuditPage {
                    records: records.to_vec(),
                })?,
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
            let field = |f: &Option<String>| f.clone().unwrap_or_default();
            vec![
                crate::cp::time_at(i64::try_from(r.time / 1_000_000).unwrap_or(i64::MAX)),
                field(&r.decision).to_uppercase(),
                field(&r.principal),
                field(&r.action),
                format!("{}{}", field(&r.resource), field(&r.path)),
                field(&r.policies),
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
fn row(record: &signet_audit::record::Record) -> Option<AuditRecord> {
    let signet_audit::record::Event::Decision(d) = &record.event else {
        return None;
    };
    Some(AuditRecord {
        id: 0,
        writer: record.writer.clone(),
        seq: record.seq,
        time: record.time,
        kind: AuditKind::Decision,
        decision: Some(d.decision.clone()),
        action: Some(d.action.clone()),
        principal: Some(d.principal.clone()),
        resource: Some(d.resource.clone()),
        path: d.path.clone(),
        policies: Some(d.policies.join(",")),
        candidate: None,
        // The spool's record, written again by the same code that signed it.
        line: serde_json::to_string(record).unwrap_or_default(),
    })
}

fn from_spools(args: &TailArgs, dir: &std::path::Path) -> anyhow::Result<Outcome> {
    let wanted = |r: &AuditRecord| {
        let is = |field: &Option<String>, want: &Option<String>| {
            want.as_ref().is_none_or(|w| field.as_ref() == Some(w))
        };
        is(&r.decision, &args.decision)
            && is(&r.principal, &args.principal)
            && is(&r.resource, &args.resource)
            && args.policy.as_ref().is_none_or(|p| {
                r.policies
                    .as_deref()
                    .unwrap_or_default()
                    .split(',')
                    .any(|x| x == p)
            })
    };
    let mut since = 0;
    let mut first = true;
    loop {
        let mut rows: Vec<AuditRecord> = crate::audit::spools::records(dir, since)?
            .iter()
            .filter_map(row)
            .filter(|r| wanted(r))
            .collect();
        rows.sort_by_key(|r| r.time);
        if first {
            let keep = usize::try_from(args.lines).unwrap_or(usize::MAX);
            rows = rows.split_off(rows.len().saturating_sub(keep));
            first = false;
        }
        if let Some(last) = rows.last() {
            since = last.time + 1;
        }
        print_records(args, &rows)?;
        if !args.follow {
            return Ok(Outcome::Success);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
