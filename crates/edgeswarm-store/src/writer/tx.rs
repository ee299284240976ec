//! The open batch transaction as the writer's ops see it (`TxCtx`), and what a batch has
//! logged so far (`BatchLog`): the change-log rows, the append-only rowid ranges, and
//! the stamping of rows that user SQL appended.

use super::api::ChangeRef;
use crate::conn::{self, CachedConn};
use crate::error::{Result, StoreError};
use crate::guard::{self, Rules, WriterAuthorizer};
use crate::value::{QueryResult, SqlValue};
use edgeswarm_core::{Hlc, HybridClock};
use libsql::Value as V;

/// Append-only tables: logged as one rowid range per batch instead of one `_changes`
/// row per insert (a per-row log entry costs as much as the insert itself; see
/// docs/ARCHITECTURE.md). Their rows never conflict, so the range is all sync needs.
pub const APPEND_ONLY: [&str; 2] = ["agent_metrics", "conversations"];
/// `agent_metrics`' index in `APPEND_ONLY` (and `BatchLog::ranges`).
pub(crate) const METRICS: usize = 0;
/// `conversations`' index in `APPEND_ONLY` (and `BatchLog::ranges`).
pub(crate) const CONVERSATIONS: usize = 1;

/// What one batch has logged so far; restored on a savepoint rollback.
#[derive(Default)]
pub struct BatchLog {
    /// Rows changed, in order, for the commit event.
    pub changes: Vec<ChangeRef>,
    /// `_changes.seq` of the last logged entry.
    pub last_seq: i64,
    /// Inserted rowid range per append-only table (index into `APPEND_ONLY`).
    pub ranges: [Option<(i64, i64)>; 2],
    /// Highest stamp given to an append-only row in this batch.
    pub range_hlc: Hlc,
}

/// A savepoint's view of a `BatchLog`: enough to undo what an op logged.
pub(crate) type LogMark = (usize, i64, [Option<(i64, i64)>; 2], Hlc);

impl BatchLog {
    pub(crate) fn mark(&self) -> LogMark {
        (self.changes.len(), self.last_seq, self.ranges, self.range_hlc)
    }
    pub(crate) fn restore(&mut self, m: LogMark) {
        self.changes.truncate(m.0);
        self.last_seq = m.1;
        self.ranges = m.2;
        self.range_hlc = m.3;
    }
    /// Adds rowids `lo..=hi` of append-only table `table` (stamped `hlc`) to the batch's range.
    pub(crate) fn extend_range(&mut self, table: usize, lo: i64, hi: i64, hlc: Hlc) {
        let r = &mut self.ranges[table];
        *r = Some(match *r {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
        if hlc > self.range_hlc {
            self.range_hlc = hlc;
        }
    }
}

/// What the writer's ops see of the open transaction.
pub struct TxCtx<'a> {
    /// The writer's connection, inside the batch transaction.
    pub(crate) conn: &'a mut CachedConn,
    /// The node's clock, for stamps.
    pub(crate) clock: &'a HybridClock,
    /// This node's id.
    pub(crate) origin: &'a str,
    /// The batch's log, appended to by `log_change` and the record inserts.
    pub(crate) log: &'a mut BatchLog,
}

impl<'a> TxCtx<'a> {
    /// This node's id (the `origin` of local writes).
    pub fn origin(&self) -> &str {
        self.origin
    }
    /// A fresh hybrid-clock stamp.
    pub fn stamp(&self) -> Hlc {
        self.clock.now()
    }
    /// The clock, to merge remote stamps.
    pub fn clock(&self) -> &HybridClock {
        self.clock
    }
    /// Executes a cached prepared statement.
    pub fn execute(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<u64> {
        self.conn.execute(sql, conn::params(params))
    }
    /// Runs a cached prepared statement and returns its rows.
    pub fn query(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<QueryResult> {
        self.conn.query(sql, conn::params(params))
    }
    /// Appends a row to the change log (same transaction as the write).
    pub fn log_change(&mut self, tbl: &'static str, row_id: String, hlc: Hlc, origin: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO _changes (tbl, row_id, hlc, origin) VALUES (?1, ?2, ?3, ?4)",
            vec![
                V::Text(tbl.into()),
                V::Text(row_id.clone()),
                V::Integer(hlc.as_i64()),
                V::Text(origin.into()),
            ],
        )?;
        self.log.last_seq = self.conn.conn.last_insert_rowid();
        self.log.changes.push(ChangeRef { tbl, row_id });
        Ok(())
    }
    /// Notes a change that is not logged for replication (e.g. local-only tables), so
    /// subscribers still hear about it.
    pub fn note_change(&mut self, tbl: &'static str, row_id: String) {
        self.log.changes.push(ChangeRef { tbl, row_id });
    }

    /// Runs one user statement under the SQL guard's authorizer (the read pool's check
    /// was a first pass; this one sees the writer's schema and the trigger bodies the
    /// statement fires), collects at most `max_bytes` of result values, refuses a
    /// schema change that would tie a user table to the runtime's, and stamps what it
    /// appended.
    pub(crate) fn raw_sql(&mut self, sql: &str, params: Vec<SqlValue>, max_bytes: usize) -> Result<QueryResult> {
        // Rows user SQL appends to append-only tables (the seed's agent_metrics INSERT
        // names no hlc/origin) are stamped and logged like typed ones.
        let before = self.append_only_max_rowids()?;
        let rules = Rules::from_triggers(&self.conn.query(Rules::TRIGGERS_SQL, vec![])?);
        let schema_before = self.schema_version()?;
        let names_before = self.conn.query(guard::SCHEMA_NAMES_SQL, vec![])?;
        let mut res = {
            let guard = WriterAuthorizer::install(&self.conn.conn, rules)?;
            let r = self.conn.query_once_capped(sql, conn::params(params), max_bytes);
            r.map_err(|e| guard.explain(e))?
        };
        res.rows_affected = self.conn.conn.changes();
        let rowid = self.conn.conn.last_insert_rowid();
        res.last_insert_rowid = (rowid != 0).then_some(rowid);
        if self.schema_version()? != schema_before {
            let fks = guard::foreign_keys_into_runtime(&self.conn.query(guard::FOREIGN_KEYS_SQL, vec![])?);
            if let Some((from, to)) = fks.first() {
                return Err(StoreError::Refused(format!(
                    "`{from}` would reference `{to}` with a foreign key; the runtime's tables cannot be referenced (their own writes would start failing)"
                )));
            }
            // e.g. `ALTER TABLE mine RENAME TO search_vec_1` (the authorizer sees only
            // the old name of a rename).
            let names_after = self.conn.query(guard::SCHEMA_NAMES_SQL, vec![])?;
            if let Some(name) = guard::new_reserved_names(&names_before, &names_after).first() {
                return Err(StoreError::Refused(format!(
                    "`{name}` is a name managed by edgeswarm; a table, index, view or trigger of yours cannot take it"
                )));
            }
        }
        self.stamp_appended(before)?;
        Ok(res)
    }

    fn schema_version(&mut self) -> Result<i64> {
        let r = self.conn.query("PRAGMA schema_version", vec![])?;
        Ok(r.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
    }

    fn append_only_max_rowids(&mut self) -> Result<[i64; 2]> {
        let mut out = [0i64; 2];
        for (i, t) in APPEND_ONLY.iter().enumerate() {
            let r = self.conn.query(&format!("SELECT COALESCE(MAX(rowid), 0) FROM {t}"), vec![])?;
            out[i] = r.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0);
        }
        Ok(out)
    }

    /// Stamps rows appended since `before` that carry no stamp yet, and logs them.
    fn stamp_appended(&mut self, before: [i64; 2]) -> Result<()> {
        let after = self.append_only_max_rowids()?;
        for i in 0..APPEND_ONLY.len() {
            if after[i] > before[i] {
                let hlc = self.clock.now();
                self.conn.execute(
                    &format!(
                        // Every appended row, whatever stamp the statement gave it: a
                        // far-future `hlc` would drag every replica's clock along.
                        "UPDATE {} SET hlc = ?1, origin = ?2 WHERE rowid BETWEEN ?3 AND ?4",
                        APPEND_ONLY[i]
                    ),
                    vec![
                        V::Integer(hlc.as_i64()),
                        V::Text(self.origin.to_string()),
                        V::Integer(before[i] + 1),
                        V::Integer(after[i]),
                    ],
                )?;
                self.log.extend_range(i, before[i] + 1, after[i], hlc);
            }
        }
        Ok(())
    }
}
