//! The SQL guard: decides what a raw SQL string is allowed to do by asking SQLite itself,
//! never by matching keywords.
//!
//! A `GuardConn` is a raw read-only connection to the home file. To check a statement it
//! prepares it (SQLite's own parser and planner), then:
//! - refuses more than one statement (the prepare tail must be only whitespace/comments);
//! - refuses anything `sqlite3_stmt_readonly` says may write, for the read path;
//! - runs an authorizer during prepare that refuses ATTACH/DETACH, transaction control,
//!   savepoints, PRAGMAs that set a value, `load_extension`, and (on the write path)
//!   writes to the runtime's own tables (`_changes`, `_meta`, ...).
//!
//! The read path also *executes* here: the connection is opened read-only with
//! `query_only`, a progress handler interrupts it past the query time limit, and rows are
//! capped. The write path only classifies here; execution happens on the writer.

use crate::error::{Result, StoreError};
use crate::raw::{action, AuthRequest, Authorization, Conn, OpenFlags, RawError, Stmt};
use crate::value::{QueryResult, SqlValue};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What a statement is, as SQLite reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    ReadOnly,
    Write,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    Write,
}

/// State shared by the connection's authorizer and progress handler and the
/// `GuardConn` that sets it per call (one thread: `Rc` and cells suffice).
struct Hooks {
    /// The rules of the statement being prepared (read path or write path).
    mode: Cell<Mode>,
    /// Why the authorizer refused something during the last prepare (SQLite only
    /// reports "not authorized"; the caller gets this reason instead).
    denied: RefCell<Option<String>>,
    /// When the running read must be interrupted (None: no query running).
    deadline: Cell<Option<Instant>>,
}

/// Pragmas that only read, allowed in read mode when given no value.
const READ_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "table_list",
    "database_list",
    "page_count",
    "page_size",
    "freelist_count",
    "journal_mode",
    "user_version",
    "schema_version",
    "compile_options",
    "function_list",
    "pragma_list",
    "collation_list",
    "quick_check",
    "integrity_check",
    "synchronous",
    "data_version",
    "encoding",
    "application_id",
    "auto_vacuum",
    "foreign_key_check",
    "module_list",
    "wal_autocheckpoint",
    "cache_size",
];

/// Tables the runtime manages. (`sqlite_*` writes come from DDL, which SQLite itself
/// guards; direct writes to `sqlite_master` need `writable_schema`, a refused pragma.)
fn is_internal_table(t: &str) -> bool {
    t.starts_with('_')
}

/// The authorizer: what no raw SQL call may do, and what the read path may not do.
fn authorize(hooks: &Hooks, r: &AuthRequest<'_>) -> Authorization {
    let a1s = r.arg1.unwrap_or("");
    let a2s = r.arg2;
    let deny = |why: String| {
        *hooks.denied.borrow_mut() = Some(why);
        Authorization::Deny
    };
    let mode = hooks.mode.get();
    match r.action {
        action::ATTACH | action::DETACH => deny("ATTACH and DETACH are not allowed: queries may only use the home database".into()),
        action::TRANSACTION | action::SAVEPOINT => deny(
            "transaction control (BEGIN/COMMIT/ROLLBACK/SAVEPOINT) is not allowed: every call already runs in its own transaction".into(),
        ),
        action::FUNCTION if a2s.map(|f| f.eq_ignore_ascii_case("load_extension")).unwrap_or(false) => {
            deny("load_extension() is not allowed".into())
        }
        action::PRAGMA => {
            let name = a1s.to_ascii_lowercase();
            if a2s.is_some() {
                deny(format!(
                    "PRAGMA {name} = ... changes connection or database settings and is not allowed"
                ))
            } else if mode == Mode::Read && !READ_PRAGMAS.contains(&name.as_str()) {
                deny(format!("PRAGMA {name} is not on the read-only allow list"))
            } else {
                Authorization::Allow
            }
        }
        action::INSERT | action::UPDATE | action::DELETE if mode == Mode::Read => {
            deny(format!("this statement writes to `{a1s}`; use execute_query for writes"))
        }
        action::INSERT | action::UPDATE | action::DELETE if is_internal_table(a1s) && r.trigger.is_none() => {
            deny(format!("`{a1s}` is managed by edgeswarm and cannot be written directly"))
        }
        action::CREATE_INDEX..=action::DROP_VIEW
        | action::ALTER_TABLE
        | action::REINDEX
        | action::ANALYZE
        | action::CREATE_VTABLE
        | action::DROP_VTABLE
            if mode == Mode::Read =>
        {
            deny("this statement changes the schema; use execute_query for writes".into())
        }
        action::DROP_TABLE | action::ALTER_TABLE | action::DROP_INDEX | action::DROP_TRIGGER | action::CREATE_TRIGGER
            if is_internal_table(a1s) || a2s.map(is_internal_table).unwrap_or(false) =>
        {
            deny(format!("`{a1s}` is managed by edgeswarm and its schema cannot be changed"))
        }
        _ => Authorization::Allow,
    }
}

/// A SQLite error as the store reports it.
fn sql_err(e: RawError) -> StoreError {
    StoreError::from_sqlite(e.code, e.message, None)
}

/// A raw, read-only SQLite connection used to check and run raw SQL reads.
/// Not `Send`: it lives on one read-pool thread.
pub struct GuardConn {
    /// The raw connection, with [`authorize`] and the deadline check installed.
    conn: Conn,
    /// Shared with the hooks installed on `conn`.
    hooks: Rc<Hooks>,
}

impl GuardConn {
    /// Opens `path` read-only, with `query_only` and a 5 s busy timeout.
    pub fn open(path: &str) -> Result<Self> {
        let open_err = |e: RawError| StoreError::Open {
            path: path.into(),
            reason: e.message,
        };
        let mut conn = Conn::open(path, OpenFlags::READ_ONLY | OpenFlags::NO_MUTEX).map_err(open_err)?;
        conn.busy_timeout(5_000);
        // Set before the authorizer is installed: it refuses pragmas that set a value.
        conn.exec("PRAGMA query_only = 1").map_err(sql_err)?;
        let hooks = Rc::new(Hooks {
            mode: Cell::new(Mode::Read),
            denied: RefCell::new(None),
            deadline: Cell::new(None),
        });
        let h = hooks.clone();
        conn.set_authorizer(Some(Box::new(move |r: &AuthRequest<'_>| authorize(&h, r))));
        let h = hooks.clone();
        conn.set_progress_handler(
            1_000,
            Some(Box::new(move || matches!(h.deadline.get(), Some(d) if Instant::now() >= d))),
        );
        Ok(GuardConn { conn, hooks })
    }

    /// Prepares exactly one statement under `mode`'s rules.
    fn prepare(&self, sql: &str, mode: Mode) -> Result<Stmt<'_>> {
        if sql.trim().is_empty() {
            return Err(StoreError::Refused("the query is empty".into()));
        }
        if sql.contains('\0') {
            return Err(StoreError::Refused("the query contains a NUL byte".into()));
        }
        self.hooks.mode.set(mode);
        *self.hooks.denied.borrow_mut() = None;
        let prepared = self.conn.prepare(sql);
        if let Some(why) = self.hooks.denied.borrow_mut().take() {
            return Err(StoreError::Refused(why));
        }
        let (stmt, rest) = prepared.map_err(sql_err)?;
        let Some(stmt) = stmt else {
            return Err(StoreError::Refused(
                "the query has no statement (only comments or whitespace)".into(),
            ));
        };
        // Anything after the first statement must be whitespace or comments.
        if !rest.trim().is_empty() {
            let next = self.conn.prepare(rest);
            *self.hooks.denied.borrow_mut() = None;
            if !matches!(next, Ok((None, _))) {
                return Err(StoreError::Refused(
                    "only one SQL statement per call is allowed; send them one at a time".into(),
                ));
            }
        }
        Ok(stmt)
    }

    /// Classifies a statement for the write path (refusing what no call may do).
    pub fn classify(&mut self, sql: &str) -> Result<StatementKind> {
        let stmt = self.prepare(sql, Mode::Write)?;
        Ok(if stmt.readonly() {
            StatementKind::ReadOnly
        } else {
            StatementKind::Write
        })
    }

    /// Checks that `sql` is one statement SQLite reports as read-only.
    pub fn check_read_only(&mut self, sql: &str) -> Result<()> {
        let stmt = self.prepare(sql, Mode::Read)?;
        if !stmt.readonly() {
            return Err(StoreError::Refused(
                "SQLite reports this statement may write; use execute_query for writes".into(),
            ));
        }
        Ok(())
    }

    /// Runs a read-only statement with parameters, a row cap and a time limit.
    pub fn query(&mut self, sql: &str, params: &[SqlValue], max_rows: usize, timeout: Duration) -> Result<QueryResult> {
        let mut stmt = self.prepare(sql, Mode::Read)?;
        if !stmt.readonly() {
            return Err(StoreError::Refused(
                "SQLite reports this statement may write; use execute_query for writes".into(),
            ));
        }
        let expected = stmt.parameter_count();
        if expected != params.len() {
            return Err(StoreError::Refused(format!(
                "the query has {expected} parameter(s) but {} were given",
                params.len()
            )));
        }
        for (i, p) in params.iter().enumerate() {
            stmt.bind_value(i + 1, p)
                .map_err(|e| StoreError::Refused(format!("cannot bind parameter {}: {}", i + 1, e.message)))?;
        }
        let ncol = stmt.column_count();
        let columns = (0..ncol).map(|i| stmt.column_name(i).unwrap_or_else(|| "?".into())).collect();
        let mut out = QueryResult {
            columns,
            ..Default::default()
        };
        self.hooks.deadline.set(Some(Instant::now() + timeout));
        let result = loop {
            match stmt.step() {
                Ok(true) => {
                    if out.rows.len() >= max_rows {
                        out.truncated = true;
                        break Ok(());
                    }
                    out.rows.push((0..ncol).map(|i| stmt.column_value(i)).collect());
                }
                Ok(false) => break Ok(()),
                Err(e) if e.is_interrupt() => {
                    break Err(StoreError::Timeout {
                        limit_ms: timeout.as_millis() as u64,
                    })
                }
                Err(e) => break Err(sql_err(e)),
            }
        };
        self.hooks.deadline.set(None);
        result.map(|_| out)
    }
}
