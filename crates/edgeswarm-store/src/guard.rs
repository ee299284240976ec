//! The SQL guard: decides what a raw SQL string is allowed to do by asking SQLite itself
//! (its authorizer, called while SQLite prepares the statement), never by matching
//! keywords. docs/security.md lists the rules and why.
//!
//! Two places run the same rules ([`check`]):
//! - A `GuardConn` (raw read-only connection on a read-pool thread) prepares each
//!   statement: it refuses more than one statement (the prepare tail must be only
//!   whitespace/comments), anything `sqlite3_stmt_readonly` says may write on the read
//!   path, and whatever the authorizer refuses. Reads also *execute* here, read-only,
//!   in defensive mode, under a time limit, a row cap and a byte cap.
//! - The writer's connection gets the same authorizer ([`WriterAuthorizer`]) while a
//!   user statement runs on it, so the check sees the schema the statement really runs
//!   against, including trigger bodies, which SQLite codes (and authorizes) as part of
//!   the statement that fires them.
//!
//! The rules: no ATTACH/DETACH, transaction control, `load_extension`, `fts3_tokenizer`,
//! PRAGMAs off the read-only list, TEMP objects; no DDL on the runtime's tables or names;
//! no row writes to `knowledge`, `kv`, the `_` tables, the FTS and vector tables; only
//! INSERTs into the append-only `agent_metrics`/`conversations` (the writer stamps and
//! logs them); no changed `hlc`/`origin` on replicated user tables. A write inside a
//! user trigger is checked like a top-level write; only the runtime's own `_sync_*`
//! triggers may write the change log.

use crate::error::{Result, StoreError};
use crate::raw::{action, limit, AuthRequest, Authorization, Conn, OpenFlags, RawError, Stmt};
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

/// Which rules a statement is prepared under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `execute_read_only_query` / the read half of `execute_query`: nothing may write.
    Read,
    /// `execute_query`: user tables may change; the runtime's tables may not.
    Write,
    /// The guard's own queries (loading [`Rules`]): no checks.
    Trusted,
}

/// Facts about the schema the rules need, read before each prepare (the authorizer
/// itself must not run SQL on its connection).
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// User tables registered for replication (they carry `_sync_*` logging triggers),
    /// lower-cased: their `hlc`/`origin` columns are stamped by edgeswarm only.
    replicated: std::collections::HashSet<String>,
}

impl Rules {
    /// Lists the runtime's logging triggers on user tables (`name`, `tbl_name`).
    pub(crate) const TRIGGERS_SQL: &'static str =
        "SELECT name, tbl_name FROM sqlite_schema WHERE type = 'trigger' AND name LIKE '\\_sync\\_%' ESCAPE '\\'";

    /// Rules from the rows of [`Rules::TRIGGERS_SQL`].
    pub(crate) fn from_triggers(q: &QueryResult) -> Rules {
        let replicated = q
            .rows
            .iter()
            .filter_map(|r| r.get(1).and_then(|v| v.as_str()).map(|t| t.to_ascii_lowercase()))
            .collect();
        Rules { replicated }
    }
}

/// State shared by the connection's authorizer and progress handler and the
/// `GuardConn` that sets it per call (one thread: `Rc` and cells suffice).
struct Hooks {
    /// The rules of the statement being prepared (read path or write path).
    mode: Cell<Mode>,
    /// Schema facts for the statement being prepared.
    rules: RefCell<Rules>,
    /// Why the authorizer refused something during the last prepare (SQLite only
    /// reports "not authorized"; the caller gets this reason instead).
    denied: RefCell<Option<String>>,
    /// When the running read must be interrupted (None: no query running).
    deadline: Cell<Option<Instant>>,
}

/// Pragmas that only read, allowed when given no value.
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

/// Read-only pragmas whose argument names a table or index (or a row count), not a
/// new setting: `PRAGMA table_info(notes)`.
const ARG_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "quick_check",
    "integrity_check",
];

/// SQL functions no raw statement may call: `load_extension` loads native code;
/// `fts3_tokenizer` with two arguments registers a tokenizer from a raw pointer.
const DENIED_FUNCTIONS: &[&str] = &["load_extension", "fts3_tokenizer"];

/// Who owns a table (or index, trigger, view) name, for the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The user's own object: anything goes, but for replicated tables' stamps.
    User,
    /// SQLite's schema tables and `sqlite_sequence`: SQLite itself writes them for DDL
    /// and refuses direct edits (no `writable_schema`, defensive mode).
    Sqlite,
    /// Internal bookkeeping: `_` tables (change log, clock, cursors), the FTS5 index
    /// and its shadow tables, vector tables, planner statistics.
    Internal,
    /// `knowledge`: written only through its typed path (dedup, change log).
    Knowledge,
    /// `kv`: written only through its typed path (versions, tombstones, change log).
    Kv,
    /// `agent_metrics`, `conversations`: append-only; raw INSERTs are stamped and
    /// logged by the writer, nothing else may change them.
    AppendOnly,
    /// Tables of the seed's schema that the runtime also writes and never replicates
    /// (`edge_replicas`, `distributed_transactions`, `conflicts`,
    /// `performance_tests`): rows are free, the schema is not.
    Seed,
}

/// Who owns `name` (case-insensitive, as SQLite's names are).
fn owner(name: &str) -> Owner {
    let n = name.to_ascii_lowercase();
    match n.as_str() {
        "knowledge" => Owner::Knowledge,
        "kv" => Owner::Kv,
        "agent_metrics" | "conversations" => Owner::AppendOnly,
        "edge_replicas" | "distributed_transactions" | "conflicts" | "performance_tests" => Owner::Seed,
        "sqlite_master" | "sqlite_schema" | "sqlite_temp_master" | "sqlite_temp_schema" | "sqlite_sequence" => Owner::Sqlite,
        // The index SQLite makes for a UNIQUE/PRIMARY KEY constraint: its table decides.
        _ if n.starts_with("sqlite_autoindex_") => Owner::User,
        _ if n.starts_with('_')
            || n.starts_with("sqlite_")
            || n.starts_with("knowledge_fts")
            || n.starts_with("search_vec")
            || n == "search_embedders"
            || n.starts_with("libsql_") =>
        {
            Owner::Internal
        }
        _ => Owner::User,
    }
}

/// The name belongs to the runtime (or SQLite): no DDL may create, change or drop it.
fn reserved(name: Option<&str>) -> bool {
    name.is_some_and(|n| owner(n) != Owner::User)
}

/// The innermost trigger is one of the runtime's own (`_sync_*` logging triggers on
/// replicated user tables): user SQL cannot create `_` names, so its body is trusted.
fn in_runtime_trigger(r: &AuthRequest<'_>) -> bool {
    r.trigger.is_some_and(|t| t.starts_with('_'))
}

/// Whether a raw row write to `table` is allowed; the refusal names the way to write.
fn check_dml(rules: &Rules, action: i32, table: &str, column: Option<&str>) -> Result<(), String> {
    let verb = match action {
        action::INSERT => "insert into",
        action::UPDATE => "update",
        _ => "delete from",
    };
    match owner(table) {
        Owner::User => {
            let stamp = column.is_some_and(|c| c.eq_ignore_ascii_case("hlc") || c.eq_ignore_ascii_case("origin"));
            if action == action::UPDATE && stamp && rules.replicated.contains(&table.to_ascii_lowercase()) {
                Err(format!(
                    "`{table}` is replicated: its `hlc` and `origin` columns are stamped by edgeswarm (a changed stamp would skip the change log); update the other columns"
                ))
            } else {
                Ok(())
            }
        }
        Owner::Sqlite | Owner::Seed => Ok(()),
        Owner::AppendOnly if action == action::INSERT => Ok(()),
        Owner::AppendOnly => Err(format!(
            "cannot {verb} `{table}`: its rows are append-only (replicas keep every row); insert new rows instead (tools record_metric, add_conversation)"
        )),
        Owner::Knowledge => Err(format!(
            "cannot {verb} `knowledge` with raw SQL: its writes must be deduplicated and logged for replication; use the add_knowledge tool (Swarm::add_knowledge, update_knowledge, delete_knowledge)"
        )),
        Owner::Kv => Err(format!(
            "cannot {verb} `kv` with raw SQL: its writes must be versioned and logged for replication; use the kv_set, kv_cas or kv_delete tools"
        )),
        Owner::Internal => Err(format!("`{table}` is managed by edgeswarm and cannot be written directly")),
    }
}

/// The rules: what no raw SQL may do, what the read path may not do, and what the
/// write path may not do to the runtime's tables. `Err` carries the reason.
pub(crate) fn check(mode: Mode, rules: &Rules, r: &AuthRequest<'_>) -> Result<(), String> {
    let a1 = r.arg1;
    let a2 = r.arg2;
    let name = a1.unwrap_or("");
    if mode == Mode::Trusted {
        return Ok(());
    }
    match r.action {
        action::READ | action::SELECT | action::RECURSIVE => Ok(()),
        action::ATTACH | action::DETACH => Err("ATTACH and DETACH are not allowed: queries may only use the home database".into()),
        action::TRANSACTION | action::SAVEPOINT => Err(
            "transaction control (BEGIN/COMMIT/ROLLBACK/SAVEPOINT) is not allowed: every call already runs in its own transaction".into(),
        ),
        action::FUNCTION => match a2 {
            Some(f) if DENIED_FUNCTIONS.iter().any(|d| f.eq_ignore_ascii_case(d)) => Err(format!("{f}() is not allowed")),
            _ => Ok(()),
        },
        action::PRAGMA => {
            let p = name.to_ascii_lowercase();
            if a2.is_some() && !ARG_PRAGMAS.contains(&p.as_str()) {
                Err(format!("PRAGMA {p} = ... changes connection or database settings and is not allowed"))
            } else if !READ_PRAGMAS.contains(&p.as_str()) {
                Err(format!("PRAGMA {p} is not on the read-only allow list"))
            } else {
                Ok(())
            }
        }
        // `CREATE TABLE temp.t ...` (a `temp.` schema name instead of the TEMP keyword)
        // is reported as a plain CREATE in database "temp": the same TEMP object.
        action::CREATE_INDEX | action::CREATE_TABLE | action::CREATE_TRIGGER | action::CREATE_VIEW | action::CREATE_VTABLE
            if r.database.is_some_and(|d| d.eq_ignore_ascii_case("temp")) =>
        {
            Err("TEMP tables, views, triggers and indexes are not allowed (a `temp.` name makes one): they would live on a shared connection, hidden from the checks; create a normal one".into())
        }
        action::CREATE_TEMP_INDEX
        | action::CREATE_TEMP_TABLE
        | action::CREATE_TEMP_TRIGGER
        | action::CREATE_TEMP_VIEW
        | action::DROP_TEMP_INDEX
        | action::DROP_TEMP_TABLE
        | action::DROP_TEMP_TRIGGER
        | action::DROP_TEMP_VIEW => Err(
            "TEMP tables, views, triggers and indexes are not allowed: they would live on a shared connection, hidden from the checks; create a normal one".into(),
        ),
        // The runtime's own logging triggers on replicated user tables write the change
        // log; they fire only from writes the rules allowed.
        _ if mode == Mode::Write && in_runtime_trigger(r) => Ok(()),
        action::INSERT | action::UPDATE | action::DELETE if mode == Mode::Read => {
            Err(format!("this statement writes to `{name}`; use execute_query for writes"))
        }
        action::INSERT | action::UPDATE | action::DELETE => check_dml(rules, r.action, name, a2),
        _ if mode == Mode::Read => Err("this statement changes the schema; use execute_query for writes".into()),
        action::CREATE_TABLE | action::CREATE_VIEW | action::CREATE_VTABLE | action::DROP_TABLE | action::DROP_VIEW | action::DROP_VTABLE
            if reserved(a1) =>
        {
            Err(format!("`{name}` is a name managed by edgeswarm; its schema cannot be created, changed or dropped"))
        }
        action::CREATE_INDEX | action::CREATE_TRIGGER | action::DROP_INDEX | action::DROP_TRIGGER if reserved(a1) || reserved(a2) => {
            let on = a2.unwrap_or("");
            Err(format!(
                "`{name}` on `{on}`: the runtime's tables (and its names) cannot get new or changed indexes or triggers; they would change or break every typed write"
            ))
        }
        action::ALTER_TABLE if reserved(a2) => Err(format!(
            "`{}` is managed by edgeswarm and its schema cannot be changed",
            a2.unwrap_or("")
        )),
        action::REINDEX | action::ANALYZE if reserved(a1) => Err(format!(
            "`{name}` is managed by edgeswarm; REINDEX/ANALYZE of the runtime's tables is not allowed (name a table of yours)"
        )),
        action::CREATE_TABLE
        | action::CREATE_VIEW
        | action::CREATE_VTABLE
        | action::DROP_TABLE
        | action::DROP_VIEW
        | action::DROP_VTABLE
        | action::CREATE_INDEX
        | action::CREATE_TRIGGER
        | action::DROP_INDEX
        | action::DROP_TRIGGER
        | action::ALTER_TABLE
        | action::REINDEX
        | action::ANALYZE => Ok(()),
        other => Err(format!("this statement needs an operation the guard does not allow (authorizer action {other})")),
    }
}

/// Approximate bytes of a value in a result (what the byte cap counts).
pub fn value_bytes(v: &SqlValue) -> usize {
    match v {
        SqlValue::Text(t) => t.len(),
        SqlValue::Blob(b) => b.len(),
        _ => 8,
    }
}

/// The per-value length limit for a result of `ncol` columns under a `cap`-byte result
/// cap: the columns of one row together stay within the cap (SQLite builds a whole row
/// before handing it over), with a floor of 1 MiB per value.
fn value_limit(cap: usize, ncol: usize) -> i32 {
    let cap = cap.min(i32::MAX as usize);
    (cap / ncol.max(1)).max(cap.min(1 << 20)).max(1) as i32
}

/// The authorizer installed on the writer's libSQL connection while one user statement
/// runs there (the guard connection's check is only a first pass: the writer sees its
/// own schema, temp objects and all). Removed on drop.
pub(crate) struct WriterAuthorizer<'c> {
    /// The writer's connection.
    conn: &'c libsql::Connection,
    /// Why the authorizer refused, if it did.
    denied: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl<'c> WriterAuthorizer<'c> {
    /// Installs the write-path rules on `conn`.
    pub(crate) fn install(conn: &'c libsql::Connection, rules: Rules) -> Result<Self> {
        let denied: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
        let d = denied.clone();
        let hook: libsql::AuthHook =
            std::sync::Arc::new(move |c: &libsql::AuthContext<'_>| match check(Mode::Write, &rules, &request(c)) {
                Ok(()) => libsql::Authorization::Allow,
                Err(why) => {
                    let mut g = d.lock().unwrap_or_else(|p| p.into_inner());
                    g.get_or_insert(why);
                    libsql::Authorization::Deny
                }
            });
        conn.authorizer(Some(hook))
            .map_err(|e| StoreError::Internal(format!("cannot install the SQL guard on the writer: {e}")))?;
        Ok(WriterAuthorizer { conn, denied })
    }

    /// Turns an error of the guarded statement into `Refused` when the authorizer
    /// refused something (SQLite only says "not authorized").
    pub(crate) fn explain(&self, e: StoreError) -> StoreError {
        match self.denied.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(why) => StoreError::Refused(why),
            None => e,
        }
    }
}

impl Drop for WriterAuthorizer<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.conn.authorizer(None) {
            tracing::error!(error = %e, "could not remove the SQL guard from the writer's connection");
        }
    }
}

/// libSQL's parsed authorizer call back as SQLite's (action, arguments), for [`check`].
fn request<'a>(c: &libsql::AuthContext<'a>) -> AuthRequest<'a> {
    use libsql::AuthAction as A;
    let (code, a1, a2): (i32, Option<&'a str>, Option<&'a str>) = match c.action {
        A::Unknown { code, arg1, arg2 } => (code, arg1, arg2),
        A::CreateIndex { index_name, table_name } => (action::CREATE_INDEX, Some(index_name), Some(table_name)),
        A::CreateTable { table_name } => (action::CREATE_TABLE, Some(table_name), None),
        A::CreateTempIndex { index_name, table_name } => (action::CREATE_TEMP_INDEX, Some(index_name), Some(table_name)),
        A::CreateTempTable { table_name } => (action::CREATE_TEMP_TABLE, Some(table_name), None),
        A::CreateTempTrigger { trigger_name, table_name } => (action::CREATE_TEMP_TRIGGER, Some(trigger_name), Some(table_name)),
        A::CreateTempView { view_name } => (action::CREATE_TEMP_VIEW, Some(view_name), None),
        A::CreateTrigger { trigger_name, table_name } => (action::CREATE_TRIGGER, Some(trigger_name), Some(table_name)),
        A::CreateView { view_name } => (action::CREATE_VIEW, Some(view_name), None),
        A::Delete { table_name } => (action::DELETE, Some(table_name), None),
        A::DropIndex { index_name, table_name } => (action::DROP_INDEX, Some(index_name), Some(table_name)),
        A::DropTable { table_name } => (action::DROP_TABLE, Some(table_name), None),
        A::DropTempIndex { index_name, table_name } => (action::DROP_TEMP_INDEX, Some(index_name), Some(table_name)),
        A::DropTempTable { table_name } => (action::DROP_TEMP_TABLE, Some(table_name), None),
        A::DropTempTrigger { trigger_name, table_name } => (action::DROP_TEMP_TRIGGER, Some(trigger_name), Some(table_name)),
        A::DropTempView { view_name } => (action::DROP_TEMP_VIEW, Some(view_name), None),
        A::DropTrigger { trigger_name, table_name } => (action::DROP_TRIGGER, Some(trigger_name), Some(table_name)),
        A::DropView { view_name } => (action::DROP_VIEW, Some(view_name), None),
        A::Insert { table_name } => (action::INSERT, Some(table_name), None),
        A::Pragma { pragma_name, pragma_value } => (action::PRAGMA, Some(pragma_name), pragma_value),
        A::Read { table_name, column_name } => (action::READ, Some(table_name), Some(column_name)),
        A::Select => (action::SELECT, None, None),
        A::Transaction { .. } => (action::TRANSACTION, None, None),
        A::Update { table_name, column_name } => (action::UPDATE, Some(table_name), Some(column_name)),
        A::Attach { filename } => (action::ATTACH, Some(filename), None),
        A::Detach { database_name } => (action::DETACH, Some(database_name), None),
        A::AlterTable { database_name, table_name } => (action::ALTER_TABLE, Some(database_name), Some(table_name)),
        A::Reindex { index_name } => (action::REINDEX, Some(index_name), None),
        A::Analyze { table_name } => (action::ANALYZE, Some(table_name), None),
        A::CreateVtable { table_name, module_name } => (action::CREATE_VTABLE, Some(table_name), Some(module_name)),
        A::DropVtable { table_name, module_name } => (action::DROP_VTABLE, Some(table_name), Some(module_name)),
        A::Function { function_name } => (action::FUNCTION, None, Some(function_name)),
        A::Savepoint { savepoint_name, .. } => (action::SAVEPOINT, None, Some(savepoint_name)),
        A::Recursive => (action::RECURSIVE, None, None),
    };
    AuthRequest {
        action: code,
        arg1: a1,
        arg2: a2,
        database: c.database_name,
        trigger: c.accessor,
    }
}

/// Foreign keys from user tables to the runtime's tables would make the runtime's own
/// deletes and updates fail (`PRAGMA foreign_keys` is on): lists them, as
/// `(table, referenced table)`, from the rows of [`FOREIGN_KEYS_SQL`].
pub(crate) fn foreign_keys_into_runtime(q: &QueryResult) -> Vec<(String, String)> {
    q.rows
        .iter()
        .filter_map(|r| Some((r.first()?.as_str()?.to_string(), r.get(1)?.as_str()?.to_string())))
        .filter(|(from, to)| owner(from) == Owner::User && owner(to) != Owner::User)
        .collect()
}

/// Every object name in the schema.
pub(crate) const SCHEMA_NAMES_SQL: &str = "SELECT name FROM sqlite_schema";

/// Names in `after` (rows of [`SCHEMA_NAMES_SQL`]) that `before` lacked and that belong
/// to the runtime: objects a user statement created under a runtime name.
pub(crate) fn new_reserved_names(before: &QueryResult, after: &QueryResult) -> Vec<String> {
    let old: std::collections::HashSet<&str> = before.rows.iter().filter_map(|r| r.first()?.as_str()).collect();
    after
        .rows
        .iter()
        .filter_map(|r| r.first()?.as_str())
        .filter(|n| !old.contains(n) && reserved(Some(n)))
        .map(str::to_string)
        .collect()
}

/// Every foreign key of every table: (table, referenced table).
pub(crate) const FOREIGN_KEYS_SQL: &str =
    "SELECT m.name, f.\"table\" FROM sqlite_schema m, pragma_foreign_key_list(m.name) f WHERE m.type = 'table'";

/// A SQLite error as the store reports it.
fn sql_err(e: RawError) -> StoreError {
    StoreError::from_sqlite(e.code, e.message, None)
}

/// A raw, read-only SQLite connection used to check and run raw SQL reads.
/// Not `Send`: it lives on one read-pool thread.
pub struct GuardConn {
    /// The raw connection, with [`check`] and the deadline check installed.
    conn: Conn,
    /// Shared with the hooks installed on `conn`.
    hooks: Rc<Hooks>,
}

impl GuardConn {
    /// Opens `path` read-only, in defensive mode, with `query_only`, temporary storage
    /// in files (a big sort spills to disk, not to memory) and a 5 s busy timeout.
    pub fn open(path: &str) -> Result<Self> {
        let open_err = |e: RawError| StoreError::Open {
            path: path.into(),
            reason: e.message,
        };
        let mut conn = Conn::open(path, OpenFlags::READ_ONLY | OpenFlags::NO_MUTEX).map_err(open_err)?;
        conn.set_defensive().map_err(open_err)?;
        conn.busy_timeout(5_000);
        // Set before the authorizer is installed: it refuses pragmas that set a value.
        conn.exec("PRAGMA query_only = 1; PRAGMA temp_store = FILE").map_err(sql_err)?;
        let hooks = Rc::new(Hooks {
            mode: Cell::new(Mode::Read),
            rules: RefCell::new(Rules::default()),
            denied: RefCell::new(None),
            deadline: Cell::new(None),
        });
        let h = hooks.clone();
        conn.set_authorizer(Some(Box::new(move |r: &AuthRequest<'_>| {
            match check(h.mode.get(), &h.rules.borrow(), r) {
                Ok(()) => Authorization::Allow,
                Err(why) => {
                    h.denied.borrow_mut().get_or_insert(why);
                    Authorization::Deny
                }
            }
        })));
        let h = hooks.clone();
        conn.set_progress_handler(
            1_000,
            Some(Box::new(move || matches!(h.deadline.get(), Some(d) if Instant::now() >= d))),
        );
        Ok(GuardConn { conn, hooks })
    }

    /// Whether SQLite's defensive mode is on (it is, from `open`).
    pub fn is_defensive(&self) -> bool {
        self.conn.is_defensive()
    }

    /// Reads the schema facts the write rules need (trusted, unchecked query).
    fn load_rules(&self) -> Result<Rules> {
        self.hooks.mode.set(Mode::Trusted);
        let r = (|| {
            let (stmt, _) = self.conn.prepare(Rules::TRIGGERS_SQL).map_err(sql_err)?;
            let mut q = QueryResult::default();
            if let Some(mut stmt) = stmt {
                while stmt.step().map_err(sql_err)? {
                    q.rows.push(vec![stmt.column_value(0), stmt.column_value(1)]);
                }
            }
            Ok(Rules::from_triggers(&q))
        })();
        self.hooks.mode.set(Mode::Read);
        r
    }

    /// Prepares exactly one statement under `mode`'s rules.
    fn prepare(&self, sql: &str, mode: Mode) -> Result<Stmt<'_>> {
        if sql.trim().is_empty() {
            return Err(StoreError::Refused("the query is empty".into()));
        }
        if sql.contains('\0') {
            return Err(StoreError::Refused("the query contains a NUL byte".into()));
        }
        if mode == Mode::Write {
            *self.hooks.rules.borrow_mut() = self.load_rules()?;
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

    /// Runs a read-only statement with parameters, a row cap, a byte cap on the values
    /// returned (`max_bytes`, also the longest value SQLite may build) and a time limit.
    pub fn query(&mut self, sql: &str, params: &[SqlValue], max_rows: usize, max_bytes: usize, timeout: Duration) -> Result<QueryResult> {
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
        let too_large = || StoreError::ResultTooLarge {
            limit_bytes: max_bytes as u64,
        };
        // No value SQLite builds (randomblob, zeroblob, printf, group_concat...) may be
        // longer than the row's share of the cap: a huge value fails at once with
        // SQLITE_TOOBIG instead of being allocated.
        let old_len = self.conn.set_limit(limit::LENGTH, value_limit(max_bytes, ncol));
        let mut bytes = 0usize;
        self.hooks.deadline.set(Some(Instant::now() + timeout));
        let result = loop {
            match stmt.step() {
                Ok(true) => {
                    if out.rows.len() >= max_rows {
                        out.truncated = true;
                        break Ok(());
                    }
                    let row: Vec<SqlValue> = (0..ncol).map(|i| stmt.column_value(i)).collect();
                    bytes = bytes.saturating_add(row.iter().map(value_bytes).sum());
                    if bytes > max_bytes {
                        break Err(too_large());
                    }
                    out.rows.push(row);
                }
                Ok(false) => break Ok(()),
                Err(e) if e.is_interrupt() => {
                    break Err(StoreError::Timeout {
                        limit_ms: timeout.as_millis() as u64,
                    })
                }
                Err(e) if e.primary_code() == SQLITE_TOOBIG => break Err(too_large()),
                Err(e) => break Err(sql_err(e)),
            }
        };
        self.hooks.deadline.set(None);
        drop(stmt);
        self.conn.set_limit(limit::LENGTH, old_len);
        result.map(|_| out)
    }
}

/// `SQLITE_TOOBIG`: a string or blob passed the length limit.
const SQLITE_TOOBIG: i32 = 18;

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(action: i32, arg1: Option<&'a str>, arg2: Option<&'a str>, trigger: Option<&'a str>) -> AuthRequest<'a> {
        AuthRequest {
            action,
            arg1,
            arg2,
            database: Some("main"),
            trigger,
        }
    }

    #[test]
    fn names_are_owned_case_insensitively() {
        assert_eq!(owner("KV"), Owner::Kv);
        assert_eq!(owner("Knowledge_FTS_data"), Owner::Internal);
        assert_eq!(owner("_Changes"), Owner::Internal);
        assert_eq!(owner("sqlite_autoindex_notes_1"), Owner::User);
        assert_eq!(owner("sqlite_stat1"), Owner::Internal);
        assert_eq!(owner("notes"), Owner::User);
    }

    #[test]
    fn trigger_bodies_are_checked_unless_the_runtime_owns_the_trigger() {
        let rules = Rules::default();
        let del = |t| check(Mode::Write, &rules, &req(action::DELETE, Some("_changes"), None, t));
        assert!(del(None).is_err());
        assert!(del(Some("user_trigger")).is_err());
        assert!(del(Some("_sync_notes_ai")).is_ok());
        // TEMP objects and global bans hold even inside the runtime's triggers.
        let attach = check(
            Mode::Write,
            &rules,
            &req(action::ATTACH, Some("x.db"), None, Some("_sync_notes_ai")),
        );
        assert!(attach.is_err());
    }

    #[test]
    fn replicated_tables_keep_their_stamps() {
        let q = QueryResult {
            rows: vec![vec![SqlValue::Text("_sync_notes_ai".into()), SqlValue::Text("Notes".into())]],
            ..Default::default()
        };
        let rules = Rules::from_triggers(&q);
        let upd = |c| check(Mode::Write, &rules, &req(action::UPDATE, Some("notes"), Some(c), None));
        assert!(upd("hlc").is_err());
        assert!(upd("ORIGIN").is_err());
        assert!(upd("body").is_ok());
        assert!(check(
            Mode::Write,
            &Rules::default(),
            &req(action::UPDATE, Some("notes"), Some("hlc"), None)
        )
        .is_ok());
    }

    #[test]
    fn value_limit_splits_the_cap_across_columns() {
        let cap = 16 << 20;
        assert_eq!(value_limit(cap, 1), cap as i32);
        assert_eq!(value_limit(cap, 4), (cap / 4) as i32);
        assert_eq!(value_limit(cap, 1000), 1 << 20, "floor of 1 MiB");
        assert_eq!(value_limit(100, 0), 100, "a cap under the floor wins");
    }
}
