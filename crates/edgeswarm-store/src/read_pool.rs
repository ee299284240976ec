//! The read pool: N threads, each owning a read-only libSQL connection and a raw guard
//! connection. In WAL mode readers never wait for the writer, so reads never queue
//! behind writes; and no libSQL call runs on a tokio worker.

use crate::conn::{self, CachedConn};
use crate::error::{Result, StoreError};
use crate::guard::GuardConn;
use crate::queue::{self, QueueSender, SendError};
use crate::value::{QueryResult, SqlValue};
use edgeswarm_core::{CacheConfig, Limits};
use std::path::Path;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// What a read job gets: the thread's connections and the configured limits.
pub struct Reader {
    /// libSQL read-only connection with a prepared-statement cache (typed reads).
    pub conn: CachedConn,
    /// Raw read-only connection for user SQL (guard checks, time limit, row and byte caps).
    pub guard: GuardConn,
    /// The store's input and result limits (SQL size, rows, bytes, time).
    pub limits: Limits,
}

impl Reader {
    /// Runs user SQL that must be read-only, under the row cap and time limit.
    pub fn read_sql(&mut self, sql: &str, params: &[SqlValue]) -> Result<QueryResult> {
        if sql.len() > self.limits.max_sql_bytes {
            return Err(StoreError::Refused(format!(
                "the statement is {} bytes; the limit is {} (Limits::max_sql_bytes)",
                sql.len(),
                self.limits.max_sql_bytes
            )));
        }
        self.guard.query(
            sql,
            params,
            self.limits.max_result_rows,
            self.limits.max_result_bytes,
            self.limits.query_timeout,
        )
    }
    /// Runs a cached internal query (trusted SQL).
    pub fn query(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<QueryResult> {
        self.conn.query(sql, conn::params(params))
    }
}

type Job = Box<dyn FnOnce(&mut Reader) + Send>;

/// A fixed set of reader threads fed by one bounded queue.
pub struct ReadPool {
    tx: Mutex<Option<QueueSender<Job>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl ReadPool {
    /// Starts `size` reader threads on `path` (which must exist and be migrated).
    /// `capacity` bounds the jobs queued or running (`ChannelConfig::read_queue`).
    /// `cache` sizes each reader's page cache and memory map.
    pub fn start(path: &Path, size: usize, capacity: usize, limits: Limits, cache: CacheConfig) -> Result<ReadPool> {
        let (tx, rx) = queue::bounded::<Job>("read_pool", capacity);
        let mut threads = Vec::new();
        for i in 0..size.max(1) {
            let rx = rx.clone();
            let path = path.to_path_buf();
            let limits = limits.clone();
            let cache = cache.clone();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let h = std::thread::Builder::new()
                .name(format!("edgeswarm-reader-{i}"))
                .spawn(move || {
                    let opened = (|| {
                        let (db, c) = conn::open_reader(&path)?;
                        conn::set_cache(&c, &path, cache.reader_kib, Some(cache.reader_mmap_bytes))?;
                        let guard = GuardConn::open(&path.display().to_string())?;
                        Ok::<_, StoreError>(Reader {
                            conn: CachedConn::new(db, c),
                            guard,
                            limits,
                        })
                    })();
                    let mut reader = match opened {
                        Ok(r) => {
                            let _ = ready_tx.send(Ok(()));
                            r
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    while let Ok(slot) = rx.recv() {
                        let job = slot.item;
                        // A panicking job drops its reply sender (the caller gets an
                        // error); the thread and its connections live on.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut reader)));
                        drop(slot.permit);
                    }
                })
                .map_err(|e| StoreError::Internal(format!("cannot start a reader thread: {e}")))?;
            ready_rx
                .recv()
                .map_err(|_| StoreError::Internal("reader thread died while opening".into()))??;
            threads.push(h);
        }
        Ok(ReadPool {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        })
    }

    /// Runs `f` on a reader thread and returns its result.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Reader) -> Result<T> + Send + 'static,
    {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(StoreError::Closed)?;
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |r| {
            let _ = reply.send(f(r));
        });
        match tx.send(job).await {
            Ok(()) => {}
            Err(SendError::Closed(_)) | Err(SendError::Full(_)) => return Err(StoreError::Closed),
        }
        rx.await
            .map_err(|_| StoreError::Internal("the read failed unexpectedly (reader job panicked)".into()))?
    }

    /// The queue's bound (0 once shut down).
    pub fn capacity(&self) -> usize {
        self.tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|t| t.capacity())
            .unwrap_or(0)
    }

    /// Jobs queued or running.
    pub fn depth(&self) -> usize {
        self.tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|t| t.depth())
            .unwrap_or(0)
    }

    /// Stops accepting reads and joins the threads once queued reads finish.
    pub fn shutdown(&self) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
            tx.close();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}
