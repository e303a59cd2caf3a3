//! The audit writer: callers hand it events through a bounded queue and never wait on I/O;
//! one thread of its own numbers, links and spools them, and signs a checkpoint every second
//! or every `checkpoint_records` records (fsyncing the segment first). A thread rather than
//! an async task because file writes and fsync block: on a proxy's single-threaded runtime
//! they would stall every request behind them. Events that do not fit in the queue are
//! counted and reported in the chain by a gap record.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::Instant;

use tokio::sync::{oneshot, watch};

use crate::chain::Chain;
use crate::checkpoint::{Signer, now_ns, sign};
use crate::record::{CheckpointLine, Event, Gap};
use crate::spool::{Spool, SpoolLimits};

/// How the writer runs.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The spool directory.
    pub dir: PathBuf,
    /// Spool size bounds.
    pub limits: SpoolLimits,
    /// Sign a checkpoint at least this often (when there is something to sign).
    pub checkpoint_every: Duration,
    /// … and after this many records.
    pub checkpoint_records: u64,
    /// Events waiting for the writer before new ones are dropped (and counted).
    pub queue: usize,
    /// How long the writer sleeps between drains of the queue while records arrive. Each
    /// wake-up is a context switch on a core the proxy needs; 10 ms keeps them near a
    /// hundred a second under load, and the queue holds far more than 10 ms of records.
    pub poll: Duration,
    /// The longest it sleeps once the queue has stayed empty: the sleep doubles from `poll`
    /// up to this, so an idle writer wakes a few times a second, not hundreds.
    pub idle_poll: Duration,
}

impl WriterConfig {
    /// Defaults for a spool in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            limits: SpoolLimits::default(),
            checkpoint_every: Duration::from_secs(1),
            checkpoint_records: 1024,
            queue: 16 * 1024,
            poll: Duration::from_millis(10),
            idle_poll: Duration::from_millis(64),
        }
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "events are nearly every message; boxing them would allocate once per record"
)]
enum Message {
    Event(u64, Event),
    Close(oneshot::Sender<()>),
}

/// Counters the writer keeps.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Records written.
    pub records: AtomicU64,
    /// Checkpoints signed.
    pub checkpoints: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Records lost to spool eviction.
    pub evicted: AtomicU64,
    /// Errors writing or signing.
    pub errors: AtomicU64,
}

/// The handle callers record through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: SyncSender<Message>,
    pending_drops: Arc<AtomicU64>,
    stats: Arc<WriterStats>,
}

impl AuditLog {
    /// Starts a writer on `config.dir`, signing with whatever `signer` holds (a new signer
    /// starts a new segment, after a last checkpoint by the old one).
    pub fn start(
        config: WriterConfig,
        signer: watch::Receiver<Arc<dyn Signer>>,
    ) -> Result<(Self, std::thread::JoinHandle<()>), String> {
        let (mut spool, tail) = Spool::open(&config.dir, config.limits)?;
        let writer = signer.borrow().id();
        let chain = match tail {
            Some(tail) => Chain::resume(writer, tail.seq, tail.head),
            None => Chain::new(writer),
        };
        spool.rotate(chain.seq() + 1)?;
        let (tx, rx) = sync_channel(config.queue.max(1));
        let log = Self {
            tx,
            pending_drops: Arc::new(AtomicU64::new(0)),
            stats: Arc::new(WriterStats::default()),
        };
        let task = Task {
            config,
            spool,
            chain,
            signer,
            pending_drops: Arc::clone(&log.pending_drops),
            stats: Arc::clone(&log.stats),
        };
        let thread = std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || task.run(&rx))
            .map_err(|e| format!("starting the audit writer: {e}"))?;
        Ok((log, thread))
    }

    /// Records `event` now; never waits. If the queue is full the event is counted as
    /// dropped and a gap record says so later.
    pub fn record(&self, event: Event) {
        if self.tx.try_send(Message::Event(now_ns(), event)).is_err() {
            self.pending_drops.fetch_add(1, Ordering::Relaxed);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes everything queued, signs a last checkpoint and fsyncs.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        let mut message = Message::Close(done);
        loop {
            match self.tx.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) => {
                    message = m;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        let _ = wait.await;
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

struct Task {
    config: WriterConfig,
    spool: Spool,
    chain: Chain,
    signer: watch::Receiver<Arc<dyn Signer>>,
    pending_drops: Arc<AtomicU64>,
    stats: Arc<WriterStats>,
}

impl Task {
    fn run(mut self, rx: &Receiver<Message>) {
        let mut next_tick = Instant::now() + self.config.checkpoint_every;
        let mut sleep = self.config.poll;
        loop {
            if self.signer.has_changed().unwrap_or(false) {
                self.signer.borrow_and_update();
                self.new_signer();
            }
            // Drain, then sleep: the writer polls instead of blocking on the queue, so a
            // caller's `try_send` never has to wake it (a futex wake and a context switch
            // per record cost the request path more than everything else the audit does).
            let mut drained = false;
            let disconnected = loop {
                match rx.try_recv() {
                    Ok(message) => {
                        drained = true;
                        self.handle(message);
                    }
                    Err(TryRecvError::Empty) => break false,
                    Err(TryRecvError::Disconnected) => break true,
                }
            };
            if disconnected {
                self.checkpoint();
                return;
            }
            if Instant::now() >= next_tick {
                self.checkpoint();
                next_tick = Instant::now() + self.config.checkpoint_every;
            }
            // Back off while nothing arrives; the first record after a quiet spell waits at
            // most `idle_poll` to be written (a queue of 16,384 holds that long at any rate a
            // proxy reaches).
            sleep = if drained {
                self.config.poll
            } else {
                (sleep * 2).min(self.config.idle_poll.max(self.config.poll))
            };
            std::thread::sleep(sleep);
        }
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Event(time, event) => self.append(time, event),
            Message::Close(done) => {
                self.checkpoint();
                let _ = done.send(());
            }
        }
    }

    /// Writes a gap record for the events dropped since the last one, if any.
    fn report_drops(&mut self, time: u64) {
        let dropped = self.pending_drops.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            self.write_event(
                time,
                Event::Gap(Gap {
                    first: 0,
                    last: 0,
                    count: dropped,
                    reason: "queue-full".to_owned(),
                }),
            );
        }
    }

    fn append(&mut self, time: u64, event: Event) {
        self.report_drops(time);
        self.write_event(time, event);
        if self
            .chain
            .pending()
            .is_some_and(|(first, last, _)| last + 1 - first >= self.config.checkpoint_records)
        {
            self.checkpoint();
        }
        if self.spool.segment_full() {
            self.checkpoint();
            if let Err(e) = self.spool.rotate(self.chain.seq() + 1) {
                self.error(&e);
            }
            if let Some((first, last)) = self.spool.evict() {
                self.stats
                    .evicted
                    .fetch_add(last + 1 - first, Ordering::Relaxed);
                self.write_event(
                    crate::checkpoint::now_ns(),
                    Event::Gap(Gap {
                        first,
                        last,
                        count: last + 1 - first,
                        reason: "spool-full".to_owned(),
                    }),
                );
            }
        }
    }

    fn write_event(&mut self, time: u64, event: Event) {
        let (seq, line) = self.chain.append(time, &event);
        match self.spool.write(line, Some(seq)) {
            Ok(()) => {
                self.stats.records.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.error(&e),
        }
    }

    /// Signs what is not yet signed, after making it durable.
    fn checkpoint(&mut self) {
        self.report_drops(now_ns());
        let Some((first, last, head)) = self.chain.pending() else {
            return;
        };
        let head = head.to_owned();
        if let Err(e) = self.spool.sync() {
            self.error(&e);
            return;
        }
        let signer = Arc::clone(&self.signer.borrow());
        let line = sign(signer.as_ref(), first, last, &head, now_ns()).and_then(|checkpoint| {
            serde_json::to_vec(&CheckpointLine { checkpoint }).map_err(|e| e.to_string())
        });
        let written = line
            .and_then(|line| self.spool.write(&line, None))
            .and_then(|()| self.spool.sync());
        match written {
            Ok(()) => {
                self.chain.signed();
                self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.error(&e),
        }
    }

    /// A rotated SVID starts a new segment. The records still unsigned are signed first (by
    /// the new key: the same identity), and the chain continues across the segments, so
    /// they stay linked.
    fn new_signer(&mut self) {
        self.checkpoint();
        if let Err(e) = self.spool.rotate(self.chain.seq() + 1) {
            self.error(&e);
        }
    }

    fn error(&self, e: &str) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = e, "audit writer");
    }
}
