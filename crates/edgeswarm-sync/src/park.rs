//! Parked versions: row versions that could not be applied, kept aside so the rest of
//! the log keeps moving.
//!
//! A pulled version that home refuses (NOT NULL, UNIQUE, CHECK, a foreign key whose
//! parent has not arrived yet, a STRICT type mismatch), a pushed version the region
//! refuses, and a pulled version stamped more than the clock's maximum drift ahead of
//! this node's wall clock are written to `_sync_parked` with the error, and the cursor
//! moves on. Nothing is dropped: every parked version is retried at the start of later
//! pulls from its region (with a per-row backoff of 2 s after the first try, doubling up to 5 min, at most
//! [`RETRY_BATCH`] rows per pull), and leaves the table once it applies or once home holds
//! that version or a newer one (LWW would discard it anyway). A far-future version thus
//! applies as soon as the wall clock is within the drift of its stamp; a child row
//! parked for a missing parent applies once the parent arrived. [`crate::SyncHandle::retry_parked`]
//! retries every parked row at once. `sync_status` shows the count and the latest per
//! region; `edgeswarm doctor` shows the count and the latest error.

use crate::row::RowVersion;
use edgeswarm_store::{SqlValue, StoreError, TxCtx};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The parked-versions table (sync-owned; created at sync start).
pub const PARKED_DDL: &str = "CREATE TABLE IF NOT EXISTS _sync_parked (\
    region TEXT NOT NULL, direction TEXT NOT NULL, tbl TEXT NOT NULL, row_id TEXT NOT NULL, \
    hlc INTEGER NOT NULL, origin TEXT NOT NULL, reason TEXT NOT NULL, error TEXT NOT NULL, \
    payload TEXT NOT NULL, first_seen INTEGER NOT NULL, last_try INTEGER NOT NULL, \
    attempts INTEGER NOT NULL DEFAULT 1, \
    PRIMARY KEY (region, direction, tbl, row_id, hlc, origin))";

/// Parked rows retried per pull, at most (bounds the work a pull adds).
pub const RETRY_BATCH: i64 = 64;

/// Why a version was parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reason {
    /// The receiving side refused the row (constraint, type).
    Poison,
    /// The stamp is further ahead of the wall clock than the maximum drift.
    Future,
}

impl Reason {
    /// As stored in `_sync_parked.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Poison => "poison",
            Reason::Future => "future",
        }
    }
}

/// Which way the parked version was travelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Direction {
    /// Pulled from the region, refused at home.
    Pull,
    /// Pushed from home, refused by the region.
    Push,
}

impl Direction {
    /// As stored in `_sync_parked.direction`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Pull => "pull",
            Direction::Push => "push",
        }
    }
}

/// A version to park, with what went wrong.
#[derive(Debug, Clone)]
pub struct Parked {
    /// The version itself (kept whole in `payload`, so it can be retried without the
    /// region).
    pub version: RowVersion,
    /// Why it was parked.
    pub reason: Reason,
    /// The error, as shown in status and doctor.
    pub error: String,
}

/// A version as stored in `_sync_parked.payload` (JSON).
#[derive(Serialize, Deserialize)]
struct Payload {
    /// Column names, in the order of `values`.
    columns: Vec<String>,
    /// Full row content.
    values: Vec<SqlValue>,
}

/// The latest parked version of a region, as shown in `sync_status`.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct ParkedInfo {
    /// Table of the version.
    pub table: String,
    /// Its key (`_changes.row_id` form).
    pub row_id: String,
    /// `pull` or `push`.
    pub direction: String,
    /// `poison` or `future`.
    pub reason: String,
    /// The last error.
    pub error: String,
    /// Tries so far.
    pub attempts: i64,
}

/// Writes (or refreshes) parked versions inside a writer transaction.
pub fn park(ctx: &mut TxCtx<'_>, region: &str, dir: Direction, rows: &[Parked], now: i64) -> Result<(), StoreError> {
    for p in rows {
        let v = &p.version;
        let payload = serde_json::to_string(&Payload {
            columns: v.columns.to_vec(),
            values: v.values.clone(),
        })
        .unwrap_or_default();
        ctx.execute(
            "INSERT INTO _sync_parked (region, direction, tbl, row_id, hlc, origin, reason, error, payload, first_seen, last_try, attempts) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, 1) \
             ON CONFLICT(region, direction, tbl, row_id, hlc, origin) DO UPDATE SET reason = excluded.reason, error = excluded.error, \
             last_try = excluded.last_try, attempts = attempts + 1",
            vec![
                region.into(),
                dir.as_str().into(),
                v.tbl.to_string().into(),
                v.row_id.clone().into(),
                v.hlc.into(),
                v.origin.clone().into(),
                p.reason.as_str().into(),
                p.error.clone().into(),
                payload.into(),
                now.into(),
            ],
        )?;
    }
    Ok(())
}

/// Removes one parked version (it applied or was superseded).
pub fn unpark(ctx: &mut TxCtx<'_>, region: &str, dir: Direction, v: &RowVersion) -> Result<(), StoreError> {
    ctx.execute(
        "DELETE FROM _sync_parked WHERE region = ?1 AND direction = ?2 AND tbl = ?3 AND row_id = ?4 AND hlc = ?5 AND origin = ?6",
        vec![
            region.into(),
            dir.as_str().into(),
            v.tbl.to_string().into(),
            v.row_id.clone().into(),
            v.hlc.into(),
            v.origin.clone().into(),
        ],
    )?;
    Ok(())
}

/// Due parked versions of a region and direction (`all`: regardless of backoff), oldest
/// first, at most `limit`.
pub fn due(
    r: &mut edgeswarm_store::Reader,
    region: &str,
    dir: Direction,
    now: i64,
    all: bool,
    limit: i64,
) -> edgeswarm_store::Result<Vec<RowVersion>> {
    let q = r.query(
        "SELECT tbl, row_id, hlc, origin, payload FROM _sync_parked WHERE region = ?1 AND direction = ?2 \
         AND (?4 OR last_try + MIN(1000 * (1 << MIN(attempts, 9)), 300000) <= ?3) ORDER BY first_seen, hlc LIMIT ?5",
        vec![region.into(), dir.as_str().into(), now.into(), (all as i64).into(), limit.into()],
    )?;
    let mut out = Vec::new();
    for row in q.rows {
        let (Some(tbl), Some(row_id), Some(hlc), Some(origin), Some(payload)) =
            (row[0].as_str(), row[1].as_str(), row[2].as_i64(), row[3].as_str(), row[4].as_str())
        else {
            continue;
        };
        let Ok(p) = serde_json::from_str::<Payload>(payload) else {
            continue;
        };
        out.push(RowVersion {
            tbl: Arc::from(tbl),
            row_id: row_id.to_string(),
            hlc,
            origin: origin.to_string(),
            columns: p.columns.into(),
            values: p.values,
        });
    }
    Ok(out)
}

/// Count and latest parked version of a region.
pub fn summary(r: &mut edgeswarm_store::Reader, region: &str) -> edgeswarm_store::Result<(i64, Option<ParkedInfo>)> {
    let q = r.query("SELECT COUNT(*) FROM _sync_parked WHERE region = ?1", vec![region.into()])?;
    let n = q.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0);
    if n == 0 {
        return Ok((0, None));
    }
    let q = r.query(
        "SELECT tbl, row_id, direction, reason, error, attempts FROM _sync_parked WHERE region = ?1 ORDER BY last_try DESC LIMIT 1",
        vec![region.into()],
    )?;
    let latest = q.rows.first().map(|r| ParkedInfo {
        table: r[0].as_str().unwrap_or_default().to_string(),
        row_id: r[1].as_str().unwrap_or_default().to_string(),
        direction: r[2].as_str().unwrap_or_default().to_string(),
        reason: r[3].as_str().unwrap_or_default().to_string(),
        error: r[4].as_str().unwrap_or_default().to_string(),
        attempts: r[5].as_i64().unwrap_or(0),
    });
    Ok((n, latest))
}

/// Errors that come from the row itself, so applying it again unchanged would fail
/// again: park the row. Everything else (disk full, I/O, busy, shut down) fails the
/// pull, which is retried with the cursor where it was.
pub fn is_poison(e: &StoreError) -> bool {
    matches!(e, StoreError::Constraint(_) | StoreError::Sql(_) | StoreError::Invalid(_))
}
