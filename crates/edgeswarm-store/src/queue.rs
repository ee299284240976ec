//! A named, bounded, instrumented queue from async producers to a dedicated OS thread.
//!
//! Producers are async and must wait when the queue is full (backpressure) without
//! blocking a tokio worker; the consumer is a plain thread that must block with a timeout
//! (to linger for a batch). No single channel type does both, so capacity is a tokio
//! `Semaphore` (async wait, or `try_acquire` for the non-waiting variant) and transport
//! is a crossbeam channel (blocking `recv_timeout` on the consumer thread). A permit
//! travels with each item and is released when the consumer is done with it, so the
//! capacity bounds everything queued *and* in flight: memory stays flat under any load.
//!
//! A queue may also have a byte budget (`bounded_bytes`): a second semaphore counted in
//! KiB of the items' declared sizes. A sender takes an item permit, then its bytes; the
//! waiting `send` waits for both, `try_send` fails `Full` if either is short. Items
//! bigger than the whole budget take all of it (they go through alone).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An item with the capacity permit it holds. Drop the permit when done with the item.
pub struct Slot<T> {
    /// The queued item.
    pub item: T,
    /// Its place in the item bound.
    pub permit: OwnedSemaphorePermit,
    /// Its share of the byte budget (`None` when the queue has none).
    pub bytes: Option<OwnedSemaphorePermit>,
    /// When the item was queued (for queue-to-ack latency).
    pub at: std::time::Instant,
}

/// Counters a queue keeps, for metrics and `status`.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Items ever accepted.
    pub enqueued: AtomicU64,
    /// `try_send` calls refused because the queue was full.
    pub rejected: AtomicU64,
}

/// Why an item could not be queued; the item comes back so it can be retried.
pub enum SendError<T> {
    /// `try_send` found the queue full.
    Full(T),
    /// The consumer is gone.
    Closed(T),
}

/// Bytes per permit of a byte budget: tokio takes at most `u32::MAX` permits at once,
/// and KiB granularity is plenty for a memory bound.
const BYTE_UNIT: usize = 1024;

/// A queue's byte budget.
#[derive(Clone)]
struct ByteBudget {
    /// Permits of `BYTE_UNIT` bytes each.
    sem: Arc<Semaphore>,
    /// Total permits (the budget in `BYTE_UNIT`s, at least 1).
    units: u32,
}

impl ByteBudget {
    /// Permits an item of `bytes` takes: rounded up, at least 1, at most the whole budget.
    fn units_for(&self, bytes: usize) -> u32 {
        (bytes.div_ceil(BYTE_UNIT).max(1)).min(self.units as usize) as u32
    }
}

/// The producer side. Cheap to clone.
pub struct QueueSender<T> {
    /// Name, for logs and metrics.
    name: &'static str,
    /// The item bound.
    capacity: usize,
    /// Item permits (`capacity` of them).
    sem: Arc<Semaphore>,
    /// The byte bound, if the queue has one.
    bytes: Option<ByteBudget>,
    /// Transport to the consumer thread.
    tx: crossbeam_channel::Sender<Slot<T>>,
    /// Counters.
    stats: Arc<QueueStats>,
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        QueueSender {
            name: self.name,
            capacity: self.capacity,
            sem: self.sem.clone(),
            bytes: self.bytes.clone(),
            tx: self.tx.clone(),
            stats: self.stats.clone(),
        }
    }
}

/// Creates a queue of `capacity` items named `name`.
pub fn bounded<T>(name: &'static str, capacity: usize) -> (QueueSender<T>, crossbeam_channel::Receiver<Slot<T>>) {
    make(name, capacity, None)
}

/// Creates a queue of `capacity` items and `budget` bytes (items declare their size to
/// `send_sized` / `try_send_sized`; `send` / `try_send` count 0 bytes, i.e. one unit).
pub fn bounded_bytes<T>(name: &'static str, capacity: usize, budget: usize) -> (QueueSender<T>, crossbeam_channel::Receiver<Slot<T>>) {
    let units = budget.div_ceil(BYTE_UNIT).clamp(1, u32::MAX as usize) as u32;
    make(
        name,
        capacity,
        Some(ByteBudget {
            sem: Arc::new(Semaphore::new(units as usize)),
            units,
        }),
    )
}

fn make<T>(name: &'static str, capacity: usize, bytes: Option<ByteBudget>) -> (QueueSender<T>, crossbeam_channel::Receiver<Slot<T>>) {
    let capacity = capacity.max(1);
    // The crossbeam side never blocks a sender: permits already bound it.
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    (
        QueueSender {
            name,
            capacity,
            sem: Arc::new(Semaphore::new(capacity)),
            bytes,
            tx,
            stats: Arc::new(QueueStats::default()),
        },
        rx,
    )
}

impl<T> QueueSender<T> {
    pub fn name(&self) -> &'static str {
        self.name
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Items queued or in flight right now.
    pub fn depth(&self) -> usize {
        self.capacity - self.sem.available_permits()
    }
    pub fn stats(&self) -> &QueueStats {
        &self.stats
    }
    /// The byte budget (0 when the queue has none).
    pub fn byte_capacity(&self) -> usize {
        self.bytes.as_ref().map_or(0, |b| b.units as usize * BYTE_UNIT)
    }
    /// Bytes (rounded up to KiB per item) queued or in flight right now.
    pub fn depth_bytes(&self) -> usize {
        self.bytes
            .as_ref()
            .map_or(0, |b| (b.units as usize - b.sem.available_permits()) * BYTE_UNIT)
    }

    /// Queues `item`, waiting (asynchronously) while the queue is full.
    pub async fn send(&self, item: T) -> Result<(), SendError<T>> {
        self.send_sized(item, 0).await
    }

    /// Queues `item` of about `bytes` bytes, waiting (asynchronously) while the queue
    /// is full in items or bytes.
    pub async fn send_sized(&self, item: T, bytes: usize) -> Result<(), SendError<T>> {
        let permit = match self.sem.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Err(SendError::Closed(item)),
        };
        let bytes = match &self.bytes {
            None => None,
            Some(b) => match b.sem.clone().acquire_many_owned(b.units_for(bytes)).await {
                Ok(p) => Some(p),
                Err(_) => return Err(SendError::Closed(item)),
            },
        };
        self.push(Slot {
            item,
            permit,
            bytes,
            at: std::time::Instant::now(),
        })
    }

    /// Queues `item` or returns it at once if the queue is full.
    pub fn try_send(&self, item: T) -> Result<(), SendError<T>> {
        self.try_send_sized(item, 0)
    }

    /// Queues `item` of about `bytes` bytes, or returns it at once if the queue is full
    /// in items or bytes.
    pub fn try_send_sized(&self, item: T, bytes: usize) -> Result<(), SendError<T>> {
        let permit = match self.sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(SendError::Full(item));
            }
            Err(tokio::sync::TryAcquireError::Closed) => return Err(SendError::Closed(item)),
        };
        let bytes = match &self.bytes {
            None => None,
            Some(b) => match b.sem.clone().try_acquire_many_owned(b.units_for(bytes)) {
                Ok(p) => Some(p),
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(SendError::Full(item));
                }
                Err(tokio::sync::TryAcquireError::Closed) => return Err(SendError::Closed(item)),
            },
        };
        self.push(Slot {
            item,
            permit,
            bytes,
            at: std::time::Instant::now(),
        })
    }

    /// Queues `item` from a plain thread, blocking it while the queue is full (in items;
    /// it takes no share of a byte budget).
    pub fn blocking_send(&self, item: T) -> Result<(), SendError<T>> {
        let permit = loop {
            match self.sem.clone().try_acquire_owned() {
                Ok(p) => break p,
                Err(tokio::sync::TryAcquireError::Closed) => return Err(SendError::Closed(item)),
                Err(tokio::sync::TryAcquireError::NoPermits) => std::thread::sleep(std::time::Duration::from_micros(200)),
            }
        };
        self.push(Slot {
            item,
            permit,
            bytes: None,
            at: std::time::Instant::now(),
        })
    }

    fn push(&self, slot: Slot<T>) -> Result<(), SendError<T>> {
        match self.tx.try_send(slot) {
            Ok(()) => {
                self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(crossbeam_channel::TrySendError::Disconnected(s)) | Err(crossbeam_channel::TrySendError::Full(s)) => {
                Err(SendError::Closed(s.item))
            }
        }
    }

    /// Refuses all further sends (waiting senders wake with `Closed`).
    pub fn close(&self) {
        self.sem.close();
        if let Some(b) = &self.bytes {
            b.sem.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_rejects_try_send_and_send_waits() {
        let (tx, rx) = bounded::<u32>("t", 2);
        assert!(tx.try_send(1).is_ok());
        assert!(tx.try_send(2).is_ok());
        assert!(matches!(tx.try_send(3), Err(SendError::Full(3))));
        assert_eq!(tx.depth(), 2);
        let tx2 = tx.clone();
        let waiter = tokio::spawn(async move { tx2.send(4).await.is_ok() });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "send must wait while the queue is full");
        let first = rx.recv().unwrap();
        assert_eq!(first.item, 1);
        drop(first); // releases the permit
        assert!(waiter.await.unwrap());
        assert_eq!(tx.stats().rejected.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn byte_budget_bounds_the_queue_and_send_waits_for_bytes() {
        let (tx, rx) = bounded_bytes::<u32>("t", 100, 4096);
        assert_eq!(tx.byte_capacity(), 4096);
        assert!(tx.try_send_sized(1, 3000).is_ok()); // 3 KiB
        assert!(matches!(tx.try_send_sized(2, 2048), Err(SendError::Full(2))), "3 + 2 KiB > 4 KiB");
        assert!(tx.try_send_sized(3, 1000).is_ok()); // 1 KiB: exactly full
        assert_eq!(tx.depth_bytes(), 4096);
        assert_eq!(tx.depth(), 2, "a refused item gives its item permit back");
        let tx2 = tx.clone();
        // Bigger than the whole budget: waits for all of it, then goes through alone.
        let waiter = tokio::spawn(async move { tx2.send_sized(4, 1 << 20).await.is_ok() });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "send must wait while the byte budget is spent");
        drop(rx.recv().unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "still 1 KiB in flight");
        drop(rx.recv().unwrap());
        assert!(waiter.await.unwrap());
        assert_eq!(rx.recv().unwrap().item, 4);
        assert_eq!(tx.depth_bytes(), 0);
    }
}
