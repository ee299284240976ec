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
//! data)` — a log of pointers to accepted versions, not copies of them (see
//! [`crate::row::REGION_LOG_DDL`]). Applying a version is two statements: an upsert
//! guarded by `(excluded.hlc, excluded.origin) > (t.hlc, t.origin)` and a log append
//! that only happens if the upsert changes a row. So a redelivered or losing version
//! changes nothing and is not logged again: exactly-once effect over at-least-once
//! delivery. A pull reads a page of the log, then the current row of every entry it
//! wants from the region's tables.

mod hrana;
mod local;
pub mod tls;

pub use hrana::{to_hrana, HranaLink};
pub use local::LocalLink;
pub use tls::TlsMode;

use crate::error::Result;
use crate::row::{quote, Registry, RowVersion, TableSpec};
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
    /// Versions per statement, at most (the link's [`RegionLink::rows_per_statement`]).
    pub rows_per_statement: usize,
    /// Statements built ahead of time (on a reader thread, off the async workers);
    /// taken by the first `push`, rebuilt if absent.
    pub prepared: std::sync::Mutex<Option<Vec<RegionStmt>>>,
}

impl PushBatch {
    /// A batch with its statements built now (call it on a blocking thread), at most
    /// `rows_per_statement` versions per statement.
    pub fn new(
        id: String,
        pusher: String,
        rows: Vec<RowVersion>,
        tables: HashMap<Arc<str>, Arc<TableSpec>>,
        rows_per_statement: usize,
    ) -> Self {
        let mut b = PushBatch {
            id,
            pusher,
            rows,
            tables,
            rows_per_statement,
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
    /// each chunk is a log append of the versions that will win (checked against the
    /// region's rows *before* the upsert, so a redelivered or losing version is not
    /// logged again), for a mutable table a copy of the rows they will replace into its
    /// superseded-versions table ([`TableSpec::prev_table`]), then a multi-row LWW
    /// upsert.
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
            let per_row = spec.columns.len().max(3 + spec.pk.len());
            let chunk = (MAX_PARAMS / per_row)
                .clamp(1, MAX_ROWS_PER_STATEMENT)
                .min(self.rows_per_statement.max(1));
            let pk_idx: Vec<usize> = spec.pk.iter().filter_map(|c| spec.col(c)).collect();
            // SQL text depends only on the table and the chunk length: build it once
            // per length (full chunks repeat it), not once per chunk.
            let mut sql_for: Vec<ChunkSql> = Vec::new();
            let keep_prev = !spec.append_only;
            for part in rows.chunks(chunk) {
                // Log append (and the superseded-version copy, keyed the same way).
                let mut params = Vec::with_capacity(2 + part.len() * (3 + pk_idx.len()));
                let mut prev = Vec::with_capacity(if keep_prev { part.len() * (2 + pk_idx.len()) } else { 0 });
                params.push(SqlValue::Text(spec.name.to_string()));
                params.push(SqlValue::Text(self.pusher.clone()));
                for r in part {
                    params.push(SqlValue::Text(r.row_id.clone()));
                    params.push(SqlValue::Integer(r.hlc));
                    params.push(SqlValue::Text(r.origin.clone()));
                    if keep_prev {
                        prev.push(SqlValue::Integer(r.hlc));
                        prev.push(SqlValue::Text(r.origin.clone()));
                    }
                    for &i in &pk_idx {
                        params.push(r.values[i].clone());
                        if keep_prev {
                            prev.push(r.values[i].clone());
                        }
                    }
                }
                let (log_sql, prev_sql, upsert_sql) = match sql_for.iter().find(|(n, _, _, _)| *n == part.len()) {
                    Some((_, l, p, u)) => (l.clone(), p.clone(), u.clone()),
                    None => {
                        let l: Arc<str> = log_append_sql(spec, pk_idx.len(), part.len()).into();
                        let p: Arc<str> = keep_prev_sql(spec, part.len()).into();
                        let u: Arc<str> = spec.upsert_lww_rows(part.len()).into();
                        sql_for.push((part.len(), l.clone(), p.clone(), u.clone()));
                        (l, p, u)
                    }
                };
                out.push(RegionStmt {
                    sql: log_sql,
                    params,
                    counts_applied: true,
                });
                if keep_prev {
                    out.push(RegionStmt {
                        sql: prev_sql,
                        params: prev,
                        counts_applied: false,
                    });
                }
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

/// `(?a, ?b, ...), (...)`: `n` tuples of `width` numbered parameters from `?first`.
fn values_tuples(width: usize, n: usize, first: usize) -> String {
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
            tuples.push_str(&(first + r * width + i).to_string());
        }
        tuples.push(')');
    }
    tuples
}

/// Copies the rows that `n` incoming versions of `spec` will replace (parameters per
/// version: hlc, origin, then the key columns) into the table's superseded-versions
/// table, before the upsert replaces them. Rows the versions do not beat stay put.
fn keep_prev_sql(spec: &TableSpec, n: usize) -> String {
    let tuples = values_tuples(2 + spec.pk.len(), n, 1);
    let t = quote(&spec.name);
    let cols = spec.columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    let t_cols = spec
        .columns
        .iter()
        .map(|c| format!("{t}.{}", quote(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let key_match = spec
        .pk
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{t}.{} = v.column{}", quote(c), 3 + i))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!(
        "INSERT OR IGNORE INTO {} ({cols}) SELECT {t_cols} FROM (VALUES {tuples}) AS v JOIN {t} ON {key_match} \
         WHERE ({t}.hlc, {t}.origin) < (v.column1, v.column2)",
        quote(&spec.prev_table())
    )
}

/// The log append for `n` versions of `spec` (parameters: `?1` table, `?2` pusher,
/// then per version row_id, hlc, origin and the key columns): only versions that will
/// win against the region's current row are logged. The entry points at the row; it
/// does not copy it (`data` is `''`, see [`crate::row::REGION_LOG_DDL`]).
fn log_append_sql(spec: &TableSpec, pk_len: usize, n: usize) -> String {
    let tuples = values_tuples(3 + pk_len, n, 3);
    let t = quote(&spec.name);
    let key_match = spec
        .pk
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{t}.{} = v.column{}", quote(c), 4 + i))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!(
        "INSERT INTO _region_log (tbl, row_id, hlc, origin, pusher, data) \
         SELECT ?1, v.column1, v.column2, v.column3, ?2, '' FROM (VALUES {tuples}) AS v \
         WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {key_match} AND ({t}.hlc, {t}.origin) >= (v.column2, v.column3))"
    )
}

/// SQL of one chunk length of one table: (length, log append, superseded copy, upsert).
type ChunkSql = (usize, Arc<str>, Arc<str>, Arc<str>);

/// Bound parameters per statement we stay under (SQLite's default limit is 32,766).
const MAX_PARAMS: usize = 30_000;

/// Versions per multi-row statement, at most (the default of
/// [`RegionLink::rows_per_statement`]).
pub const MAX_ROWS_PER_STATEMENT: usize = 500;

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

/// One entry of a region's log, with the row it points at when the puller wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Position in the region log (the pull cursor).
    pub seq: i64,
    /// Table of the version.
    pub tbl: String,
    /// Row key.
    pub row_id: String,
    /// Stamp of the version the entry was logged for.
    pub hlc: i64,
    /// Node that wrote that version.
    pub origin: String,
    /// Node that pushed it to this region (may differ from origin when relayed).
    pub pusher: String,
    /// The region's current row (laid out as the puller's spec of the table; its own
    /// `hlc`/`origin` columns are authoritative and may be newer than the entry's).
    /// `None` when the puller does not want it ([`LogEntry::wanted_by`]), the table is
    /// not replicated by the puller, or the row is gone.
    pub row: Option<Vec<SqlValue>>,
}

impl LogEntry {
    /// Parses a row of [`crate::row::REGION_LOG_PULL`] (no version attached yet).
    pub fn from_row(r: &[SqlValue]) -> Option<Self> {
        Some(LogEntry {
            seq: r.first()?.as_i64()?,
            tbl: r.get(1)?.as_str()?.to_string(),
            row_id: r.get(2)?.as_str()?.to_string(),
            hlc: r.get(3)?.as_i64()?,
            origin: r.get(4)?.as_str()?.to_string(),
            pusher: r.get(5)?.as_str()?.to_string(),
            row: None,
        })
    }

    /// Does node `me` need this entry's row? Not for versions it wrote or pushed
    /// itself (it holds them or newer).
    pub fn wanted_by(&self, me: &str) -> bool {
        self.pusher != me && self.origin != me
    }

    /// The reads that find the entry's version in the region, if `me` wants it and
    /// replicates its table (see [`RowLookup`]).
    pub fn row_lookup(&self, me: &str, reg: &Registry) -> Option<RowLookup> {
        if !self.wanted_by(me) {
            return None;
        }
        let spec = reg.get(&self.tbl)?;
        let key = spec.pk_params(&self.row_id)?;
        let prev = (!spec.append_only).then(|| {
            let mut p = key.clone();
            p.push(SqlValue::Integer(self.hlc));
            p.push(SqlValue::Text(self.origin.clone()));
            (spec.select_prev_version(), p)
        });
        Some(RowLookup {
            current: (spec.select_star_by_pk(), key),
            prev,
            spec,
        })
    }
}

/// One pull: the wanted entries of a page of the region log, and where it ends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PullPage {
    /// Entries of the page written and pushed by other nodes, in log order.
    pub entries: Vec<LogEntry>,
    /// The new pull cursor: the page end, or the log end if that comes first.
    pub last: i64,
    /// More of the log lies past the page (pull again at once).
    pub full: bool,
    /// The region log's last position as read (may be below the cursor asked from:
    /// the region was wiped or restored from an older copy).
    pub end: i64,
    /// The region's identity (`_region_meta.epoch`), read in the same transaction;
    /// `None` when the region has none (its tables are gone).
    pub epoch: Option<String>,
}

impl PullPage {
    /// The page `(after, after + limit]` of a log that ends at `end`.
    pub fn new(after: i64, limit: usize, end: i64, entries: Vec<LogEntry>) -> Self {
        let page_end = after.saturating_add(limit as i64);
        PullPage {
            entries,
            last: end.min(page_end).max(after),
            full: end > page_end,
            end,
            epoch: None,
        }
    }
}

/// How a puller finds the version a log entry names: the region's current row (by
/// key), and, when that row has moved on to a newer version, the entry's own version
/// in the table's superseded-versions table ([`TableSpec::prev_table`]). Run both in
/// one read transaction and pass the results to [`RowLookup::pick`].
#[derive(Debug, Clone)]
pub struct RowLookup {
    /// The entry's table.
    pub spec: Arc<TableSpec>,
    /// `SELECT *` of the current row, and its parameters.
    pub current: (String, Vec<SqlValue>),
    /// `SELECT *` of the superseded version (mutable tables only), and its parameters.
    pub prev: Option<(String, Vec<SqlValue>)>,
}

impl RowLookup {
    /// Does the current row (as read) still hold the entry's version?
    pub fn is_entry_version(&self, e: &LogEntry, current: &QueryResult) -> bool {
        let (Some(h), Some(o)) = (
            current.columns.iter().position(|c| c == "hlc"),
            current.columns.iter().position(|c| c == "origin"),
        ) else {
            return false;
        };
        current.rows.first().is_some_and(|r| {
            r.get(h).and_then(|v| v.as_i64()) == Some(e.hlc) && r.get(o).and_then(|v| v.as_str()) == Some(e.origin.as_str())
        })
    }

    /// The row to apply, laid out as the spec: the entry's exact version if the region
    /// still has it (current or superseded), else the current row (a region file from
    /// before superseded versions were kept: the newer version converges the same).
    pub fn pick(&self, current: QueryResult, prev: Option<QueryResult>) -> Option<Vec<SqlValue>> {
        let from = |r: QueryResult| {
            let QueryResult { columns, rows, .. } = r;
            rows.into_iter().next().map(|v| self.spec.lay_out(&columns, v))
        };
        if let Some(p) = prev.filter(|p| !p.rows.is_empty()) {
            return from(p);
        }
        from(current)
    }
}

/// How a SyncActor talks to one region. Every method is safe to retry.
#[async_trait]
pub trait RegionLink: Send + Sync + 'static {
    /// The region's name.
    fn region(&self) -> &str;
    /// The region's url, as configured but redacted (no token; for `edge_replicas.url`,
    /// status and logs).
    fn url(&self) -> &str;
    /// How the link's TLS is verified. Default: no TLS.
    fn tls(&self) -> TlsMode {
        TlsMode::None
    }
    /// What the server reported itself as (e.g. `tursodb 0.7.0`), once known.
    fn server_version(&self) -> Option<String> {
        None
    }
    /// Versions per statement a push should use. Default [`MAX_ROWS_PER_STATEMENT`]:
    /// over a network every statement costs bytes and parsing on the server, so few
    /// big multi-row statements are best.
    fn rows_per_statement(&self) -> usize {
        MAX_ROWS_PER_STATEMENT
    }
    /// `(depth, capacity)` of the request channel in front of the region, for links
    /// that queue requests (`file:` regions: channel `region_link`). Default `None`.
    fn queue(&self) -> Option<(usize, usize)> {
        None
    }
    /// Creates the region log and these tables if missing.
    async fn ensure_tables(&self, tables: &[Arc<TableSpec>]) -> Result<()>;
    /// Applies a batch atomically: after `Ok` every version in it is durable in the
    /// region (or was already superseded there); after `Err` none or all of it may
    /// have been applied, and resending it is harmless.
    async fn push(&self, batch: &PushBatch) -> Result<PushAck>;
    /// The entries of log page `(after, after + limit]` that `me` did not write or
    /// push, in order, each with the version it names attached (see
    /// [`LogEntry::row_lookup`]), read in one transaction.
    async fn pull(&self, after: i64, me: &str, limit: usize, reg: &Arc<Registry>) -> Result<PullPage>;
    /// A cheap round trip (health probe).
    async fn ping(&self) -> Result<()>;
    /// Gives the region a new identity (see [`crate::row::REGION_EPOCH_SET`]).
    async fn set_epoch(&self, epoch: &str) -> Result<()>;
    /// Runs maintenance statements (compaction, see [`crate::compact`]) in one
    /// transaction; returns the rows they deleted.
    async fn maintain(&self, stmts: Vec<RegionStmt>) -> Result<usize>;
    /// Runs one read-only statement on the region.
    async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<QueryResult>;
}
