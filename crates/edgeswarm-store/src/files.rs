//! Whole-file operations that do not open a `Store`: a consistent backup copy, and the
//! read-only probes `edgeswarm doctor` runs (nothing is migrated or written). Each
//! opens its own short-lived libSQL connection.

use crate::error::{Result, StoreError};
use crate::value::SqlValue;
use libsql::{Builder, Connection, OpenFlags};
use std::path::Path;

async fn open_read_only(path: &Path) -> Result<Connection> {
    let open = |e: libsql::Error| StoreError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    Builder::new_local(path)
        .flags(OpenFlags::SQLITE_OPEN_READ_ONLY)
        .build()
        .await
        .map_err(open)?
        .connect()
        .map_err(open)
}

/// The first column of the first row (`Null` when there is no row), or SQLite's message.
async fn scalar(c: &Connection, sql: &str) -> std::result::Result<SqlValue, String> {
    let mut rows = c.query(sql, ()).await.map_err(|e| e.to_string())?;
    match rows.next().await.map_err(|e| e.to_string())? {
        Some(r) => r.get_value(0).map(SqlValue::from).map_err(|e| e.to_string()),
        None => Ok(SqlValue::Null),
    }
}

/// Copies `src` to `dest` with `VACUUM INTO` (one read transaction: safe while a swarm
/// writes, and the writer never waits), then runs `quick_check` on the copy and returns
/// its verdict (`"ok"` for a good copy). `dest` must not exist.
pub async fn backup(src: &Path, dest: &Path) -> Result<String> {
    let conn = open_read_only(src).await?;
    conn.execute("VACUUM INTO ?1", [dest.display().to_string()]).await?;
    let copy = open_read_only(dest).await?;
    let mut rows = copy.query("PRAGMA quick_check", ()).await?;
    Ok(match rows.next().await? {
        Some(r) => r.get::<String>(0).unwrap_or_default(),
        None => String::new(),
    })
}

/// What a read-only look at a database file found. Each probe holds SQLite's message
/// when it failed, so one broken part does not hide the others.
#[derive(Debug, Clone, PartialEq)]
pub struct FileProbe {
    /// `PRAGMA journal_mode` (`wal` for a file this runtime opened).
    pub journal_mode: std::result::Result<String, String>,
    /// `PRAGMA user_version`: the schema migration the file is at (0: not ours yet).
    pub schema_version: std::result::Result<SqlValue, String>,
    /// `PRAGMA quick_check` (`ok` when the file is sound).
    pub quick_check: std::result::Result<String, String>,
    /// Whether the knowledge full-text index exists.
    pub search_index: std::result::Result<bool, String>,
    /// The embedder the search layer recorded in `_meta`, if any.
    pub embedder: Option<String>,
    /// Names of vector tables present, comma-separated, if any.
    pub vector_tables: Option<String>,
    /// Row versions sync parked (`_sync_parked`: refused rows and far-future
    /// versions, retried on later pulls) and the latest one, described; `None` when
    /// sync never ran on this file.
    pub parked: Option<(i64, Option<String>)>,
}

/// Opens `path` read-only and reads its journal mode, schema version, integrity,
/// search index and embedder. Fails only if the file cannot be opened.
pub async fn probe_file(path: &Path) -> Result<FileProbe> {
    let c = open_read_only(path).await?;
    let present = |v: std::result::Result<SqlValue, String>| v.ok().filter(|v| !matches!(v, SqlValue::Null)).map(|v| v.to_text());
    Ok(FileProbe {
        journal_mode: scalar(&c, "PRAGMA journal_mode").await.map(|v| v.to_text()),
        schema_version: scalar(&c, "PRAGMA user_version").await,
        quick_check: scalar(&c, "PRAGMA quick_check").await.map(|v| v.to_text()),
        search_index: scalar(&c, "SELECT count(*) FROM sqlite_master WHERE name = 'knowledge_fts'")
            .await
            .map(|v| v.as_i64() == Some(1)),
        embedder: present(scalar(&c, "SELECT value FROM _meta WHERE key = 'embedder'").await),
        vector_tables: present(
            scalar(
                &c,
                "SELECT group_concat(name, ', ') FROM sqlite_master WHERE type = 'table' AND name LIKE '%vec%'",
            )
            .await,
        ),
        parked: match scalar(&c, "SELECT COUNT(*) FROM _sync_parked").await {
            Ok(n) => Some((
                n.as_i64().unwrap_or(0),
                present(
                    scalar(
                        &c,
                        "SELECT region || ': ' || direction || ' ' || tbl || ' row ' || quote(row_id) || ' (' || reason || ', ' || attempts || ' tries): ' || error \
                         FROM _sync_parked ORDER BY last_try DESC LIMIT 1",
                    )
                    .await,
                ),
            )),
            Err(_) => None,
        },
    })
}

/// Opens `path` read-only and reads its schema: fails if it is not a readable database.
pub async fn probe_readable(path: &Path) -> Result<()> {
    let c = open_read_only(path).await?;
    scalar(&c, "SELECT count(*) FROM sqlite_master").await.map_err(StoreError::sql)?;
    Ok(())
}

/// What the linked libSQL engine supports, tried on an in-memory database.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineProbe {
    /// FTS5 full-text search (knowledge search needs it), or SQLite's message.
    pub fts5: std::result::Result<(), String>,
    /// libSQL vector functions (vector and hybrid search need them): what
    /// `vector_extract(vector32('[1,2]'))` returned, or SQLite's message.
    pub vectors: std::result::Result<String, String>,
}

/// Tries FTS5 and the vector functions on an in-memory database.
pub async fn probe_engine() -> Result<EngineProbe> {
    let c = Builder::new_local(":memory:").build().await?.connect()?;
    Ok(EngineProbe {
        fts5: c
            .execute("CREATE VIRTUAL TABLE t USING fts5(x)", ())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        vectors: scalar(&c, "SELECT vector_extract(vector32('[1,2]'))").await.map(|v| v.to_text()),
    })
}
