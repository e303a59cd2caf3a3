//! `meshctl audit verify [--data-dir DIR | FILE…]`: every spool under a data directory (a
//! demo's, a control plane's, a proxy's state dir), or the given segment files as one spool.
//! Each is checked against a trust bundle: `--bundle`, else the nearest `bundle.pem` above
//! the spool, else the first one under the data directory.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use clap::Args;
use serde_json::json;
use signet_audit::spool::segment_files;
use signet_audit::{Kind, Report, verify_files};
use signet_spiffe::{SpiffeId, TrustBundle};

use crate::Outcome;
use crate::cp::{Output, print_structured};

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Verify every spool found under this directory.
    #[arg(long, value_name = "DIR", conflicts_with = "files")]
    data_dir: Option<PathBuf>,
    /// Segment files of one spool.
    #[arg(value_name = "FILE", required_unless_present = "data_dir")]
    files: Vec<PathBuf>,
    /// The trust bundle (PEM) the checkpoints must chain to.
    #[arg(long, value_name = "FILE")]
    bundle: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: Output,
}

/// Directories under `root` holding segment files, depth first, sorted.
fn spools(root: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    if segment_files(root).is_ok_and(|f| !f.is_empty()) {
        out.push(root.to_path_buf());
    }
    for dir in dirs {
        spools(&dir, depth - 1, out);
    }
}

fn find_bundle(spool: &Path, root: Option<&Path>) -> Option<PathBuf> {
    let mut dir = Some(spool);
    while let Some(d) = dir {
        let candidate = d.join("bundle.pem");
        if candidate.is_file() {
            return Some(candidate);
        }
        dir = d.parent();
    }
    let root = root?;
    let mut found = Vec::new();
    find_files(root, "bundle.pem", 5, &mut found);
    found.into_iter().next()
}

fn find_files(dir: &Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for p in &paths {
        if p.file_name().is_some_and(|n| n == name) && p.is_file() {
            out.push(p.clone());
        }
    }
    for p in paths.iter().filter(|p| p.is_dir()) {
        find_files(p, name, depth - 1, out);
    }
}

/// The writer named by the first record of `files` (its trust domain is the bundle's);
/// `None` for a spool with nothing in it yet.
fn writer_of(files: &[PathBuf]) -> anyhow::Result<Option<SpiffeId>> {
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading `{}`", file.display()))?;
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                let writer = v
                    .get("writer")
                    .or_else(|| v.get("checkpoint").and_then(|c| c.get("writer")))
                    .and_then(|w| w.as_str());
                if let Some(w) = writer {
                    // A per-instance writer (`<id>#<instance>`) is its SPIFFE ID's.
                    return signet_audit::checkpoint::writer_identity(w)
                        .parse()
                        .map(Some)
                        .map_err(|e| anyhow!("writer `{w}`: {e}"));
                }
            }
        }
    }
    Ok(None)
}

fn check(files: &[PathBuf], bundle_path: &Path) -> anyhow::Result<Report> {
    let Some(writer) = writer_of(files)? else {
        return Ok(Report::default());
    };
    let pem = std::fs::read_to_string(bundle_path)
        .with_context(|| format!("reading bundle `{}`", bundle_path.display()))?;
    let bundle = TrustBundle::from_pem(writer.trust_domain(), &pem)
        .map_err(|e| anyhow!("bundle `{}`: {e}", bundle_path.display()))?;
    Ok(verify_files(files, &bundle))
}

/// Verifies every spool under `root` with the bundle found for each; `(all ok, per spool)`.
pub(crate) fn verify_tree(root: &Path) -> anyhow::Result<(bool, Vec<(String, Report)>)> {
    let mut found = Vec::new();
    spools(root, 8, &mut found);
    let mut ok = true;
    let mut reports = Vec::new();
    for spool in found {
        let bundle = find_bundle(&spool, Some(root))
            .ok_or_else(|| anyhow!("no bundle.pem for `{}`", spool.display()))?;
        let report = check(&segment_files(&spool)?, &bundle)?;
        ok &= report.ok();
        reports.push((spool.display().to_string(), report));
    }
    Ok((ok, reports))
}

pub(crate) fn run(args: &VerifyArgs) -> anyhow::Result<Outcome> {
    let mut groups: Vec<(String, Vec<PathBuf>, PathBuf)> = Vec::new();
    match &args.data_dir {
        Some(root) => {
            anyhow::ensure!(root.is_dir(), "`{}` is not a directory", root.display());
            let mut found = Vec::new();
            spools(root, 8, &mut found);
            anyhow::ensure!(
                !found.is_empty(),
                "no audit spool under `{}`",
                root.display()
            );
            for spool in found {
                let bundle = match &args.bundle {
                    Some(b) => b.clone(),
                    None => find_bundle(&spool, Some(root)).ok_or_else(|| {
                        anyhow!("no bundle.pem for `{}`: pass --bundle", spool.display())
                    })?,
                };
                let files = segment_files(&spool)?;
                groups.push((spool.display().to_string(), files, bundle));
            }
        }
        None => {
            let mut files = args.files.clone();
            files.sort();
            for f in &files {
                anyhow::ensure!(f.is_file(), "`{}` is not a file", f.display());
            }
            let first = files.first().ok_or_else(|| anyhow!("no files given"))?;
            let bundle = match &args.bundle {
                Some(b) => b.clone(),
                None => first
                    .parent()
                    .and_then(|d| find_bundle(d, None))
                    .ok_or_else(|| anyhow!("no bundle.pem beside the files: pass --bundle"))?,
            };
            groups.push((
                first
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                files,
                bundle,
            ));
        }
    }
    let mut ok = true;
    let mut out = Vec::new();
    for (name, files, bundle) in &groups {
        let report = check(files, bundle)?;
        ok &= report.ok();
        out.push((name, report));
    }
    let value = json!({
        "ok": ok,
        "spools": out.iter().map(|(name, r)| json!({
            "spool": name,
            "ok": r.ok(),
            "chains": r.chains.iter().map(|(w, c)| json!({
                "writer": w, "records": c.records, "first": c.first, "last": c.last,
                "checkpoints": c.checkpoints, "signed_through": c.signed_through,
            })).collect::<Vec<_>>(),
            "findings": r.findings.iter().map(|f| json!({
                "kind": format!("{:?}", f.kind), "file": f.file, "line": f.line,
                "seq": f.seq, "detail": f.detail, "failure": f.kind.is_failure(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    if !print_structured(args.output, &value)? {
        for (name, report) in &out {
            for (writer, c) in &report.chains {
                let mark = if report.ok() { "OK  " } else { "FAIL" };
                println!(
                    "{mark} {name}: {writer}: records {}..={} ({}), {} checkpoints, signed through {}",
                    c.first, c.last, c.records, c.checkpoints, c.signed_through
                );
            }
            for f in &report.findings {
                let lead = if f.kind == Kind::Gap { "  note" } else { "  " };
                println!("{lead} {f}");
            }
        }
    }
    if ok {
        Ok(Outcome::Success)
    } else {
        Err(anyhow!("audit verification failed"))
    }
}
