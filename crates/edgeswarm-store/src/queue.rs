//! A named, bounded, instrumented queue from async producers to a dedicated OS thread.
//!
//! Producers are async and must wait when the queue is full (backpressure) without
//! blocking a tokio worker; the consumer is a plain thread that must block with a timeout
//! (to linger for a batch). No single channel type does both, so capacity is a tokio
//! `Semaphore` (async wait, or `try_acquire` for the non-waiting variant) and transport
//! is a crossbeam channel (blocking `recv_timeout` on the consumer thread). A permit
//! travels with each item and is released when the consumer is done with it, so the
//! capacity bounds everything queued *and* in flight: memory stays flat under any load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An item with the capacity permit it holds. Drop the permit when done with the item.
pub struct Slot<T> {
    pub item: T,
    pub permit: OwnedSemaphorePermit,
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

/// The producer side. Cheap to clone.
pub struct QueueSender<T> {
    /// Name, for logs and metrics.
    name: &'static str,
    capacity: usize,
    sem: Arc<Semaphore>,
    tx: crossbeam_channel::Sender<Slot<T>>,
    stats: Arc<QueueStats>,
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        QueueSender {
            name: self.name,
            capacity: self.capacity,
            sem: self.sem.clone(),
            tx: self.tx.clone(),
            stats: self.stats.clone(),
        }
    }
}

/// Creates a queue of `capacity` items named `name`.
pub fn bounded<T>(name: &'static str, capacity: usize) -> (QueueSender<T>, crossbeam_channel::Receiver<Slot<T>>) {
    let capacity = capacity.max(1);
    // The crossbeam side never blocks a sender: permits already bound it.
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    (
        QueueSender {
            name,
            capacity,
            sem: Arc::new(Semaphore::new(capacity)),
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

    /// Queues `item`, waiting (asynchronously) while the queue is full.
    pub async fn send(&self, item: T) -> Result<(), SendError<T>> {
        let permit = match self.sem.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Err(SendError::Closed(item)),
        };
        self.push(Slot {
            item,
            permit,
            at: std::time::Instant::now(),
        })
    }

    /// Queues `item` or returns it at once if the queue is full.
    pub fn try_send(&self, item: T) -> Result<(), SendError<T>> {
        match self.sem.clone().try_acquire_owned() {
            Ok(permit) => self.push(Slot {
                item,
                permit,
                at: std::time::Instant::now(),
            }),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                Err(SendError::Full(item))
            }
            Err(tokio::sync::TryAcquireError::Closed) => Err(SendError::Closed(item)),
        }
    }

    /// Queues `item` from a plain thread, blocking it while the queue is full.
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
}
