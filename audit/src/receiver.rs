//! The receiving side of shipping: a copy of one writer's chain, kept as a spool of the same
//! format (so `verify` reads it like any other), appended to idempotently.
//!
//! The copy is only worth keeping if it cannot be forged by the writer's transport or by the
//! writer itself after the fact, so a batch is accepted only if it continues the copy exactly:
//! - a record must be the next one (`seq` one past the last kept) and name the last kept
//!   record's hash as `prev`; one already kept is skipped only if it is byte for byte the
//!   line kept, and anything else is refused;
//! - its event must be of a kind this writer writes (a proxy never writes `operator`);
//! - a checkpoint must sign exactly the last kept record's hash with a good signature by the
//!   writer; one whose signer is deny-listed or expired *now*, on receipt, is not kept (its
//!   records stay in the copy, unsigned, which `verify` reports): a revoked key signs
//!   nothing new into the copy, and shipping after a long outage does not stall.
//!
//! Every line is checked before any is written: a batch with one bad line is refused whole.

use std::collections::HashMap;
use std::path::Path;

use crate::record::{Checkpoint, CheckpointLine, Event, Record, hash_line};
use crate::spool::{Spool, SpoolLimits};

/// One writer's received chain.
#[derive(Debug)]
pub struct Receiver {
    writer: String,
    spool: Spool,
    seq: u64,
    head: String,
    signed_through: u64,
    /// The hashes of the records kept since this receiver opened, to recognise a re-sent line
    /// (bounded: older re-sends are skipped by number alone).
    recent: HashMap<u64, String>,
}

/// Where a received chain stands: its last record, that record's hash, and the last record
/// a kept checkpoint signs. Kept beside the copy (a store shared by several receivers keeps
/// it with the lines), so any receiver can continue the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    pub seq: u64,
    pub head: String,
    pub signed_through: u64,
}

impl Default for Tip {
    fn default() -> Self {
        Self {
            seq: 0,
            head: crate::record::GENESIS.to_owned(),
            signed_through: 0,
        }
    }
}

/// A batch checked against a tip, not yet written: what [`Receiver::commit`] (or another
/// keeper of the chain) writes, in order, and the tip after it.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Records and the checkpoints kept, in the batch's order.
    pub lines: Vec<Planned>,
    /// Checkpoints left out, and why.
    pub dropped: Vec<String>,
    /// The tip once written.
    pub tip: Tip,
}

/// One line of a [`Plan`].
#[derive(Debug, Clone)]
pub enum Planned {
    Record(Box<Accepted>),
    /// A checkpoint's line and the last record it signs.
    Checkpoint {
        last: u64,
        line: Vec<u8>,
    },
}

/// What one batch added.
#[derive(Debug, Clone, Default)]
pub struct Appended {
    /// The records kept.
    pub accepted: Vec<Accepted>,
    /// Checkpoints left out, and why.
    pub dropped: Vec<String>,
}

/// A record accepted into the copy.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub record: Record,
    pub line: Vec<u8>,
}

/// What a receiver asks of the lines it keeps, beyond continuity.
#[expect(
    missing_debug_implementations,
    reason = "two borrowed closures; nothing to show"
)]
pub struct Rules<'a> {
    /// Whether the writer may record this kind of event.
    pub event_allowed: &'a (dyn Fn(&Event) -> bool + Sync),
    /// What to do with a checkpoint, judged now.
    pub checkpoint: &'a (dyn Fn(&Checkpoint) -> Verdict + Sync),
}

/// What becomes of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It verifies: keep it.
    Keep,
    /// Its signer cannot vouch for anything now (revoked, expired): leave it out.
    Drop(String),
    /// It is forged or malformed: refuse the batch.
    Refuse(String),
}

/// The writer a shipped line names (a record's or a checkpoint's), if it is either.
pub fn writer_of(line: &[u8]) -> Option<String> {
    if let Ok(record) = serde_json::from_slice::<Record>(line) {
        return Some(record.writer);
    }
    serde_json::from_slice::<CheckpointLine>(line)
        .ok()
        .map(|c| c.checkpoint.writer)
}

/// Re-sent records remembered by hash, at most.
const RECENT: usize = 65_536;

impl Receiver {
    /// The copy of `writer`'s chain kept in `dir`.
    pub fn open(dir: &Path, writer: &str) -> Result<Self, String> {
        let limits = SpoolLimits {
            segment_bytes: 64 * 1024 * 1024,
            total_bytes: u64::MAX,
        };
        let (mut spool, tail) = Spool::open(dir, limits)?;
        let (seq, head, signed_through) = tail.map_or_else(
            || (0, crate::record::GENESIS.to_owned(), 0),
            |t| (t.seq, t.head, t.signed_through),
        );
        spool.rotate(seq + 1)?;
        Ok(Self {
            writer: writer.to_owned(),
            spool,
            seq,
            head,
            signed_through,
            recent: HashMap::new(),
        })
    }

    /// Appends `lines` (records and checkpoints, in order), skipping what the copy already
    /// has, then fsyncs. A batch with any line that breaks the rules above is refused whole,
    /// with the reason for its first bad line, and nothing of it is written.
    pub fn append(&mut self, lines: &[Vec<u8>], rules: &Rules<'_>) -> Result<Appended, String> {
        let plan = self.plan(lines, rules)?;
        self.commit(plan)
    }

    /// Checks `lines` against this copy without writing anything.
    pub fn plan(&self, lines: &[Vec<u8>], rules: &Rules<'_>) -> Result<Plan, String> {
        plan(&self.writer, &self.tip(), lines, rules, &|seq| {
            self.recent.get(&seq).cloned()
        })
    }

    /// Writes a plan made by [`Receiver::plan`] against this copy's tip, then fsyncs.
    pub fn commit(&mut self, plan: Plan) -> Result<Appended, String> {
        let mut accepted = Vec::new();
        for planned in plan.lines {
            match planned {
                Planned::Record(a) => {
                    self.spool.write(&a.line, Some(a.record.seq))?;
                    if self.recent.len() >= RECENT {
                        self.recent.clear();
                    }
                    self.recent.insert(a.record.seq, hash_line(&a.line));
                    accepted.push(*a);
                }
                Planned::Checkpoint { line, .. } => self.spool.write(&line, None)?,
            }
        }
        self.seq = plan.tip.seq;
        self.head = plan.tip.head;
        self.signed_through = plan.tip.signed_through;
        self.spool.sync()?;
        Ok(Appended {
            accepted,
            dropped: plan.dropped,
        })
    }

    /// Where this copy stands.
    pub fn tip(&self) -> Tip {
        Tip {
            seq: self.seq,
            head: self.head.clone(),
            signed_through: self.signed_through,
        }
    }

    /// The highest record number stored.
    pub fn stored_through(&self) -> u64 {
        self.seq
    }
}

/// Checks `lines` (records and checkpoints, in order) against a copy of `writer`'s chain
/// standing at `tip`, by the rules of this module; `kept` gives the hash of an earlier kept
/// record by number, where known, to tell a faithful re-send from a forgery. The whole
/// batch is checked before anything is planned: one bad line refuses it.
pub fn plan(
    writer: &str,
    tip: &Tip,
    lines: &[Vec<u8>],
    rules: &Rules<'_>,
    kept: &dyn Fn(u64) -> Option<String>,
) -> Result<Plan, String> {
    let mut dropped = Vec::new();
    let (mut seq, mut head, mut signed) = (tip.seq, tip.head.clone(), tip.signed_through);
    let mut planned = Vec::with_capacity(lines.len());
    for (n, line) in lines.iter().enumerate() {
        if let Ok(record) = serde_json::from_slice::<Record>(line) {
            if record.writer != writer {
                return Err(format!(
                    "line {n}: a record of `{}`, not of `{writer}`",
                    record.writer
                ));
            }
            let hash = hash_line(line);
            if record.seq <= seq {
                // A re-send: it must be what is kept.
                let known = if record.seq == seq {
                    Some(head.clone())
                } else {
                    kept(record.seq)
                };
                if known.is_some_and(|k| k != hash) {
                    return Err(format!(
                        "line {n}: record {} differs from the one kept",
                        record.seq
                    ));
                }
                continue;
            }
            if record.seq != seq + 1 {
                return Err(format!(
                    "line {n}: record {} does not follow record {seq}",
                    record.seq
                ));
            }
            if record.prev != head {
                return Err(format!(
                    "line {n}: record {} does not chain to record {seq}",
                    record.seq
                ));
            }
            if !(rules.event_allowed)(&record.event) {
                return Err(format!(
                    "line {n}: record {} is of a kind `{writer}` never writes",
                    record.seq
                ));
            }
            seq = record.seq;
            head = hash;
            planned.push(Planned::Record(Box::new(Accepted {
                record,
                line: line.clone(),
            })));
        } else if let Ok(c) = serde_json::from_slice::<CheckpointLine>(line) {
            let c = c.checkpoint;
            if c.writer != writer {
                return Err(format!("line {n}: a checkpoint of another writer"));
            }
            if c.last <= signed {
                continue;
            }
            if c.last != seq || c.head != head {
                return Err(format!(
                    "line {n}: a checkpoint through record {} that does not sign the records kept",
                    c.last
                ));
            }
            match (rules.checkpoint)(&c) {
                Verdict::Keep => {
                    signed = c.last;
                    planned.push(Planned::Checkpoint {
                        last: c.last,
                        line: line.clone(),
                    });
                }
                Verdict::Drop(why) => {
                    dropped.push(format!("checkpoint through record {}: {why}", c.last));
                }
                Verdict::Refuse(why) => {
                    return Err(format!(
                        "line {n}: checkpoint through record {}: {why}",
                        c.last
                    ));
                }
            }
        } else {
            return Err(format!("line {n}: neither a record nor a checkpoint"));
        }
    }
    Ok(Plan {
        lines: planned,
        dropped,
        tip: Tip {
            seq,
            head,
            signed_through: signed,
        },
    })
}
