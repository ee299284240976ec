//! Schema, migrations and opening the file, versioned by `PRAGMA user_version`.
//! `bootstrap` opens the home file, applies pending migrations and reads the node id and
//! the clock's high-water mark; the migrations follow.
//!
//! Every replicated table carries `hlc` (hybrid logical clock stamp) and `origin` (node
//! id). Mutable tables (knowledge, kv) keep deletes as tombstones (`deleted = 1`) so a
//! delete replicates and wins or loses like any other write. `_changes` is the change
//! log, appended in the same transaction as the write it describes.
//!
//! The seed's SQL must run unchanged: the `agent_metrics` insert names only
//! (agent_id, task_type, duration_ms, tokens_used), so every other column has a default;
//! the regional analytics query joins `edge_replicas` and `distributed_transactions` on
//! `region = source_region` and averages `latency_ms`, so `region` exists only in
//! `edge_replicas` and `latency_ms` only in `distributed_transactions`.

use crate::conn::{self, CachedConn};
use crate::error::{Result, StoreError};
use edgeswarm_core::{Hlc, StoreConfig};
use libsql::Value as V;

/// Migrations in order; migration `i` moves `user_version` from `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[MIGRATION_1, MIGRATION_2, MIGRATION_3];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Tables whose rows replicate, with the SQL expression naming a row in `_changes.row_id`.
pub const REPLICATED_TABLES: &[&str] = &["agent_metrics", "conversations", "knowledge", "kv"];

/// Facts read from the file when it is opened.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// This node's id (`_meta.node_id`, created on first open).
    pub origin: String,
    /// The clock's floor: the persisted high-water mark or the newest logged stamp.
    pub high_water: Hlc,
}

/// Opens the file, applies pending migrations, and reads (or creates) the node id and
/// the clock's persisted high-water mark.
pub fn bootstrap(cfg: &StoreConfig) -> Result<Bootstrap> {
    let (db, c) = conn::open_writer_vfs(&cfg.path, cfg.durability, cfg.vfs.as_deref())?;
    let cc = CachedConn::new(db, c);
    migrate(&cc, &cfg.path.display().to_string())?;
    let meta = |k: &str| -> Result<Option<String>> {
        let r = cc.query_once("SELECT value FROM _meta WHERE key = ?1", vec![V::Text(k.into())])?;
        Ok(r.rows.first().and_then(|r| r[0].as_str().map(str::to_string)))
    };
    let origin = match meta("node_id")? {
        Some(o) => o,
        None => {
            let o = edgeswarm_core::new_id();
            cc.query_once("INSERT INTO _meta (key, value) VALUES ('node_id', ?1)", vec![V::Text(o.clone())])?;
            o
        }
    };
    let hw_meta = meta("hlc_hwm")?.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let hw_log = cc.query_once("SELECT COALESCE(MAX(hlc), 0) FROM _changes", vec![])?.rows[0][0]
        .as_i64()
        .unwrap_or(0);
    Ok(Bootstrap {
        origin,
        high_water: Hlc::from_i64(hw_meta.max(hw_log)),
    })
}

fn migrate(cc: &CachedConn, path: &str) -> Result<()> {
    let v = cc.query_once("PRAGMA user_version", vec![])?.rows[0][0].as_i64().unwrap_or(0);
    if v > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: v,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(v as usize) {
        let sql = format!("BEGIN IMMEDIATE; {m}; PRAGMA user_version = {}; COMMIT;", i + 1);
        if let Err(e) = cc.batch(&sql) {
            let _ = cc.batch("ROLLBACK");
            return Err(StoreError::Open {
                path: path.into(),
                reason: format!("migration {} failed: {e}", i + 1),
            });
        }
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}

/// Migration 3: `_knowledge_touched`, the rowids whose FTS entry the triggers rewrote, in
/// order. The search engine keeps every indexed row's token count in memory (FTS5 would
/// otherwise look it up once per match while ranking) and catches up by reading this log.
/// The triggers keep its newest 65,536 entries; a reader that fell further behind reloads
/// all counts from `knowledge_fts_docsize`.
const MIGRATION_3: &str = r#"
CREATE TABLE IF NOT EXISTS _knowledge_touched (
    seq INTEGER PRIMARY KEY,
    rid INTEGER NOT NULL
);
DROP TRIGGER IF EXISTS knowledge_fts_ai;
DROP TRIGGER IF EXISTS knowledge_fts_ad;
DROP TRIGGER IF EXISTS knowledge_fts_au;
CREATE TRIGGER knowledge_fts_ai AFTER INSERT ON knowledge WHEN new.deleted = 0 BEGIN
    INSERT INTO knowledge_fts(rowid, topic, content, tags) VALUES (new.rowid, new.topic, new.content, new.tags);
    INSERT INTO _knowledge_touched(rid) VALUES (new.rowid);
    DELETE FROM _knowledge_touched WHERE seq <= (SELECT max(seq) FROM _knowledge_touched) - 65536;
END;
CREATE TRIGGER knowledge_fts_ad AFTER DELETE ON knowledge WHEN old.deleted = 0 BEGIN
    INSERT INTO knowledge_fts(knowledge_fts, rowid, topic, content, tags) VALUES ('delete', old.rowid, old.topic, old.content, old.tags);
    INSERT INTO _knowledge_touched(rid) VALUES (old.rowid);
    DELETE FROM _knowledge_touched WHERE seq <= (SELECT max(seq) FROM _knowledge_touched) - 65536;
END;
CREATE TRIGGER knowledge_fts_au AFTER UPDATE ON knowledge BEGIN
    INSERT INTO knowledge_fts(knowledge_fts, rowid, topic, content, tags)
        SELECT 'delete', old.rowid, old.topic, old.content, old.tags WHERE old.deleted = 0;
    INSERT INTO knowledge_fts(rowid, topic, content, tags)
        SELECT new.rowid, new.topic, new.content, new.tags WHERE new.deleted = 0;
    INSERT INTO _knowledge_touched(rid) SELECT old.rowid WHERE old.deleted = 0 AND old.rowid <> new.rowid;
    INSERT INTO _knowledge_touched(rid) SELECT new.rowid WHERE old.deleted = 0 OR new.deleted = 0;
    DELETE FROM _knowledge_touched WHERE seq <= (SELECT max(seq) FROM _knowledge_touched) - 65536;
END;
"#;

/// Migration 2: one AFTER UPDATE trigger for the FTS index. Two triggers on the same
/// event fire newest-first, so an UPDATE of a live row inserted the new terms before
/// deleting the old ones and corrupted the index.
const MIGRATION_2: &str = r#"
DROP TRIGGER IF EXISTS knowledge_fts_au_old;
DROP TRIGGER IF EXISTS knowledge_fts_au_new;
CREATE TRIGGER IF NOT EXISTS knowledge_fts_au AFTER UPDATE ON knowledge BEGIN
    INSERT INTO knowledge_fts(knowledge_fts, rowid, topic, content, tags)
        SELECT 'delete', old.rowid, old.topic, old.content, old.tags WHERE old.deleted = 0;
    INSERT INTO knowledge_fts(rowid, topic, content, tags)
        SELECT new.rowid, new.topic, new.content, new.tags WHERE new.deleted = 0;
END;
"#;

const MIGRATION_1: &str = r#"
CREATE TABLE IF NOT EXISTS _meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS _changes (
    seq    INTEGER PRIMARY KEY,
    tbl    TEXT    NOT NULL,
    row_id TEXT    NOT NULL,
    hlc      INTEGER NOT NULL,
    origin   TEXT    NOT NULL,
    -- Set for append-only tables: one entry covers the rowids a batch inserted.
    rowid_lo INTEGER,
    rowid_hi INTEGER
);



CREATE TABLE IF NOT EXISTS agent_metrics (
    id          TEXT PRIMARY KEY DEFAULT (lower(hex(randomblob(16)))),
    agent_id    TEXT    NOT NULL,
    task_type   TEXT    NOT NULL,
    duration_ms REAL    NOT NULL DEFAULT 0,
    tokens_used INTEGER NOT NULL DEFAULT 0,
    region      TEXT,
    ts          INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    extra       TEXT,
    hlc         INTEGER NOT NULL DEFAULT 0,
    origin      TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS conversations (
    id         TEXT PRIMARY KEY,
    session_id TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    content    TEXT    NOT NULL,
    metadata   TEXT,
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    hlc        INTEGER NOT NULL DEFAULT 0,
    origin     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS conversations_by_session ON conversations(session_id, created_at, id);

CREATE TABLE IF NOT EXISTS knowledge (
    id           TEXT PRIMARY KEY,
    category     TEXT    NOT NULL,
    topic        TEXT    NOT NULL,
    content      TEXT    NOT NULL,
    tags         TEXT    NOT NULL DEFAULT '[]',
    metadata     TEXT,
    region       TEXT,
    content_hash TEXT,
    created_at   INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    updated_at   INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    deleted      INTEGER NOT NULL DEFAULT 0,
    hlc          INTEGER NOT NULL DEFAULT 0,
    origin       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS knowledge_by_category ON knowledge(category, created_at);
CREATE INDEX IF NOT EXISTS knowledge_by_hash ON knowledge(category, content_hash);

-- Lexical index over topic, content and tags; kept in step by triggers, so rows that
-- arrive by replication or raw SQL are indexed exactly like typed writes. Tombstoned
-- rows (deleted = 1) are not indexed.
CREATE VIRTUAL TABLE IF NOT EXISTS knowledge_fts USING fts5(
    topic, content, tags,
    content = 'knowledge', content_rowid = 'rowid',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS knowledge_fts_ai AFTER INSERT ON knowledge WHEN new.deleted = 0 BEGIN
    INSERT INTO knowledge_fts(rowid, topic, content, tags) VALUES (new.rowid, new.topic, new.content, new.tags);
END;
CREATE TRIGGER IF NOT EXISTS knowledge_fts_ad AFTER DELETE ON knowledge WHEN old.deleted = 0 BEGIN
    INSERT INTO knowledge_fts(knowledge_fts, rowid, topic, content, tags) VALUES ('delete', old.rowid, old.topic, old.content, old.tags);
END;
CREATE TRIGGER IF NOT EXISTS knowledge_fts_au_old AFTER UPDATE ON knowledge WHEN old.deleted = 0 BEGIN
    INSERT INTO knowledge_fts(knowledge_fts, rowid, topic, content, tags) VALUES ('delete', old.rowid, old.topic, old.content, old.tags);
END;
CREATE TRIGGER IF NOT EXISTS knowledge_fts_au_new AFTER UPDATE ON knowledge WHEN new.deleted = 0 BEGIN
    INSERT INTO knowledge_fts(rowid, topic, content, tags) VALUES (new.rowid, new.topic, new.content, new.tags);
END;

CREATE TABLE IF NOT EXISTS kv (
    namespace  TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    expires_at INTEGER,
    updated_at INTEGER NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0,
    hlc        INTEGER NOT NULL DEFAULT 0,
    origin     TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS kv_by_expiry ON kv(expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS edge_replicas (
    region           TEXT PRIMARY KEY,
    url              TEXT,
    status           TEXT    NOT NULL DEFAULT 'unknown',
    avg_latency_ms   REAL,
    performance_tier TEXT,
    lag_rows         INTEGER NOT NULL DEFAULT 0,
    lag_ms           INTEGER NOT NULL DEFAULT 0,
    last_sync_at     INTEGER,
    errors           INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS distributed_transactions (
    transaction_id      TEXT UNIQUE,
    source_region       TEXT,
    target_region       TEXT,
    consistency_level   TEXT DEFAULT 'eventual',
    conflict_resolution TEXT,
    rows                INTEGER NOT NULL DEFAULT 0,
    conflicts           INTEGER NOT NULL DEFAULT 0,
    latency_ms          REAL,
    status              TEXT,
    created_at          INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
);

CREATE TABLE IF NOT EXISTS _sync_cursors (
    region     TEXT PRIMARY KEY,
    push_seq   INTEGER NOT NULL DEFAULT 0,
    pull_seq   INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS conflicts (
    id            INTEGER PRIMARY KEY,
    tbl           TEXT    NOT NULL,
    row_id        TEXT    NOT NULL,
    winner        TEXT,
    loser         TEXT,
    winner_hlc    INTEGER,
    loser_hlc     INTEGER,
    winner_origin TEXT,
    loser_origin  TEXT,
    resolved_at   INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS performance_tests (
    id             INTEGER PRIMARY KEY,
    run_id         TEXT    NOT NULL,
    operation_type TEXT    NOT NULL,
    throughput     REAL    NOT NULL,
    ops            INTEGER NOT NULL DEFAULT 0,
    duration_ms    REAL,
    created_at     INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
);

-- The change log one row per changed row, whatever the entry kind: sync reads this
-- by whole `seq` values (an append-only range shares one seq).
CREATE VIEW IF NOT EXISTS _change_rows AS
    SELECT seq, tbl, row_id, hlc, origin FROM _changes WHERE rowid_lo IS NULL
    UNION ALL
    SELECT c.seq, c.tbl, m.id, m.hlc, m.origin FROM _changes c JOIN agent_metrics m
        ON c.tbl = 'agent_metrics' AND m.rowid BETWEEN c.rowid_lo AND c.rowid_hi
    UNION ALL
    SELECT c.seq, c.tbl, v.id, v.hlc, v.origin FROM _changes c JOIN conversations v
        ON c.tbl = 'conversations' AND v.rowid BETWEEN c.rowid_lo AND c.rowid_hi;
"#;
