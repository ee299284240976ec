//! Home-side replication work: reading pushed batches from `_changes`, applying pulled
//! versions under LWW (through the storage actor), conflict records, and the triggers
//! that log raw-SQL writes to replicated tables.

use crate::error::{Result, SyncError};
use crate::row::{encode_key, quote, Conflict, Registry, RowVersion, TableSpec};
use edgeswarm_core::Hlc;
use edgeswarm_store::{Reader, SqlValue, StoreError, TxCtx};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

/// Built-in replicated tables whose rows never change after insert.
pub const APPEND_ONLY: &[&str] = &["agent_metrics", "conversations"];

/// `_meta` key listing user tables registered for replication (JSON array).
pub const USER_TABLES_KEY: &str = "sync_user_tables";

/// Interns a table name as `&'static str` (the change log API wants one). Bounded by
/// the number of replicated tables.
pub fn intern(name: &str) -> &'static str {
    static SET: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut s = SET.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(x) = s.get(name) {
        return x;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    s.insert(leaked);
    leaked
}

/// A batch read from the change log.
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// Latest version of every row changed in the range (deduplicated).
    pub rows: Vec<RowVersion>,
    /// Wall-clock ms (from the hlc) of every change in the range, for lag statistics.
    pub change_millis: Vec<u64>,
}

/// Where a batch starting after `_changes.seq` `from` ends: the first `to <= limit` at
/// which the entries in `(from, to]` cover at least `budget` rows (a rowid-range entry
/// counts as the rows it covers, any other entry as one), else `limit`. An entry is
/// never split, so a batch is at least one entry. Batches are cut by rows, not
/// entries: an append-only table logs one entry per storage batch (up to thousands of
/// rows), so counting entries made some batches a thousand times bigger than others
/// and a backlog of them one batch with nothing to pipeline.
pub fn cut_batch(r: &mut Reader, reg: &Registry, from: i64, limit: i64, budget: usize) -> Result<i64> {
    if limit - from <= 1 {
        return Ok(limit);
    }
    if !reg.change_ranges() {
        return Ok(limit.min(from + budget as i64));
    }
    let q = r.query(
        "SELECT seq, COALESCE(rowid_hi - rowid_lo + 1, 1) FROM _changes WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
        vec![from.into(), limit.into(), (budget as i64).into()],
    )?;
    let mut rows = 0i64;
    for row in &q.rows {
        let (Some(seq), w) = (row[0].as_i64(), row[1].as_i64().unwrap_or(1)) else {
            continue;
        };
        rows += w.max(1);
        if rows >= budget as i64 {
            return Ok(seq);
        }
    }
    Ok(limit)
}

/// Reads the current version of every row changed in `_changes` range `(from, to]`,
/// with one query per table (keys joined against the log range), plus the commit
/// time of each version for lag statistics.
pub fn read_batch(r: &mut Reader, reg: &Registry, from: i64, to: i64) -> Result<ReadBatch> {
    // Per-row entries: keys in `_changes.row_id`. Append-only rowid-range entries (the
    // store logs one per batch: `rowid_lo..=rowid_hi`) are read with an explicit
    // range join (CROSS JOIN keeps `_changes` as the outer loop; the store's
    // `_change_rows` view lets the planner scan the whole table instead).
    let keys = "SELECT row_id FROM _changes WHERE seq > ?1 AND seq <= ?2 AND tbl = ?3";
    let mut out = ReadBatch::default();
    let mut seen: HashSet<(Arc<str>, String)> = HashSet::new();
    for spec in reg.all() {
        let t = quote(&spec.name);
        let cols = spec
            .columns
            .iter()
            .map(|c| format!("{t}.{}", quote(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let mut queries = Vec::new();
        match spec.pk.len() {
            1 => queries.push(format!("SELECT {cols} FROM {t} WHERE {} IN ({keys})", quote(&spec.pk[0]))),
            // Two-part keys split in SQL at the first separator; keys with an escaped
            // part (a U+001E or U+001F inside) are read one by one below.
            2 => {
                queries.push(format!(
                    "SELECT {cols} FROM ({keys} AND instr(row_id, char(30)) = 0) AS c CROSS JOIN {t} WHERE {t}.{} = substr(c.row_id, 1, instr(c.row_id, char(31)) - 1) \
                     AND {t}.{} = substr(c.row_id, instr(c.row_id, char(31)) + 1)",
                    quote(&spec.pk[0]),
                    quote(&spec.pk[1])
                ));
                read_by_point_lookups(r, &spec, from, to, &mut out, &mut seen, true)?
            }
            _ => read_by_point_lookups(r, &spec, from, to, &mut out, &mut seen, false)?,
        }
        if reg.change_ranges() && spec.append_only {
            queries.push(format!(
                "SELECT {cols} FROM (SELECT rowid_lo, rowid_hi FROM _changes WHERE seq > ?1 AND seq <= ?2 AND tbl = ?3 AND rowid_lo IS NOT NULL) AS c \
                 CROSS JOIN {t} WHERE {t}.rowid BETWEEN c.rowid_lo AND c.rowid_hi"
            ));
        }
        for sql in queries {
            let res = r.query(&sql, vec![from.into(), to.into(), spec.name.to_string().into()])?;
            for vals in res.rows {
                let id = row_id_of(&spec, &vals);
                if !seen.insert((spec.name.clone(), id.clone())) {
                    continue;
                }
                if let Some(v) = RowVersion::from_row(spec.name.clone(), id, spec.columns.clone(), vals) {
                    out.change_millis.push(Hlc::from_i64(v.hlc).millis());
                    out.rows.push(v);
                }
            }
        }
    }
    Ok(out)
}

/// The `_changes.row_id` of a full row (see [`crate::row::encode_key`]).
pub fn row_id_of(spec: &TableSpec, vals: &[SqlValue]) -> String {
    let parts: Vec<String> = spec
        .pk
        .iter()
        .filter_map(|c| spec.col(c).and_then(|i| vals.get(i)))
        .map(|v| match v {
            SqlValue::Text(s) => s.clone(),
            SqlValue::Integer(i) => i.to_string(),
            SqlValue::Real(f) => f.to_string(),
            SqlValue::Null => String::new(),
            SqlValue::Blob(b) => String::from_utf8_lossy(b).into_owned(),
        })
        .collect();
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    encode_key(&parts.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Reads rows of a range one key at a time (keys of three or more parts, and escaped
/// two-part keys when `escaped_only`).
fn read_by_point_lookups(
    r: &mut Reader,
    spec: &Arc<TableSpec>,
    from: i64,
    to: i64,
    out: &mut ReadBatch,
    seen: &mut HashSet<(Arc<str>, String)>,
    escaped_only: bool,
) -> Result<()> {
    let sql = if escaped_only {
        "SELECT DISTINCT row_id FROM _changes WHERE seq > ?1 AND seq <= ?2 AND tbl = ?3 AND instr(row_id, char(30)) > 0"
    } else {
        "SELECT DISTINCT row_id FROM _changes WHERE seq > ?1 AND seq <= ?2 AND tbl = ?3"
    };
    let ids = r.query(sql, vec![from.into(), to.into(), spec.name.to_string().into()])?;
    let sql = spec.select_by_pk();
    for row in ids.rows {
        let Some(id) = row[0].as_str().map(str::to_string) else { continue };
        let Some(params) = spec.pk_params(&id) else { continue };
        if !seen.insert((spec.name.clone(), id.clone())) {
            continue;
        }
        if let Some(vals) = r.query(&sql, params)?.rows.into_iter().next() {
            if let Some(v) = RowVersion::from_row(spec.name.clone(), id, spec.columns.clone(), vals) {
                out.change_millis.push(Hlc::from_i64(v.hlc).millis());
                out.rows.push(v);
            }
        }
    }
    Ok(())
}

/// What applying pulled versions did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ApplyStats {
    /// Versions that won and were written (and logged, so they relay on).
    pub applied: usize,
    /// Versions already held (redelivery).
    pub duplicates: usize,
    /// Versions that lost to a newer one.
    pub stale: usize,
    /// Conflicts recorded (a version from another node with different content lost).
    pub conflicts: usize,
    /// Versions refused because their stamp is too far in the future.
    pub rejected: usize,
    /// New versions written by a host resolver.
    pub resolved: usize,
}

fn store_err(e: StoreError) -> SyncError {
    SyncError::Store(e)
}

/// Applies versions under LWW inside the storage actor's transaction. Versions
/// stamped too far in the future are counted as `rejected` and dropped; the pull path
/// uses [`apply_remote_parking`], which keeps them.
pub fn apply_remote(ctx: &mut TxCtx<'_>, reg: &Registry, versions: &[RowVersion]) -> std::result::Result<ApplyStats, StoreError> {
    apply_remote_parking(ctx, reg, versions).map(|(st, _)| st)
}

/// [`apply_remote`], also returning the versions refused for a far-future stamp (to be
/// parked and retried once the wall clock is within the drift of them: see
/// [`crate::park`]).
///
/// Ties: two versions with the same `(hlc, origin)` but different content (a node that
/// issued one stamp twice) are ordered by content (see [`content_order`]), so the
/// second is never taken for a redelivery of the first and every replica keeps the same
/// one.
pub fn apply_remote_parking(
    ctx: &mut TxCtx<'_>,
    reg: &Registry,
    versions: &[RowVersion],
) -> std::result::Result<(ApplyStats, Vec<crate::park::Parked>), StoreError> {
    let mut future = Vec::new();
    let mut st = ApplyStats::default();
    let now = edgeswarm_core::record::now_millis();
    for v in versions {
        let Some(spec) = reg.get(&v.tbl) else {
            continue;
        };
        if let Err(e) = ctx.clock().observe(Hlc::from_i64(v.hlc)) {
            tracing::warn!(table = %v.tbl, row = %v.row_id, origin = %v.origin, error = %e, "holding back a far-future remote version (parked, retried later)");
            st.rejected += 1;
            future.push(crate::park::Parked {
                version: v.clone(),
                reason: crate::park::Reason::Future,
                error: e.to_string(),
            });
            continue;
        }
        let Some(pk) = spec.pk_params(&v.row_id) else {
            continue;
        };
        let existing = ctx.query(&spec.select_by_pk(), pk)?;
        let existing = existing
            .rows
            .into_iter()
            .next()
            .and_then(|vals| RowVersion::from_row(spec.name.clone(), v.row_id.clone(), spec.columns.clone(), vals));
        let conflict = match &existing {
            None => {
                write_version(ctx, &spec, v)?;
                st.applied += 1;
                None
            }
            Some(ex) => match v.key().cmp(&ex.key()) {
                std::cmp::Ordering::Equal if ex.same_content(v) || content_order(v, ex) != std::cmp::Ordering::Greater => {
                    st.duplicates += 1;
                    None
                }
                std::cmp::Ordering::Equal => {
                    write_version(ctx, &spec, v)?;
                    st.applied += 1;
                    None
                }
                std::cmp::Ordering::Greater => {
                    write_version(ctx, &spec, v)?;
                    st.applied += 1;
                    (!spec.append_only && ex.origin != v.origin && !ex.same_content(v)).then(|| Conflict {
                        winner: v.clone(),
                        loser: ex.clone(),
                    })
                }
                std::cmp::Ordering::Less => {
                    st.stale += 1;
                    (!spec.append_only && ex.origin != v.origin && !ex.same_content(v)).then(|| Conflict {
                        winner: ex.clone(),
                        loser: v.clone(),
                    })
                }
            },
        };
        if let Some(c) = conflict {
            if record_conflict(ctx, &c, now)? {
                st.conflicts += 1;
                if let Some(resolve) = reg.resolver(&spec.name) {
                    if let Some(mut vals) = resolve(&c) {
                        if vals.len() == spec.columns.len() {
                            let hlc = ctx.stamp();
                            let origin = ctx.origin().to_string();
                            if let (Some(hi), Some(oi)) = (spec.col("hlc"), spec.col("origin")) {
                                vals[hi] = SqlValue::Integer(hlc.as_i64());
                                vals[oi] = SqlValue::Text(origin.clone());
                            }
                            if let Some(nv) = RowVersion::from_row(spec.name.clone(), v.row_id.clone(), spec.columns.clone(), vals) {
                                write_version(ctx, &spec, &nv)?;
                                st.resolved += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok((st, future))
}

/// Deterministic order of two versions' contents (stamp columns excluded), column by
/// column in schema order, by SQLite's own rules (NULL < numbers < text < blob; numbers
/// by value, text and blobs bytewise): the region's tie-break
/// ([`crate::row::TableSpec::upsert_lww_rows`]) compares the same way in SQL, so home
/// and regions keep the same version of an equal-stamp tie.
pub fn content_order(a: &RowVersion, b: &RowVersion) -> std::cmp::Ordering {
    for ((c, x), y) in a.columns.iter().zip(&a.values).zip(&b.values) {
        if c == "hlc" || c == "origin" {
            continue;
        }
        let o = crate::row::sql_cmp(x, y);
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    std::cmp::Ordering::Equal
}

fn write_version(ctx: &mut TxCtx<'_>, spec: &TableSpec, v: &RowVersion) -> std::result::Result<(), StoreError> {
    ctx.execute(&spec.upsert(), v.values.clone())?;
    ctx.log_change(intern(&spec.name), v.row_id.clone(), Hlc::from_i64(v.hlc), &v.origin)
}

/// Records the losing version once (a redelivered loser is not recorded again).
fn record_conflict(ctx: &mut TxCtx<'_>, c: &Conflict, now: i64) -> std::result::Result<bool, StoreError> {
    let n = ctx.execute(
        "INSERT INTO conflicts (tbl, row_id, winner, loser, winner_hlc, loser_hlc, winner_origin, loser_origin, resolved_at) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 WHERE NOT EXISTS \
         (SELECT 1 FROM conflicts WHERE tbl = ?1 AND row_id = ?2 AND loser_hlc = ?6 AND loser_origin = ?8)",
        vec![
            c.winner.tbl.to_string().into(),
            c.winner.row_id.clone().into(),
            c.winner.to_json().into(),
            c.loser.to_json().into(),
            c.winner.hlc.into(),
            c.loser.hlc.into(),
            c.winner.origin.clone().into(),
            c.loser.origin.clone().into(),
            now.into(),
        ],
    )?;
    Ok(n > 0)
}

/// SQL computing a fresh stamp inside a trigger: after every stamp the clock issued
/// before this batch (`_meta.hlc_hwm`, which the writer persists at each commit;
/// capped at the maximum drift ahead of the wall clock, as the clock itself is), after
/// the stamps of the last 64 log entries (this batch's typed writes; the very last
/// entry alone may be an older remote version applied by a pull), and not behind the
/// wall clock. Taking only the last entry let a raw write after a pull get a stamp
/// below the node's own earlier writes, so replicas kept the older content.
const TRIGGER_STAMP: &str = "MAX(\
    COALESCE((SELECT MAX(hlc) FROM (SELECT hlc FROM _changes ORDER BY seq DESC LIMIT 64)), 0) + 1, \
    COALESCE((SELECT MIN(CAST(value AS INTEGER), (CAST(unixepoch('subsec') * 1000 AS INTEGER) + 60000) * 65536) FROM _meta WHERE key = 'hlc_hwm'), 0) + 1, \
    CAST(unixepoch('subsec') * 1000 AS INTEGER) * 65536)";
const TRIGGER_ORIGIN: &str = "(SELECT value FROM _meta WHERE key = 'node_id')";

/// The `_meta` key compaction sets while it hard-deletes collected tombstones (see
/// [`trigger_ddl`]).
pub const COLLECT_TOMBSTONES: &str = "collect_tombstones";

/// Trigger DDL that stamps and logs raw-SQL writes to a replicated table. Typed writes
/// and replication applies set `hlc` themselves, so the triggers leave them alone:
/// an insert is stamped when it arrives with `hlc = 0`, an update when it left the
/// stamp unchanged. A raw DELETE on a table with a `deleted` column (except kv, whose
/// expiry sweep really deletes) is turned into a tombstone so it replicates; deleting
/// a tombstone does nothing.
pub fn trigger_ddl(spec: &TableSpec) -> Vec<String> {
    let t = quote(&spec.name);
    let tn = spec.name.replace('"', "");
    let lit = spec.name.replace('\'', "''");
    let by_pk = |p: &str| {
        spec.pk
            .iter()
            .map(|c| format!("{0} = {p}.{0}", quote(c)))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let body = |p: &str| {
        format!(
            "UPDATE {t} SET hlc = {TRIGGER_STAMP}, origin = {TRIGGER_ORIGIN} WHERE {w}; \
             INSERT INTO _changes (tbl, row_id, hlc, origin) SELECT '{lit}', {rid}, hlc, origin FROM {t} WHERE {w};",
            w = by_pk(p),
            rid = spec.row_id_expr(p)
        )
    };
    let mut v = vec![
        format!(
            "CREATE TRIGGER IF NOT EXISTS \"_sync_{tn}_ai\" AFTER INSERT ON {t} WHEN new.hlc = 0 BEGIN {} END",
            body("new")
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS \"_sync_{tn}_au\" AFTER UPDATE ON {t} WHEN new.hlc = old.hlc AND new.origin = old.origin BEGIN {} END",
            body("new")
        ),
    ];
    if spec.col("deleted").is_some() && &*spec.name != "kv" {
        // BEFORE DELETE: turn the delete into a tombstone update and skip the real
        // delete (RAISE(IGNORE)); deleting a tombstone is a no-op, so tombstones are
        // never lost (a lost tombstone would let replicas diverge). The one exception
        // is compaction collecting tombstones every region has acked: it sets
        // `_meta.collect_tombstones` for the length of its own statement (inside its
        // transaction, so no one else ever sees it). Dropped and created anew so files
        // made before the exception get it.
        v.push(format!("DROP TRIGGER IF EXISTS \"_sync_{tn}_ad\""));
        v.push(format!("DROP TRIGGER IF EXISTS \"_sync_{tn}_bd\""));
        v.push(format!(
            "CREATE TRIGGER IF NOT EXISTS \"_sync_{tn}_bd\" BEFORE DELETE ON {t} \
             WHEN old.deleted = 0 OR NOT EXISTS (SELECT 1 FROM _meta WHERE key = '{COLLECT_TOMBSTONES}') BEGIN \
             UPDATE {t} SET deleted = 1, hlc = {TRIGGER_STAMP}, origin = {TRIGGER_ORIGIN} WHERE {w} AND old.deleted = 0; \
             INSERT INTO _changes (tbl, row_id, hlc, origin) SELECT '{lit}', {rid}, hlc, origin FROM {t} WHERE {w} AND old.deleted = 0; \
             SELECT RAISE(IGNORE); END",
            rid = spec.row_id_expr("old"),
            w = by_pk("old"),
        ));
    }
    v
}

/// Reads a table's spec on a reader thread.
pub fn load_spec(r: &mut Reader, name: &str, append_only: bool) -> Result<Option<TableSpec>> {
    let info = r.query(&format!("PRAGMA table_info({})", quote(name)), vec![]).map_err(store_err)?;
    Ok(TableSpec::from_table_info(name, &info, append_only))
}
