//! The writer's counters, updated by the writer thread and read by `Store::stats`.

use edgeswarm_core::latency::SharedLatency;
use std::sync::atomic::AtomicU64;

/// Counters the writer keeps (read by metrics and `status`).
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Batches committed.
    pub batches: AtomicU64,
    /// Ops (writes, flushes) in committed batches.
    pub ops: AtomicU64,
    /// Batches that failed (BEGIN or COMMIT refused, or a fatal op error).
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
    /// Ops that failed alone (their savepoint rolled back; the rest of the batch went on):
    /// constraint errors, time limits, panics, errors returned by custom ops.
    pub failed_ops: AtomicU64,
    /// Times SQLite rolled a whole batch transaction back under one op and the writer
    /// replayed the batch's other ops (see `Writer::restart`).
    pub replays: AtomicU64,
    /// Size of the last committed batch (a gauge).
    pub last_batch_size: AtomicU64,
}
