//! Reading records straight from spools on disk (a proxy's, a control plane's data dir, a
//! demo's), for the subcommands that take `--data-dir`.

use anyhow::Context as _;
use signet_audit::record::Record;

/// Every record under `dir` written at or after `since` (Unix nanoseconds), once each (the
/// control plane's received copies repeat the proxies' own records), by writer then number.
pub(crate) fn records(dir: &std::path::Path, since: u64) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading `{}`", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("segment-") && n.ends_with(".jsonl"))
            {
                let text = std::fs::read_to_string(&path)?;
                out.extend(
                    text.lines()
                        .filter_map(|l| serde_json::from_str::<Record>(l).ok())
                        .filter(|r| r.time >= since),
                );
            }
        }
    }
    // The control plane's copies repeat the proxies' own records: keep one of each.
    out.sort_by(|a, b| (&a.writer, a.seq).cmp(&(&b.writer, b.seq)));
    out.dedup_by(|a, b| a.writer == b.writer && a.seq == b.seq);
    Ok(out)
}
