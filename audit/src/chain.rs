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

    /// Numbers and links an event given as its JSON (the exact bytes `Event` serializes to),
    /// producing the line `append` would for that event.
    pub fn append_serialized(&mut self, time: u64, event: &[u8]) -> Appended {
        use std::io::Write as _;
        let seq = self.seq + 1;
        let mut line = Vec::with_capacity(event.len() + self.writer.len() + 128);
        // The layout of `Record`'s serialization: its fields in declared order, `event` last.
        let _ = write!(
            line,
            r#"{{"seq":{seq},"prev":"{}","time":{time},"writer":"#,
            self.head
        );
        let _ = serde_json::to_writer(&mut line, &self.writer);
        line.extend_from_slice(br#","event":"#);
        line.extend_from_slice(event);
        line.push(b'}');
        self.seq = seq;
        self.head = hash_line(&line);
        Appended { seq, line }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serialized_event_makes_the_line_its_event_would() {
        let writer = "spiffe://t.test/ns/shop/sa/\"cart\"";
        let mut owned = Chain::new(writer);
        let mut spliced = Chain::new(writer);
        for (n, (json, event)) in crate::record::tests::borrowed_and_owned()
            .into_iter()
            .enumerate()
        {
            let time = 1_795_000_000_000_000_000 + n as u64;
            let a = owned.append(time, event);
            let b = spliced.append_serialized(time, &json);
            assert_eq!(
                String::from_utf8(b.line).unwrap(),
                String::from_utf8(a.line).unwrap()
            );
            assert_eq!((a.seq, owned.head.as_str()), (b.seq, spliced.head.as_str()));
        }
    }
}
