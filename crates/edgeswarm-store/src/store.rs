//! `Store`: the typed handle in front of the StorageActor and the ReadPool. Callers never
//! build writer messages by hand.

use crate::actor::{Inbox, StoreSupervisor, WriterSetup};
use crate::error::{Result, StoreError};
use crate::guard::StatementKind;
use crate::queue::SendError;
use crate::read_pool::{ReadPool, Reader};
use crate::schema;
use crate::value::{QueryResult, SqlValue};
use crate::writer::{CommitEvent, Faults, Inserted, KnowledgeWriter, OpOutput, TxCtx, WriteOp, WriterMsg, WriterStats};
use edgeswarm_core::{ChannelStats, HybridClock, LatencySummary, Record, StoreConfig};
use ractor::{Actor, ActorRef};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot, watch};

/// How long a publisher waits for a crashed writer to come back before giving up.
const RESTART_WAIT: Duration = Duration::from_secs(10);

/// A write that is queued; await it to learn whether it committed, and its typed
/// result (`Inserted` for a record).
#[must_use = "an ack says whether the write is on disk"]
pub struct PendingAck<T = Inserted> {
    /// The writer's reply, sent after COMMIT.
    rx: oneshot::Receiver<Result<OpOutput>>,
    /// Unpacks the reply to `T` (one of `OpOutput`'s `into_*`).
    unpack: fn(OpOutput) -> Result<T>,
}

impl<T> PendingAck<T> {
    /// Waits for the commit. `Ok` means the write is on disk (per `Durability`).
    pub async fn wait(self) -> Result<T> {
        let out = self
            .rx
            .await
            .unwrap_or_else(|_| Err(StoreError::WriterCrashed("the writer stopped before replying".into())))?;
        (self.unpack)(out)
    }
}

/// Snapshot of store counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreStats {
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub queue_rejected: u64,
    /// Bytes (KiB-rounded approximate op sizes) queued or in flight on the writer queue.
    pub queue_bytes: usize,
    /// The writer queue's byte budget (`StoreConfig::queue_bytes`).
    pub queue_bytes_capacity: usize,
    pub read_queue_depth: usize,
    /// Bound of the read queue (`ChannelConfig::read_queue`).
    pub read_queue_capacity: usize,
    /// Commit events not yet received by the slowest subscriber.
    pub commit_events_depth: usize,
    /// Bound of the commit-event broadcast (`ChannelConfig::commit_events`).
    pub commit_events_capacity: usize,
    pub batches: u64,
    pub ops: u64,
    pub failed_batches: u64,
    /// Writes that failed alone (their savepoint rolled back, the rest of their batch
    /// committed): constraint errors, time limits, panics, custom-op errors.
    pub failed_ops: u64,
    /// Batches the writer began again and replayed after SQLite rolled the whole
    /// transaction back under one write (an interrupted write, an I/O error).
    pub replays: u64,
    pub writer_restarts: u64,
    pub last_batch_size: u64,
    /// Batch sizes, power-of-two buckets (index i: size <= 2^i).
    pub batch_size_hist: Vec<u64>,
    /// Commit latencies in µs, power-of-two buckets (`edgeswarm_core::latency::pow2_bucket`),
    /// read from `commit_latency`'s histogram.
    pub commit_us_hist: Vec<u64>,
    /// Sum of commit latencies in µs.
    pub commit_us_sum: u64,
    /// Queue-to-ack latency of acked writes in µs, power-of-two buckets.
    pub ack_us_hist: Vec<u64>,
    /// Sum of queue-to-ack latencies in µs.
    pub ack_us_sum: u64,
    /// Commit latency: count, exact sum and mean, nearest-rank percentiles (the one
    /// definition in `edgeswarm_core::latency`).
    pub commit_latency: LatencySummary,
    /// Queue-to-ack latency, likewise.
    pub ack_latency: LatencySummary,
}

impl StoreStats {
    /// The store's channels by name: `storage_writer`, `read_pool`, `commit_events`.
    pub fn channels(&self) -> Vec<ChannelStats> {
        vec![
            ChannelStats::new("storage_writer", self.queue_depth, self.queue_capacity),
            ChannelStats::new("read_pool", self.read_queue_depth, self.read_queue_capacity),
            ChannelStats::new("commit_events", self.commit_events_depth, self.commit_events_capacity),
        ]
    }
}

struct Inner {
    cfg: StoreConfig,
    setup: Arc<WriterSetup>,
    inbox: watch::Receiver<Inbox>,
    reads: ReadPool,
    supervisor: ActorRef<()>,
    supervisor_done: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The home store. Cheap to clone; every clone talks to the same writer and readers.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.cfg.path)
            .field("origin", &self.inner.setup.origin)
            .finish()
    }
}

impl Store {
    /// Opens (creating and migrating if needed) the home file and starts the writer and
    /// readers.
    pub async fn open(cfg: StoreConfig) -> Result<Store> {
        let c = cfg.clone();
        let boot = tokio::task::spawn_blocking(move || schema::bootstrap(&c))
            .await
            .map_err(|e| StoreError::Open {
                path: cfg.path.display().to_string(),
                reason: e.to_string(),
            })??;
        let (events, _) = broadcast::channel(cfg.channels.commit_events.max(1));
        let (inbox_tx, inbox_rx) = watch::channel(Inbox::Restarting { generation: 0 });
        let setup = Arc::new(WriterSetup {
            cfg: cfg.clone(),
            clock: Arc::new(HybridClock::new(boot.high_water)),
            origin: boot.origin,
            events,
            inbox: inbox_tx,
            faults: Arc::new(Faults::default()),
            stats: Arc::new(WriterStats::default()),
            knowledge: Default::default(),
            generations: Default::default(),
        });
        let (supervisor, done) = Actor::spawn(None, StoreSupervisor, setup.clone())
            .await
            .map_err(|e| StoreError::Open {
                path: cfg.path.display().to_string(),
                reason: e.to_string(),
            })?;
        let (path, n, cap, limits, cache) = (
            cfg.path.clone(),
            cfg.read_pool_size,
            cfg.channels.read_queue,
            cfg.limits.clone(),
            cfg.cache.clone(),
        );
        let reads = tokio::task::spawn_blocking(move || ReadPool::start(&path, n, cap, limits, cache))
            .await
            .map_err(|e| StoreError::Open {
                path: cfg.path.display().to_string(),
                reason: e.to_string(),
            })??;
        Ok(Store {
            inner: Arc::new(Inner {
                cfg,
                setup,
                inbox: inbox_rx,
                reads,
                supervisor,
                supervisor_done: tokio::sync::Mutex::new(Some(done)),
            }),
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.cfg
    }
    /// This node's id: the `origin` of its writes.
    pub fn origin(&self) -> &str {
        &self.inner.setup.origin
    }
    pub fn clock(&self) -> &Arc<HybridClock> {
        &self.inner.setup.clock
    }
    /// Committed-batch events (for caches, watchers and sync).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CommitEvent>> {
        self.inner.setup.events.subscribe()
    }

    /// Installs the writer of knowledge records (edgeswarm-search's, with its dedup):
    /// until one is installed, knowledge records are refused with `NoKnowledgeWriter`.
    /// The first writer installed stays; returns whether this one was installed.
    pub fn install_knowledge_writer(&self, w: KnowledgeWriter) -> bool {
        self.inner.setup.knowledge.set(w).is_ok()
    }

    /// Whether a knowledge writer is installed.
    pub fn has_knowledge_writer(&self) -> bool {
        self.inner.setup.knowledge.get().is_some()
    }

    /// Fault hooks for tests.
    #[cfg(feature = "fault-injection")]
    pub fn faults(&self) -> &Arc<Faults> {
        &self.inner.setup.faults
    }

    // ---- writes ---------------------------------------------------------------------

    async fn send(&self, mut msg: WriterMsg) -> Result<()> {
        let bytes = msg.approx_bytes();
        let mut inbox = self.inner.inbox.clone();
        loop {
            let current = inbox.borrow_and_update().clone();
            match current {
                Inbox::Closed { reason } => {
                    let err = match reason {
                        Some(r) => StoreError::WriterCrashed(r),
                        None => StoreError::Closed,
                    };
                    msg.fail(err.clone());
                    return Err(err);
                }
                Inbox::Restarting { .. } => {}
                Inbox::Running { tx, .. } => match tx.send_sized(msg, bytes).await {
                    Ok(()) => return Ok(()),
                    Err(SendError::Closed(m)) | Err(SendError::Full(m)) => msg = m,
                },
            }
            // The writer is restarting (or just died): wait for the next inbox.
            if tokio::time::timeout(RESTART_WAIT, inbox.changed()).await.is_err() {
                let err = StoreError::WriterCrashed("the storage writer did not restart in time".into());
                msg.fail(err.clone());
                return Err(err);
            }
        }
    }

    /// Queues a write, waiting while the queue is full; returns the pending ack.
    pub async fn enqueue(&self, op: WriteOp) -> Result<PendingAck<OpOutput>> {
        self.enqueue_as(op, OpOutput::into_output).await
    }

    async fn enqueue_as<T>(&self, op: WriteOp, unpack: fn(OpOutput) -> Result<T>) -> Result<PendingAck<T>> {
        let (ack, rx) = oneshot::channel();
        self.send(WriterMsg::Op { op, ack }).await?;
        Ok(PendingAck { rx, unpack })
    }

    /// Queues a write without waiting; `Overloaded` if the queue is full.
    pub fn try_enqueue(&self, op: WriteOp) -> Result<PendingAck<OpOutput>> {
        self.try_enqueue_as(op, OpOutput::into_output)
    }

    fn try_enqueue_as<T>(&self, op: WriteOp, unpack: fn(OpOutput) -> Result<T>) -> Result<PendingAck<T>> {
        let (ack, rx) = oneshot::channel();
        let bytes = op.approx_bytes();
        let inbox = self.inner.inbox.borrow().clone();
        match inbox {
            Inbox::Running { tx, .. } => match tx.try_send_sized(WriterMsg::Op { op, ack }, bytes) {
                Ok(()) => Ok(PendingAck { rx, unpack }),
                Err(SendError::Full(_)) => Err(StoreError::Overloaded { capacity: tx.capacity() }),
                Err(SendError::Closed(_)) => Err(StoreError::WriterCrashed("the writer is restarting; retry".into())),
            },
            Inbox::Restarting { .. } => Err(StoreError::WriterCrashed("the writer is restarting; retry".into())),
            Inbox::Closed { reason: Some(r) } => Err(StoreError::WriterCrashed(r)),
            Inbox::Closed { reason: None } => Err(StoreError::Closed),
        }
    }

    /// Runs a write and waits for its commit.
    pub async fn write(&self, op: WriteOp) -> Result<OpOutput> {
        self.enqueue(op).await?.wait().await
    }

    /// Validates and writes a record; returns once it is committed.
    pub async fn publish(&self, record: impl Into<Record>) -> Result<Inserted> {
        self.enqueue_record(record).await?.wait().await
    }

    /// Validates and queues a record (waiting for space); await the ack for the commit.
    pub async fn enqueue_record(&self, record: impl Into<Record>) -> Result<PendingAck> {
        let r = record.into();
        r.validate(&self.inner.cfg.limits)?;
        self.enqueue_as(WriteOp::Record(r), OpOutput::into_inserted).await
    }

    /// Validates and queues a record without waiting; `Overloaded` when the queue is full.
    pub fn try_publish(&self, record: impl Into<Record>) -> Result<PendingAck> {
        let r = record.into();
        r.validate(&self.inner.cfg.limits)?;
        self.try_enqueue_as(WriteOp::Record(r), OpOutput::into_inserted)
    }

    /// Runs custom logic inside a batch transaction (in its own savepoint) and returns
    /// its result once the batch is committed. An error rolls back only this op's
    /// changes and is returned as is.
    pub async fn transact<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut TxCtx<'_>) -> Result<T> + Send + 'static,
    {
        self.enqueue_transact(f).await?.wait().await
    }

    /// Queues custom logic like `transact` (waiting for queue space) without waiting
    /// for the commit: await the ack for the result. Lets a caller put many ops in
    /// flight so they share batches.
    pub async fn enqueue_transact<T, F>(&self, f: F) -> Result<PendingAck<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut TxCtx<'_>) -> Result<T> + Send + 'static,
    {
        let op = WriteOp::Txn(Box::new(move |ctx| f(ctx).map(|v| Box::new(v) as Box<dyn std::any::Any + Send>)));
        self.enqueue_as(op, OpOutput::into_txn::<T>).await
    }

    /// Waits until every write queued before this call is committed.
    pub async fn flush(&self) -> Result<()> {
        let (ack, rx) = oneshot::channel();
        self.send(WriterMsg::Flush { ack }).await?;
        PendingAck {
            rx,
            unpack: OpOutput::into_unit,
        }
        .wait()
        .await
    }

    // ---- raw SQL --------------------------------------------------------------------

    /// Runs one statement that SQLite reports read-only; anything else is refused.
    pub async fn read_sql(&self, sql: impl Into<String>, params: Vec<SqlValue>) -> Result<QueryResult> {
        let sql = sql.into();
        self.inner.reads.run(move |r| r.read_sql(&sql, &params)).await
    }

    /// Runs one statement of any kind: reads on the read pool, writes through the
    /// storage actor (committed before this returns).
    pub async fn execute_sql(&self, sql: impl Into<String>, params: Vec<SqlValue>) -> Result<QueryResult> {
        let sql = sql.into();
        let max = self.inner.cfg.limits.max_sql_bytes;
        if sql.len() > max {
            return Err(StoreError::Refused(format!(
                "the statement is {} bytes; the limit is {max} (Limits::max_sql_bytes)",
                sql.len()
            )));
        }
        let s = sql.clone();
        let kind = self.inner.reads.run(move |r| r.guard.classify(&s)).await?;
        match kind {
            StatementKind::ReadOnly => self.read_sql(sql, params).await,
            StatementKind::Write => {
                self.enqueue_as(WriteOp::Sql { sql, params }, OpOutput::into_sql)
                    .await?
                    .wait()
                    .await
            }
        }
    }

    /// Runs `f` on a read-pool thread.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Reader) -> Result<T> + Send + 'static,
    {
        self.inner.reads.run(f).await
    }

    // ---- lifecycle ------------------------------------------------------------------

    pub fn stats(&self) -> StoreStats {
        let s = &self.inner.setup.stats;
        let (depth, cap, rejected, bytes, bytes_cap) = match &*self.inner.inbox.borrow() {
            Inbox::Running { tx, .. } => (
                tx.depth(),
                tx.capacity(),
                tx.stats().rejected.load(Ordering::Relaxed),
                tx.depth_bytes(),
                tx.byte_capacity(),
            ),
            _ => (0, self.inner.cfg.queue_capacity, 0, 0, self.inner.cfg.queue_bytes),
        };
        let (commit_us_hist, commit_us_sum) = s.commit_latency.pow2_buckets(24);
        let (ack_us_hist, ack_us_sum) = s.ack_latency.pow2_buckets(24);
        StoreStats {
            queue_depth: depth,
            queue_capacity: cap,
            queue_rejected: rejected,
            queue_bytes: bytes,
            queue_bytes_capacity: bytes_cap,
            read_queue_depth: self.inner.reads.depth(),
            read_queue_capacity: self.inner.reads.capacity(),
            commit_events_depth: self.inner.setup.events.len(),
            commit_events_capacity: self.inner.cfg.channels.commit_events.max(1),
            batches: s.batches.load(Ordering::Relaxed),
            ops: s.ops.load(Ordering::Relaxed),
            failed_batches: s.failed_batches.load(Ordering::Relaxed),
            failed_ops: s.failed_ops.load(Ordering::Relaxed),
            replays: s.replays.load(Ordering::Relaxed),
            writer_restarts: self.inner.setup.generations.load(Ordering::Relaxed).saturating_sub(1),
            last_batch_size: s.last_batch_size.load(Ordering::Relaxed),
            batch_size_hist: s.batch_size_hist.iter().map(|a| a.load(Ordering::Relaxed)).collect(),
            commit_us_hist,
            commit_us_sum,
            ack_us_hist,
            ack_us_sum,
            commit_latency: s.commit_latency.summary(),
            ack_latency: s.ack_latency.summary(),
        }
    }

    /// Commits everything queued, stops the writer and the readers, checkpoints the WAL
    /// into the database file (TRUNCATE) and closes every connection, so no `-wal` or
    /// `-shm` file is left beside it (unless another process still has the file open).
    /// Returns once all acked data is in the database file. Later calls return `Closed`
    /// errors.
    pub async fn shutdown(&self) -> Result<()> {
        let (ack, rx) = oneshot::channel();
        let sent = self.send(WriterMsg::Shutdown { ack }).await;
        let flushed = match sent {
            Ok(()) => {
                PendingAck {
                    rx,
                    unpack: OpOutput::into_unit,
                }
                .wait()
                .await
            }
            Err(StoreError::Closed) => Ok(()),
            Err(e) => Err(e),
        };
        if let Some(done) = self.inner.supervisor_done.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
        }
        self.inner.supervisor.stop(None);
        self.inner.setup.inbox.send_replace(Inbox::Closed { reason: None });
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || {
            inner.reads.shutdown();
            close_wal(&inner.cfg);
        })
        .await;
        flushed
    }
}

/// After every connection of this store is closed: if a `-wal` or `-shm` file is still
/// beside the database (a read-only connection closed last and could not remove it),
/// open one read-write connection, checkpoint with TRUNCATE and close it. SQLite removes
/// both files when the last connection closes; with another process still attached it
/// leaves them, as it must.
fn close_wal(cfg: &StoreConfig) {
    let side = |suffix: &str| {
        let mut p = cfg.path.clone().into_os_string();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    if !side("-wal").exists() && !side("-shm").exists() {
        return;
    }
    match crate::conn::open_writer(&cfg.path, cfg.durability) {
        Ok((db, c)) => {
            if let Err(e) = crate::conn::run(c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")) {
                tracing::warn!(error = %e, "final checkpoint failed; the WAL stays beside the file (it is replayed on the next open)");
            }
            drop(c);
            drop(db);
        }
        Err(e) => tracing::warn!(error = %e, "could not reopen the file for the final checkpoint"),
    }
}
