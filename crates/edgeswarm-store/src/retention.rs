//! Retention of conversations and metrics ([`RetentionConfig`]), and removal of dead
//! change-log entries.
//!
//! **Retention.** `conversations` rows older than `retention.conversations` (by
//! `created_at`) and `agent_metrics` rows older than `retention.metrics` (by `ts`) are
//! deleted by [`Store::retention_sweep`], which the facade runs every
//! `retention.sweep_interval`. A sweep walks the table in insertion (rowid) order, in
//! batches: a reader looks at the next `batch_rows` rows and picks those past the
//! cutoff, then the writer deletes them by rowid in one small transaction, so a sweep
//! over a large backlog never holds the writer for long. The walk stops at the first
//! batch with nothing past the cutoff (the young end of the table) or after
//! `sweep_batches` batches. There is no index on the time columns (the append path
//! stays as fast as before), so a row that arrived late with an old time (an import, a
//! replicated row) behind a whole batch of younger rows waits until they age out too,
//! at most one retention period.
//!
//! Retention deletes are not logged in `_changes` and do not replicate: append-only
//! tables have no tombstones, and each region applies the same rule to its own copy
//! (the sync layer's compaction runs the same deletes in every region), so home and
//! regions hold the same rows.
//!
//! **Dead change-log entries.** A `_changes` entry whose row no longer exists (an
//! append-only range whose rows retention deleted, an expired kv entry, a tombstone
//! that compaction removed) ships nothing when pushed: push reads the row's current
//! version and finds none. [`Store::compact_dead_changes`] deletes such entries of the
//! built-in tables (never the last entry, whose seq must not be reused). Entries of
//! user tables are left alone.

use crate::error::Result;
use crate::store::Store;
use edgeswarm_core::record::now_millis;
use edgeswarm_core::RetentionConfig;
use std::time::Duration;

/// A table retention applies to: name, time column (ms since the epoch), and its
/// retention in the config.
struct Retained {
    table: &'static str,
    column: &'static str,
    keep: fn(&RetentionConfig) -> Option<Duration>,
}

const RETAINED: [Retained; 2] = [
    Retained {
        table: "conversations",
        column: "created_at",
        keep: |c| c.conversations,
    },
    Retained {
        table: "agent_metrics",
        column: "ts",
        keep: |c| c.metrics,
    },
];

/// One retention batch: rows looked at, rows past the cutoff among them, rows deleted,
/// and the last rowid looked at (where the next batch starts).
struct Batch {
    scanned: usize,
    found: usize,
    deleted: u64,
    last_rowid: i64,
}

/// What one retention sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Swept {
    /// `conversations` rows.
    pub conversations: u64,
    /// `agent_metrics` rows.
    pub metrics: u64,
    /// Dead `_changes` entries (ranges whose rows are gone).
    pub changes: u64,
}

/// The `SELECT` that finds dead `_changes` entries of the built-in tables at or below
/// `?1`, at most `?2`, oldest first. kv keys are matched by splitting `row_id` at the
/// separator (keys holding an escaped separator are skipped: rare, and left as they are).
const DEAD_CHANGES: &str = "SELECT seq FROM _changes c WHERE seq <= ?1 AND seq < (SELECT MAX(seq) FROM _changes) AND CASE \
     WHEN rowid_lo IS NOT NULL AND tbl = 'conversations' THEN NOT EXISTS (SELECT 1 FROM conversations WHERE rowid BETWEEN c.rowid_lo AND c.rowid_hi) \
     WHEN rowid_lo IS NOT NULL AND tbl = 'agent_metrics' THEN NOT EXISTS (SELECT 1 FROM agent_metrics WHERE rowid BETWEEN c.rowid_lo AND c.rowid_hi) \
     WHEN rowid_lo IS NOT NULL THEN 0 \
     WHEN tbl = 'conversations' THEN NOT EXISTS (SELECT 1 FROM conversations WHERE id = c.row_id) \
     WHEN tbl = 'agent_metrics' THEN NOT EXISTS (SELECT 1 FROM agent_metrics WHERE id = c.row_id) \
     WHEN tbl = 'knowledge' THEN NOT EXISTS (SELECT 1 FROM knowledge WHERE id = c.row_id) \
     WHEN tbl = 'kv' AND instr(row_id, char(30)) = 0 AND instr(row_id, char(31)) > 0 THEN NOT EXISTS (SELECT 1 FROM kv \
          WHERE namespace = substr(c.row_id, 1, instr(c.row_id, char(31)) - 1) AND key = substr(c.row_id, instr(c.row_id, char(31)) + 1)) \
     ELSE 0 END ORDER BY seq LIMIT ?2";

impl Store {
    /// Deletes conversations and metrics past their retention (see the module doc), then
    /// the change-log entries that only named them. Nothing to do (and no query run)
    /// when no retention is set.
    pub async fn retention_sweep(&self) -> Result<Swept> {
        self.retention_sweep_at(now_millis()).await
    }

    /// [`Store::retention_sweep`] as if the time were `now_ms` (for tests and tools).
    pub async fn retention_sweep_at(&self, now_ms: i64) -> Result<Swept> {
        let cfg = self.config().retention.clone();
        let mut out = Swept::default();
        let batch = cfg.batch_rows.max(1);
        for t in &RETAINED {
            let Some(keep) = (t.keep)(&cfg) else { continue };
            let cutoff = now_ms.saturating_sub(keep.as_millis().min(i64::MAX as u128) as i64);
            let mut after = 0i64;
            for _ in 0..cfg.sweep_batches.max(1) {
                let b = self.retention_batch(t, cutoff, after, batch).await?;
                match t.table {
                    "conversations" => out.conversations += b.deleted,
                    _ => out.metrics += b.deleted,
                }
                // Stop at the end of the table, or at a window with nothing to delete
                // (the young part of the table is reached).
                if b.scanned < batch || b.found == 0 {
                    break;
                }
                after = b.last_rowid;
            }
        }
        if out.conversations + out.metrics > 0 {
            // Every entry is a candidate: a dead entry ships nothing, pushed or not.
            for _ in 0..cfg.sweep_batches.max(1) {
                let n = self.compact_dead_changes(i64::MAX, batch).await?;
                out.changes += n;
                if (n as usize) < batch {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// One batch: of the next `batch` rows by rowid after `after`, those past `cutoff`,
    /// found on a reader and deleted by rowid on the writer (the cutoff re-checked there).
    async fn retention_batch(&self, t: &Retained, cutoff: i64, after: i64, batch: usize) -> Result<Batch> {
        let (table, column) = (t.table, t.column);
        let find = format!("SELECT rowid, {column} < ?1 FROM {table} WHERE rowid > ?2 ORDER BY rowid LIMIT ?3");
        let (scanned, last_rowid, rowids) = self
            .read(move |r| {
                let q = r.query(&find, vec![cutoff.into(), after.into(), (batch as i64).into()])?;
                let last = q.rows.last().and_then(|r| r[0].as_i64()).unwrap_or(after);
                let old = q
                    .rows
                    .iter()
                    .filter(|r| r[1].as_i64() == Some(1))
                    .filter_map(|r| r[0].as_i64())
                    .collect::<Vec<i64>>();
                Ok((q.rows.len(), last, old))
            })
            .await?;
        let found = rowids.len();
        let deleted = if rowids.is_empty() {
            0
        } else {
            let list = rowids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            self.transact(move |ctx| {
                ctx.execute(
                    &format!("DELETE FROM {table} WHERE rowid IN ({list}) AND {column} < ?1"),
                    vec![cutoff.into()],
                )
            })
            .await?
        };
        Ok(Batch {
            scanned,
            found,
            deleted,
            last_rowid,
        })
    }

    /// Deletes at most `limit` dead `_changes` entries (their row is gone; see the
    /// module doc) with `seq <= max_seq`, oldest first; returns how many. The sync
    /// layer's compaction passes the lowest acked push cursor as `max_seq`.
    pub async fn compact_dead_changes(&self, max_seq: i64, limit: usize) -> Result<u64> {
        let limit = limit.max(1) as i64;
        let seqs = self
            .read(move |r| {
                let q = r.query(DEAD_CHANGES, vec![max_seq.into(), limit.into()])?;
                Ok(q.rows.into_iter().filter_map(|r| r[0].as_i64()).collect::<Vec<i64>>())
            })
            .await?;
        let mut n = 0;
        for chunk in seqs.chunks(500) {
            let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            n += self
                .transact(move |ctx| {
                    ctx.execute(
                        &format!("DELETE FROM _changes WHERE seq IN ({list}) AND seq < (SELECT MAX(seq) FROM _changes)"),
                        vec![],
                    )
                })
                .await?;
        }
        Ok(n)
    }
}
