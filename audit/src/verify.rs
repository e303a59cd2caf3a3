//! Verifying spools: every chain link, every checkpoint signature against the trust bundle,
//! and exactly where something is missing, altered, reordered, duplicated or unsigned.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;

use signet_spiffe::TrustBundle;

use crate::checkpoint;
use crate::record::{CheckpointLine, Event, GENESIS, Record, hash_line};

/// What kind of finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A line that is neither a record nor a checkpoint (a torn or edited line).
    Malformed,
    /// Records absent with no gap record declaring them.
    Missing,
    /// A record whose content no longer matches what the chain or a checkpoint says.
    Altered,
    /// A record out of order.
    Reordered,
    /// A sequence number that appears twice (an inserted or replayed record).
    Duplicate,
    /// A checkpoint that does not verify.
    BadCheckpoint,
    /// Records after the last valid checkpoint.
    Unsigned,
    /// Records the writer declared lost (not an integrity failure).
    Gap,
}

impl Kind {
    /// Whether this finding is an integrity failure.
    pub fn is_failure(self) -> bool {
        self != Kind::Gap
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Malformed => "MALFORMED",
            Kind::Missing => "MISSING",
            Kind::Altered => "ALTERED",
            Kind::Reordered => "REORDERED",
            Kind::Duplicate => "DUPLICATE",
            Kind::BadCheckpoint => "BAD CHECKPOINT",
            Kind::Unsigned => "UNSIGNED",
            Kind::Gap => "GAP",
        }
    }
}

/// One finding, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The record concerned, when there is one.
    pub seq: Option<u64>,
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}:{}", self.kind.label(), self.file, self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " record {seq}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// One writer's chain, summarized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainSummary {
    pub records: u64,
    pub checkpoints: u64,
    pub first: u64,
    pub last: u64,
    /// The last record covered by a valid checkpoint.
    pub signed_through: u64,
}

/// The outcome.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// By writer SPIFFE ID.
    pub chains: BTreeMap<String, ChainSummary>,
    /// In file order, then by kind.
    pub findings: Vec<Finding>,
}

impl Report {
    /// No integrity failure (declared gaps allowed).
    pub fn ok(&self) -> bool {
        !self.findings.iter().any(|f| f.kind.is_failure())
    }
}

/// A record as seen: its line hash, the link it carries, and where it is.
struct Seen {
    hash: String,
    prev: String,
    file: String,
    line: usize,
}

#[derive(Default)]
struct WriterState {
    summary: ChainSummary,
    /// seq → what was seen of it.
    hashes: HashMap<u64, Seen>,
    highest: u64,
    /// Gaps between records as first seen: (first, last, file, line).
    holes: Vec<(u64, u64, String, usize)>,
    declared: Vec<(u64, u64)>,
    last_location: (String, usize),
}

/// Verifies the lines of `files` (one spool's segments, oldest first) against `bundle`.
pub fn verify_files(files: &[PathBuf], bundle: &TrustBundle) -> Report {
    let mut report = Report::default();
    let mut writers: BTreeMap<String, WriterState> = BTreeMap::new();
    for path in files {
        let file = path.display().to_string();
        let reader = match std::fs::File::open(path) {
            Ok(f) => BufReader::new(f),
            Err(e) => {
                report.findings.push(Finding {
                    kind: Kind::Malformed,
                    file,
                    line: 0,
                    seq: None,
                    detail: e.to_string(),
                });
                continue;
            }
        };
        for (n, line) in reader.split(b'\n').enumerate() {
            let number = n + 1;
            let Ok(line) = line else {
                break;
            };
            if line.is_empty() {
                continue;
            }
            let at = |kind, seq, detail: String| Finding {
                kind,
                file: file.clone(),
                line: number,
                seq,
                detail,
            };
            if let Ok(record) = serde_json::from_slice::<Record>(&line) {
                let state = writers.entry(record.writer.clone()).or_default();
                check_record(
                    state,
                    &record,
                    &line,
                    &file,
                    number,
                    &mut report.findings,
                    &at,
                );
            } else if let Ok(CheckpointLine { checkpoint }) =
                serde_json::from_slice::<CheckpointLine>(&line)
            {
                let state = writers.entry(checkpoint.writer.clone()).or_default();
                if let Err(e) = checkpoint::verify(&checkpoint, bundle) {
                    report.findings.push(at(
                        Kind::BadCheckpoint,
                        Some(checkpoint.last),
                        format!(
                            "checkpoint over {}..={}: {e}",
                            checkpoint.first, checkpoint.last
                        ),
                    ));
                    continue;
                }
                match state.hashes.get(&checkpoint.last) {
                    Some(seen) if seen.hash == checkpoint.head => {
                        state.summary.checkpoints += 1;
                        state.summary.signed_through =
                            state.summary.signed_through.max(checkpoint.last);
                    }
                    Some(seen) => report.findings.push(Finding {
                        kind: Kind::Altered,
                        file: seen.file.clone(),
                        line: seen.line,
                        seq: Some(checkpoint.last),
                        detail: format!(
                            "does not match the head signed by the checkpoint at {file}:{number}"
                        ),
                    }),
                    None => report.findings.push(at(
                        Kind::Missing,
                        Some(checkpoint.last),
                        format!(
                            "the checkpoint signs record {} but it is not in the log",
                            checkpoint.last
                        ),
                    )),
                }
            } else {
                report.findings.push(at(
                    Kind::Malformed,
                    None,
                    "neither a record nor a checkpoint (torn, truncated or edited)".to_owned(),
                ));
            }
        }
    }
    for (writer, state) in writers {
        finish(&writer, &state, &mut report.findings);
        report.chains.insert(writer, state.summary);
    }
    // One finding per record and kind: an altered record is often caught twice (by its
    // successor's link and by a checkpoint's head).
    let mut seen = BTreeSet::new();
    report
        .findings
        .retain(|f| f.seq.is_none() || seen.insert((f.kind, f.seq, f.file.clone())));
    report
}

fn check_record(
    state: &mut WriterState,
    record: &Record,
    line: &[u8],
    file: &str,
    number: usize,
    findings: &mut Vec<Finding>,
    at: &dyn Fn(Kind, Option<u64>, String) -> Finding,
) {
    let seq = record.seq;
    if state.hashes.contains_key(&seq) {
        findings.push(at(
            Kind::Duplicate,
            Some(seq),
            format!("record {seq} appears more than once (inserted or replayed)"),
        ));
        return;
    }
    if seq < state.highest {
        findings.push(at(
            Kind::Reordered,
            Some(seq),
            format!("appears after record {}", state.highest),
        ));
    } else if seq > state.highest + 1 && (state.highest > 0 || seq > 1) {
        state
            .holes
            .push((state.highest + 1, seq - 1, file.to_owned(), number));
    }
    // The link: checked against the record it names, wherever that was found.
    let expected_prev = if seq == 1 {
        Some(GENESIS)
    } else {
        state.hashes.get(&(seq - 1)).map(|s| s.hash.as_str())
    };
    if let Some(expected) = expected_prev
        && expected != record.prev
    {
        let (f, l) = state
            .hashes
            .get(&(seq - 1))
            .map_or((file.to_owned(), number), |s| (s.file.clone(), s.line));
        findings.push(Finding {
            kind: Kind::Altered,
            file: f,
            line: l,
            seq: Some(seq - 1),
            detail: format!("record {seq} links to a different record {}", seq - 1),
        });
    }
    let hash = hash_line(line);
    // A record whose successor was seen first (reordered): check that link now.
    if let Some(next) = state.hashes.get(&(seq + 1))
        && next.prev != hash
    {
        findings.push(at(
            Kind::Altered,
            Some(seq),
            format!("record {} links to a different record {seq}", seq + 1),
        ));
    }
    if let Event::Gap(gap) = &record.event {
        if gap.first > 0 {
            state.declared.push((gap.first, gap.last));
        }
        findings.push(at(
            Kind::Gap,
            Some(seq),
            if gap.first > 0 {
                format!(
                    "{} records ({}..={}) lost: {}",
                    gap.count, gap.first, gap.last, gap.reason
                )
            } else {
                format!(
                    "{} events dropped before being recorded: {}",
                    gap.count, gap.reason
                )
            },
        ));
    }
    state.hashes.insert(
        seq,
        Seen {
            hash,
            prev: record.prev.clone(),
            file: file.to_owned(),
            line: number,
        },
    );
    state.highest = state.highest.max(seq);
    state.summary.records += 1;
    if state.summary.first == 0 || seq < state.summary.first {
        state.summary.first = seq;
    }
    state.summary.last = state.highest;
    state.last_location = (file.to_owned(), number);
}

fn finish(writer: &str, state: &WriterState, findings: &mut Vec<Finding>) {
    for (first, last, file, line) in &state.holes {
        let absent: Vec<u64> = (*first..=*last)
            .filter(|s| !state.hashes.contains_key(s))
            .collect();
        if absent.is_empty() {
            continue;
        }
        let declared = absent
            .iter()
            .all(|s| state.declared.iter().any(|(a, b)| a <= s && s <= b));
        if declared {
            continue;
        }
        let ranges = ranges(&absent);
        findings.push(Finding {
            kind: Kind::Missing,
            file: file.clone(),
            line: *line,
            seq: absent.first().copied(),
            detail: format!(
                "records {ranges} of {writer} are missing and no gap record declares them"
            ),
        });
    }
    if state.summary.last > state.summary.signed_through && state.summary.records > 0 {
        let first = (state.summary.signed_through + 1).max(state.summary.first);
        let (file, line) = &state.last_location;
        findings.push(Finding {
            kind: Kind::Unsigned,
            file: file.clone(),
            line: *line,
            seq: Some(first),
            detail: format!(
                "records {first}..={} are covered by no valid checkpoint",
                state.summary.last
            ),
        });
    }
}

fn ranges(seqs: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut set: BTreeSet<u64> = seqs.iter().copied().collect();
    while let Some(&start) = set.iter().next() {
        let mut end = start;
        while set.remove(&end) {
            end += 1;
        }
        out.push(if end - 1 == start {
            start.to_string()
        } else {
            format!("{start}..={}", end - 1)
        });
    }
    out.join(", ")
}
