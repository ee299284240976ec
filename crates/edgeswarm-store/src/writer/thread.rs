//! The writer thread: drains the bounded write queue into batches, runs each batch as
//! one transaction (BEGIN IMMEDIATE … COMMIT, one savepoint per multi-statement op when
//! the batch holds more than one op), then acks every sender and, after the acks, publishes the commit
//! event. Every op runs under a time limit (the watchdog interrupts it) with panics
//! caught, so one failing op fails only its caller. Also the fault hooks' trigger points.

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
/// Interrupts the writer's connection when an op runs past its time limit (raw SQL:
/// `Limits::query_timeout`; every other op: `StoreConfig::op_timeout`), so one runaway
/// statement or trigger cannot stall every other write.
struct Watchdog {
    /// The running op's deadline (`None` while idle) and whether it fired.
    state: Arc<std::sync::Mutex<DogState>>,
    /// Set on drop to end the thread.
    stop: Arc<AtomicBool>,
    /// Joined on drop: the thread holds a handle to the writer's connection, which must
    /// be closed when the writer is (a clean shutdown leaves no WAL behind).
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the watchdog thread and the writer share.
#[derive(Default)]
struct DogState {
    /// When the running op must be interrupted; `None` while idle.
    deadline: Option<Instant>,
    /// The watchdog interrupted the connection since the last `arm`.
    fired: bool,
}

impl Watchdog {
    fn start(conn: libsql::Connection) -> Watchdog {
        let state: Arc<std::sync::Mutex<DogState>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (d, st) = (state.clone(), stop.clone());
        let spawned = std::thread::Builder::new().name("edgeswarm-writer-watchdog".into()).spawn(move || {
            while !st.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(10));
                let mut g = d.lock().unwrap_or_else(|p| p.into_inner());
                if g.deadline.is_some_and(|t| Instant::now() >= t) {
                    // Under the lock: once `disarm` returns, no interrupt follows.
                    g.deadline = None;
                    g.fired = true;
                    let _ = conn.interrupt();
                }
            }
        });
        let thread = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "no writer watchdog: runaway writes will not be interrupted");
                None
            }
        };
        Watchdog { state, stop, thread }
    }
    fn arm(&self, limit: std::time::Duration) {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        g.deadline = Some(Instant::now() + limit);
        g.fired = false;
    }
    /// Disarms; returns whether the watchdog interrupted the op since `arm`.
    fn disarm(&self) -> bool {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        g.deadline = None;
        std::mem::take(&mut g.fired)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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
                drop(dog);
                self.close();
                return;
            }
        }
    }

    /// A clean shutdown: stop the checkpointer (closing its connection), copy the WAL
    /// into the database file and truncate it. The connection closes when the writer
    /// is dropped; the last connection to close deletes the `-wal` and `-shm` files
    /// (`Store::shutdown` closes the readers, then reopens once if they remain).
    fn close(&mut self) {
        if let Some(mut c) = self.checkpoint.take() {
            c.stop();
        }
        if let Err(e) = self.conn.batch("PRAGMA wal_checkpoint(TRUNCATE)") {
            tracing::warn!(error = %e, "final checkpoint failed; the WAL stays beside the file (it is replayed on the next open)");
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
        // Ops that share the transaction with another op each run in a savepoint and
        // journal their statements (for a replay, see `restart`); a lone op needs
        // neither: if it fails, the transaction holds nothing else and is rolled back.
        let writes = batch.items.iter().filter(|s| matches!(s.item, WriterMsg::Op { .. })).count();
        let isolate = writes > 1;

        if let Err(e) = self.conn.execute("BEGIN IMMEDIATE", vec![]) {
            self.fail_all(batch, StoreError::batch_failed(e));
            return;
        }

        // Ops move out of the slots; acks and permits are kept until after COMMIT.
        let mut acks = Vec::with_capacity(n);
        let mut permits = Vec::with_capacity(n);
        let mut queued_at = Vec::with_capacity(n);
        let mut fatal: Option<StoreError> = None;
        let mut failed_ops = 0u64;
        for slot in batch.items {
            permits.push((slot.permit, slot.bytes));
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
            match self.apply(op, &mut log, dog, isolate) {
                Outcome::Done(o) => results.push(Ok(o)),
                Outcome::Failed(e) => {
                    failed_ops += 1;
                    results.push(Err(e));
                }
                Outcome::RolledBack(e) => {
                    failed_ops += 1;
                    results.push(Err(e));
                    if let Err(e) = self.restart(&log, dog) {
                        fatal = Some(e);
                    }
                }
                Outcome::Fatal(e) => {
                    failed_ops += 1;
                    results.push(Err(e.clone()));
                    fatal = Some(e);
                }
            }
            self.maybe_panic();
        }
        if failed_ops > 0 {
            self.stats.failed_ops.fetch_add(failed_ops, Ordering::Relaxed);
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
                if !self.conn.conn.is_autocommit() {
                    let _ = self.conn.batch("ROLLBACK");
                }
                self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, ops = n, "batch failed; every write in it is reported failed");
                // An op that failed on its own keeps its own error; every other write
                // of the batch is not stored because the transaction failed.
                for (ack, r) in acks.into_iter().zip(results) {
                    let err = match r {
                        Err(own) => own,
                        Ok(_) => match &e {
                            StoreError::Timeout { .. } => e.clone(),
                            other => StoreError::batch_failed(other.clone()),
                        },
                    };
                    let _ = ack.send(Err(err));
                }
            }
        }
    }

    /// SQLite rolled the whole batch transaction back under one op (or the op ran
    /// without a savepoint): begin again and replay the statements of the ops applied
    /// before it, on the same starting state, so they still commit. The writer is the
    /// only writer of the file, so the replay reproduces the same rows, rowids and
    /// change-log sequence; if it does not (a statement fails or changes a different
    /// number of rows), the batch fails and every caller is told.
    fn restart(&mut self, log: &BatchLog, dog: &Watchdog) -> Result<()> {
        if !self.conn.conn.is_autocommit() {
            self.conn.batch("ROLLBACK")?;
        }
        self.stats.replays.fetch_add(1, Ordering::Relaxed);
        self.conn.execute("BEGIN IMMEDIATE", vec![])?;
        if log.replay.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            statements = log.replay.len(),
            "batch transaction rolled back under one op; replaying the others"
        );
        let limit = self.cfg.op_timeout;
        dog.arm(limit);
        let r = (|| {
            for st in &log.replay {
                match st.changed {
                    Some(n) => {
                        let got = self.conn.execute(&st.sql, st.params.clone())?;
                        if got != n {
                            return Err(StoreError::Internal(format!(
                                "replaying the batch changed {got} rows where the first run changed {n}: `{}`",
                                st.sql
                            )));
                        }
                    }
                    None => {
                        self.conn.query(&st.sql, st.params.clone())?;
                    }
                }
            }
            Ok(())
        })();
        if dog.disarm() {
            if let Err(StoreError::Interrupted(_)) = r {
                return Err(StoreError::Timeout {
                    limit_ms: limit.as_millis() as u64,
                });
            }
        }
        r
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

    /// Applies one op under its time limit, in a savepoint when `isolate` (unless it is
    /// one statement), with panics caught: whatever goes wrong fails this op alone (see
    /// `Outcome`).
    fn apply(&mut self, op: WriteOp, log: &mut BatchLog, dog: &Watchdog, isolate: bool) -> Outcome {
        let limit = match op {
            WriteOp::Sql { .. } => self.cfg.limits.query_timeout,
            _ => self.cfg.op_timeout,
        };
        // A conversation or metric insert is one single-row INSERT: SQLite undoes a
        // failed statement by itself (statement atomicity), so it needs no savepoint.
        // A savepoint per op made every insert copy the pages it touches into the
        // sub-journal, which halved the ingest rate.
        let one_statement = matches!(op, WriteOp::Record(Record::Metric(_) | Record::Message(_)));
        let savepoint = isolate && !one_statement;
        if savepoint {
            if let Err(e) = self.conn.execute("SAVEPOINT op", vec![]) {
                return Outcome::Fatal(e);
            }
        }
        let mark = log.mark();
        let knowledge = self.knowledge.get();
        let max_bytes = self.cfg.limits.max_result_bytes;
        let deadline = Some((Instant::now() + limit, limit));
        dog.arm(limit);
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut ctx = TxCtx {
                conn: &mut self.conn,
                clock: &self.clock,
                origin: &self.origin,
                log: &mut *log,
                deadline,
                journal: isolate,
            };
            run_op(&mut ctx, op, knowledge, max_bytes)
        }));
        let fired = dog.disarm();
        let timeout = StoreError::Timeout {
            limit_ms: limit.as_millis() as u64,
        };
        let r = match ran {
            Ok(Err(StoreError::Interrupted(_))) if fired => Err(timeout),
            Ok(r) => r,
            Err(p) => {
                // A statement may have been left mid-step: drop every cached statement
                // (finalizing them) before rolling back.
                self.conn.clear_cache();
                let msg = crate::actor::panic_message(&*p);
                tracing::error!(panic = %msg, "a write op panicked; it alone fails");
                let e = StoreError::Internal(format!("the write op panicked: {msg}; nothing of it is stored"));
                if !savepoint {
                    // What it wrote cannot be told apart: roll back, replay the others.
                    log.restore(mark);
                    return Outcome::RolledBack(e);
                }
                Err(e)
            }
        };
        match r {
            Ok(o) => {
                if savepoint {
                    if let Err(e) = self.conn.execute("RELEASE op", vec![]) {
                        return Outcome::Fatal(e);
                    }
                }
                Outcome::Done(o)
            }
            Err(e) => {
                log.restore(mark);
                if self.conn.conn.is_autocommit() || !isolate {
                    // SQLite already rolled the whole transaction back (an interrupted
                    // or I/O-failed write, RAISE(ROLLBACK)), or the op was alone.
                    return Outcome::RolledBack(e);
                }
                if !savepoint {
                    // Its one statement failed and SQLite undid it.
                    return Outcome::Failed(e);
                }
                match self.conn.batch("ROLLBACK TO op; RELEASE op;") {
                    Ok(()) => Outcome::Failed(e),
                    Err(_) if self.conn.conn.is_autocommit() => Outcome::RolledBack(e),
                    Err(f) => Outcome::Fatal(f),
                }
            }
        }
    }
}

/// Runs one op's SQL in `ctx`.
fn run_op(ctx: &mut TxCtx<'_>, op: WriteOp, knowledge: Option<&KnowledgeWriter>, max_result_bytes: usize) -> Result<OpOutput> {
    match op {
        WriteOp::Record(Record::Knowledge(_)) if knowledge.is_none() => Err(StoreError::NoKnowledgeWriter),
        WriteOp::Record(r) => records::insert_record(ctx, r, knowledge).map(OpOutput::Inserted),
        WriteOp::Sql { sql, params } => ctx.raw_sql(&sql, params, max_result_bytes).map(OpOutput::Sql),
        WriteOp::Txn(f) => f(ctx).map(OpOutput::Txn),
    }
}

/// How one op ended.
enum Outcome {
    /// Applied (its savepoint released).
    Done(OpOutput),
    /// Failed; its savepoint rolled back, the batch transaction goes on.
    Failed(StoreError),
    /// Failed, and the batch transaction is gone: begin again and replay the ops
    /// applied before it (`Writer::restart`).
    RolledBack(StoreError),
    /// A savepoint statement itself failed: the transaction is in an unknown state and
    /// the whole batch fails.
    Fatal(StoreError),
}
