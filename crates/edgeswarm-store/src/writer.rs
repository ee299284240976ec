//! The writer: the only code that writes the home file. Runs on a dedicated OS thread,
//! drains the bounded write queue into batches and commits each batch as one transaction
//! (group commit), then acks every sender. An ack is sent only after COMMIT returned.

use crate::conn::{self, CachedConn};
use crate::error::{Result, StoreError};
use crate::schema;
use crate::value::{QueryResult, SqlValue};
use edgeswarm_core::latency::{pow2_bucket, SharedLatency};
use edgeswarm_core::{Hlc, HybridClock, Record, StoreConfig};
use libsql::Value as V;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{broadcast, oneshot};

/// A custom operation run inside a batch transaction, in its own savepoint: if it
/// returns an error only its own changes roll back and only its caller is told.
pub type TxFn = Box<dyn FnOnce(&mut TxCtx<'_>) -> Result<OpOutput> + Send>;

/// One write.
pub enum WriteOp {
    /// Insert a typed record; a second insert with the same id is a no-op (`duplicate`).
    Record(Record),
    /// A raw SQL write (already checked by the SQL guard).
    Sql { sql: String, params: Vec<SqlValue> },
    /// Custom logic (kv compare-and-swap, replication apply, ...).
    Txn(TxFn),
}

impl WriteOp {
    fn approx_bytes(&self) -> usize {
        match self {
            WriteOp::Record(r) => r.approx_bytes(),
            WriteOp::Sql { sql, params } => sql.len() + params.len() * 16,
            WriteOp::Txn(_) => 256,
        }
    }
}

/// What a committed write returns.
#[derive(Debug, Clone, PartialEq)]
pub enum OpOutput {
    /// A record insert; `duplicate` when a record with this id already existed.
    Inserted { duplicate: bool },
    /// A raw SQL statement's result.
    Sql(QueryResult),
    /// Custom op output.
    Json(serde_json::Value),
    /// Nothing to report (flush).
    Unit,
}

/// The reply channel of one write.
pub type Ack = oneshot::Sender<Result<OpOutput>>;

/// A message on the writer queue.
pub enum WriterMsg {
    Op {
        op: WriteOp,
        ack: Ack,
    },
    /// Acked once every write queued before it is committed.
    Flush {
        ack: Ack,
    },
    /// Commit what is queued before it, ack, and exit the thread.
    Shutdown {
        ack: Ack,
    },
}

impl WriterMsg {
    /// Fails the message's sender with `err` (used when a queue is drained on a crash).
    pub fn fail(self, err: StoreError) {
        let ack = match self {
            WriterMsg::Op { ack, .. } | WriterMsg::Flush { ack } | WriterMsg::Shutdown { ack } => ack,
        };
        let _ = ack.send(Err(err));
    }
}

/// A reference to one changed row, as broadcast after commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRef {
    pub tbl: &'static str,
    pub row_id: String,
}

/// Published after every committed batch.
#[derive(Debug, Clone)]
pub struct CommitEvent {
    /// `_changes.seq` of the last change in this batch (0 if the batch logged none).
    pub last_seq: i64,
    /// Rows changed, in commit order.
    pub changes: Vec<ChangeRef>,
    /// Raw SQL writes in this batch (they may touch any table).
    pub raw_sql: bool,
}

/// Test-only fault hooks (set through `Store::faults` with the `fault-injection` feature).
#[derive(Debug)]
pub struct Faults {
    /// Panic after applying this many more ops inside a batch (< 0: off).
    pub panic_after_ops: AtomicI64,
    /// Fail the next COMMIT as if the disk refused it.
    pub fail_next_commit: AtomicBool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            panic_after_ops: AtomicI64::new(-1),
            fail_next_commit: AtomicBool::new(false),
        }
    }
}

/// Counters the writer keeps (read by metrics and `status`).
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: AtomicU64,
    pub ops: AtomicU64,
    pub failed_batches: AtomicU64,
    /// Sum of batch sizes (ops) per power-of-two bucket: index i counts batches with
    /// 2^(i-1) < size <= 2^i.
    pub batch_size_hist: [AtomicU64; 16],
    /// Commit latency of every committed batch (edgeswarm_core's one histogram type),
    /// for `StoreStats` and the metrics endpoint.
    pub commit_latency: SharedLatency,
    /// Queue-to-ack latency of every acked write: what a publisher waits, queueing
    /// included. Recorded under one lock per batch.
    pub ack_latency: SharedLatency,
    pub last_batch_size: AtomicU64,
}

/// What the writer's ops see of the open transaction.
pub struct TxCtx<'a> {
    conn: &'a mut CachedConn,
    clock: &'a HybridClock,
    origin: &'a str,
    log: &'a mut BatchLog,
}

/// Append-only tables: logged as one rowid range per batch instead of one `_changes`
/// row per insert (a per-row log entry costs as much as the insert itself; see
/// docs/ARCHITECTURE.md). Their rows never conflict, so the range is all sync needs.
pub const APPEND_ONLY: [&str; 2] = ["agent_metrics", "conversations"];

/// What one batch has logged so far; restored on a savepoint rollback.
#[derive(Default)]
pub struct BatchLog {
    /// Rows changed, in order, for the commit event.
    pub changes: Vec<ChangeRef>,
    /// `_changes.seq` of the last logged entry.
    pub last_seq: i64,
    /// Inserted rowid range per append-only table (index into `APPEND_ONLY`).
    pub ranges: [Option<(i64, i64)>; 2],
    /// Highest stamp given to an append-only row in this batch.
    pub range_hlc: Hlc,
}

/// A savepoint's view of a `BatchLog`: enough to undo what an op logged.
type LogMark = (usize, i64, [Option<(i64, i64)>; 2], Hlc);

impl BatchLog {
    fn mark(&self) -> LogMark {
        (self.changes.len(), self.last_seq, self.ranges, self.range_hlc)
    }
    fn restore(&mut self, m: LogMark) {
        self.changes.truncate(m.0);
        self.last_seq = m.1;
        self.ranges = m.2;
        self.range_hlc = m.3;
    }
    fn extend_range(&mut self, table: usize, lo: i64, hi: i64, hlc: Hlc) {
        let r = &mut self.ranges[table];
        *r = Some(match *r {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
        if hlc > self.range_hlc {
            self.range_hlc = hlc;
        }
    }
}

impl<'a> TxCtx<'a> {
    /// This node's id (the `origin` of local writes).
    pub fn origin(&self) -> &str {
        self.origin
    }
    /// A fresh hybrid-clock stamp.
    pub fn stamp(&self) -> Hlc {
        self.clock.now()
    }
    /// The clock, to merge remote stamps.
    pub fn clock(&self) -> &HybridClock {
        self.clock
    }
    /// Executes a cached prepared statement.
    pub fn execute(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<u64> {
        self.conn.execute(sql, conn::params(params))
    }
    /// Runs a cached prepared statement and returns its rows.
    pub fn query(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<QueryResult> {
        self.conn.query(sql, conn::params(params))
    }
    /// Appends a row to the change log (same transaction as the write).
    pub fn log_change(&mut self, tbl: &'static str, row_id: String, hlc: Hlc, origin: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO _changes (tbl, row_id, hlc, origin) VALUES (?1, ?2, ?3, ?4)",
            vec![
                V::Text(tbl.into()),
                V::Text(row_id.clone()),
                V::Integer(hlc.as_i64()),
                V::Text(origin.into()),
            ],
        )?;
        self.log.last_seq = self.conn.conn.last_insert_rowid();
        self.log.changes.push(ChangeRef { tbl, row_id });
        Ok(())
    }
    /// Notes a change that is not logged for replication (e.g. local-only tables), so
    /// subscribers still hear about it.
    pub fn note_change(&mut self, tbl: &'static str, row_id: String) {
        self.log.changes.push(ChangeRef { tbl, row_id });
    }
}

/// Normalised content hash (lowercase, whitespace collapsed), FNV-1a 64, hex.
pub fn content_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut last_space = true;
    for ch in s.trim().chars().flat_map(char::to_lowercase) {
        let ch = if ch.is_whitespace() { ' ' } else { ch };
        if ch == ' ' && last_space {
            continue;
        }
        last_space = ch == ' ';
        let mut buf = [0u8; 4];
        for b in ch.encode_utf8(&mut buf).bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

/// Facts read from the file when it is opened.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub origin: String,
    pub high_water: Hlc,
}

/// Opens the file, applies pending migrations, and reads (or creates) the node id and
/// the clock's persisted high-water mark.
pub fn bootstrap(cfg: &StoreConfig) -> Result<Bootstrap> {
    let (db, c) = conn::open_writer(&cfg.path, cfg.durability)?;
    let cc = CachedConn::new(db, c);
    migrate(&cc, &cfg.path.display().to_string())?;
    let meta = |k: &str| -> Result<Option<String>> {
        let r = cc.query_once("SELECT value FROM _meta WHERE key = ?1", vec![V::Text(k.into())])?;
        Ok(r.rows.first().and_then(|r| r[0].as_str().map(str::to_string)))
    };
    let origin = match meta("node_id")? {
        Some(o) => o,
        None => {
            let o = edgeswarm_core::new_id();
            cc.query_once("INSERT INTO _meta (key, value) VALUES ('node_id', ?1)", vec![V::Text(o.clone())])?;
            o
        }
    };
    let hw_meta = meta("hlc_hwm")?.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let hw_log = cc.query_once("SELECT COALESCE(MAX(hlc), 0) FROM _changes", vec![])?.rows[0][0]
        .as_i64()
        .unwrap_or(0);
    Ok(Bootstrap {
        origin,
        high_water: Hlc::from_i64(hw_meta.max(hw_log)),
    })
}

fn migrate(cc: &CachedConn, path: &str) -> Result<()> {
    let v = cc.query_once("PRAGMA user_version", vec![])?.rows[0][0].as_i64().unwrap_or(0);
    if v > schema::SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: v,
            supported: schema::SCHEMA_VERSION,
        });
    }
    for (i, m) in schema::MIGRATIONS.iter().enumerate().skip(v as usize) {
        let sql = format!("BEGIN IMMEDIATE; {m}; PRAGMA user_version = {}; COMMIT;", i + 1);
        if let Err(e) = cc.batch(&sql) {
            let _ = cc.batch("ROLLBACK");
            return Err(StoreError::Open {
                path: path.into(),
                reason: format!("migration {} failed: {e}", i + 1),
            });
        }
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}

/// The writer thread's read-only configuration and its connection.
pub struct Writer {
    pub cfg: StoreConfig,
    pub conn: CachedConn,
    pub clock: Arc<HybridClock>,
    pub origin: String,
    pub rx: crossbeam_channel::Receiver<crate::queue::Slot<WriterMsg>>,
    pub events: broadcast::Sender<Arc<CommitEvent>>,
    pub faults: Arc<Faults>,
    pub stats: Arc<WriterStats>,
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
    items: Vec<crate::queue::Slot<WriterMsg>>,
    bytes: usize,
    shutdown: bool,
}

impl Writer {
    /// Runs until the queue disconnects or a Shutdown message is committed.
    pub fn run(mut self) {
        let _span = tracing::info_span!("storage_writer", origin = %self.origin).entered();
        let dog = Watchdog::start(self.conn.conn.clone());
        match crate::checkpoint::Checkpointer::spawn("home", self.cfg.path.clone(), self.cfg.durability) {
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
            self.fail_all(batch, StoreError::BatchFailed(e.to_string()));
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
                // Subscribers (caches, watches, sync) are told of the commit before any
                // caller is acked.
                if !log.changes.is_empty() || raw_sql {
                    let _ = self.events.send(Arc::new(CommitEvent {
                        last_seq: log.last_seq,
                        changes: log.changes,
                        raw_sql,
                    }));
                }
                let mut ack_latency = self.stats.ack_latency.lock();
                for ((ack, r), at) in acks.into_iter().zip(results).zip(queued_at) {
                    let _ = ack.send(r);
                    ack_latency.record(at.elapsed());
                }
                drop(ack_latency);
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
                        other => StoreError::BatchFailed(other.to_string()),
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
            return Err(StoreError::Sql("injected commit failure (fault-injection)".into()));
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
        match op {
            WriteOp::Record(r) => self.insert_record(r, log).map_err(OpError::Fatal),
            WriteOp::Sql { sql, params } => self.in_savepoint(log, move |ctx| {
                dog.arm(limit);
                let r = ctx.raw_sql(&sql, params);
                dog.disarm();
                r.map_err(|e| match e {
                    StoreError::Sql(m) if m.contains("interrupt") => StoreError::Timeout {
                        limit_ms: limit.as_millis() as u64,
                    },
                    e => e,
                })
            }),
            WriteOp::Txn(f) => self.in_savepoint(log, f),
        }
    }
}

impl TxCtx<'_> {
    /// Runs one user statement (already checked by the guard) and stamps what it appended.
    fn raw_sql(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<OpOutput> {
        // Rows user SQL appends to append-only tables (the seed's agent_metrics INSERT
        // names no hlc/origin) are stamped and logged like typed ones.
        let before = self.append_only_max_rowids()?;
        let mut res = self.conn.query_once(sql, conn::params(params))?;
        res.rows_affected = self.conn.conn.changes();
        let rowid = self.conn.conn.last_insert_rowid();
        res.last_insert_rowid = (rowid != 0).then_some(rowid);
        self.stamp_appended(before)?;
        Ok(OpOutput::Sql(res))
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

    fn insert_record(&mut self, r: Record, log: &mut BatchLog) -> Result<OpOutput> {
        let hlc = self.clock.now();
        let origin = V::Text(self.origin.clone());
        let (tbl, id, n) = match r {
            Record::Metric(m) => {
                let n = self.conn.execute(
                    "INSERT INTO agent_metrics (id, agent_id, task_type, duration_ms, tokens_used, region, ts, extra, hlc, origin) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT(id) DO NOTHING",
                    vec![
                        V::Text(m.id.clone()),
                        V::Text(m.agent_id),
                        V::Text(m.task_type),
                        V::Real(m.duration_ms),
                        V::Integer(m.tokens_used),
                        opt_text(m.region),
                        V::Integer(m.ts),
                        opt_json(m.extra),
                        V::Integer(hlc.as_i64()),
                        origin,
                    ],
                )?;
                ("agent_metrics", m.id, n)
            }
            Record::Message(m) => {
                let n = self.conn.execute(
                    "INSERT INTO conversations (id, session_id, role, content, metadata, created_at, hlc, origin) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(id) DO NOTHING",
                    vec![
                        V::Text(m.id.clone()),
                        V::Text(m.session_id),
                        V::Text(m.role),
                        V::Text(m.content),
                        opt_json(m.metadata),
                        V::Integer(m.created_at),
                        V::Integer(hlc.as_i64()),
                        origin,
                    ],
                )?;
                ("conversations", m.id, n)
            }
            Record::Knowledge(k) => {
                let hash = content_hash(&k.content);
                let tags = serde_json::to_string(&k.tags).unwrap_or_else(|_| "[]".into());
                let n = self.conn.execute(
                    "INSERT INTO knowledge (id, category, topic, content, tags, metadata, region, content_hash, created_at, updated_at, hlc, origin) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11) ON CONFLICT(id) DO NOTHING",
                    vec![
                        V::Text(k.id.clone()),
                        V::Text(k.category),
                        V::Text(k.topic),
                        V::Text(k.content),
                        V::Text(tags),
                        opt_json(k.metadata),
                        opt_text(k.region),
                        V::Text(hash),
                        V::Integer(k.created_at),
                        V::Integer(hlc.as_i64()),
                        origin,
                    ],
                )?;
                ("knowledge", k.id, n)
            }
        };
        if n == 0 {
            return Ok(OpOutput::Inserted { duplicate: true });
        }
        match APPEND_ONLY.iter().position(|t| *t == tbl) {
            Some(i) => {
                let rowid = self.conn.conn.last_insert_rowid();
                log.extend_range(i, rowid, rowid, hlc);
                log.changes.push(ChangeRef { tbl, row_id: id });
            }
            None => {
                let mut ctx = TxCtx {
                    conn: &mut self.conn,
                    clock: &self.clock,
                    origin: &self.origin,
                    log,
                };
                let origin = ctx.origin.to_string();
                ctx.log_change(tbl, id, hlc, &origin)?;
            }
        }
        Ok(OpOutput::Inserted { duplicate: false })
    }
}

impl TxCtx<'_> {
    fn append_only_max_rowids(&mut self) -> Result<[i64; 2]> {
        let mut out = [0i64; 2];
        for (i, t) in APPEND_ONLY.iter().enumerate() {
            let r = self.conn.query(&format!("SELECT COALESCE(MAX(rowid), 0) FROM {t}"), vec![])?;
            out[i] = r.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0);
        }
        Ok(out)
    }

    /// Stamps rows appended since `before` that carry no stamp yet, and logs them.
    fn stamp_appended(&mut self, before: [i64; 2]) -> Result<()> {
        let after = self.append_only_max_rowids()?;
        for i in 0..APPEND_ONLY.len() {
            if after[i] > before[i] {
                let hlc = self.clock.now();
                self.conn.execute(
                    &format!(
                        "UPDATE {} SET hlc = ?1, origin = ?2 WHERE rowid BETWEEN ?3 AND ?4 AND hlc = 0",
                        APPEND_ONLY[i]
                    ),
                    vec![
                        V::Integer(hlc.as_i64()),
                        V::Text(self.origin.to_string()),
                        V::Integer(before[i] + 1),
                        V::Integer(after[i]),
                    ],
                )?;
                self.log.extend_range(i, before[i] + 1, after[i], hlc);
            }
        }
        Ok(())
    }
}

enum OpError {
    /// Only this op failed; its savepoint rolled back.
    Op(StoreError),
    /// The transaction cannot go on; the whole batch fails.
    Fatal(StoreError),
}

fn opt_text(v: Option<String>) -> V {
    v.map(V::Text).unwrap_or(V::Null)
}

fn opt_json(v: Option<serde_json::Value>) -> V {
    match v {
        None | Some(serde_json::Value::Null) => V::Null,
        Some(v) => V::Text(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_normalises_case_and_whitespace() {
        assert_eq!(content_hash("Hello   World\n"), content_hash("hello world"));
        assert_ne!(content_hash("hello world"), content_hash("hello worlds"));
    }
}
