//! A small safe wrapper over libSQL's SQLite C API (`libsql::ffi`): every `unsafe` FFI
//! call of edgeswarm is in this module, each with the reason it is sound.
//!
//! Why a raw connection at all, beside `libsql::Connection`: two readers need what the
//! libsql crate does not expose.
//! - The SQL guard ([`crate::guard`]) asks SQLite itself what a statement does: an
//!   authorizer during prepare, `sqlite3_stmt_readonly`, the prepare tail (one statement
//!   only), and a progress handler that interrupts a query past its time limit.
//! - The search crate's fast ranker reads the FTS5 index directly (`fts5vocab`, the
//!   docsize table) and tokenizes with FTS5's own tokenizer, with statements prepared
//!   once per connection.
//!
//! What it offers: [`Conn`] (open with flags, exec, prepare with tail, a prepared
//! statement cache, authorizer and progress hooks, an FTS5 tokenizer) and [`Stmt`]
//! (bind, step, column reads; finalized, or reset and returned to the cache, on drop).
//! Errors are [`RawError`]s carrying SQLite's (extended) result code.
//!
//! A `Conn` is not `Send` (it holds raw pointers): it lives on the thread that opened
//! it, and is opened with `SQLITE_OPEN_NOMUTEX` by its users for that reason.

use crate::value::SqlValue;
use libsql::ffi;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

/// Bytes of heap SQLite holds right now, process-wide (`sqlite3_memory_used`): page
/// caches, prepared statements, schema. The soak reports it beside RSS so page-cache
/// growth is told apart from other heap growth.
pub fn memory_used() -> i64 {
    // SAFETY: takes no arguments and only reads SQLite's global memory counter, which
    // SQLite guards with its own mutex; callable from any thread at any time.
    unsafe { ffi::sqlite3_memory_used() }
}

/// An error reported by SQLite (or by this wrapper for input SQLite cannot take).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RawError {
    /// SQLite's extended result code (`SQLITE_MISUSE` for input refused before reaching
    /// SQLite, e.g. a NUL byte in SQL): callers branch on it (interrupt, busy...).
    pub code: i32,
    /// SQLite's message (`sqlite3_errmsg`), as the user should see it.
    pub message: String,
}

impl RawError {
    fn misuse(message: impl Into<String>) -> Self {
        RawError {
            code: ffi::SQLITE_MISUSE,
            message: message.into(),
        }
    }

    /// The primary result code (the low byte of the extended one).
    pub fn primary_code(&self) -> i32 {
        self.code & 0xff
    }

    /// The statement was interrupted (by the progress handler).
    pub fn is_interrupt(&self) -> bool {
        self.primary_code() == ffi::SQLITE_INTERRUPT
    }
}

/// The wrapper's result type.
pub type Result<T, E = RawError> = std::result::Result<T, E>;

/// Flags for [`Conn::open`] (`SQLITE_OPEN_*`), combined with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFlags(
    /// The `SQLITE_OPEN_*` bits passed to `sqlite3_open_v2`.
    c_int,
);

impl OpenFlags {
    /// Open read-only: nothing on this connection can write the file.
    pub const READ_ONLY: OpenFlags = OpenFlags(ffi::SQLITE_OPEN_READONLY);
    /// No per-connection mutex: the connection is used by one thread only.
    pub const NO_MUTEX: OpenFlags = OpenFlags(ffi::SQLITE_OPEN_NOMUTEX);
}

impl std::ops::BitOr for OpenFlags {
    type Output = OpenFlags;
    fn bitor(self, rhs: OpenFlags) -> OpenFlags {
        OpenFlags(self.0 | rhs.0)
    }
}

/// Authorizer action codes (`SQLITE_*` action constants), as passed in
/// [`AuthRequest::action`]. They are plain integers; ranges of them are meaningful
/// (e.g. `CREATE_INDEX..=DROP_VIEW` are the schema-changing actions).
pub mod action {
    pub use libsql::ffi::{
        SQLITE_ALTER_TABLE as ALTER_TABLE, SQLITE_ANALYZE as ANALYZE, SQLITE_ATTACH as ATTACH, SQLITE_CREATE_INDEX as CREATE_INDEX,
        SQLITE_CREATE_TABLE as CREATE_TABLE, SQLITE_CREATE_TEMP_INDEX as CREATE_TEMP_INDEX, SQLITE_CREATE_TEMP_TABLE as CREATE_TEMP_TABLE,
        SQLITE_CREATE_TEMP_TRIGGER as CREATE_TEMP_TRIGGER, SQLITE_CREATE_TEMP_VIEW as CREATE_TEMP_VIEW,
        SQLITE_CREATE_TRIGGER as CREATE_TRIGGER, SQLITE_CREATE_VIEW as CREATE_VIEW, SQLITE_CREATE_VTABLE as CREATE_VTABLE,
        SQLITE_DELETE as DELETE, SQLITE_DETACH as DETACH, SQLITE_DROP_INDEX as DROP_INDEX, SQLITE_DROP_TABLE as DROP_TABLE,
        SQLITE_DROP_TEMP_INDEX as DROP_TEMP_INDEX, SQLITE_DROP_TEMP_TABLE as DROP_TEMP_TABLE,
        SQLITE_DROP_TEMP_TRIGGER as DROP_TEMP_TRIGGER, SQLITE_DROP_TEMP_VIEW as DROP_TEMP_VIEW, SQLITE_DROP_TRIGGER as DROP_TRIGGER,
        SQLITE_DROP_VIEW as DROP_VIEW, SQLITE_DROP_VTABLE as DROP_VTABLE, SQLITE_FUNCTION as FUNCTION, SQLITE_INSERT as INSERT,
        SQLITE_PRAGMA as PRAGMA, SQLITE_READ as READ, SQLITE_RECURSIVE as RECURSIVE, SQLITE_REINDEX as REINDEX,
        SQLITE_SAVEPOINT as SAVEPOINT, SQLITE_SELECT as SELECT, SQLITE_TRANSACTION as TRANSACTION, SQLITE_UPDATE as UPDATE,
    };
}

/// One authorizer call: what SQLite is about to allow while preparing a statement.
/// See <https://sqlite.org/c3ref/set_authorizer.html> for each action's arguments.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// The action code (see [`action`]).
    pub action: i32,
    /// The action's first argument (a table, pragma or index name...), if any.
    pub arg1: Option<&'a str>,
    /// The action's second argument (a column, pragma value, function name...), if any.
    pub arg2: Option<&'a str>,
    /// The database name (`main`, `temp`, ...), if any.
    pub database: Option<&'a str>,
    /// The innermost trigger or view causing the access; `None` for the statement itself.
    pub trigger: Option<&'a str>,
}

/// An authorizer's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization {
    /// Allow the action.
    Allow,
    /// Refuse: the prepare fails with `SQLITE_AUTH`.
    Deny,
}

/// An authorizer: called by SQLite during prepare, on the connection's thread.
pub type Authorizer = Box<dyn Fn(&AuthRequest<'_>) -> Authorization>;
/// A progress handler: called every N virtual-machine steps; `true` interrupts the
/// running statement (its step then fails with `SQLITE_INTERRUPT`).
pub type ProgressHandler = Box<dyn Fn() -> bool>;

/// How [`Conn::tokenize`] tokenizes: as FTS5 does a query or a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizeMode {
    /// `FTS5_TOKENIZE_QUERY`: text of a MATCH expression.
    Query,
    /// `FTS5_TOKENIZE_DOCUMENT`: text being indexed.
    Document,
}

/// One FTS5 token: its text and its byte range (start, end) in the input.
pub type Token = (String, usize, usize);

/// An FTS5 tokenizer instance created on a connection (see [`Conn::load_fts5_tokenizer`]).
struct Fts5Tokenizer {
    /// The tokenizer module's functions (`xTokenize`, `xDelete`).
    api: ffi::fts5_tokenizer,
    /// The instance `xCreate` made; deleted with `xDelete` before the connection closes.
    tok: NonNull<ffi::Fts5Tokenizer>,
}

/// A raw SQLite connection. Closed on drop (cached statements finalized first).
pub struct Conn {
    /// The handle from `sqlite3_open_v2`; never null, closed exactly once in `Drop`.
    db: NonNull<ffi::sqlite3>,
    /// Statements prepared once by [`Conn::prepare_cached`], keyed by their SQL string
    /// (compared by address: a few entries, scanned faster than hashed). A statement in
    /// use is taken out (so it is never stepped by two [`Stmt`]s at once) and put back,
    /// reset, when its `Stmt` drops.
    cache: RefCell<Vec<(&'static str, NonNull<ffi::sqlite3_stmt>)>>,
    /// The installed authorizer. Boxed twice so SQLite holds a thin, stable pointer to
    /// it; kept here until it is replaced or the connection closes.
    authorizer: Option<Box<Authorizer>>,
    /// The installed progress handler (boxed twice, as the authorizer).
    progress: Option<Box<ProgressHandler>>,
    /// The FTS5 tokenizer loaded by [`Conn::load_fts5_tokenizer`], if any.
    tokenizer: Option<Fts5Tokenizer>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: the tokenizer instance came from this connection's `xCreate` and is
        // deleted once, before the connection closes; every cached statement came from
        // `sqlite3_prepare_v2` on this connection and is finalized once (none is checked
        // out: a `Stmt` borrows the `Conn`, so none outlives it); `db` is closed once.
        // The hook boxes are dropped after this body, when SQLite no longer calls them.
        unsafe {
            if let Some(t) = self.tokenizer.take() {
                if let Some(del) = t.api.xDelete {
                    del(t.tok.as_ptr());
                }
            }
            for (_, s) in self.cache.get_mut().drain(..) {
                ffi::sqlite3_finalize(s.as_ptr());
            }
            ffi::sqlite3_close_v2(self.db.as_ptr());
        }
    }
}

/// Reads a C string SQLite handed us; `None` for null or non-UTF-8.
///
/// # Safety
/// `p` is null or points at a NUL-terminated string valid for `'a`.
unsafe fn cstr<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        None
    } else {
        // SAFETY: the caller's contract.
        unsafe { CStr::from_ptr(p) }.to_str().ok()
    }
}

unsafe extern "C" fn authorizer_trampoline(
    data: *mut c_void,
    action: c_int,
    a1: *const c_char,
    a2: *const c_char,
    db: *const c_char,
    trigger: *const c_char,
) -> c_int {
    // SAFETY: `data` is the `Box<Authorizer>` owned by the `Conn`, which keeps it until
    // the authorizer is replaced or the connection is closed; SQLite passes strings that
    // are null or NUL-terminated and valid for the duration of the callback.
    let (f, req) = unsafe {
        (
            &*(data as *const Authorizer),
            AuthRequest {
                action,
                arg1: cstr(a1),
                arg2: cstr(a2),
                database: cstr(db),
                trigger: cstr(trigger),
            },
        )
    };
    // A panic must not unwind into C: it denies.
    match catch_unwind(AssertUnwindSafe(|| f(&req))) {
        Ok(Authorization::Allow) => ffi::SQLITE_OK,
        Ok(Authorization::Deny) | Err(_) => ffi::SQLITE_DENY,
    }
}

/// Sets `SQLITE_DBCONFIG_DEFENSIVE` on `db`.
///
/// # Safety
/// `db` is a valid, open connection handle.
unsafe fn set_defensive_on(db: *mut ffi::sqlite3) -> c_int {
    // SAFETY: the caller's contract; the variadic arguments are the (int, int*) pair
    // this op takes (a null out-pointer is allowed).
    unsafe { ffi::sqlite3_db_config(db, ffi::SQLITE_DBCONFIG_DEFENSIVE, 1 as c_int, std::ptr::null_mut::<c_int>()) }
}

thread_local! {
    /// Set while [`opening_defensive`] runs on this thread: connections opened then get
    /// defensive mode from [`defensive_on_open`].
    static DEFENSIVE_OPENS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// SQLite auto-extension, called by `sqlite3_open_v2` for every new connection in the
/// process: turns defensive mode on for connections opened inside
/// [`opening_defensive`] on this thread, and leaves every other connection alone.
unsafe extern "C" fn defensive_on_open(db: *mut ffi::sqlite3, _err: *mut *const c_char, _api: *const ffi::sqlite3_api_routines) -> c_int {
    if DEFENSIVE_OPENS.with(|c| c.get()) && !db.is_null() {
        // SAFETY: SQLite passes the connection being opened, valid for the call. The
        // hook takes no context pointer; it reads this thread's [`ROW_WATCH`].
        unsafe { sqlite3_preupdate_hook(db, Some(preupdate), std::ptr::null_mut()) };
        // SAFETY: as above. A failure here fails the open (the caller must not get a
        // weaker connection).
        return unsafe { set_defensive_on(db) };
    }
    ffi::SQLITE_OK
}

// The pre-update hook API: compiled in (libsql-ffi's `preupdate_hook` feature), not in
// libsql-ffi's generated bindings.
extern "C" {
    fn sqlite3_preupdate_hook(
        db: *mut ffi::sqlite3,
        cb: Option<unsafe extern "C" fn(*mut c_void, *mut ffi::sqlite3, c_int, *const c_char, *const c_char, i64, i64)>,
        ctx: *mut c_void,
    ) -> *mut c_void;
}

/// What [`watch_rows`] looks for while a statement runs on this thread.
struct RowWatch {
    /// (table in `main`, highest rowid before the statement): any DELETE or UPDATE of
    /// such a table's rows, or an INSERT at or below that rowid, is reported.
    tables: Vec<(&'static str, i64)>,
    /// The first such change: (table, what happened).
    hit: Option<(&'static str, &'static str)>,
}

thread_local! {
    /// Set while [`watch_rows`] runs on this thread.
    static ROW_WATCH: RefCell<Option<RowWatch>> = const { RefCell::new(None) };
}

/// SQLite's pre-update hook on the connections [`opening_defensive`] opens: called
/// before every row a statement inserts, updates or deletes, including rows deleted by
/// `REPLACE` conflict resolution and rows changed by triggers. Does nothing unless
/// [`watch_rows`] is running on this thread.
unsafe extern "C" fn preupdate(
    _ctx: *mut c_void,
    _db: *mut ffi::sqlite3,
    op: c_int,
    zdb: *const c_char,
    ztab: *const c_char,
    old: i64,
    new: i64,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        ROW_WATCH.with(|w| {
            let mut w = w.borrow_mut();
            let Some(w) = w.as_mut().filter(|w| w.hit.is_none()) else { return };
            if zdb.is_null() || ztab.is_null() {
                return;
            }
            // SAFETY: SQLite passes NUL-terminated names valid for the call.
            let (db, tab) = unsafe { (CStr::from_ptr(zdb), CStr::from_ptr(ztab)) };
            if db.to_bytes() != b"main" {
                return;
            }
            let Some(&(name, floor)) = w.tables.iter().find(|(t, _)| t.as_bytes() == tab.to_bytes()) else {
                return;
            };
            // Rows this statement appended (above `floor`) may change: the runtime's own
            // triggers stamp them.
            let what = match op {
                ffi::SQLITE_DELETE if old <= floor => "delete or replace an existing row",
                ffi::SQLITE_UPDATE if old <= floor => "change an existing row",
                ffi::SQLITE_INSERT if new <= floor => "insert below the last row (an explicit rowid)",
                _ => return,
            };
            w.hit = Some((name, what));
        })
    }));
}

/// Runs `f` (one statement on a connection opened by [`opening_defensive`], on this
/// thread) and reports the first row change it made to `tables` other than appending:
/// a DELETE or UPDATE of a row that existed before (rowid at or below the table's
/// highest before `f`, given with each table), including a `REPLACE` conflict's delete,
/// or an INSERT at or below that rowid. Rows `f` appended may be changed (stamped).
pub fn watch_rows<T>(tables: Vec<(&'static str, i64)>, f: impl FnOnce() -> T) -> (T, Option<(&'static str, &'static str)>) {
    /// Stops watching even if `f` panics.
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            ROW_WATCH.with(|w| w.borrow_mut().take());
        }
    }
    ROW_WATCH.with(|w| *w.borrow_mut() = Some(RowWatch { tables, hit: None }));
    let stop = Stop;
    let out = f();
    let hit = ROW_WATCH.with(|w| w.borrow().as_ref().and_then(|w| w.hit));
    drop(stop);
    (out, hit)
}

/// Runs `open`, and turns SQLite's defensive mode on for every connection it opens on
/// this thread. For connections opened by libSQL (`libsql::Database::connect`), whose
/// handle its API does not expose: the flag is set by an auto-extension SQLite calls
/// during `sqlite3_open_v2`, scoped to this call and thread, so connections a host
/// opens elsewhere in the process are untouched.
pub fn opening_defensive<T>(open: impl FnOnce() -> T) -> Result<T> {
    static REGISTERED: std::sync::OnceLock<c_int> = std::sync::OnceLock::new();
    // SAFETY: registering a function with the signature SQLite expects; SQLite keeps
    // one registration per function pointer.
    let rc = *REGISTERED.get_or_init(|| unsafe { ffi::sqlite3_auto_extension(Some(defensive_on_open)) });
    if rc != ffi::SQLITE_OK {
        return Err(RawError {
            code: rc,
            message: "cannot register the defensive-mode hook with SQLite".into(),
        });
    }
    /// Clears the flag even if `open` panics.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            DEFENSIVE_OPENS.with(|c| c.set(false));
        }
    }
    DEFENSIVE_OPENS.with(|c| c.set(true));
    let _reset = Reset;
    Ok(open())
}

/// Run-time limit ids for [`Conn::set_limit`] (`SQLITE_LIMIT_*`).
pub mod limit {
    pub use libsql::ffi::{SQLITE_LIMIT_FUNCTION_ARG as FUNCTION_ARG, SQLITE_LIMIT_LENGTH as LENGTH};
}

unsafe extern "C" fn progress_trampoline(data: *mut c_void) -> c_int {
    // SAFETY: `data` is the `Box<ProgressHandler>` owned by the `Conn` (as above).
    let f = unsafe { &*(data as *const ProgressHandler) };
    // A panic must not unwind into C: it interrupts.
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(true) as c_int
}

unsafe extern "C" fn token_callback(ctx: *mut c_void, flags: c_int, p: *const c_char, n: c_int, start: c_int, end: c_int) -> c_int {
    // SAFETY: `ctx` is the `TokenSink` `Conn::tokenize` passes, alive for the call.
    let sink = unsafe { &mut *(ctx as *mut TokenSink) };
    if flags & ffi::FTS5_TOKEN_COLOCATED != 0 {
        sink.colocated = true;
    }
    let bytes = if p.is_null() || n <= 0 {
        &[][..]
    } else {
        // SAFETY: the tokenizer passes `n` readable bytes at `p`, valid for the call.
        unsafe { std::slice::from_raw_parts(p as *const u8, n as usize) }
    };
    sink.out.push((
        String::from_utf8_lossy(bytes).into_owned(),
        start.max(0) as usize,
        end.max(0) as usize,
    ));
    ffi::SQLITE_OK
}

/// What [`token_callback`] collects.
struct TokenSink {
    /// The tokens so far.
    out: Vec<Token>,
    /// A colocated (synonym) token was seen.
    colocated: bool,
}

impl Conn {
    /// Opens the database at `path` with `flags`.
    pub fn open(path: &str, flags: OpenFlags) -> Result<Conn> {
        let c_path = CString::new(path).map_err(|_| RawError::misuse("the path contains a NUL byte"))?;
        let mut db = std::ptr::null_mut();
        // SAFETY: valid out-pointer and NUL-terminated path; no VFS name (default).
        let rc = unsafe { ffi::sqlite3_open_v2(c_path.as_ptr(), &mut db, flags.0, std::ptr::null()) };
        let Some(db) = NonNull::new(db) else {
            return Err(RawError {
                code: rc,
                message: "out of memory opening the database".into(),
            });
        };
        // Built before the error check so that a failed open's handle is closed too.
        let conn = Conn {
            db,
            cache: RefCell::new(Vec::new()),
            authorizer: None,
            progress: None,
            tokenizer: None,
        };
        if rc != ffi::SQLITE_OK {
            return Err(conn.error());
        }
        Ok(conn)
    }

    /// The connection's last error, with its code and message.
    fn error(&self) -> RawError {
        // SAFETY: valid handle; sqlite3_errmsg returns a NUL-terminated string valid until
        // the next call on this connection, copied at once.
        unsafe {
            RawError {
                code: ffi::sqlite3_extended_errcode(self.db.as_ptr()),
                message: cstr(ffi::sqlite3_errmsg(self.db.as_ptr()))
                    .unwrap_or("unknown SQLite error")
                    .to_string(),
            }
        }
    }

    /// Waits up to `ms` for a lock instead of failing with `SQLITE_BUSY` at once.
    pub fn busy_timeout(&self, ms: i32) {
        // SAFETY: valid handle.
        unsafe { ffi::sqlite3_busy_timeout(self.db.as_ptr(), ms) };
    }

    /// Runs `sql` (one or more statements, no parameters, rows discarded).
    pub fn exec(&self, sql: &str) -> Result<()> {
        let c = CString::new(sql).map_err(|_| RawError::misuse("the SQL contains a NUL byte"))?;
        // SAFETY: valid handle and NUL-terminated SQL; no row callback.
        let rc = unsafe { ffi::sqlite3_exec(self.db.as_ptr(), c.as_ptr(), None, std::ptr::null_mut(), std::ptr::null_mut()) };
        if rc != ffi::SQLITE_OK {
            return Err(self.error());
        }
        Ok(())
    }

    /// Prepares the first statement of `sql`. Returns it (`None` when `sql` holds only
    /// whitespace or comments) and the rest of `sql`, after that first statement.
    pub fn prepare<'s>(&self, sql: &'s str) -> Result<(Option<Stmt<'_>>, &'s str)> {
        let bytes = sql.as_bytes();
        let len = c_int::try_from(bytes.len()).map_err(|_| RawError::misuse("the SQL is too long"))?;
        let mut stmt = std::ptr::null_mut();
        let mut tail: *const c_char = std::ptr::null();
        // SAFETY: pointer/length pair from a live &str; valid out-pointers.
        let rc = unsafe { ffi::sqlite3_prepare_v2(self.db.as_ptr(), bytes.as_ptr() as *const c_char, len, &mut stmt, &mut tail) };
        let stmt = NonNull::new(stmt).map(|ptr| Stmt {
            conn: self,
            ptr,
            cached: None,
        });
        if rc != ffi::SQLITE_OK {
            return Err(self.error());
        }
        // `tail` points into `bytes`, after the first statement (at a token boundary).
        let consumed = if tail.is_null() {
            bytes.len()
        } else {
            (tail as usize).saturating_sub(bytes.as_ptr() as usize)
        };
        let rest = sql.get(consumed.min(sql.len())..).unwrap_or("");
        Ok((stmt, rest))
    }

    /// The statement for `sql` (exactly one statement), prepared on first use and kept:
    /// its `Stmt` resets it and returns it to the cache on drop.
    pub fn prepare_cached(&self, sql: &'static str) -> Result<Stmt<'_>> {
        let hit = {
            let mut cache = self.cache.borrow_mut();
            cache
                .iter()
                .position(|(k, _)| std::ptr::eq(*k, sql))
                .map(|i| cache.swap_remove(i).1)
        };
        if let Some(ptr) = hit {
            return Ok(Stmt {
                conn: self,
                ptr,
                cached: Some(sql),
            });
        }
        match self.prepare(sql)? {
            (Some(mut s), _) => {
                s.cached = Some(sql);
                Ok(s)
            }
            (None, _) => Err(RawError::misuse("the SQL holds no statement")),
        }
    }

    /// Turns SQLite's defensive mode (`SQLITE_DBCONFIG_DEFENSIVE`) on: no schema edits
    /// through `writable_schema`, no `journal_mode = OFF`, no direct writes to shadow
    /// tables (FTS5 `*_data`, ...), no `sqlite_dbpage` writes. See
    /// <https://sqlite.org/c3ref/c_dbconfig_defensive.html>.
    pub fn set_defensive(&self) -> Result<()> {
        // SAFETY: valid handle.
        let rc = unsafe { set_defensive_on(self.db.as_ptr()) };
        if rc != ffi::SQLITE_OK {
            return Err(self.error());
        }
        Ok(())
    }

    /// Whether defensive mode is on.
    pub fn is_defensive(&self) -> bool {
        let mut on: c_int = 0;
        // SAFETY: valid handle; -1 queries without changing, the out-pointer is valid.
        unsafe { ffi::sqlite3_db_config(self.db.as_ptr(), ffi::SQLITE_DBCONFIG_DEFENSIVE, -1 as c_int, &mut on as *mut c_int) };
        on != 0
    }

    /// Sets run-time limit `id` (`SQLITE_LIMIT_*`, see [`limit`]) and returns the old
    /// value. SQLite clamps the value to the compile-time maximum.
    pub fn set_limit(&self, id: c_int, value: c_int) -> c_int {
        // SAFETY: valid handle; SQLite ignores unknown ids (returns -1).
        unsafe { ffi::sqlite3_limit(self.db.as_ptr(), id, value) }
    }

    /// Installs (or, with `None`, removes) the authorizer called while statements are
    /// prepared. Replaces any earlier one.
    pub fn set_authorizer(&mut self, f: Option<Authorizer>) {
        let boxed = f.map(Box::new);
        let data = boxed
            .as_deref()
            .map_or(std::ptr::null_mut(), |b| b as *const Authorizer as *mut c_void);
        // SAFETY: valid handle; `data` points at the box stored in `self.authorizer` below,
        // which lives until replaced here (after SQLite holds the new pointer) or until
        // the connection is closed.
        unsafe {
            ffi::sqlite3_set_authorizer(self.db.as_ptr(), boxed.as_ref().map(|_| authorizer_trampoline as _), data);
        }
        self.authorizer = boxed;
    }

    /// Installs (or, with `None`, removes) a progress handler called every `every_ops`
    /// virtual-machine steps. Replaces any earlier one.
    pub fn set_progress_handler(&mut self, every_ops: i32, f: Option<ProgressHandler>) {
        let boxed = f.map(Box::new);
        let data = boxed
            .as_deref()
            .map_or(std::ptr::null_mut(), |b| b as *const ProgressHandler as *mut c_void);
        // SAFETY: as in `set_authorizer`.
        unsafe {
            ffi::sqlite3_progress_handler(self.db.as_ptr(), every_ops, boxed.as_ref().map(|_| progress_trampoline as _), data);
        }
        self.progress = boxed;
    }

    /// Creates FTS5 tokenizer `name` with `args` (as a table's `tokenize = '...'` would)
    /// for [`Conn::tokenize`], replacing any loaded before.
    pub fn load_fts5_tokenizer(&mut self, name: &CStr, args: &[&CStr]) -> Result<()> {
        let mut api: *mut ffi::fts5_api = std::ptr::null_mut();
        {
            let mut st = self.prepare_cached("SELECT fts5(?1)")?;
            // SAFETY: binds a pointer to the local out-variable `api` under the type name
            // FTS5 checks; the statement is stepped and reset (dropped) before `api` goes
            // out of scope, and FTS5 only writes the api pointer through it.
            let rc = unsafe {
                ffi::sqlite3_bind_pointer(
                    st.ptr.as_ptr(),
                    1,
                    &mut api as *mut _ as *mut c_void,
                    c"fts5_api_ptr".as_ptr(),
                    None,
                )
            };
            if rc != ffi::SQLITE_OK {
                return Err(self.error());
            }
            st.step()?;
        }
        if api.is_null() {
            return Err(RawError::misuse("FTS5 is not available on this connection"));
        }
        let mut user: *mut c_void = std::ptr::null_mut();
        // SAFETY: an all-None table of function pointers is a valid value.
        let mut tok_api: ffi::fts5_tokenizer = unsafe { std::mem::zeroed() };
        let mut tok = std::ptr::null_mut();
        // SAFETY: `api` is this connection's live fts5_api (it lives as long as the
        // connection); the name, the argument strings and all out-pointers are valid for
        // the calls.
        unsafe {
            let find = (*api)
                .xFindTokenizer
                .ok_or_else(|| RawError::misuse("fts5_api has no xFindTokenizer"))?;
            if find(api, name.as_ptr(), &mut user, &mut tok_api) != ffi::SQLITE_OK {
                return Err(RawError::misuse(format!("the FTS5 tokenizer {name:?} is not registered")));
            }
            let create = tok_api
                .xCreate
                .ok_or_else(|| RawError::misuse("the FTS5 tokenizer has no xCreate"))?;
            let mut argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
            if create(user, argv.as_mut_ptr(), argv.len() as c_int, &mut tok) != ffi::SQLITE_OK {
                return Err(RawError::misuse(format!("cannot create the FTS5 tokenizer {name:?}")));
            }
        }
        let Some(tok) = NonNull::new(tok) else {
            return Err(RawError::misuse(format!("the FTS5 tokenizer {name:?} returned no instance")));
        };
        if let Some(old) = self.tokenizer.replace(Fts5Tokenizer { api: tok_api, tok }) {
            // SAFETY: the old instance came from its module's xCreate and is deleted once.
            unsafe {
                if let Some(del) = old.api.xDelete {
                    del(old.tok.as_ptr());
                }
            }
        }
        Ok(())
    }

    /// The loaded FTS5 tokenizer's tokens of `text`, with their byte ranges; `None` if it
    /// yields colocated (synonym) tokens.
    pub fn tokenize(&self, text: &str, mode: TokenizeMode) -> Result<Option<Vec<Token>>> {
        let t = self
            .tokenizer
            .as_ref()
            .ok_or_else(|| RawError::misuse("no FTS5 tokenizer is loaded on this connection"))?;
        let tokenize = t
            .api
            .xTokenize
            .ok_or_else(|| RawError::misuse("the FTS5 tokenizer has no xTokenize"))?;
        let flags = match mode {
            TokenizeMode::Query => ffi::FTS5_TOKENIZE_QUERY,
            TokenizeMode::Document => ffi::FTS5_TOKENIZE_DOCUMENT,
        };
        let len = c_int::try_from(text.len()).map_err(|_| RawError::misuse("the text is too long to tokenize"))?;
        let mut sink = TokenSink {
            out: Vec::new(),
            colocated: false,
        };
        // SAFETY: live tokenizer instance; `sink` outlives the call (the callback gets it
        // back as `ctx`); the text pointer/length pair comes from a live &str.
        let rc = unsafe {
            tokenize(
                t.tok.as_ptr(),
                &mut sink as *mut TokenSink as *mut c_void,
                flags,
                text.as_ptr() as *const c_char,
                len,
                Some(token_callback),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(RawError {
                code: rc,
                message: format!("the tokenizer failed on {text:?}"),
            });
        }
        Ok((!sink.colocated).then_some(sink.out))
    }
}

/// A prepared statement. Finalized on drop, or, when it came from
/// [`Conn::prepare_cached`], reset (bindings cleared) and returned to the cache.
pub struct Stmt<'c> {
    /// The connection it was prepared on (for error messages and the cache).
    conn: &'c Conn,
    /// The statement handle; owned by this `Stmt` while it lives.
    ptr: NonNull<ffi::sqlite3_stmt>,
    /// The cache key, for a statement from [`Conn::prepare_cached`].
    cached: Option<&'static str>,
}

impl Drop for Stmt<'_> {
    fn drop(&mut self) {
        // SAFETY: the statement is alive and owned by this `Stmt`: either finalized here
        // (once), or reset and handed back to the cache, which finalizes it on close.
        unsafe {
            match self.cached {
                Some(sql) => {
                    ffi::sqlite3_reset(self.ptr.as_ptr());
                    ffi::sqlite3_clear_bindings(self.ptr.as_ptr());
                    self.conn.cache.borrow_mut().push((sql, self.ptr));
                }
                None => {
                    ffi::sqlite3_finalize(self.ptr.as_ptr());
                }
            }
        }
    }
}

impl Stmt<'_> {
    /// SQLite's verdict: the statement makes no direct change to the database file.
    pub fn readonly(&self) -> bool {
        // SAFETY: valid statement.
        unsafe { ffi::sqlite3_stmt_readonly(self.ptr.as_ptr()) != 0 }
    }

    /// How many parameters the statement takes (the largest index).
    pub fn parameter_count(&self) -> usize {
        // SAFETY: valid statement.
        unsafe { ffi::sqlite3_bind_parameter_count(self.ptr.as_ptr()) as usize }
    }

    /// Number of result columns.
    pub fn column_count(&self) -> usize {
        // SAFETY: valid statement.
        unsafe { ffi::sqlite3_column_count(self.ptr.as_ptr()) as usize }
    }

    /// Name of result column `i` (None when out of range).
    pub fn column_name(&self, i: usize) -> Option<String> {
        // SAFETY: valid statement; the returned string (or null) is valid until the
        // statement is finalized or the name requested again, and is copied at once.
        unsafe { cstr(ffi::sqlite3_column_name(self.ptr.as_ptr(), i as c_int)).map(str::to_string) }
    }

    fn bind_rc(&self, rc: c_int) -> Result<()> {
        if rc != ffi::SQLITE_OK {
            return Err(self.conn.error());
        }
        Ok(())
    }

    /// Binds parameter `i` (1-based).
    pub fn bind_i64(&mut self, i: usize, v: i64) -> Result<()> {
        // SAFETY: valid statement; SQLite checks the index.
        let rc = unsafe { ffi::sqlite3_bind_int64(self.ptr.as_ptr(), i as c_int, v) };
        self.bind_rc(rc)
    }

    /// Binds parameter `i` (1-based).
    pub fn bind_text(&mut self, i: usize, v: &str) -> Result<()> {
        let len = c_int::try_from(v.len()).map_err(|_| RawError::misuse("the text parameter is too long"))?;
        // SAFETY: valid statement; SQLITE_TRANSIENT makes SQLite copy the text before
        // the call returns.
        let rc = unsafe {
            ffi::sqlite3_bind_text(
                self.ptr.as_ptr(),
                i as c_int,
                v.as_ptr() as *const c_char,
                len,
                ffi::SQLITE_TRANSIENT(),
            )
        };
        self.bind_rc(rc)
    }

    /// Binds parameter `i` (1-based) to a value of any type.
    pub fn bind_value(&mut self, i: usize, v: &SqlValue) -> Result<()> {
        let p = self.ptr.as_ptr();
        let n = i as c_int;
        // SAFETY: valid statement; SQLITE_TRANSIENT makes SQLite copy the buffers before
        // the call returns.
        let rc = unsafe {
            match v {
                SqlValue::Null => ffi::sqlite3_bind_null(p, n),
                SqlValue::Integer(x) => ffi::sqlite3_bind_int64(p, n, *x),
                SqlValue::Real(x) => ffi::sqlite3_bind_double(p, n, *x),
                SqlValue::Text(s) => {
                    let len = c_int::try_from(s.len()).map_err(|_| RawError::misuse("the text parameter is too long"))?;
                    ffi::sqlite3_bind_text(p, n, s.as_ptr() as *const c_char, len, ffi::SQLITE_TRANSIENT())
                }
                SqlValue::Blob(b) => {
                    let len = c_int::try_from(b.len()).map_err(|_| RawError::misuse("the blob parameter is too long"))?;
                    ffi::sqlite3_bind_blob(p, n, b.as_ptr() as *const c_void, len, ffi::SQLITE_TRANSIENT())
                }
            }
        };
        self.bind_rc(rc)
    }

    /// Steps once: `Ok(true)` = a row is ready to read, `Ok(false)` = done.
    /// (`&mut self`: column slices borrowed from the previous row end here.)
    pub fn step(&mut self) -> Result<bool> {
        // SAFETY: valid statement.
        match unsafe { ffi::sqlite3_step(self.ptr.as_ptr()) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            rc => {
                let mut e = self.conn.error();
                if e.primary_code() != rc & 0xff {
                    e.code = rc;
                }
                Err(e)
            }
        }
    }

    // Column reads: call only after `step` returned `Ok(true)`, with `i` below
    // `column_count` (SQLite returns NULL-like values otherwise, never UB for a valid
    // statement; the row stays valid until the next step or reset, which need `&mut`).

    /// Column `i` of the current row as an integer (NULL = 0).
    pub fn column_i64(&self, i: usize) -> i64 {
        // SAFETY: valid statement (see above).
        unsafe { ffi::sqlite3_column_int64(self.ptr.as_ptr(), i as c_int) }
    }

    /// Column `i` of the current row is NULL.
    pub fn column_is_null(&self, i: usize) -> bool {
        // SAFETY: valid statement (see above).
        unsafe { ffi::sqlite3_column_type(self.ptr.as_ptr(), i as c_int) == ffi::SQLITE_NULL }
    }

    /// Column `i` of the current row as raw bytes (text or blob, unconverted; empty for
    /// NULL), borrowed until the next step.
    pub fn column_blob(&self, i: usize) -> &[u8] {
        // SAFETY: valid statement (see above); the pointer is valid for `n` bytes until
        // the next step/reset/finalize, all of which need `&mut self` or drop, so not while
        // the returned slice (borrowing `self`) lives.
        unsafe {
            let p = ffi::sqlite3_column_blob(self.ptr.as_ptr(), i as c_int) as *const u8;
            let n = ffi::sqlite3_column_bytes(self.ptr.as_ptr(), i as c_int);
            if p.is_null() || n <= 0 {
                &[]
            } else {
                std::slice::from_raw_parts(p, n as usize)
            }
        }
    }

    /// Column `i` of the current row as a typed value (text lossily decoded as UTF-8).
    pub fn column_value(&self, i: usize) -> SqlValue {
        let (p, n) = (self.ptr.as_ptr(), i as c_int);
        // SAFETY: valid statement (see above); each pointer is valid for the byte count
        // SQLite reports right after it, and is copied at once.
        unsafe {
            match ffi::sqlite3_column_type(p, n) {
                ffi::SQLITE_INTEGER => SqlValue::Integer(ffi::sqlite3_column_int64(p, n)),
                ffi::SQLITE_FLOAT => SqlValue::Real(ffi::sqlite3_column_double(p, n)),
                ffi::SQLITE_TEXT => {
                    let t = ffi::sqlite3_column_text(p, n);
                    let len = ffi::sqlite3_column_bytes(p, n) as usize;
                    if t.is_null() {
                        SqlValue::Text(String::new())
                    } else {
                        SqlValue::Text(String::from_utf8_lossy(std::slice::from_raw_parts(t, len)).into_owned())
                    }
                }
                ffi::SQLITE_BLOB => {
                    let b = ffi::sqlite3_column_blob(p, n) as *const u8;
                    let len = ffi::sqlite3_column_bytes(p, n) as usize;
                    if b.is_null() {
                        SqlValue::Blob(Vec::new())
                    } else {
                        SqlValue::Blob(std::slice::from_raw_parts(b, len).to_vec())
                    }
                }
                _ => SqlValue::Null,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    fn memory() -> Conn {
        Conn::open(":memory:", OpenFlags::NO_MUTEX | OpenFlags(ffi::SQLITE_OPEN_READWRITE)).unwrap()
    }

    #[test]
    fn prepare_step_columns_and_tail() {
        let c = memory();
        c.exec("CREATE TABLE t(a INTEGER, b TEXT, c BLOB, d REAL); INSERT INTO t VALUES (1, 'x', x'0102', 2.5), (NULL, NULL, NULL, NULL)")
            .unwrap();
        let (s, rest) = c.prepare("SELECT a, b, c, d FROM t ORDER BY rowid; -- done\n SELECT 2").unwrap();
        assert_eq!(rest.trim(), "-- done\n SELECT 2");
        let mut s = s.unwrap();
        assert!(s.readonly());
        assert_eq!(s.column_count(), 4);
        assert_eq!(s.column_name(1).as_deref(), Some("b"));
        assert!(s.step().unwrap());
        assert_eq!(s.column_value(0), SqlValue::Integer(1));
        assert_eq!(s.column_value(1), SqlValue::Text("x".into()));
        assert_eq!(s.column_value(2), SqlValue::Blob(vec![1, 2]));
        assert_eq!(s.column_value(3), SqlValue::Real(2.5));
        assert_eq!(s.column_blob(1), b"x");
        assert!(s.step().unwrap());
        assert!(s.column_is_null(0));
        assert_eq!(s.column_blob(2), b"");
        assert!(!s.step().unwrap());
        let (none, _) = c.prepare("  -- only a comment").unwrap();
        assert!(none.is_none());
        let e = c.prepare("SELECT * FROM missing").err().unwrap();
        assert_eq!(e.primary_code(), ffi::SQLITE_ERROR);
        assert!(e.message.contains("no such table"), "{e}");
    }

    #[test]
    fn cached_statements_are_reset_and_reused() {
        let c = memory();
        for v in [3, 4] {
            let mut s = c.prepare_cached("SELECT ?1 + 1").unwrap();
            s.bind_i64(1, v).unwrap();
            assert!(s.step().unwrap());
            assert_eq!(s.column_i64(0), v + 1);
        }
        assert_eq!(c.cache.borrow().len(), 1);
        // Two uses at once get two statements (never one stepped twice).
        let a = c.prepare_cached("SELECT 1").unwrap();
        let b = c.prepare_cached("SELECT 1").unwrap();
        assert_ne!(a.ptr, b.ptr);
    }

    #[test]
    fn authorizer_denies_and_progress_interrupts() {
        let mut c = memory();
        let seen = Rc::new(Cell::new(0));
        let s2 = seen.clone();
        c.set_authorizer(Some(Box::new(move |r: &AuthRequest<'_>| {
            s2.set(s2.get() + 1);
            if r.action == action::PRAGMA {
                Authorization::Deny
            } else {
                Authorization::Allow
            }
        })));
        let e = c.prepare("PRAGMA user_version").err().unwrap();
        assert_eq!(e.primary_code(), ffi::SQLITE_AUTH);
        assert!(seen.get() > 0);
        assert!(c.prepare("SELECT 1").is_ok());
        c.set_authorizer(None);
        assert!(c.prepare("PRAGMA user_version").is_ok());

        c.set_progress_handler(100, Some(Box::new(|| true)));
        let (s, _) = c
            .prepare("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n")
            .unwrap();
        let e = s.unwrap().step().err().unwrap();
        assert!(e.is_interrupt(), "{e:?}");
    }

    #[test]
    fn defensive_mode_blocks_shadow_table_writes() {
        let c = memory();
        c.exec("CREATE VIRTUAL TABLE f USING fts5(x)").unwrap();
        assert!(!c.is_defensive());
        c.set_defensive().unwrap();
        assert!(c.is_defensive());
        let e = c.exec("DELETE FROM f_data").unwrap_err();
        assert!(e.message.contains("may not be modified"), "{e}");
        c.exec("INSERT INTO f(x) VALUES ('the table itself still works')").unwrap();
        let old = c.set_limit(limit::LENGTH, 1000);
        assert!(old > 1000);
        let e = c.exec("SELECT randomblob(2000)").unwrap_err();
        assert_eq!(e.primary_code(), ffi::SQLITE_TOOBIG);
    }

    #[test]
    fn fts5_tokenizer() {
        let mut c = memory();
        assert!(c.tokenize("x", TokenizeMode::Query).is_err());
        c.load_fts5_tokenizer(c"porter", &[c"unicode61", c"remove_diacritics", c"2"])
            .unwrap();
        let t = c.tokenize("Running Cafés", TokenizeMode::Document).unwrap().unwrap();
        assert_eq!(t, vec![("run".to_string(), 0, 7), ("cafe".to_string(), 8, 14)]);
    }
}
