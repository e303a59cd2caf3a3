//! The receiving side of shipping: a copy of one writer's chain, kept as a spool of the same
//! format (so `verify` reads it like any other), appended to idempotently.

use std::path::Path;

use crate::record::{CheckpointLine, Record};
use crate::spool::{Spool, SpoolLimits};

/// One writer's received chain.
#[derive(Debug)]
pub struct Receiver {
    writer: String,
    spool: Spool,
    seq: u64,
    signed_through: u64,
}

/// A record accepted into the copy.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub record: Record,
    pub line: Vec<u8>,
}

impl Receiver {
    /// The copy of `writer`'s chain kept in `dir`.
    pub fn open(dir: &Path, writer: &str) -> Result<Self, String> {
        let limits = SpoolLimits {
            segment_bytes: 64 * 1024 * 1024,
            total_bytes: u64::MAX,
        };
        let (mut spool, tail) = Spool::open(dir, limits)?;
        let (seq, signed_through) = tail.map_or((0, 0), |t| (t.seq, t.signed_through));
        spool.rotate(seq + 1)?;
        Ok(Self {
            writer: writer.to_owned(),
            spool,
            seq,
            signed_through,
        })
    }

    /// Appends `lines` (records and checkpoints, in order), skipping what the copy already
    /// has, then fsyncs. Every line is checked before any is written: a batch with a line
    /// that is not the writer's own is refused whole.
    pub fn append(&mut self, lines: &[Vec<u8>]) -> Result<Vec<Accepted>, String> {
        enum Line {
            Record(Box<Record>),
            Checkpoint(u64),
        }
        let mut parsed = Vec::with_capacity(lines.len());
        for (n, line) in lines.iter().enumerate() {
            if let Ok(record) = serde_json::from_slice::<Record>(line) {
                if record.writer != self.writer {
                    return Err(format!(
                        "line {n}: a record of `{}`, not of `{}`",
                        record.writer, self.writer
                    ));
                }
                parsed.push(Line::Record(Box::new(record)));
            } else if let Ok(c) = serde_json::from_slice::<CheckpointLine>(line) {
                if c.checkpoint.writer != self.writer {
                    return Err(format!("line {n}: a checkpoint of another writer"));
                }
                parsed.push(Line::Checkpoint(c.checkpoint.last));
            } else {
                return Err(format!("line {n}: neither a record nor a checkpoint"));
            }
        }
        let mut accepted = Vec::new();
        for (line, parsed) in lines.iter().zip(parsed) {
            match parsed {
                Line::Record(record) if record.seq > self.seq => {
                    self.spool.write(line, Some(record.seq))?;
                    self.seq = record.seq;
                    accepted.push(Accepted {
                        record: *record,
                        line: line.clone(),
                    });
                }
                Line::Checkpoint(last) if last > self.signed_through && last <= self.seq => {
                    self.spool.write(line, None)?;
                    self.signed_through = last;
                }
                _ => {}
            }
        }
        self.spool.sync()?;
        Ok(accepted)
    }

    /// The highest record number stored.
    pub fn stored_through(&self) -> u64 {
        self.seq
    }
}
