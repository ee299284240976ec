//! Shared-memory watches and pagination helpers.

use crate::swarm::SwarmInner;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A change to a watched key. Read the key again to see its value (or its absence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvChange {
    pub namespace: String,
    pub key: String,
}

/// A page of results with the cursor of the next page (`None` at the end).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

pub(crate) struct Watcher {
    pub namespace: String,
    pub prefix: String,
    pub tx: mpsc::Sender<KvChange>,
    /// Changes dropped because the watcher did not keep up.
    pub dropped: Arc<AtomicU64>,
}

/// The receiving end of a watch; dropping it ends the watch.
pub struct KvWatch {
    pub(crate) rx: mpsc::Receiver<KvChange>,
    pub(crate) id: u64,
    pub(crate) watchers: Arc<DashMap<u64, Watcher>>,
    pub(crate) dropped: Arc<AtomicU64>,
}

impl KvWatch {
    /// The next change (`None` once the swarm shuts down).
    pub async fn recv(&mut self) -> Option<KvChange> {
        self.rx.recv().await
    }
    /// Changes this watcher missed because its buffer (256) was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for KvWatch {
    fn drop(&mut self) {
        self.watchers.remove(&self.id);
    }
}

/// Fans commit events out to kv watchers; runs until the store's event stream closes.
pub(crate) async fn watch_loop(
    inner: std::sync::Weak<SwarmInner>,
    mut events: tokio::sync::broadcast::Receiver<Arc<edgeswarm_store::CommitEvent>>,
) {
    loop {
        let ev = match events.recv().await {
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "kv watch fan-out lagged");
                continue;
            }
            Err(_) => return,
        };
        let Some(inner) = inner.upgrade() else { return };
        if inner.watchers.is_empty() {
            continue;
        }
        for c in ev.changes.iter().filter(|c| c.tbl == "kv") {
            let Some((ns, key)) = edgeswarm_store::kv::split_row_id(&c.row_id) else {
                continue;
            };
            for w in inner.watchers.iter() {
                if w.namespace == ns && key.starts_with(&w.prefix) {
                    let change = KvChange {
                        namespace: ns.to_string(),
                        key: key.to_string(),
                    };
                    if w.tx.try_send(change).is_err() {
                        w.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}
