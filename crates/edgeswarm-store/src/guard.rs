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
use crate::value::{QueryResult, SqlValue};
use libsql::ffi;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
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

/// Authorizer and progress-handler state; boxed so its address is stable for SQLite.
struct Hooks {
    mode: Mode,
    denied: RefCell<Option<String>>,
    deadline: Option<Instant>,
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

fn cstr<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        None
    } else {
        // SAFETY: SQLite passes NUL-terminated UTF-8 strings valid for the callback.
        unsafe { CStr::from_ptr(p) }.to_str().ok()
    }
}

/// Tables the runtime manages. (`sqlite_*` writes come from DDL, which SQLite itself
/// guards; direct writes to `sqlite_master` need `writable_schema`, a refused pragma.)
fn is_internal_table(t: &str) -> bool {
    t.starts_with('_')
}

unsafe extern "C" fn authorizer(
    data: *mut c_void,
    action: c_int,
    a1: *const c_char,
    a2: *const c_char,
    _db: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    // SAFETY: `data` is the `Hooks` box owned by the GuardConn, alive while it is.
    let hooks = &*(data as *const Hooks);
    let a1s = cstr(a1).unwrap_or("");
    let a2s = cstr(a2);
    let deny = |why: String| {
        *hooks.denied.borrow_mut() = Some(why);
        ffi::SQLITE_DENY
    };
    match action {
        ffi::SQLITE_ATTACH | ffi::SQLITE_DETACH => deny("ATTACH and DETACH are not allowed: queries may only use the home database".into()),
        ffi::SQLITE_TRANSACTION | ffi::SQLITE_SAVEPOINT => deny(
            "transaction control (BEGIN/COMMIT/ROLLBACK/SAVEPOINT) is not allowed: every call already runs in its own transaction".into(),
        ),
        ffi::SQLITE_FUNCTION if a2s.map(|f| f.eq_ignore_ascii_case("load_extension")).unwrap_or(false) => {
            deny("load_extension() is not allowed".into())
        }
        ffi::SQLITE_PRAGMA => {
            let name = a1s.to_ascii_lowercase();
            if a2s.is_some() {
                deny(format!(
                    "PRAGMA {name} = ... changes connection or database settings and is not allowed"
                ))
            } else if hooks.mode == Mode::Read && !READ_PRAGMAS.contains(&name.as_str()) {
                deny(format!("PRAGMA {name} is not on the read-only allow list"))
            } else {
                ffi::SQLITE_OK
            }
        }
        ffi::SQLITE_INSERT | ffi::SQLITE_UPDATE | ffi::SQLITE_DELETE if hooks.mode == Mode::Read => {
            deny(format!("this statement writes to `{a1s}`; use execute_query for writes"))
        }
        ffi::SQLITE_INSERT | ffi::SQLITE_UPDATE | ffi::SQLITE_DELETE if is_internal_table(a1s) && _trigger.is_null() => {
            deny(format!("`{a1s}` is managed by edgeswarm and cannot be written directly"))
        }
        ffi::SQLITE_CREATE_INDEX..=ffi::SQLITE_DROP_VIEW
        | ffi::SQLITE_ALTER_TABLE
        | ffi::SQLITE_REINDEX
        | ffi::SQLITE_ANALYZE
        | ffi::SQLITE_CREATE_VTABLE
        | ffi::SQLITE_DROP_VTABLE
            if hooks.mode == Mode::Read =>
        {
            deny("this statement changes the schema; use execute_query for writes".into())
        }
        ffi::SQLITE_DROP_TABLE
        | ffi::SQLITE_ALTER_TABLE
        | ffi::SQLITE_DROP_INDEX
        | ffi::SQLITE_DROP_TRIGGER
        | ffi::SQLITE_CREATE_TRIGGER
            if is_internal_table(a1s) || cstr(a2).map(is_internal_table).unwrap_or(false) =>
        {
            deny(format!("`{a1s}` is managed by edgeswarm and its schema cannot be changed"))
        }
        _ => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn progress(data: *mut c_void) -> c_int {
    // SAFETY: as in `authorizer`.
    let hooks = &*(data as *const Hooks);
    match hooks.deadline {
        Some(d) if Instant::now() >= d => 1,
        _ => 0,
    }
}

/// A raw, read-only SQLite connection used to check and run raw SQL reads.
/// Not `Send`: it lives on one read-pool thread.
pub struct GuardConn {
    db: *mut ffi::sqlite3,
    hooks: Box<Hooks>,
}

impl Drop for GuardConn {
    fn drop(&mut self) {
        // SAFETY: `db` came from sqlite3_open_v2 and is closed once.
        unsafe {
            ffi::sqlite3_close_v2(self.db);
        }
    }
}

/// A prepared statement, finalized on drop.
struct Stmt(*mut ffi::sqlite3_stmt);
impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: finalize accepts null and each statement is finalized once.
        unsafe {
            ffi::sqlite3_finalize(self.0);
        }
    }
}

impl GuardConn {
    /// Opens `path` read-only, with `query_only` and a 5 s busy timeout.
    pub fn open(path: &str) -> Result<Self> {
        let c_path = CString::new(path).map_err(|_| StoreError::Open {
            path: path.into(),
            reason: "path contains NUL".into(),
        })?;
        let mut db = std::ptr::null_mut();
        // SAFETY: valid out-pointer and NUL-terminated path.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                c_path.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READONLY | ffi::SQLITE_OPEN_NOMUTEX,
                std::ptr::null(),
            )
        };
        let mut conn = GuardConn {
            db,
            hooks: Box::new(Hooks {
                mode: Mode::Read,
                denied: RefCell::new(None),
                deadline: None,
            }),
        };
        if rc != ffi::SQLITE_OK {
            return Err(StoreError::Open {
                path: path.into(),
                reason: conn.errmsg(),
            });
        }
        let hooks_ptr = &*conn.hooks as *const Hooks as *mut c_void;
        // SAFETY: the hooks box outlives the connection (dropped after close in Drop order:
        // `db` is closed in Drop::drop before fields are dropped).
        unsafe {
            ffi::sqlite3_busy_timeout(conn.db, 5_000);
            ffi::sqlite3_set_authorizer(conn.db, Some(authorizer), hooks_ptr);
            ffi::sqlite3_progress_handler(conn.db, 1_000, Some(progress), hooks_ptr);
        }
        conn.exec_plain("PRAGMA query_only = 1")?;
        Ok(conn)
    }

    fn errmsg(&self) -> String {
        // SAFETY: sqlite3_errmsg returns a valid string for a (possibly null) handle.
        unsafe { cstr(ffi::sqlite3_errmsg(self.db)).unwrap_or("unknown SQLite error").to_string() }
    }

    /// The connection's last error, sorted by its extended result code.
    fn error(&self) -> StoreError {
        // SAFETY: valid (or null) handle; sqlite3_extended_errcode only reads it.
        let code = unsafe { ffi::sqlite3_extended_errcode(self.db) };
        StoreError::from_sqlite(code, self.errmsg(), None)
    }

    fn exec_plain(&mut self, sql: &str) -> Result<()> {
        // Pragmas we issue ourselves bypass the authorizer's setter rule.
        // SAFETY: clearing and restoring the authorizer around one statement.
        unsafe { ffi::sqlite3_set_authorizer(self.db, None, std::ptr::null_mut()) };
        let c = CString::new(sql).map_err(StoreError::sql)?;
        // SAFETY: valid handle and statement.
        let rc = unsafe { ffi::sqlite3_exec(self.db, c.as_ptr(), None, std::ptr::null_mut(), std::ptr::null_mut()) };
        let hooks_ptr = &*self.hooks as *const Hooks as *mut c_void;
        unsafe { ffi::sqlite3_set_authorizer(self.db, Some(authorizer), hooks_ptr) };
        if rc != ffi::SQLITE_OK {
            return Err(self.error());
        }
        Ok(())
    }

    /// Prepares exactly one statement under `mode`'s rules.
    fn prepare(&mut self, sql: &str, mode: Mode) -> Result<Stmt> {
        if sql.trim().is_empty() {
            return Err(StoreError::Refused("the query is empty".into()));
        }
        if sql.contains('\0') {
            return Err(StoreError::Refused("the query contains a NUL byte".into()));
        }
        self.hooks.mode = mode;
        *self.hooks.denied.borrow_mut() = None;
        let bytes = sql.as_bytes();
        let mut stmt = std::ptr::null_mut();
        let mut tail: *const c_char = std::ptr::null();
        // SAFETY: pointer/length pair from a live &str; out-pointers are valid.
        let rc = unsafe { ffi::sqlite3_prepare_v2(self.db, bytes.as_ptr() as *const c_char, bytes.len() as c_int, &mut stmt, &mut tail) };
        let stmt = Stmt(stmt);
        if let Some(why) = self.hooks.denied.borrow_mut().take() {
            return Err(StoreError::Refused(why));
        }
        if rc != ffi::SQLITE_OK {
            return Err(self.error());
        }
        if stmt.0.is_null() {
            return Err(StoreError::Refused(
                "the query has no statement (only comments or whitespace)".into(),
            ));
        }
        // Anything after the first statement must be whitespace or comments.
        let consumed = (tail as usize).saturating_sub(bytes.as_ptr() as usize);
        let rest = &sql[consumed.min(sql.len())..];
        if !rest.trim().is_empty() {
            let mut next = std::ptr::null_mut();
            let rb = rest.as_bytes();
            // SAFETY: as above.
            let rc2 = unsafe {
                ffi::sqlite3_prepare_v2(
                    self.db,
                    rb.as_ptr() as *const c_char,
                    rb.len() as c_int,
                    &mut next,
                    std::ptr::null_mut(),
                )
            };
            let next = Stmt(next);
            *self.hooks.denied.borrow_mut() = None;
            if rc2 != ffi::SQLITE_OK || !next.0.is_null() {
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
        // SAFETY: valid prepared statement.
        let ro = unsafe { ffi::sqlite3_stmt_readonly(stmt.0) } != 0;
        Ok(if ro { StatementKind::ReadOnly } else { StatementKind::Write })
    }

    /// Checks that `sql` is one statement SQLite reports as read-only.
    pub fn check_read_only(&mut self, sql: &str) -> Result<()> {
        let stmt = self.prepare(sql, Mode::Read)?;
        // SAFETY: valid prepared statement.
        if unsafe { ffi::sqlite3_stmt_readonly(stmt.0) } == 0 {
            return Err(StoreError::Refused(
                "SQLite reports this statement may write; use execute_query for writes".into(),
            ));
        }
        Ok(())
    }

    /// Runs a read-only statement with parameters, a row cap and a time limit.
    pub fn query(&mut self, sql: &str, params: &[SqlValue], max_rows: usize, timeout: Duration) -> Result<QueryResult> {
        let stmt = self.prepare(sql, Mode::Read)?;
        // SAFETY: valid prepared statement.
        if unsafe { ffi::sqlite3_stmt_readonly(stmt.0) } == 0 {
            return Err(StoreError::Refused(
                "SQLite reports this statement may write; use execute_query for writes".into(),
            ));
        }
        // SAFETY: valid prepared statement.
        let expected = unsafe { ffi::sqlite3_bind_parameter_count(stmt.0) } as usize;
        if expected != params.len() {
            return Err(StoreError::Refused(format!(
                "the query has {expected} parameter(s) but {} were given",
                params.len()
            )));
        }
        for (i, p) in params.iter().enumerate() {
            self.bind(&stmt, i as c_int + 1, p)?;
        }
        // SAFETY: valid prepared statement.
        let ncol = unsafe { ffi::sqlite3_column_count(stmt.0) };
        let columns = (0..ncol)
            .map(|i| unsafe { cstr(ffi::sqlite3_column_name(stmt.0, i)) }.unwrap_or("?").to_string())
            .collect();
        let mut out = QueryResult {
            columns,
            ..Default::default()
        };
        self.hooks.deadline = Some(Instant::now() + timeout);
        let result = loop {
            // SAFETY: valid prepared statement.
            let rc = unsafe { ffi::sqlite3_step(stmt.0) };
            match rc {
                ffi::SQLITE_ROW => {
                    if out.rows.len() >= max_rows {
                        out.truncated = true;
                        break Ok(());
                    }
                    out.rows.push((0..ncol).map(|i| column(&stmt, i)).collect());
                }
                ffi::SQLITE_DONE => break Ok(()),
                ffi::SQLITE_INTERRUPT => {
                    break Err(StoreError::Timeout {
                        limit_ms: timeout.as_millis() as u64,
                    })
                }
                _ => break Err(self.error()),
            }
        };
        self.hooks.deadline = None;
        result.map(|_| out)
    }

    fn bind(&self, stmt: &Stmt, i: c_int, v: &SqlValue) -> Result<()> {
        // SAFETY: valid statement; SQLITE_TRANSIENT makes SQLite copy the buffers.
        let rc = unsafe {
            match v {
                SqlValue::Null => ffi::sqlite3_bind_null(stmt.0, i),
                SqlValue::Integer(x) => ffi::sqlite3_bind_int64(stmt.0, i, *x),
                SqlValue::Real(x) => ffi::sqlite3_bind_double(stmt.0, i, *x),
                SqlValue::Text(s) => {
                    ffi::sqlite3_bind_text(stmt.0, i, s.as_ptr() as *const c_char, s.len() as c_int, ffi::SQLITE_TRANSIENT())
                }
                SqlValue::Blob(b) => {
                    ffi::sqlite3_bind_blob(stmt.0, i, b.as_ptr() as *const c_void, b.len() as c_int, ffi::SQLITE_TRANSIENT())
                }
            }
        };
        if rc != ffi::SQLITE_OK {
            return Err(StoreError::Refused(format!("cannot bind parameter {i}: {}", self.errmsg())));
        }
        Ok(())
    }
}

fn column(stmt: &Stmt, i: c_int) -> SqlValue {
    // SAFETY: called only after SQLITE_ROW on a valid statement, with i < column count.
    unsafe {
        match ffi::sqlite3_column_type(stmt.0, i) {
            ffi::SQLITE_INTEGER => SqlValue::Integer(ffi::sqlite3_column_int64(stmt.0, i)),
            ffi::SQLITE_FLOAT => SqlValue::Real(ffi::sqlite3_column_double(stmt.0, i)),
            ffi::SQLITE_TEXT => {
                let p = ffi::sqlite3_column_text(stmt.0, i);
                let n = ffi::sqlite3_column_bytes(stmt.0, i) as usize;
                if p.is_null() {
                    SqlValue::Text(String::new())
                } else {
                    SqlValue::Text(String::from_utf8_lossy(std::slice::from_raw_parts(p, n)).into_owned())
                }
            }
            ffi::SQLITE_BLOB => {
                let p = ffi::sqlite3_column_blob(stmt.0, i) as *const u8;
                let n = ffi::sqlite3_column_bytes(stmt.0, i) as usize;
                if p.is_null() {
                    SqlValue::Blob(Vec::new())
                } else {
                    SqlValue::Blob(std::slice::from_raw_parts(p, n).to_vec())
                }
            }
            _ => SqlValue::Null,
        }
    }
}
