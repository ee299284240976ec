//! Opening libSQL connections, and running libSQL's async-shaped local calls on the
//! dedicated threads that own them.
//!
//! libSQL's local `Connection` methods are `async fn`s that never actually wait: they
//! call SQLite synchronously. We call them only from our own OS threads (writer, read
//! pool), where `block_on` just drives that synchronous work; no tokio worker ever runs
//! a libSQL call.

use crate::error::{Result, StoreError};
use crate::value::{QueryResult, SqlValue};
use edgeswarm_core::Durability;
use std::collections::HashMap;
use std::path::Path;

/// Runs a libSQL future to completion on the current (dedicated) thread.
pub fn run<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// Refuses to open `path` when the file is missing but its `-wal` holds frames.
///
/// Such a log belongs to a database that was deleted or moved, perhaps while a server
/// still has it open. A new file at the path would share that server's log and index
/// (pages of the old database read into the new one: a damaged file), and after a crash
/// the log holds the old database's last writes, which a new file would discard.
fn refuse_orphan_wal(path: &Path) -> Result<()> {
    let Some(frames) = crate::files::orphan_wal_bytes(path) else {
        return Ok(());
    };
    let wal = crate::files::side_file(path, "-wal");
    Err(StoreError::Open {
        path: path.display().to_string(),
        reason: format!(
            "the database file is missing but {} holds {frames} bytes of its writes: the file was deleted or moved \
             without its log, and a new database here would be mixed with that log (damaged) or discard it. If the \
             database was moved, move its -wal and -shm files with it; if it was deleted on purpose, delete {} and its \
             -shm too. Stop any edgeswarm process still using this path first",
            wal.display(),
            wal.display()
        ),
    })
}

/// Opens the read-write connection the writer owns, with the durability pragmas.
pub fn open_writer(path: &Path, durability: Durability) -> Result<(libsql::Database, libsql::Connection)> {
    open_writer_vfs(path, durability, None)
}

/// `open_writer` through the registered SQLite VFS named `vfs` (`None`: the default
/// VFS). libSQL's bundled SQLite is built with `SQLITE_USE_URI`, so the VFS is chosen by
/// opening `file:<path>?vfs=<name>`; the path itself is unchanged.
pub fn open_writer_vfs(path: &Path, durability: Durability, vfs: Option<&str>) -> Result<(libsql::Database, libsql::Connection)> {
    let p = path.display().to_string();
    let err = |e: libsql::Error| StoreError::opening(&p, e, "");
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            return Err(StoreError::Open {
                path: p.clone(),
                reason: format!("directory {} does not exist; create it first", dir.display()),
            });
        }
    }
    refuse_orphan_wal(path)?;
    let db = match vfs {
        None => run(libsql::Builder::new_local(path).build()),
        Some(name) => run(libsql::Builder::new_local(vfs_uri(path, name)).build()),
    }
    .map_err(err)?;
    // Defensive mode: this connection runs user SQL (raw writes).
    let conn = defensive(|| db.connect(), &p)?.map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
    // journal_mode returns a row, so it goes through query.
    let mode = run(async {
        let mut rows = conn.query("PRAGMA journal_mode = WAL", ()).await?;
        let row = rows.next().await?;
        Ok::<_, libsql::Error>(row.and_then(|r| r.get::<String>(0).ok()).unwrap_or_default())
    })
    .map_err(|e| StoreError::opening(&p, e, " (is this a SQLite database?)"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Open {
            path: p,
            reason: format!("could not switch to WAL mode (got {mode})"),
        });
    }
    run(conn.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -65536;",
        durability.pragma()
    )))
    .map_err(err)?;
    Ok((db, conn))
}

/// The URI SQLite opens `path` through the VFS `name` with: `%`, `?`, `#` and `&` (which
/// would end or escape the path part) are percent-encoded, as is the name.
fn vfs_uri(path: &Path, name: &str) -> String {
    fn esc(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                '%' => "%25".to_string(),
                '?' => "%3f".to_string(),
                '#' => "%23".to_string(),
                '&' => "%26".to_string(),
                c => c.to_string(),
            })
            .collect()
    }
    let p = path.display().to_string();
    // An absolute path needs the empty authority (`file:///abs`); `file:rel` is relative.
    let prefix = if p.starts_with('/') { "file://" } else { "file:" };
    format!("{prefix}{}?vfs={}", esc(&p), esc(name))
}

/// Runs `open` with SQLite's defensive mode turned on for the connections it opens
/// (`raw::opening_defensive`: libSQL does not expose the handle to set it afterwards).
fn defensive<T>(open: impl FnOnce() -> T, path: &str) -> Result<T> {
    // libSQL configures SQLite's threading mode once, before SQLite initialises, and
    // panics if it cannot; registering our open hook initialises SQLite. So let libSQL
    // run its one-time setup first (opening an in-memory database does).
    static LIBSQL_READY: std::sync::Once = std::sync::Once::new();
    LIBSQL_READY.call_once(|| {
        if let Err(e) = run(libsql::Builder::new_local(":memory:").build()) {
            tracing::warn!(error = %e, "libSQL set-up probe failed");
        }
    });
    crate::raw::opening_defensive(open).map_err(|e| StoreError::Open {
        path: path.into(),
        reason: e.message,
    })
}

/// Sets a connection's page cache (KiB) and, when `mmap_bytes` is `Some`, its memory
/// map (`StoreConfig::cache`).
pub fn set_cache(conn: &libsql::Connection, path: &Path, cache_kib: u64, mmap_bytes: Option<u64>) -> Result<()> {
    let mut sql = format!("PRAGMA cache_size = -{cache_kib};");
    if let Some(m) = mmap_bytes {
        sql.push_str(&format!(" PRAGMA mmap_size = {m};"));
    }
    run(conn.execute_batch(&sql)).map(|_| ()).map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        reason: format!("cannot set the page cache: {e}"),
    })
}

/// Opens a read-only connection for the read pool.
pub fn open_reader(path: &Path) -> Result<(libsql::Database, libsql::Connection)> {
    let p = path.display().to_string();
    let err = |e: libsql::Error| StoreError::Open {
        path: p.clone(),
        reason: e.to_string(),
    };
    let db = run(libsql::Builder::new_local(path)
        .flags(libsql::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .build())
    .map_err(err)?;
    let conn = defensive(|| db.connect(), &p)?.map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
    run(conn.execute_batch("PRAGMA query_only = 1; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -32768; PRAGMA mmap_size = 268435456;"))
        .map_err(err)?;
    Ok((db, conn))
}

/// A connection with a cache of prepared statements keyed by SQL text: prepare once,
/// reuse for every row.
pub struct CachedConn {
    /// Kept so the database outlives the connection.
    _db: libsql::Database,
    pub conn: libsql::Connection,
    /// Prepared statements by SQL text, with the tick of their last use. Bounded by
    /// [`STMT_CACHE_CAP`]: callers also run SQL built per call (`IN (1, 2, ...)` lists of
    /// keys or sequence numbers), and an unbounded cache kept every such text prepared
    /// for the life of the connection — SQLite memory that grew with uptime.
    cache: HashMap<String, (libsql::Statement, u64)>,
    /// Use counter for the least-recently-used eviction.
    tick: u64,
}

/// Most statements one connection keeps prepared; the least recently used one is
/// finalized to make room. The runtime's fixed statements number a few dozen.
pub const STMT_CACHE_CAP: usize = 128;

impl CachedConn {
    pub fn new(db: libsql::Database, conn: libsql::Connection) -> Self {
        CachedConn {
            _db: db,
            conn,
            cache: HashMap::new(),
            tick: 0,
        }
    }

    /// A prepared statement for `sql`, ready to bind (statements are reset after use).
    pub fn stmt(&mut self, sql: &str) -> Result<&libsql::Statement> {
        self.tick += 1;
        // One hash lookup on the hot path; prepare only on a miss.
        if !self.cache.contains_key(sql) {
            let s = run(self.conn.prepare(sql))?;
            if self.cache.len() >= STMT_CACHE_CAP {
                let oldest = self.cache.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.cache.remove(&k);
                }
            }
            self.cache.insert(sql.to_string(), (s, self.tick));
        }
        let tick = self.tick;
        self.cache
            .get_mut(sql)
            .map(|(s, t)| {
                *t = tick;
                &*s
            })
            .ok_or_else(|| StoreError::Internal("statement cache miss".into()))
    }

    /// How many statements are prepared and kept.
    pub fn cached_statements(&self) -> usize {
        self.cache.len()
    }

    /// Executes a cached statement; returns rows changed.
    pub fn execute(&mut self, sql: &str, params: Vec<libsql::Value>) -> Result<u64> {
        let s = self.stmt(sql)?;
        let r = run(s.execute(params));
        s.reset();
        Ok(r? as u64)
    }

    /// Runs a cached statement and collects its rows.
    pub fn query(&mut self, sql: &str, params: Vec<libsql::Value>) -> Result<QueryResult> {
        let s = self.stmt(sql)?;
        s.reset();
        let r = collect(s, params);
        s.reset();
        r
    }

    /// Runs uncached SQL (one-off statements such as DDL or user SQL) and collects rows.
    pub fn query_once(&self, sql: &str, params: Vec<libsql::Value>) -> Result<QueryResult> {
        let stmt = run(self.conn.prepare(sql))?;
        collect(&stmt, params)
    }

    /// Runs uncached user SQL and collects its rows, failing with `ResultTooLarge` as
    /// soon as the values collected pass `max_bytes` (a write's `RETURNING` rows).
    pub fn query_once_capped(&self, sql: &str, params: Vec<libsql::Value>, max_bytes: usize) -> Result<QueryResult> {
        let stmt = run(self.conn.prepare(sql))?;
        collect_capped(&stmt, params, max_bytes)
    }

    /// Runs a batch of statements with no parameters (DDL, pragmas).
    pub fn batch(&self, sql: &str) -> Result<()> {
        run(self.conn.execute_batch(sql))?;
        Ok(())
    }

    /// Drops cached statements (after schema changes made by user SQL).
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }
}

/// Runs `stmt` and collects every row as `SqlValue`s, with the column names.
fn collect(stmt: &libsql::Statement, params: Vec<libsql::Value>) -> Result<QueryResult> {
    collect_capped(stmt, params, usize::MAX)
}

/// `collect`, failing with `ResultTooLarge` once the collected values pass `max_bytes`.
fn collect_capped(stmt: &libsql::Statement, params: Vec<libsql::Value>, max_bytes: usize) -> Result<QueryResult> {
    let columns: Vec<String> = stmt.columns().iter().map(|c| c.name().to_string()).collect();
    let rows = run(async {
        let mut rows = stmt.query(params).await?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(r) = rows.next().await? {
            let mut row = Vec::with_capacity(columns.len());
            for (i, name) in columns.iter().enumerate() {
                // libSQL panics on TEXT that is not valid UTF-8 (it unwraps the
                // conversion); such a value fails this read with a typed error instead
                // of the reader thread.
                let v = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.get_value(i as i32))) {
                    Ok(v) => SqlValue::from(v?),
                    Err(_) => {
                        return Ok(Err(StoreError::Refused(format!(
                            "column `{name}` holds TEXT that is not valid UTF-8; read it as CAST({name} AS BLOB)"
                        ))))
                    }
                };
                bytes = bytes.saturating_add(crate::guard::value_bytes(&v));
                row.push(v);
            }
            if bytes > max_bytes {
                return Ok(Err(StoreError::ResultTooLarge {
                    limit_bytes: max_bytes as u64,
                }));
            }
            out.push(row);
        }
        Ok::<_, libsql::Error>(Ok(out))
    })??;
    Ok(QueryResult {
        columns,
        rows,
        ..Default::default()
    })
}

/// Converts our values to libSQL's.
pub fn params(v: Vec<SqlValue>) -> Vec<libsql::Value> {
    v.into_iter().map(Into::into).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database deleted without its log: opening the path again is refused, and the
    /// message names the file to move or delete. Nothing is created.
    #[test]
    fn a_log_without_its_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let wal = dir.path().join("d.db-wal");
        {
            let (_db, conn) = open_writer(&path, Durability::Normal).unwrap();
            run(conn.execute_batch("PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (x); INSERT INTO t VALUES (1), (2), (3);")).unwrap();
            // Keep the log as it is while the connection is open (closing checkpoints it).
            std::fs::copy(&wal, dir.path().join("saved-wal")).unwrap();
        }
        std::fs::remove_file(&path).unwrap();
        std::fs::rename(dir.path().join("saved-wal"), &wal).unwrap();
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        let e = open_writer(&path, Durability::Normal).unwrap_err().to_string();
        assert!(e.contains("database file is missing") && e.contains("d.db-wal"), "{e}");
        assert!(!path.exists(), "nothing was created");
        // With the log moved away, the path opens (a new, empty database).
        std::fs::remove_file(&wal).unwrap();
        assert!(open_writer(&path, Durability::Normal).is_ok());
    }

    /// SQL built per call (literal `IN` lists) no longer piles up prepared statements:
    /// the cache stays at its cap, and a statement in steady use is never the one
    /// evicted.
    #[test]
    fn the_statement_cache_is_bounded_and_keeps_hot_statements() {
        let dir = tempfile::tempdir().unwrap();
        let (db, conn) = open_writer(&dir.path().join("c.db"), Durability::Normal).unwrap();
        let mut c = CachedConn::new(db, conn);
        let hot = "SELECT 1";
        for i in 0..1_000 {
            c.query(&format!("SELECT {i} WHERE {i} IN ({i}, {})", i + 1), vec![]).unwrap();
            c.query(hot, vec![]).unwrap();
            assert!(c.cached_statements() <= STMT_CACHE_CAP);
        }
        assert_eq!(c.cached_statements(), STMT_CACHE_CAP);
        assert!(c.cache.contains_key(hot), "the hot statement stayed prepared");
        let r = c.query("SELECT 999 WHERE 999 IN (999, 1000)", vec![]).unwrap();
        assert_eq!(r.rows[0][0], SqlValue::Integer(999), "a kept statement still answers");
    }
}
