//! The durable local spool: segment files `segment-<first seq, 20 digits>.jsonl` in one
//! directory, one line per record or checkpoint, bounded in size: when the whole spool
//! outgrows its bound the oldest segments are deleted and the writer records a gap naming
//! exactly the sequence numbers lost.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};

use crate::record::{CheckpointLine, Record, hash_line};

/// One segment file.
#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    first: u64,
    last: u64,
    bytes: u64,
}

/// Size bounds.
#[derive(Debug, Clone, Copy)]
pub struct SpoolLimits {
    /// Start a new segment past this size.
    pub segment_bytes: u64,
    /// Delete the oldest segments past this total.
    pub total_bytes: u64,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        Self {
            segment_bytes: 8 * 1024 * 1024,
            total_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Where a spool's chain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The last record's number.
    pub seq: u64,
    /// Its line hash.
    pub head: String,
    /// The last record covered by a checkpoint in the spool (0: none).
    pub signed_through: u64,
}

/// An open spool.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    limits: SpoolLimits,
    segments: VecDeque<Segment>,
    out: Option<BufWriter<File>>,
    /// The first sequence number no longer on disk, once any was evicted: every gap record
    /// declares the whole lost prefix, so it stays declared after older gap records are
    /// evicted in turn.
    lost_from: Option<u64>,
}

/// Where a segment file (by name) sorts among the others: by the number of its first
/// record, then by the `.n` of a later segment that starts at the same number (a writer
/// rotating again before writing a record: a restart, a new signer). Names sort wrongly as
/// text (`X.1.jsonl` before `X.jsonl`, `X.10` before `X.2`), so readers compare these.
/// `None` for a name that is not a segment's.
pub fn segment_order(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_prefix("segment-")?.strip_suffix(".jsonl")?;
    let (seq, n) = match stem.split_once('.') {
        Some((seq, n)) => (seq, n.parse().ok()?),
        None => (stem, 0),
    };
    Some((seq.parse().ok()?, n))
}

fn order_of(path: &Path) -> Option<(u64, u64)> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(segment_order)
}

/// The segment files of `dir`, oldest first.
pub fn segment_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<((u64, u64), PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter_map(|p| order_of(&p).map(|order| (order, p)))
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

fn first_seq(path: &Path) -> u64 {
    order_of(path).map_or(0, |(seq, _)| seq)
}

impl Spool {
    /// Opens (creating) the spool in `dir`; returns it and where its chain ended.
    pub fn open(dir: &Path, limits: SpoolLimits) -> Result<(Self, Option<Tail>), String> {
        let shown = dir.display();
        std::fs::create_dir_all(dir).map_err(|e| format!("audit spool `{shown}`: {e}"))?;
        let mut segments = VecDeque::new();
        let mut tail = None;
        for path in segment_files(dir).map_err(|e| format!("audit spool `{shown}`: {e}"))? {
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let mut last = 0;
            let file = File::open(&path).map_err(|e| format!("`{}`: {e}", path.display()))?;
            for line in BufReader::new(file).split(b'\n').map_while(Result::ok) {
                if let Ok(record) = serde_json::from_slice::<Record>(&line) {
                    last = record.seq;
                    let signed_through = tail.as_ref().map_or(0, |t: &Tail| t.signed_through);
                    tail = Some(Tail {
                        seq: record.seq,
                        head: hash_line(&line),
                        signed_through,
                    });
                } else if let Ok(c) = serde_json::from_slice::<CheckpointLine>(&line)
                    && let Some(t) = tail.as_mut()
                {
                    t.signed_through = t.signed_through.max(c.checkpoint.last);
                }
            }
            segments.push_back(Segment {
                first: first_seq(&path),
                last,
                path,
                bytes,
            });
        }
        // Records before the oldest segment can only have been evicted.
        let lost_from = segments.front().filter(|s| s.first > 1).map(|_| 1);
        Ok((
            Self {
                dir: dir.to_path_buf(),
                limits,
                segments,
                out: None,
                lost_from,
            },
            tail,
        ))
    }

    /// Starts a new segment whose first record will be `next_seq`. A writer starts one on
    /// every start and every new signer, so a torn line left by a crash is never appended to.
    pub fn rotate(&mut self, next_seq: u64) -> Result<(), String> {
        self.sync()?;
        let mut path = self.dir.join(format!("segment-{next_seq:020}.jsonl"));
        let mut n = 1;
        while path.exists() {
            // The same first seq again (a restart before any record): keep names unique and
            // in order.
            path = self.dir.join(format!("segment-{next_seq:020}.{n}.jsonl"));
            n += 1;
        }
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("`{}`: {e}", path.display()))?;
        self.segments.push_back(Segment {
            path,
            first: next_seq,
            last: next_seq.saturating_sub(1),
            bytes: 0,
        });
        self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        Ok(())
    }

    /// Appends one line (a record with `seq`, or a checkpoint with `None`).
    pub fn write(&mut self, line: &[u8], seq: Option<u64>) -> Result<(), String> {
        let out = self.out.as_mut().ok_or("the spool has no open segment")?;
        out.write_all(line)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| format!("audit spool: {e}"))?;
        if let Some(segment) = self.segments.back_mut() {
            segment.bytes += line.len() as u64 + 1;
            if let Some(seq) = seq {
                segment.last = seq;
            }
        }
        Ok(())
    }

    /// Flushes and fsyncs the open segment.
    pub fn sync(&mut self) -> Result<(), String> {
        if let Some(out) = self.out.as_mut() {
            out.flush().map_err(|e| format!("audit spool: {e}"))?;
            out.get_ref()
                .sync_data()
                .map_err(|e| format!("audit spool: {e}"))?;
        }
        Ok(())
    }

    /// Whether the open segment has reached its size bound.
    pub fn segment_full(&self) -> bool {
        self.segments
            .back()
            .is_some_and(|s| s.bytes >= self.limits.segment_bytes)
    }

    /// Deletes the oldest closed segments while the spool is over its bound; returns the
    /// range of sequence numbers no longer on disk (from the first ever lost), if this call
    /// lost any.
    pub fn evict(&mut self) -> Option<(u64, u64)> {
        let mut lost: Option<(u64, u64)> = None;
        while self.segments.iter().map(|s| s.bytes).sum::<u64>() > self.limits.total_bytes
            && self.segments.len() > 1
        {
            let Some(oldest) = self.segments.pop_front() else {
                break;
            };
            if std::fs::remove_file(&oldest.path).is_err() {
                break;
            }
            if oldest.last >= oldest.first {
                let from = *self.lost_from.get_or_insert(oldest.first);
                lost = Some((from, oldest.last));
            }
        }
        lost
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_starting_at_one_number_keep_the_order_they_were_made_in() {
        assert_eq!(
            segment_order("segment-00000000000000000137.jsonl"),
            Some((137, 0))
        );
        assert_eq!(
            segment_order("segment-00000000000000000137.2.jsonl"),
            Some((137, 2))
        );
        assert_eq!(segment_order("segment-00000000000000000137.x.jsonl"), None);
        assert_eq!(segment_order("other.jsonl"), None);

        let dir = tempfile::tempdir().unwrap();
        let limits = SpoolLimits {
            segment_bytes: 1 << 20,
            total_bytes: 1 << 30,
        };
        let (mut spool, _) = Spool::open(dir.path(), limits).unwrap();
        // A writer rotating twelve times before its record 137 (restarts, new signers).
        for _ in 0..12 {
            spool.rotate(137).unwrap();
        }
        spool.rotate(138).unwrap();
        let names: Vec<String> = segment_files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let expected: Vec<String> =
            std::iter::once("segment-00000000000000000137.jsonl".to_owned())
                .chain((1..12).map(|n| format!("segment-00000000000000000137.{n}.jsonl")))
                .chain(std::iter::once(
                    "segment-00000000000000000138.jsonl".to_owned(),
                ))
                .collect();
        assert_eq!(names, expected);
        assert_eq!(first_seq(&dir.path().join(&expected[11])), 137);
    }
}
