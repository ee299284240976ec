//! Vector storage: one libSQL table per (embedder id, dimension), `F32_BLOB(dim)` column
//! with a `libsql_vector_idx` (DiskANN, cosine) index, queried with `vector_top_k`.
//! These tables are local to a node (every node embeds its own rows), so they are not in
//! the change log.

use crate::embed::{entry_text, to_blob, SharedEmbedder, EMBED_BATCH};
use crate::error::{Result, SearchError};
use edgeswarm_store::{SqlValue, Store};

/// One embedder's vector space.
#[derive(Clone)]
pub(crate) struct Space {
    pub embedder: SharedEmbedder,
    pub slot: i64,
    pub table: String,
    pub index: String,
}

impl std::fmt::Debug for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Space")
            .field("embedder", &self.embedder.id())
            .field("dim", &self.embedder.dim())
            .field("table", &self.table)
            .finish()
    }
}

const REGISTRY: &str = "CREATE TABLE IF NOT EXISTS search_embedders (\
    slot INTEGER PRIMARY KEY, embedder_id TEXT NOT NULL, dim INTEGER NOT NULL, \
    state TEXT NOT NULL DEFAULT 'building', active INTEGER NOT NULL DEFAULT 0, \
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)), \
    UNIQUE (embedder_id, dim))";

/// Creates (if needed) the space for this embedder; returns it and whether it is the
/// active, fully built one.
pub(crate) async fn ensure_space(store: &Store, e: SharedEmbedder) -> Result<(Space, bool)> {
    let (id, dim) = (e.id().to_string(), e.dim() as i64);
    if !(1..=65_536).contains(&dim) {
        return Err(SearchError::Embedder {
            embedder: id,
            reason: format!("dimension {dim} is out of range 1..=65536"),
        });
    }
    let (slot, active) = store
        .transact(move |ctx| {
            ctx.execute(REGISTRY, vec![])?;
            ctx.execute(
                "INSERT INTO search_embedders (embedder_id, dim) VALUES (?1, ?2) ON CONFLICT(embedder_id, dim) DO NOTHING",
                vec![id.clone().into(), dim.into()],
            )?;
            let r = ctx.query(
                "SELECT slot, active FROM search_embedders WHERE embedder_id = ?1 AND dim = ?2",
                vec![id.into(), dim.into()],
            )?;
            let row = r.rows.first().cloned().unwrap_or_default();
            let slot = row.first().and_then(SqlValue::as_i64).unwrap_or(0);
            let active = row.get(1).and_then(SqlValue::as_i64).unwrap_or(0) == 1;
            ctx.execute(
                &format!("CREATE TABLE IF NOT EXISTS search_vec_{slot} (id TEXT PRIMARY KEY, emb F32_BLOB({dim}) NOT NULL)"),
                vec![],
            )?;
            ctx.execute(
                &format!("CREATE INDEX IF NOT EXISTS search_vec_{slot}_idx ON search_vec_{slot} (libsql_vector_idx(emb, 'metric=cosine'))"),
                vec![],
            )?;
            Ok((slot, active))
        })
        .await?;
    Ok((
        Space {
            embedder: e,
            slot,
            table: format!("search_vec_{slot}"),
            index: format!("search_vec_{slot}_idx"),
        },
        active,
    ))
}

/// Makes `slot` the one active space (queries switch to it).
pub(crate) async fn mark_active(store: &Store, slot: i64) -> Result<()> {
    store
        .transact(move |ctx| {
            ctx.execute(
                "UPDATE search_embedders SET active = (slot = ?1), state = CASE WHEN slot = ?1 THEN 'ready' ELSE state END",
                vec![slot.into()],
            )?;
            Ok(())
        })
        .await?;
    Ok(())
}

/// What one sync pass did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// Vectors written.
    pub embedded: usize,
    /// Vectors removed (entry deleted).
    pub removed: usize,
    /// Live entries still without a vector in this space after the pass.
    pub missing: i64,
}

/// Brings a space up to date: re-embeds `changed` ids (or drops their vectors when the
/// entry is gone), then fills up to `max_batches` batches of entries that have no vector,
/// and (when `purge`) drops vectors of deleted entries. Embedding runs on a blocking
/// thread; reads on the read pool; writes through the store writer.
pub(crate) async fn sync(store: &Store, space: &Space, changed: Vec<String>, max_batches: usize, purge: bool) -> Result<SyncReport> {
    let mut rep = SyncReport::default();
    let table = space.table.clone();
    if purge {
        let t = table.clone();
        store
            .transact(move |ctx| {
                let n = ctx.execute(
                    &format!("DELETE FROM {t} WHERE id NOT IN (SELECT id FROM knowledge WHERE deleted = 0)"),
                    vec![],
                )?;
                Ok(n)
            })
            .await?;
    }
    for chunk in changed.chunks(EMBED_BATCH) {
        let ids = serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into());
        let rows = store
            .read(move |r| {
                r.query(
                    "SELECT id, topic, tags, content, deleted FROM knowledge WHERE id IN (SELECT value FROM json_each(?1))",
                    vec![ids.into()],
                )
            })
            .await?;
        let mut live = Vec::new();
        let mut gone: Vec<String> = chunk.to_vec();
        for row in rows.rows {
            if row[4].as_i64() == Some(0) {
                let id = row[0].as_str().unwrap_or_default().to_string();
                gone.retain(|g| g != &id);
                live.push(row);
            }
        }
        rep.embedded += embed_and_write(store, space, live).await?;
        if !gone.is_empty() {
            rep.removed += gone.len();
            let t = table.clone();
            store
                .transact(move |ctx| {
                    for id in gone {
                        ctx.execute(&format!("DELETE FROM {t} WHERE id = ?1"), vec![id.into()])?;
                    }
                    Ok(())
                })
                .await?;
        }
    }
    for _ in 0..max_batches {
        let t = table.clone();
        let rows = store
            .read(move |r| {
                r.query(
                    &format!("SELECT k.id, k.topic, k.tags, k.content, k.deleted FROM knowledge k WHERE k.deleted = 0 AND NOT EXISTS (SELECT 1 FROM {t} v WHERE v.id = k.id) LIMIT {EMBED_BATCH}"),
                    vec![],
                )
            })
            .await?;
        if rows.rows.is_empty() {
            break;
        }
        rep.embedded += embed_and_write(store, space, rows.rows).await?;
    }
    let t = table.clone();
    rep.missing = store
        .read(move |r| {
            let q = r.query(
                &format!("SELECT COUNT(*) FROM knowledge k WHERE k.deleted = 0 AND NOT EXISTS (SELECT 1 FROM {t} v WHERE v.id = k.id)"),
                vec![],
            )?;
            Ok(q.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
        })
        .await?;
    Ok(rep)
}

async fn embed_and_write(store: &Store, space: &Space, rows: Vec<Vec<SqlValue>>) -> Result<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    let e = space.embedder.clone();
    let dim = e.dim();
    let embedded = tokio::task::spawn_blocking(move || {
        let texts: Vec<String> = rows
            .iter()
            .map(|r| {
                entry_text(
                    r[1].as_str().unwrap_or_default(),
                    r[2].as_str().unwrap_or_default(),
                    r[3].as_str().unwrap_or_default(),
                )
            })
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vecs = e.embed(&refs).map_err(|reason| SearchError::Embedder {
            embedder: e.id().to_string(),
            reason,
        })?;
        if vecs.len() != rows.len() || vecs.iter().any(|v| v.len() != dim) {
            return Err(SearchError::Embedder {
                embedder: e.id().to_string(),
                reason: format!(
                    "returned {} vectors for {} texts (each must have {dim} values)",
                    vecs.len(),
                    rows.len()
                ),
            });
        }
        Ok(rows
            .iter()
            .zip(vecs)
            .map(|(r, v)| (r[0].as_str().unwrap_or_default().to_string(), to_blob(&v)))
            .collect::<Vec<_>>())
    })
    .await
    .map_err(|e| SearchError::Embedder {
        embedder: space.embedder.id().to_string(),
        reason: format!("embedding task failed: {e}"),
    })??;
    let n = embedded.len();
    let t = space.table.clone();
    store
        .transact(move |ctx| {
            for (id, blob) in embedded {
                ctx.execute(&format!("DELETE FROM {t} WHERE id = ?1"), vec![id.clone().into()])?;
                ctx.execute(
                    &format!("INSERT INTO {t} (id, emb) VALUES (?1, ?2)"),
                    vec![id.into(), SqlValue::Blob(blob)],
                )?;
            }
            Ok(())
        })
        .await?;
    Ok(n)
}
