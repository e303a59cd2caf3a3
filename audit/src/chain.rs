//! The writer's side of the hash chain: numbers each record, links it to the previous one,
//! and says what a checkpoint must cover.

use crate::record::{Event, GENESIS, RecordRef, hash_line_into};

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
    /// The last record's line, its buffer reused for the next.
    line: Vec<u8>,
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
            line: Vec::with_capacity(1024),
        }
    }

    /// Numbers and links `event` at `time` (Unix nanoseconds): its sequence number and its
    /// line (without the newline), valid until the next append.
    pub fn append(&mut self, time: u64, event: &Event) -> (u64, &[u8]) {
        let seq = self.seq + 1;
        let record = RecordRef {
            seq,
            prev: &self.head,
            time,
            writer: &self.writer,
            event,
        };
        self.line.clear();
        // Serializing our own types into a Vec cannot fail: no maps with non-string keys,
        // no floats, no custom serializers.
        let _ = serde_json::to_writer(&mut self.line, &record);
        self.seq = seq;
        hash_line_into(&self.line, &mut self.head);
        (seq, &self.line)
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
