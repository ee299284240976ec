//! The writer's counters, updated by the writer thread and read by `Store::stats`.

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
    /// Commit latency histogram (µs, power-of-two buckets).
    pub commit_us_hist: [AtomicU64; 24],
    /// Sum of commit latencies (µs), for the histogram's `_sum`.
    pub commit_us_sum: AtomicU64,
    /// Queue-to-ack latency of every acked write (µs, power-of-two buckets): what a
    /// publisher waits, queueing included.
    pub ack_us_hist: [AtomicU64; 24],
    /// Sum of queue-to-ack latencies (µs), for the histogram's `_sum`.
    pub ack_us_sum: AtomicU64,
    /// Size of the last committed batch (a gauge).
    pub last_batch_size: AtomicU64,
}

/// The power-of-two bucket of `v` among `n` buckets (the last one takes the rest).
pub(crate) fn bucket(v: u64, n: usize) -> usize {
    ((64 - v.max(1).saturating_sub(1).leading_zeros()) as usize).min(n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!(bucket(1, 16), 0);
        assert_eq!(bucket(2, 16), 1);
        assert_eq!(bucket(3, 16), 2);
        assert_eq!(bucket(4096, 16), 12);
        assert_eq!(bucket(u64::MAX, 16), 15);
    }
}
