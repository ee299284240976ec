//! A checkpointer thread per database file: copies the WAL into the database file when
//! its owner asks, on its own connection.
//!
//! Why: a checkpoint syncs the database file (50–100 ms measured here). Run inline by
//! SQLite's auto-checkpoint it stalls the COMMIT that crossed the threshold and every
//! write queued behind it. A PASSIVE checkpoint on a second connection never blocks the
//! writer (WAL mode: it appends while the checkpointer copies), and durability is
//! unchanged: the WAL already holds every committed transaction. Used by the home
//! writer and by each local region file.

use crate::conn::{self, CachedConn};
use edgeswarm_core::Durability;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// WAL pages after which a COMMIT still checkpoints inline (SQLite's auto-checkpoint,
/// default 1,000): only a safety net for when the checkpointer falls behind or cannot
/// run. Owners set it with `PRAGMA wal_autocheckpoint` once the thread is running.
pub const WAL_HIGH_WATER_PAGES: u32 = 20_000;

/// Handle to a checkpointer thread; the thread ends when this is dropped.
#[derive(Debug)]
pub struct Checkpointer {
    /// Capacity 1: one pending kick is enough.
    kick: SyncSender<()>,
}

impl Checkpointer {
    /// Starts the thread for `path`; `label` names the thread and its log lines.
    pub fn spawn(label: &str, path: PathBuf, durability: Durability) -> std::io::Result<Checkpointer> {
        Self::spawn_vfs(label, path, durability, None)
    }

    /// `spawn`, opening the file through the registered SQLite VFS `vfs` (`None`: the
    /// default), as the home writer does when `StoreConfig::vfs` is set.
    pub fn spawn_vfs(label: &str, path: PathBuf, durability: Durability, vfs: Option<String>) -> std::io::Result<Checkpointer> {
        let (kick, kicks) = sync_channel(1);
        let l = label.to_string();
        std::thread::Builder::new()
            .name(format!("edgeswarm-ckpt-{label}"))
            .spawn(move || run(&l, path, durability, vfs, kicks))?;
        Ok(Checkpointer { kick })
    }

    /// Asks for a passive checkpoint (never blocks; a pending request is enough).
    pub fn kick(&self) {
        let _ = self.kick.try_send(());
    }
}

fn run(label: &str, path: PathBuf, durability: Durability, vfs: Option<String>, kicks: Receiver<()>) {
    let mut conn: Option<CachedConn> = None;
    while kicks.recv().is_ok() {
        if conn.is_none() {
            match conn::open_writer_vfs(&path, durability, vfs.as_deref()) {
                Ok((db, c)) => conn = Some(CachedConn::new(db, c)),
                Err(e) => {
                    tracing::debug!(file = label, error = %e, "checkpointer cannot open the file; retried on the next kick");
                    continue;
                }
            }
        }
        if let Some(c) = conn.as_ref() {
            if let Err(e) = c.batch("PRAGMA wal_checkpoint(PASSIVE)") {
                tracing::debug!(file = label, error = %e, "checkpoint failed; retried on the next kick");
                conn = None;
            }
        }
    }
}
