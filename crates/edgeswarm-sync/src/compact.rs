//! Compaction of the internal logs, run by a timer task every
//! `SyncConfig::compact_interval` (default 60 s), off the push and pull paths, in
//! bounded passes (at most `compact_rows`, default 10,000, rows deleted per table per
//! pass).
//!
//! What goes, and why it is safe:
//! - **Home `_changes`**: an entry every region has acked (seq at or below the lowest
//!   push cursor of the running regions) and that a later entry for the same row
//!   supersedes. The latest entry of every row stays, so a re-seed (push from 0) or a
//!   new region still gets every row; append-only range entries stay (nothing
//!   supersedes them), and so does the last entry (its seq must not be reused). The
//!   candidates are found on a reader thread; the writer only deletes them by key.
//! - **Region `_region_log`**: an entry every known puller has passed (the lowest
//!   cursor in the region's `_region_cursors`, which each pull writes; a puller silent
//!   for `keep_history` no longer counts) and that a later entry for the same row
//!   supersedes; never the last entry. A puller that still needs an old version has a
//!   cursor below it, so the entry stays; a new puller still finds every row's latest
//!   entry.
//! - **Region `_region_prev_<table>`**: superseded versions that no remaining log entry
//!   names (nobody can ask for them any more).
//! - **Home `distributed_transactions` and `conflicts`**: history older than
//!   `keep_history` (default 7 days).
//! - **Home kv and knowledge tombstones**: a deleted kv entry or knowledge entry whose
//!   stamp is older than `keep_history` and whose change every region has acked. A node
//!   offline for longer than that may bring the deleted entry back (the usual grace
//!   period of tombstone collection). Hard-deleting a knowledge tombstone leaves the
//!   FTS index alone: tombstones are not indexed (the delete trigger fires only for
//!   `old.deleted = 0`). Tombstones of user tables stay: their delete triggers keep
//!   every tombstone on purpose.
//! - **Home dead `_changes` entries** at or below the push floor: entries whose row is
//!   gone (see `edgeswarm_store::retention`), e.g. the ranges of conversations and
//!   metrics that retention deleted, expired kv entries and collected tombstones.
//! - **Region retention**: conversations and metrics past the store's
//!   `RetentionConfig`, the same rule home's sweeper applies (retention deletes do not
//!   replicate; each copy applies it).
//! - **Region kv entries past their expiry**, as home's kv sweeper deletes them.
//! - **Region tombstones** of kv and knowledge older than `keep_history` whose log
//!   entries every known puller has passed.
//! - **Dead region log entries**: entries every known puller has passed whose row is
//!   gone from the region (retention, collected tombstones); never the last entry.

use crate::actor::RegionCtx;
use crate::error::Result;
use crate::home::COLLECT_TOMBSTONES;
use crate::link::RegionStmt;
use crate::row::{quote, TableSpec};
use edgeswarm_core::record::now_millis;
use edgeswarm_core::{Hlc, RetentionConfig};
use edgeswarm_store::{SqlValue, Store};
use std::sync::Arc;

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Compacted {
    /// Home `_changes` entries.
    pub changes: u64,
    /// Home `distributed_transactions` rows.
    pub transactions: u64,
    /// Home `conflicts` rows.
    pub conflicts: u64,
    /// Home kv tombstones.
    pub tombstones: u64,
    /// Home knowledge tombstones.
    pub knowledge_tombstones: u64,
    /// Home `_changes` entries whose row is gone.
    pub dead_changes: u64,
    /// Region log entries and superseded versions (all regions).
    pub region_rows: u64,
}

/// Compacts home's logs. `push_floor` is the lowest acked push cursor of the running
/// regions (nothing above it is touched).
pub async fn compact_home(store: &Store, push_floor: i64, max_rows: usize, keep_ms: i64) -> Result<Compacted> {
    let limit = max_rows.max(1) as i64;
    let mut out = Compacted::default();
    if push_floor > 0 {
        let seqs = store
            .read(move |r| {
                let q = r.query(
                    "SELECT seq FROM _changes WHERE seq <= ?1 AND rowid_lo IS NULL AND seq < (SELECT MAX(seq) FROM _changes) \
                     AND seq NOT IN (SELECT MAX(seq) FROM _changes WHERE rowid_lo IS NULL GROUP BY tbl, row_id) ORDER BY seq LIMIT ?2",
                    vec![push_floor.into(), limit.into()],
                )?;
                Ok(q.rows.into_iter().filter_map(|r| r[0].as_i64()).collect::<Vec<i64>>())
            })
            .await?;
        for chunk in seqs.chunks(500) {
            let list = chunk.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",");
            out.changes += store
                .transact(move |ctx| ctx.execute(&format!("DELETE FROM _changes WHERE seq IN ({list})"), vec![]))
                .await?;
        }
    }
    let cutoff = now_millis() - keep_ms;
    let hlc_cutoff = Hlc::new(cutoff.max(0) as u64, 0).as_i64();
    let r = store
        .transact(move |ctx| {
            let t = ctx.execute(
                "DELETE FROM distributed_transactions WHERE rowid IN \
                 (SELECT rowid FROM distributed_transactions WHERE created_at < ?1 ORDER BY rowid LIMIT ?2)",
                vec![cutoff.into(), limit.into()],
            )?;
            let c = ctx.execute(
                "DELETE FROM conflicts WHERE id IN (SELECT id FROM conflicts WHERE resolved_at < ?1 ORDER BY id LIMIT ?2)",
                vec![cutoff.into(), limit.into()],
            )?;
            // kv tombstones whose change every region acked (the unacked tail of the
            // log is short; the key is matched as `_changes.row_id` encodes it).
            let k = if push_floor > 0 {
                ctx.execute(
                    "DELETE FROM kv WHERE rowid IN (SELECT rowid FROM kv WHERE deleted = 1 AND hlc < ?1 AND \
                     replace(replace(namespace, char(30), char(30, 30)), char(31), char(30, 31)) || char(31) || \
                     replace(replace(key, char(30), char(30, 30)), char(31), char(30, 31)) \
                     NOT IN (SELECT row_id FROM _changes WHERE seq > ?2 AND tbl = 'kv') LIMIT ?3)",
                    vec![hlc_cutoff.into(), push_floor.into(), limit.into()],
                )?
            } else {
                0
            };
            // Knowledge tombstones likewise (`_changes.row_id` is the id). Sync's
            // BEFORE DELETE trigger keeps tombstones unless `_meta` carries the collect
            // flag, set here for this one statement. The FTS delete trigger does not
            // fire for them (`old.deleted = 1`): they are not in the index.
            let kn = if push_floor > 0 {
                ctx.execute(
                    "INSERT INTO _meta (key, value) VALUES (?1, '1') ON CONFLICT(key) DO NOTHING",
                    vec![COLLECT_TOMBSTONES.into()],
                )?;
                let n = ctx.execute(
                    "DELETE FROM knowledge WHERE rowid IN (SELECT rowid FROM knowledge WHERE deleted = 1 AND hlc < ?1 AND \
                     id NOT IN (SELECT row_id FROM _changes WHERE seq > ?2 AND tbl = 'knowledge') LIMIT ?3)",
                    vec![hlc_cutoff.into(), push_floor.into(), limit.into()],
                );
                ctx.execute("DELETE FROM _meta WHERE key = ?1", vec![COLLECT_TOMBSTONES.into()])?;
                n?
            } else {
                0
            };
            Ok((t, c, k, kn))
        })
        .await?;
    (out.transactions, out.conflicts, out.tombstones, out.knowledge_tombstones) = r;
    if push_floor > 0 {
        out.dead_changes = store.compact_dead_changes(push_floor, max_rows).await?;
    }
    Ok(out)
}

/// The lowest cursor of the region's live pullers (`?1`: live since, ms): every known
/// puller has passed the entries at or below it (pulls read `seq > cursor`). 0 (nothing
/// passed) when no puller is live.
const PULL_FLOOR: &str = "(SELECT COALESCE(MIN(seq), 0) FROM _region_cursors WHERE updated_at >= ?1)";

/// SQL true when the row a `_region_log` entry `l` names is gone from table `t`, for
/// keys of one or two parts (two-part keys holding an escaped separator are treated as
/// present); `None` for other keys.
fn row_gone(t: &TableSpec) -> Option<String> {
    let q = quote(&t.name);
    match &t.pk[..] {
        [a] => Some(format!("NOT EXISTS (SELECT 1 FROM {q} WHERE {} = l.row_id)", quote(a))),
        [a, b] => Some(format!(
            "instr(l.row_id, char(30)) = 0 AND instr(l.row_id, char(31)) > 0 AND NOT EXISTS (SELECT 1 FROM {q} WHERE \
             {} = substr(l.row_id, 1, instr(l.row_id, char(31)) - 1) AND {} = substr(l.row_id, instr(l.row_id, char(31)) + 1))",
            quote(a),
            quote(b)
        )),
        _ => None,
    }
}

/// The statements that compact one region (one transaction): conversations and metrics
/// past `retention` (as home's sweeper deletes them), kv and knowledge tombstones older
/// than `keep_ms` whose entries every known puller has passed, log entries every known
/// puller has passed whose row is gone or superseded, then superseded versions no log
/// entry names.
pub fn region_statements(tables: &[Arc<TableSpec>], max_rows: usize, keep_ms: i64, retention: &RetentionConfig) -> Vec<RegionStmt> {
    let limit = max_rows.max(1) as i64;
    let now = now_millis();
    let live_since = now - keep_ms;
    let mut v = Vec::new();
    for (name, column, keep) in [
        ("conversations", "created_at", retention.conversations),
        ("agent_metrics", "ts", retention.metrics),
    ] {
        let Some(keep) = keep else { continue };
        if !tables.iter().any(|t| &*t.name == name && t.col(column).is_some()) {
            continue;
        }
        let cutoff = now.saturating_sub(keep.as_millis().min(i64::MAX as u128) as i64);
        // The oldest rows by arrival first, a bounded window (no index on the time).
        v.push(RegionStmt {
            sql: format!(
                "DELETE FROM {name} WHERE rowid IN (SELECT rowid FROM (SELECT rowid, {column} AS t FROM {name} ORDER BY rowid LIMIT ?2) WHERE t < ?1)"
            )
            .into(),
            params: vec![cutoff.into(), limit.into()],
            counts_applied: true,
        });
    }
    // Expired kv entries, as home's kv sweeper deletes them (its deletes ship nothing:
    // the row is gone when the push reads it).
    if tables.iter().any(|t| &*t.name == "kv" && t.col("expires_at").is_some()) {
        v.push(RegionStmt {
            sql: "DELETE FROM kv WHERE rowid IN (SELECT rowid FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)".into(),
            params: vec![now.into(), limit.into()],
            counts_applied: true,
        });
    }
    let hlc_cutoff = Hlc::new(live_since.max(0) as u64, 0).as_i64();
    for t in tables
        .iter()
        .filter(|t| matches!(&*t.name, "kv" | "knowledge") && t.col("deleted").is_some())
    {
        let q = quote(&t.name);
        // A tombstone goes when no entry at or past the slowest live puller names it;
        // its key is written as `_region_log.row_id` encodes it.
        let key = match &t.pk[..] {
            [a] => quote(a),
            [a, b] => format!(
                "replace(replace({a}, char(30), char(30, 30)), char(31), char(30, 31)) || char(31) || replace(replace({b}, char(30), char(30, 30)), char(31), char(30, 31))",
                a = quote(a),
                b = quote(b)
            ),
            _ => continue,
        };
        v.push(RegionStmt {
            sql: format!(
                "DELETE FROM {q} WHERE rowid IN (SELECT rowid FROM {q} WHERE deleted = 1 AND hlc < ?2 AND {key} NOT IN \
                 (SELECT row_id FROM _region_log WHERE tbl = ?3 AND seq > {PULL_FLOOR}) LIMIT ?4)"
            )
            .into(),
            params: vec![
                live_since.into(),
                hlc_cutoff.into(),
                SqlValue::Text(t.name.to_string()),
                limit.into(),
            ],
            counts_applied: true,
        });
    }
    for t in tables.iter() {
        let Some(gone) = row_gone(t) else { continue };
        v.push(RegionStmt {
            sql: format!(
                "DELETE FROM _region_log WHERE seq IN (SELECT seq FROM _region_log l WHERE tbl = ?2 AND seq < {PULL_FLOOR} \
                 AND seq < (SELECT MAX(seq) FROM _region_log) AND {gone} ORDER BY seq LIMIT ?3)"
            )
            .into(),
            params: vec![live_since.into(), SqlValue::Text(t.name.to_string()), limit.into()],
            counts_applied: true,
        });
    }
    v.push(RegionStmt {
        sql: "DELETE FROM _region_log WHERE seq IN (SELECT seq FROM _region_log \
              WHERE seq < (SELECT COALESCE(MIN(seq), 0) FROM _region_cursors WHERE updated_at >= ?1) \
              AND seq < (SELECT MAX(seq) FROM _region_log) \
              AND seq NOT IN (SELECT MAX(seq) FROM _region_log GROUP BY tbl, row_id) ORDER BY seq LIMIT ?2)"
            .into(),
        params: vec![live_since.into(), limit.into()],
        counts_applied: true,
    });
    for t in tables.iter().filter(|t| !t.append_only) {
        let p = quote(&t.prev_table());
        v.push(RegionStmt {
            sql: format!(
                "DELETE FROM {p} WHERE rowid IN (SELECT rowid FROM {p} WHERE (hlc, origin) NOT IN \
                 (SELECT hlc, origin FROM _region_log WHERE tbl = ?1) LIMIT ?2)"
            )
            .into(),
            params: vec![SqlValue::Text(t.name.to_string()), limit.into()],
            counts_applied: true,
        });
    }
    v
}

/// One compaction pass over home and every region; errors of a region (down,
/// partitioned) are logged and skipped.
pub(crate) async fn pass(store: &Store, regions: &[Arc<RegionCtx>], push_floor: i64) -> Result<Compacted> {
    let Some(cfg) = regions.first().map(|r| r.cfg.clone()) else {
        return Ok(Compacted::default());
    };
    let keep_ms = cfg.keep_history.as_millis().min(i64::MAX as u128) as i64;
    let mut out = compact_home(store, push_floor, cfg.compact_rows, keep_ms).await?;
    for r in regions {
        let stmts = region_statements(&r.registry.all(), cfg.compact_rows, keep_ms, &store.config().retention);
        match r.link.maintain(stmts).await {
            Ok(n) => out.region_rows += n as u64,
            Err(e) => tracing::debug!(region = %r.name, error = %e, "region compaction skipped"),
        }
    }
    if out != Compacted::default() {
        tracing::debug!(?out, "compacted the internal logs");
    }
    Ok(out)
}
