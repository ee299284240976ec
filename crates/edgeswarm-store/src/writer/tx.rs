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
use std::time::{Duration, Instant};

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
    /// Every statement the batch's applied ops ran, in order, with its parameters: when
    /// SQLite rolls the whole transaction back under one op (an interrupted or
    /// I/O-failed write, `RAISE(ROLLBACK)`), the writer begins again and replays these,
    /// so the other ops of the batch still commit. Only kept while other ops share the
    /// transaction (`TxCtx::journal`).
    pub(crate) replay: Vec<Replay>,
}

/// One statement an op ran, kept to replay it on the same state (see `BatchLog::replay`).
pub(crate) struct Replay {
    /// The SQL, as run.
    pub(crate) sql: String,
    /// Its parameters (stamps included), as bound.
    pub(crate) params: Vec<V>,
    /// Rows it changed (`execute`), or `None` for a statement run as a query: a replay
    /// that changes a different number of rows is not the same history and fails the batch.
    pub(crate) changed: Option<u64>,
}

/// A savepoint's view of a `BatchLog`: enough to undo what an op logged.
pub(crate) type LogMark = (usize, i64, [Option<(i64, i64)>; 2], Hlc, usize);

impl BatchLog {
    pub(crate) fn mark(&self) -> LogMark {
        (self.changes.len(), self.last_seq, self.ranges, self.range_hlc, self.replay.len())
    }
    pub(crate) fn restore(&mut self, m: LogMark) {
        self.changes.truncate(m.0);
        self.last_seq = m.1;
        self.ranges = m.2;
        self.range_hlc = m.3;
        self.replay.truncate(m.4);
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
    /// When this op's time is up, and its limit (for the error); a statement started
    /// after it fails with `Timeout` (the watchdog interrupts one running past it).
    pub(crate) deadline: Option<(Instant, Duration)>,
    /// Keep every statement in `log.replay`: other ops share the transaction.
    pub(crate) journal: bool,
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
        self.exec(sql, conn::params(params))
    }
    /// Runs a cached prepared statement and returns its rows.
    pub fn query(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<QueryResult> {
        self.check()?;
        let params = conn::params(params);
        if !self.journal {
            return self.conn.query(sql, params);
        }
        let r = self.conn.query(sql, params.clone())?;
        self.log.replay.push(Replay {
            sql: sql.to_string(),
            params,
            changed: None,
        });
        Ok(r)
    }

    /// Executes a cached statement with libSQL values, kept for replay when journaling.
    pub(crate) fn exec(&mut self, sql: &str, params: Vec<V>) -> Result<u64> {
        self.check()?;
        if !self.journal {
            return self.conn.execute(sql, params);
        }
        let n = self.conn.execute(sql, params.clone())?;
        self.log.replay.push(Replay {
            sql: sql.to_string(),
            params,
            changed: Some(n),
        });
        Ok(n)
    }

    /// Refuses a statement once the op's time is up, or once SQLite has rolled the
    /// batch transaction back (a statement now would run in autocommit, outside it).
    fn check(&self) -> Result<()> {
        if let Some((at, limit)) = self.deadline {
            if Instant::now() >= at {
                return Err(StoreError::Timeout {
                    limit_ms: limit.as_millis() as u64,
                });
            }
        }
        if self.conn.conn.is_autocommit() {
            return Err(StoreError::Internal(
                "the batch transaction was rolled back under this op; nothing of it is stored".into(),
            ));
        }
        Ok(())
    }

    /// Appends a row to the change log (same transaction as the write).
    pub fn log_change(&mut self, tbl: &'static str, row_id: String, hlc: Hlc, origin: &str) -> Result<()> {
        self.exec(
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
        self.check()?;
        let before = self.append_only_max_rowids()?;
        let rules = Rules::from_triggers(&self.conn.query(Rules::TRIGGERS_SQL, vec![])?);
        let schema_before = self.schema_version()?;
        let names_before = self.conn.query(guard::SCHEMA_NAMES_SQL, vec![])?;
        let params = conn::params(params);
        let seq_before = self.conn.query("SELECT COALESCE(MAX(seq), 0) FROM _changes", vec![])?;
        let seq_before = seq_before.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0);
        let mut res = {
            let guard = WriterAuthorizer::install(&self.conn.conn, rules)?;
            // The authorizer refuses UPDATE and DELETE of the append-only tables, but not
            // what `INSERT OR REPLACE` deletes, nor an INSERT with an old rowid: SQLite's
            // pre-update hook sees those rows.
            let watched = APPEND_ONLY.iter().copied().zip(before).collect();
            let (r, hit) = crate::raw::watch_rows(watched, || self.conn.query_once_capped(sql, params, max_bytes));
            let r = r.map_err(|e| guard.explain(e))?;
            if let Some((table, what)) = hit {
                return Err(StoreError::Refused(format!(
                    "this statement would {what} of `{table}`: its rows are append-only (replicas keep every row); insert rows with new ids and no explicit rowid"
                )));
            }
            r
        };
        res.rows_affected = self.conn.conn.changes();
        let rowid = self.conn.conn.last_insert_rowid();
        res.last_insert_rowid = (rowid != 0).then_some(rowid);
        // `CREATE TRIGGER temp.t ... ON main_table` reaches the authorizer as a trigger
        // in "main" (SQLite reports the table's schema), so the TEMP rule is checked on
        // the outcome too: the writer's temp schema must stay empty.
        let temp = self.conn.query("SELECT type, name FROM sqlite_temp_master LIMIT 1", vec![])?;
        if let Some(row) = temp.rows.first() {
            let what = row.iter().map(|v| v.to_text()).collect::<Vec<_>>().join(" ");
            return Err(StoreError::Refused(format!(
                "TEMP tables, views, triggers and indexes are not allowed (this statement made the TEMP {what}): they would live on a shared connection, hidden from the checks; create a normal one"
            )));
        }
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
        // The logging triggers of replicated user tables stamp rows themselves: the
        // clock learns those stamps now, so the next typed write (even in the very next
        // batch) gets a later one and never repeats a stamp.
        let made = self
            .conn
            .query("SELECT MAX(hlc) FROM _changes WHERE seq > ?1", vec![V::Integer(seq_before)])?;
        if let Some(h) = made.rows.first().and_then(|r| r[0].as_i64()) {
            let _ = self.clock.observe(Hlc::from_i64(h));
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

    /// Refuses TEXT that is not valid UTF-8 in rows user SQL appended to a runtime
    /// table (`CAST(x'c328' AS TEXT)`): every typed reader of that table (other callers
    /// reading their conversations or metrics) would fail on it.
    fn check_utf8(&mut self, table: &str, lo: i64, hi: i64) -> Result<()> {
        let cols = self.conn.query(&format!("SELECT name FROM pragma_table_info('{table}')"), vec![])?;
        let names: Vec<String> = cols.rows.iter().filter_map(|r| r[0].as_str().map(str::to_string)).collect();
        let sel: Vec<String> = names
            .iter()
            .map(|c| format!("CASE WHEN typeof(\"{c}\") = 'text' THEN CAST(\"{c}\" AS BLOB) END"))
            .collect();
        let rows = self.conn.query(
            &format!("SELECT {} FROM {table} WHERE rowid BETWEEN ?1 AND ?2", sel.join(", ")),
            vec![V::Integer(lo), V::Integer(hi)],
        )?;
        for row in &rows.rows {
            for (v, c) in row.iter().zip(&names) {
                if let SqlValue::Blob(b) = v {
                    if std::str::from_utf8(b).is_err() {
                        return Err(StoreError::Refused(format!(
                            "`{table}.{c}` would hold TEXT that is not valid UTF-8; store bytes as a BLOB (e.g. x'...') or valid text"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Stamps rows appended since `before` that carry no stamp yet, and logs them.
    fn stamp_appended(&mut self, before: [i64; 2]) -> Result<()> {
        let after = self.append_only_max_rowids()?;
        for i in 0..APPEND_ONLY.len() {
            if after[i] > before[i] {
                self.check_utf8(APPEND_ONLY[i], before[i] + 1, after[i])?;
                let hlc = self.clock.now();
                self.exec(
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
