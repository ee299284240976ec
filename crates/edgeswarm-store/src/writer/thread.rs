//! The writer thread: drains the bounded write queue into batches, runs each batch as
//! one transaction (BEGIN IMMEDIATE … COMMIT, one savepoint per custom op), then acks
//! every sender and, after the acks, publishes the commit event. Also the watchdog that
//! interrupts runaway raw SQL, and the fault hooks' trigger points.

use super::api::{CommitEvent, Faults, KnowledgeWriter, OpOutput, WriteOp, WriterMsg};
use super::records;
use super::stats::WriterStats;
use super::tx::{BatchLog, TxCtx, APPEND_ONLY};
use crate::conn::CachedConn;
use crate::error::{Result, StoreError};
use edgeswarm_core::latency::pow2_bucket;
use edgeswarm_core::{HybridClock, Record, StoreConfig};
use libsql::Value as V;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::broadcast;

/// The writer thread's read-only configuration and its connection.
pub struct Writer {
    /// Batch limits, query time limit, path and durability.
    pub cfg: StoreConfig,
    /// The only write connection to the home file.
    pub conn: CachedConn,
    /// The node's clock; stamps every write.
    pub clock: Arc<HybridClock>,
    /// This node's id, the `origin` of its writes.
    pub origin: String,
    /// The bounded write queue this thread drains.
    pub rx: crossbeam_channel::Receiver<crate::queue::Slot<WriterMsg>>,
    /// Where commit events go (caches, watchers, sync).
    pub events: broadcast::Sender<Arc<CommitEvent>>,
    /// Test fault hooks (inert unless a test sets them).
    pub faults: Arc<Faults>,
    /// Counters read by `Store::stats`.
    pub stats: Arc<WriterStats>,
    /// Writes knowledge records; installed by edgeswarm-search (`None` until then, and
    /// knowledge records are refused with `NoKnowledgeWriter`).
    pub knowledge: Arc<OnceLock<KnowledgeWriter>>,
    /// This writer's checkpointer thread (started by `run`; `None` until then or if it
    /// could not start, and SQLite checkpoints inline).
    pub checkpoint: Option<crate::checkpoint::Checkpointer>,
    /// Approximate bytes committed since the checkpointer was last kicked.
    pub since_checkpoint: usize,
}

/// Committed bytes (approximate op sizes) after which the writer asks its checkpointer
/// thread for a passive checkpoint: about SQLite's default 1,000-page auto-checkpoint.
const CHECKPOINT_BYTES: usize = 4 << 20;
/// Interrupts the writer's connection when a raw SQL statement runs past the query
/// time limit, so a runaway `INSERT ... SELECT` cannot stall every other write.
struct Watchdog {
    /// When the running statement must be interrupted; `None` while idle.
    deadline: Arc<std::sync::Mutex<Option<Instant>>>,
    /// Set on drop to end the thread.
    stop: Arc<AtomicBool>,
}

impl Watchdog {
    fn start(conn: libsql::Connection) -> Watchdog {
        let deadline: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (d, st) = (deadline.clone(), stop.clone());
        let spawned = std::thread::Builder::new().name("edgeswarm-writer-watchdog".into()).spawn(move || {
            while !st.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(10));
                let mut g = d.lock().unwrap_or_else(|p| p.into_inner());
                if g.is_some_and(|t| Instant::now() >= t) {
                    *g = None;
                    let _ = conn.interrupt();
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no writer watchdog: runaway SQL writes will not be interrupted");
        }
        Watchdog { deadline, stop }
    }
    fn arm(&self, limit: std::time::Duration) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + limit);
    }
    fn disarm(&self) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn is_raw_sql(slot: &crate::queue::Slot<WriterMsg>) -> bool {
    matches!(
        slot.item,
        WriterMsg::Op {
            op: WriteOp::Sql { .. },
            ..
        }
    )
}

/// A batch being built.
struct Batch {
    /// The queued messages, in queue order.
    items: Vec<crate::queue::Slot<WriterMsg>>,
    /// Approximate bytes the batch writes (bounded by `BatchConfig::max_bytes`).
    bytes: usize,
    /// A Shutdown message is in the batch: commit it and exit.
    shutdown: bool,
}

impl Writer {
    /// Runs until the queue disconnects or a Shutdown message is committed.
    pub fn run(mut self) {
        let _span = tracing::info_span!("storage_writer", origin = %self.origin).entered();
        let dog = Watchdog::start(self.conn.conn.clone());
        match crate::checkpoint::Checkpointer::spawn_vfs("home", self.cfg.path.clone(), self.cfg.durability, self.cfg.vfs.clone()) {
            Ok(c) => {
                // Checkpoints run on that thread; the inline auto-checkpoint stays as a
                // high-water safety net.
                let pragma = format!("PRAGMA wal_autocheckpoint = {}", crate::checkpoint::WAL_HIGH_WATER_PAGES);
                match self.conn.batch(&pragma) {
                    Ok(()) => self.checkpoint = Some(c),
                    Err(e) => tracing::warn!(error = %e, "could not move checkpoints off the writer; SQLite checkpoints inline"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "no checkpointer thread; SQLite checkpoints inline"),
        }
        // A raw SQL write always runs in a transaction of its own: SQLite rolls back the
        // whole transaction when a statement is interrupted, and one user's runaway
        // statement must not take other callers' writes with it. One that arrives while
        // a batch is open waits here for the next batch.
        let mut held: Option<crate::queue::Slot<WriterMsg>> = None;
        loop {
            let first = match held.take() {
                Some(s) => s,
                None => match self.rx.recv() {
                    Ok(s) => s,
                    Err(_) => return,
                },
            };
            let solo = is_raw_sql(&first);
            let mut batch = Batch {
                items: Vec::with_capacity(64),
                bytes: 0,
                shutdown: false,
            };
            self.push(&mut batch, first);
            let deadline = Instant::now() + self.cfg.batch.max_linger;
            while !solo && !batch.shutdown && batch.items.len() < self.cfg.batch.max_rows && batch.bytes < self.cfg.batch.max_bytes {
                let next = match self.rx.try_recv() {
                    Ok(s) => Some(s),
                    Err(crossbeam_channel::TryRecvError::Empty) if !self.cfg.batch.max_linger.is_zero() => {
                        self.rx.recv_deadline(deadline).ok()
                    }
                    Err(_) => None,
                };
                match next {
                    Some(s) if is_raw_sql(&s) => {
                        held = Some(s);
                        break;
                    }
                    Some(s) => self.push(&mut batch, s),
                    None => break,
                }
            }
            let shutdown = batch.shutdown;
            self.commit(batch, &dog);
            if shutdown {
                return;
            }
        }
    }

    fn push(&self, batch: &mut Batch, slot: crate::queue::Slot<WriterMsg>) {
        match &slot.item {
            WriterMsg::Op { op, .. } => batch.bytes += op.approx_bytes(),
            WriterMsg::Shutdown { .. } => batch.shutdown = true,
            WriterMsg::Flush { .. } => {}
        }
        batch.items.push(slot);
    }

    fn commit(&mut self, batch: Batch, dog: &Watchdog) {
        let n = batch.items.len();
        let bytes = batch.bytes;
        let _span = tracing::debug_span!("batch", ops = n).entered();
        let started = Instant::now();
        let mut results: Vec<Result<OpOutput>> = Vec::with_capacity(n);
        let mut log = BatchLog::default();
        let mut raw_sql = false;

        if let Err(e) = self.conn.execute("BEGIN IMMEDIATE", vec![]) {
            self.fail_all(batch, StoreError::batch_failed(e));
            return;
        }

        // Ops move out of the slots; acks and permits are kept until after COMMIT.
        let mut acks = Vec::with_capacity(n);
        let mut permits = Vec::with_capacity(n);
        let mut queued_at = Vec::with_capacity(n);
        let mut fatal: Option<StoreError> = None;
        for slot in batch.items {
            permits.push(slot.permit);
            queued_at.push(slot.at);
            let (op, ack) = match slot.item {
                WriterMsg::Op { op, ack } => (Some(op), ack),
                WriterMsg::Flush { ack } | WriterMsg::Shutdown { ack } => (None, ack),
            };
            acks.push(ack);
            let Some(op) = op else {
                results.push(Ok(OpOutput::Unit));
                continue;
            };
            if fatal.is_some() {
                results.push(Ok(OpOutput::Unit));
                continue;
            }
            raw_sql |= matches!(op, WriteOp::Sql { .. });
            match self.apply(op, &mut log, dog) {
                Err(OpError::Fatal(e)) => fatal = Some(e),
                Err(OpError::Op(e)) => results.push(Err(e)),
                Ok(o) => results.push(Ok(o)),
            }
            self.maybe_panic();
        }

        let commit = match fatal {
            Some(e) => Err(e),
            None => self.finish(&mut log),
        };
        match commit {
            Ok(()) => {
                let elapsed = started.elapsed();
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.ops.fetch_add(n as u64, Ordering::Relaxed);
                self.stats.last_batch_size.store(n as u64, Ordering::Relaxed);
                self.stats.batch_size_hist[pow2_bucket(n as u64, 16)].fetch_add(1, Ordering::Relaxed);
                self.stats.commit_latency.record(elapsed);
                if raw_sql {
                    // User SQL may have changed the schema: re-prepare from now on.
                    self.conn.clear_cache();
                }
                let mut ack_latency = self.stats.ack_latency.lock();
                for ((ack, r), at) in acks.into_iter().zip(results).zip(queued_at) {
                    let _ = ack.send(r);
                    ack_latency.record(at.elapsed());
                }
                drop(ack_latency);
                // Subscribers (caches, watches, sync) hear of the commit after every
                // caller in the batch is acked (docs/runtime-semantics.md).
                if !log.changes.is_empty() || raw_sql {
                    let _ = self.events.send(Arc::new(CommitEvent {
                        last_seq: log.last_seq,
                        changes: log.changes,
                        raw_sql,
                    }));
                }
                drop(permits);
                self.since_checkpoint += bytes.max(1);
                if self.since_checkpoint >= CHECKPOINT_BYTES {
                    if let Some(c) = &self.checkpoint {
                        self.since_checkpoint = 0;
                        c.kick();
                    }
                }
            }
            Err(e) => {
                let _ = self.conn.batch("ROLLBACK");
                self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, ops = n, "batch failed; every write in it is reported failed");
                for ack in acks {
                    let err = match &e {
                        StoreError::Timeout { .. } => e.clone(),
                        other => StoreError::batch_failed(other.clone()),
                    };
                    let _ = ack.send(Err(err));
                }
            }
        }
    }

    /// Logs the batch's append-only ranges, persists the clock, and commits.
    fn finish(&mut self, log: &mut BatchLog) -> Result<()> {
        for (i, r) in log.ranges.iter().enumerate() {
            if let Some((lo, hi)) = r {
                self.conn.execute(
                    "INSERT INTO _changes (tbl, row_id, hlc, origin, rowid_lo, rowid_hi) VALUES (?1, '', ?2, ?3, ?4, ?5)",
                    vec![
                        V::Text(APPEND_ONLY[i].into()),
                        V::Integer(log.range_hlc.as_i64()),
                        V::Text(self.origin.clone()),
                        V::Integer(*lo),
                        V::Integer(*hi),
                    ],
                )?;
                log.last_seq = self.conn.conn.last_insert_rowid();
            }
        }
        let hw = self.clock.last();
        self.conn.execute(
            "INSERT INTO _meta (key, value) VALUES ('hlc_hwm', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            vec![V::Text(hw.as_i64().to_string())],
        )?;
        if self.faults.fail_next_commit.swap(false, Ordering::SeqCst) {
            // SQLITE_IOERR_WRITE, as a refusing disk would report it.
            return Err(StoreError::from_sqlite(778, "injected commit failure (fault-injection)", None));
        }
        self.conn.execute("COMMIT", vec![])?;
        Ok(())
    }

    fn maybe_panic(&self) {
        let left = self.faults.panic_after_ops.load(Ordering::SeqCst);
        if left >= 0 {
            if left == 0 {
                self.faults.panic_after_ops.store(-1, Ordering::SeqCst);
                panic!("injected writer panic (fault-injection)");
            }
            self.faults.panic_after_ops.store(left - 1, Ordering::SeqCst);
        }
    }

    fn fail_all(&mut self, batch: Batch, err: StoreError) {
        self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        for slot in batch.items {
            slot.item.fail(err.clone());
        }
    }

    fn apply(&mut self, op: WriteOp, log: &mut BatchLog, dog: &Watchdog) -> Result<OpOutput, OpError> {
        let limit = self.cfg.limits.query_timeout;
        let max_bytes = self.cfg.limits.max_result_bytes;
        match op {
            WriteOp::Record(Record::Knowledge(_)) if self.knowledge.get().is_none() => Err(OpError::Op(StoreError::NoKnowledgeWriter)),
            WriteOp::Record(r) => {
                let mut ctx = TxCtx {
                    conn: &mut self.conn,
                    clock: &self.clock,
                    origin: &self.origin,
                    log,
                };
                records::insert_record(&mut ctx, r, self.knowledge.get())
                    .map(OpOutput::Inserted)
                    .map_err(OpError::Fatal)
            }
            WriteOp::Sql { sql, params } => self.in_savepoint(log, move |ctx| {
                dog.arm(limit);
                let r = ctx.raw_sql(&sql, params, max_bytes).map(OpOutput::Sql);
                dog.disarm();
                r.map_err(|e| match e {
                    StoreError::Interrupted(_) => StoreError::Timeout {
                        limit_ms: limit.as_millis() as u64,
                    },
                    e => e,
                })
            }),
            WriteOp::Txn(f) => self.in_savepoint(log, move |ctx| f(ctx).map(OpOutput::Txn)),
        }
    }
}
impl Writer {
    fn in_savepoint(&mut self, log: &mut BatchLog, f: impl FnOnce(&mut TxCtx<'_>) -> Result<OpOutput>) -> Result<OpOutput, OpError> {
        self.conn.execute("SAVEPOINT op", vec![]).map_err(OpError::Fatal)?;
        let mark = log.mark();
        let r = {
            let mut ctx = TxCtx {
                conn: &mut self.conn,
                clock: &self.clock,
                origin: &self.origin,
                log,
            };
            f(&mut ctx)
        };
        match r {
            Ok(o) => {
                self.conn.execute("RELEASE op", vec![]).map_err(OpError::Fatal)?;
                Ok(o)
            }
            Err(e) => {
                log.restore(mark);
                if self.conn.conn.is_autocommit() {
                    // SQLite already rolled the whole transaction back (an interrupted
                    // write does that): nothing of this batch is stored.
                    return Err(OpError::Fatal(e));
                }
                self.conn.batch("ROLLBACK TO op; RELEASE op;").map_err(OpError::Fatal)?;
                Err(OpError::Op(e))
            }
        }
    }
}

enum OpError {
    /// Only this op failed; its savepoint rolled back.
    Op(StoreError),
    /// The transaction cannot go on; the whole batch fails.
    Fatal(StoreError),
}
