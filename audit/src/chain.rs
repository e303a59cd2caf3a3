//! The writer's side of the hash chain: numbers each record, links it to the previous one,
//! and says what a checkpoint must cover.

use crate::record::{Event, GENESIS, Record, hash_line};

/// The state of one writer's chain.
#[derive(Debug, Clone)]
pub struct Chain {
    writer: String,
    /// The last record's sequence number (0 before the first).
    seq: u64,
    /// The last record's line hash.
    head: String,
    /// The first record not yet covered by a checkpoint.
    unsigned_from: u64,
}

/// A record ready to be written: its line (without the newline) and what it is.
#[derive(Debug, Clone)]
pub struct Appended {
    pub seq: u64,
    pub line: Vec<u8>,
}

impl Chain {
    /// A new chain for `writer`.
    pub fn new(writer: impl Into<String>) -> Self {
        Self::resume(writer, 0, GENESIS.to_owned())
    }

    /// A chain that continues after record `seq` whose line hashed to `head` (a writer
    /// restarting on its spool).
    pub fn resume(writer: impl Into<String>, seq: u64, head: String) -> Self {
        Self {
            writer: writer.into(),
            seq,
            head,
            unsigned_from: seq + 1,
        }
    }

    /// Numbers and links `event` at `time` (Unix nanoseconds).
    pub fn append(&mut self, time: u64, event: Event) -> Appended {
        let record = Record {
            seq: self.seq + 1,
            prev: std::mem::take(&mut self.head),
            time,
            writer: self.writer.clone(),
            event,
        };
        // Serializing our own types to a Vec cannot fail: no maps with non-string keys, no
        // floats, no custom serializers.
        let line = serde_json::to_vec(&record).unwrap_or_default();
        self.seq = record.seq;
        self.head = hash_line(&line);
        Appended {
            seq: record.seq,
            line,
        }
    }

    /// The range a checkpoint would cover now, and the head it would sign; `None` if every
    /// record is already covered.
    pub fn pending(&self) -> Option<(u64, u64, &str)> {
        (self.unsigned_from <= self.seq).then_some((self.unsigned_from, self.seq, &self.head))
    }

    /// Notes that everything up to the current head is covered by a checkpoint.
    pub fn signed(&mut self) {
        self.unsigned_from = self.seq + 1;
    }

    /// The writer's SPIFFE ID.
    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// The last sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}
