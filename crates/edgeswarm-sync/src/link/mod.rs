//! Region links: how a SyncActor talks to one region.
//!
//! A link ships atomic batches of row versions (all or nothing), pulls the region's
//! append-only log after a cursor, answers pings and runs read-only queries. Two
//! implementations: [`LocalLink`] (a libSQL file, with a simulated network profile and
//! a partition switch) and [`HranaLink`] (Hrana over HTTP: Turso Cloud, sqld,
//! `tursodb --sync-server`).
//!
//! Region layout (created by the link, idempotently): one table per replicated table,
//! same columns and primary key, and `_region_log(seq, tbl, row_id, hlc, origin, pusher,
//! data)`. Applying a version is two statements: an upsert guarded by
//! `(excluded.hlc, excluded.origin) > (t.hlc, t.origin)` and a log append that only
//! happens if the upsert changed a row. So a redelivered or losing version changes
//! nothing and is not logged again: exactly-once effect over at-least-once delivery.

mod hrana;
mod local;

pub use hrana::HranaLink;
pub use local::LocalLink;

use crate::error::Result;
use crate::row::{quote, RowVersion, TableSpec};
use async_trait::async_trait;
use edgeswarm_store::{QueryResult, SqlValue};
use std::collections::HashMap;
use std::sync::Arc;

/// One atomic batch of row versions for a region.
#[derive(Debug)]
pub struct PushBatch {
    /// Unique id; becomes `distributed_transactions.transaction_id`.
    pub id: String,
    /// The node that pushes (written to the region log so it can skip its own entries
    /// when pulling).
    pub pusher: String,
    /// Latest version of each changed row in the batch's `_changes` range.
    pub rows: Vec<RowVersion>,
    /// Specs of the tables the rows belong to (to build the statements).
    pub tables: HashMap<Arc<str>, Arc<TableSpec>>,
    /// Statements built ahead of time (on a reader thread, off the async workers);
    /// taken by the first `push`, rebuilt if absent.
    pub prepared: std::sync::Mutex<Option<Vec<RegionStmt>>>,
}

impl PushBatch {
    /// A batch with its statements built now (call it on a blocking thread).
    pub fn new(id: String, pusher: String, rows: Vec<RowVersion>, tables: HashMap<Arc<str>, Arc<TableSpec>>) -> Self {
        let mut b = PushBatch {
            id,
            pusher,
            rows,
            tables,
            prepared: std::sync::Mutex::new(None),
        };
        let st = b.statements();
        b.prepared = std::sync::Mutex::new(Some(st));
        b
    }

    /// The statements to run: the prepared ones (once), else freshly built.
    pub fn take_statements(&self) -> Vec<RegionStmt> {
        let pre = self.prepared.lock().unwrap_or_else(|p| p.into_inner()).take();
        pre.unwrap_or_else(|| self.statements())
    }
}

impl PushBatch {
    /// Approximate payload size, for the simulated bandwidth cap.
    pub fn approx_bytes(&self) -> usize {
        self.rows
            .iter()
            .map(|r| {
                64 + r
                    .values
                    .iter()
                    .map(|v| match v {
                        SqlValue::Text(s) => s.len() + 8,
                        SqlValue::Blob(b) => b.len() + 8,
                        _ => 8,
                    })
                    .sum::<usize>()
            })
            .sum()
    }

    /// The statements that apply this batch on a region, in order (to run inside one
    /// transaction). Rows are grouped by table and chunked (bounded bind parameters);
    /// each chunk is two statements: a log append of the versions that will win
    /// (checked against the region's rows *before* the upsert, so a redelivered or
    /// losing version is not logged again), then a multi-row LWW upsert.
    pub fn statements(&self) -> Vec<RegionStmt> {
        let mut by_table: Vec<(&Arc<TableSpec>, Vec<&RowVersion>)> = Vec::new();
        for r in &self.rows {
            let Some(spec) = self.tables.get(&r.tbl) else {
                continue;
            };
            match by_table.iter_mut().find(|(s, _)| s.name == spec.name) {
                Some((_, v)) => v.push(r),
                None => by_table.push((spec, vec![r])),
            }
        }
        let mut out = Vec::new();
        for (spec, rows) in by_table {
            let per_row = spec.columns.len().max(4 + spec.pk.len());
            let chunk = (MAX_PARAMS / per_row).clamp(1, 500);
            let pk_idx: Vec<usize> = spec.pk.iter().filter_map(|c| spec.col(c)).collect();
            // SQL text depends only on the table and the chunk length: build it once
            // per length (full chunks repeat it), not once per chunk.
            let mut sql_for: Vec<(usize, Arc<str>, Arc<str>)> = Vec::new();
            for part in rows.chunks(chunk) {
                // Log append.
                let mut params = Vec::with_capacity(2 + part.len() * (4 + pk_idx.len()));
                params.push(SqlValue::Text(spec.name.to_string()));
                params.push(SqlValue::Text(self.pusher.clone()));
                for r in part {
                    params.push(SqlValue::Text(r.row_id.clone()));
                    params.push(SqlValue::Integer(r.hlc));
                    params.push(SqlValue::Text(r.origin.clone()));
                    params.push(SqlValue::Text(r.to_json()));
                    for &i in &pk_idx {
                        params.push(r.values[i].clone());
                    }
                }
                let (log_sql, upsert_sql) = match sql_for.iter().find(|(n, _, _)| *n == part.len()) {
                    Some((_, l, u)) => (l.clone(), u.clone()),
                    None => {
                        let l: Arc<str> = log_append_sql(spec, pk_idx.len(), part.len()).into();
                        let u: Arc<str> = spec.upsert_lww_rows(part.len()).into();
                        sql_for.push((part.len(), l.clone(), u.clone()));
                        (l, u)
                    }
                };
                out.push(RegionStmt {
                    sql: log_sql,
                    params,
                    counts_applied: true,
                });
                // Upsert.
                let mut params = Vec::with_capacity(part.len() * spec.columns.len());
                for r in part {
                    params.extend(r.values.iter().cloned());
                }
                out.push(RegionStmt {
                    sql: upsert_sql,
                    params,
                    counts_applied: false,
                });
            }
        }
        out
    }
}

/// The log append for `n` versions of `spec` (parameters: `?1` table, `?2` pusher,
/// then per version row_id, hlc, origin, data and the key columns): only versions that
/// will win against the region's current row are logged.
fn log_append_sql(spec: &TableSpec, pk_len: usize, n: usize) -> String {
    let width = 4 + pk_len;
    let mut tuples = String::with_capacity(n * width * 8);
    for r in 0..n {
        if r > 0 {
            tuples.push_str(", ");
        }
        tuples.push('(');
        for i in 0..width {
            if i > 0 {
                tuples.push_str(", ");
            }
            tuples.push('?');
            tuples.push_str(&(3 + r * width + i).to_string());
        }
        tuples.push(')');
    }
    let t = quote(&spec.name);
    let key_match = spec
        .pk
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{t}.{} = v.column{}", quote(c), 5 + i))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!(
        "INSERT INTO _region_log (tbl, row_id, hlc, origin, pusher, data) \
         SELECT ?1, v.column1, v.column2, v.column3, ?2, v.column4 FROM (VALUES {tuples}) AS v \
         WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {key_match} AND ({t}.hlc, {t}.origin) >= (v.column2, v.column3))"
    )
}

/// Bound parameters per statement we stay under (SQLite's default limit is 32,766).
const MAX_PARAMS: usize = 30_000;

/// One statement of a region batch.
#[derive(Debug, Clone)]
pub struct RegionStmt {
    /// SQL text.
    pub sql: Arc<str>,
    /// Parameters (numbered `?N`).
    pub params: Vec<SqlValue>,
    /// Rows it changes are versions new to the region (the log append).
    pub counts_applied: bool,
}

/// What a region said about a pushed batch.
#[derive(Debug, Clone, Default)]
pub struct PushAck {
    /// Versions that were new to the region (`None` when the server does not report it).
    pub applied: Option<usize>,
}

/// One entry of a region's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Position in the region log (the pull cursor).
    pub seq: i64,
    /// Table of the version.
    pub tbl: String,
    /// Row key.
    pub row_id: String,
    /// Version stamp.
    pub hlc: i64,
    /// Node that wrote the version.
    pub origin: String,
    /// Node that pushed it to this region (may differ from origin when relayed).
    pub pusher: String,
    /// Row content as JSON; `None` for entries the puller wrote itself.
    pub data: Option<String>,
}

impl LogEntry {
    /// Parses a row of [`crate::row::REGION_LOG_PULL`].
    pub fn from_row(r: &[SqlValue]) -> Option<Self> {
        Some(LogEntry {
            seq: r.first()?.as_i64()?,
            tbl: r.get(1)?.as_str()?.to_string(),
            row_id: r.get(2)?.as_str()?.to_string(),
            hlc: r.get(3)?.as_i64()?,
            origin: r.get(4)?.as_str()?.to_string(),
            pusher: r.get(5)?.as_str()?.to_string(),
            data: r.get(6).and_then(|v| v.as_str()).map(str::to_string),
        })
    }
}

/// How a SyncActor talks to one region. Every method is safe to retry.
#[async_trait]
pub trait RegionLink: Send + Sync + 'static {
    /// The region's name.
    fn region(&self) -> &str;
    /// The region's url, as configured (for `edge_replicas.url`).
    fn url(&self) -> &str;
    /// Creates the region log and these tables if missing.
    async fn ensure_tables(&self, tables: &[Arc<TableSpec>]) -> Result<()>;
    /// Applies a batch atomically: after `Ok` every version in it is durable in the
    /// region (or was already superseded there); after `Err` none or all of it may
    /// have been applied, and resending it is harmless.
    async fn push(&self, batch: &PushBatch) -> Result<PushAck>;
    /// Up to `limit` log entries after `after`, in order; entries pushed by or
    /// originating from `me` come without data.
    async fn pull(&self, after: i64, me: &str, limit: usize) -> Result<Vec<LogEntry>>;
    /// A cheap round trip (health probe).
    async fn ping(&self) -> Result<()>;
    /// Runs one read-only statement on the region.
    async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<QueryResult>;
}
