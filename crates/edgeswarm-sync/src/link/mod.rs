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
use crate::row::{RowVersion, TableSpec, REGION_LOG_APPEND};
use async_trait::async_trait;
use edgeswarm_store::{QueryResult, SqlValue};
use std::collections::HashMap;
use std::sync::Arc;

/// One atomic batch of row versions for a region.
#[derive(Debug, Clone)]
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
    /// transaction). Each row is an LWW upsert followed by a conditional log append.
    pub fn statements(&self) -> Vec<(Arc<str>, Vec<SqlValue>)> {
        let mut upserts: HashMap<&str, Arc<str>> = HashMap::new();
        let append: Arc<str> = REGION_LOG_APPEND.into();
        let mut out = Vec::with_capacity(self.rows.len() * 2);
        for r in &self.rows {
            let Some(spec) = self.tables.get(&r.tbl) else {
                continue;
            };
            let sql = upserts.entry(&spec.name).or_insert_with(|| spec.upsert_lww().into()).clone();
            out.push((sql, r.values.clone()));
            out.push((
                append.clone(),
                vec![
                    SqlValue::Text(r.tbl.to_string()),
                    SqlValue::Text(r.row_id.clone()),
                    SqlValue::Integer(r.hlc),
                    SqlValue::Text(r.origin.clone()),
                    SqlValue::Text(self.pusher.clone()),
                    SqlValue::Text(r.to_json()),
                ],
            ));
        }
        out
    }
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
