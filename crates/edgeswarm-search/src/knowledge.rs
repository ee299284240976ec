//! Knowledge writes with dedup, updates, tombstone deletes and whole-entry reads: the one
//! place knowledge rows are inserted. Every write runs atomically inside the store
//! writer's batch transaction, sets `hlc`/`origin` and appends to the change log so it
//! replicates.
//!
//! There is one insert path, [`insert`] (dedup by normalised content hash within a
//! category). `add_knowledge` runs it as a custom op (its own savepoint, returns the id);
//! knowledge records published on the store (`Store::publish`, `enqueue_record`, CLI
//! import) reach it through the knowledge writer [`install`] puts on the store, and share
//! batches with every other write.

use crate::error::{Result, SearchError};
use edgeswarm_core::record::now_millis;
use edgeswarm_core::Knowledge;
use edgeswarm_store::{Inserted, SqlValue, Store, StoreError, TxCtx};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::sync::Arc;
use tracing::Instrument;

/// Normalised content hash (lowercase, whitespace collapsed), FNV-1a 64, hex: the dedup
/// key within a category (`knowledge.content_hash`).
pub fn content_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut last_space = true;
    for ch in s.trim().chars().flat_map(char::to_lowercase) {
        let ch = if ch.is_whitespace() { ' ' } else { ch };
        if ch == ' ' && last_space {
            continue;
        }
        last_space = ch == ' ';
        let mut buf = [0u8; 4];
        for b in ch.encode_utf8(&mut buf).bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

/// Installs [`insert`] as `store`'s knowledge writer, so knowledge records published on
/// the store directly (`Store::publish`, `enqueue_record`, import) take the same path as
/// `add_knowledge`, dedup included. `Search::start` calls it; call it yourself on a store
/// you write knowledge to without starting `Search`. Idempotent.
pub fn install(store: &Store) {
    if store.has_knowledge_writer() {
        return;
    }
    let max_tags = store.config().limits.max_tags;
    store.install_knowledge_writer(Arc::new(move |ctx: &mut TxCtx<'_>, k: Knowledge| {
        insert(ctx, k, max_tags).map(|o| Inserted { duplicate: o.duplicate })
    }));
}

/// What `add_knowledge` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddOutcome {
    /// The entry's id: the new one, or the existing entry this was merged into.
    pub id: String,
    /// True when the same normalised content already existed in the same category; its
    /// tags and metadata were merged into the existing entry instead of adding a new one.
    pub duplicate: bool,
}

/// Fields to change in an existing entry; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeUpdate {
    /// New category.
    #[serde(default)]
    pub category: Option<String>,
    /// New topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// New content (re-indexed and re-hashed).
    #[serde(default)]
    pub content: Option<String>,
    /// Replaces the tag list.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Replaces the metadata object.
    #[serde(default)]
    pub metadata: Option<Json>,
    /// New region.
    #[serde(default)]
    pub region: Option<String>,
}

/// A whole knowledge entry, as `get_knowledge` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeEntry {
    /// Entry id.
    pub id: String,
    /// Category (dedup is per category).
    pub category: String,
    /// Short topic line.
    pub topic: String,
    /// Full content.
    pub content: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata object, if any.
    pub metadata: Option<Json>,
    /// Region it was written in, if any.
    pub region: Option<String>,
    /// Creation time, ms since epoch.
    pub created_at: i64,
    /// Last change, ms since epoch.
    pub updated_at: i64,
}

fn merge_tags(existing: &str, new: &[String], max: usize) -> String {
    let mut tags: Vec<String> = serde_json::from_str(existing).unwrap_or_default();
    for t in new {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    if tags.len() > max {
        tracing::warn!(
            kept = max,
            dropped = tags.len() - max,
            "merged tags exceed Limits::max_tags; extra tags dropped"
        );
        tags.truncate(max);
    }
    serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into())
}

fn merge_metadata(existing: Option<&str>, new: Option<&Json>) -> SqlValue {
    let old: Option<Json> = existing.and_then(|s| serde_json::from_str(s).ok());
    match (old, new) {
        (Some(Json::Object(mut a)), Some(Json::Object(b))) => {
            for (k, v) in b {
                a.insert(k.clone(), v.clone());
            }
            Json::Object(a).to_string().into()
        }
        (Some(a), None) | (Some(a), Some(Json::Null)) => a.to_string().into(),
        (_, Some(b)) if !b.is_null() => b.to_string().into(),
        _ => SqlValue::Null,
    }
}

fn opt(v: Option<String>) -> SqlValue {
    v.map(SqlValue::Text).unwrap_or(SqlValue::Null)
}

/// A knowledge row as stored, for rewriting it.
struct Row {
    rowid: i64,
    id: String,
    category: String,
    topic: String,
    content: String,
    tags: String,
    metadata: SqlValue,
    region: SqlValue,
    content_hash: SqlValue,
    created_at: i64,
}

fn load_live(ctx: &mut TxCtx<'_>, sql_where: &str, params: Vec<SqlValue>) -> edgeswarm_store::Result<Option<Row>> {
    let q = ctx.query(
        &format!(
            "SELECT rowid, id, category, topic, content, tags, metadata, region, content_hash, created_at FROM knowledge WHERE {sql_where}"
        ),
        params,
    )?;
    Ok(q.rows.into_iter().next().map(|mut r| {
        let s = |v: &SqlValue| v.as_str().unwrap_or_default().to_string();
        Row {
            rowid: r[0].as_i64().unwrap_or(0),
            id: s(&r[1]),
            category: s(&r[2]),
            topic: s(&r[3]),
            content: s(&r[4]),
            tags: s(&r[5]),
            metadata: std::mem::replace(&mut r[6], SqlValue::Null),
            region: std::mem::replace(&mut r[7], SqlValue::Null),
            content_hash: std::mem::replace(&mut r[8], SqlValue::Null),
            created_at: r[9].as_i64().unwrap_or(0),
        }
    }))
}

/// Replaces a live row with new values, keeping its rowid, stamping hlc/origin and
/// logging the change.
///
/// An UPDATE in place: since migration 2 one AFTER UPDATE trigger keeps FTS in step
/// (old terms out, then new terms in). It was DELETE + INSERT, which broke as soon as a
/// region was configured: sync's BEFORE DELETE trigger turns a delete into a tombstone
/// and keeps the row, so the re-insert under the same rowid failed with "UNIQUE
/// constraint failed: knowledge.rowid".
fn rewrite(ctx: &mut TxCtx<'_>, row: Row) -> edgeswarm_store::Result<()> {
    let hlc = ctx.stamp();
    let origin = ctx.origin().to_string();
    // The new stamp keeps sync's own update trigger (same-stamp writes only) out of it.
    ctx.execute(
        "UPDATE knowledge SET id = ?2, category = ?3, topic = ?4, content = ?5, tags = ?6, metadata = ?7, region = ?8, \
         content_hash = ?9, created_at = ?10, updated_at = ?11, deleted = 0, hlc = ?12, origin = ?13 WHERE rowid = ?1",
        vec![
            row.rowid.into(),
            row.id.clone().into(),
            row.category.into(),
            row.topic.into(),
            row.content.into(),
            row.tags.into(),
            row.metadata,
            row.region,
            row.content_hash,
            row.created_at.into(),
            now_millis().into(),
            hlc.as_i64().into(),
            origin.clone().into(),
        ],
    )?;
    ctx.log_change("knowledge", row.id, hlc, &origin)
}

/// Adds an entry, or merges it into the live entry with the same normalised content in
/// the same category (tags unioned, metadata keys merged with the new values winning).
pub async fn add_knowledge(store: &Store, k: Knowledge) -> Result<AddOutcome> {
    k.validate(&store.config().limits)?;
    let max_tags = store.config().limits.max_tags;
    let span = tracing::debug_span!("add_knowledge", category = %k.category);
    Ok(store.transact(move |ctx| insert(ctx, k, max_tags)).instrument(span).await?)
}

/// Inserts a (validated) entry inside the writer's transaction: the one knowledge insert
/// path. If a live entry in the same category has the same normalised content, `k` is
/// merged into it (tags unioned up to `max_tags`, metadata keys merged with the new
/// values winning) and its id is returned with `duplicate`; a retry of an entry already
/// stored under the same id, or an id already taken, changes nothing (`duplicate`).
pub fn insert(ctx: &mut TxCtx<'_>, k: Knowledge, max_tags: usize) -> edgeswarm_store::Result<AddOutcome> {
    let hash = content_hash(&k.content);
    let hlc = ctx.stamp();
    let origin = ctx.origin().to_string();
    let now = now_millis();
    let tags = serde_json::to_string(&k.tags).unwrap_or_else(|_| "[]".into());
    let meta = match &k.metadata {
        None | Some(Json::Null) => SqlValue::Null,
        Some(m) => m.to_string().into(),
    };
    // The common case in one statement: new content under a new id is inserted unless a
    // live entry of the category already has this content. `knowledge_by_hash` answers
    // the NOT EXISTS.
    let n = ctx.execute(
        "INSERT INTO knowledge (id, category, topic, content, tags, metadata, region, content_hash, created_at, updated_at, hlc, origin) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12 WHERE NOT EXISTS \
         (SELECT 1 FROM knowledge WHERE category = ?2 AND content_hash = ?8 AND deleted = 0) ON CONFLICT(id) DO NOTHING",
        vec![
            k.id.clone().into(),
            k.category.clone().into(),
            k.topic.into(),
            k.content.into(),
            tags.into(),
            meta,
            opt(k.region),
            hash.clone().into(),
            k.created_at.into(),
            now.into(),
            hlc.as_i64().into(),
            origin.clone().into(),
        ],
    )?;
    if n == 1 {
        ctx.log_change("knowledge", k.id.clone(), hlc, &origin)?;
        return Ok(AddOutcome {
            id: k.id,
            duplicate: false,
        });
    }
    // Not inserted: the content is already there (merge into that entry), or the id is
    // taken (an idempotent retry). The unary `+` keeps SQLite from walking
    // `knowledge_by_category` (category, created_at) to satisfy the ORDER BY: that plan
    // reads every entry of the category (quadratic ingest).
    let existing = load_live(
        ctx,
        "category = ?1 AND content_hash = ?2 AND deleted = 0 ORDER BY +created_at, +id LIMIT 1",
        vec![k.category.into(), hash.into()],
    )?;
    match existing {
        Some(mut row) if row.id != k.id => {
            let id = row.id.clone();
            row.tags = merge_tags(&row.tags, &k.tags, max_tags);
            row.metadata = merge_metadata(row.metadata.as_str(), k.metadata.as_ref());
            rewrite(ctx, row)?;
            Ok(AddOutcome { id, duplicate: true })
        }
        // The same entry again (a retry or a re-import), or its id already stored.
        _ => Ok(AddOutcome { id: k.id, duplicate: true }),
    }
}

/// Changes fields of a live entry. `NotFound` if there is no live entry with this id.
pub async fn update_knowledge(store: &Store, id: &str, upd: KnowledgeUpdate) -> Result<()> {
    let l = store.config().limits.clone();
    use edgeswarm_core::record::{content, json_object, name};
    if let Some(c) = &upd.category {
        name("category", c, &l)?;
    }
    if let Some(t) = &upd.topic {
        name("topic", t, &l)?;
    }
    if let Some(c) = &upd.content {
        content("content", c, &l)?;
    }
    if let Some(tags) = &upd.tags {
        if tags.len() > l.max_tags {
            return Err(edgeswarm_core::ValidationError::OutOfRange {
                field: "tags",
                reason: format!("{} tags; the limit is {}", tags.len(), l.max_tags),
            }
            .into());
        }
        for t in tags {
            name("tags[]", t, &l)?;
        }
    }
    if let Some(r) = &upd.region {
        name("region", r, &l)?;
    }
    json_object("metadata", upd.metadata.as_ref(), &l)?;
    let id = id.to_string();
    let id2 = id.clone();
    let r = store
        .transact(move |ctx| {
            let Some(mut row) = load_live(ctx, "id = ?1 AND deleted = 0", vec![id.clone().into()])? else {
                return Err(StoreError::NotFound(id));
            };
            if let Some(c) = upd.category {
                row.category = c;
            }
            if let Some(t) = upd.topic {
                row.topic = t;
            }
            if let Some(c) = upd.content {
                row.content_hash = content_hash(&c).into();
                row.content = c;
            }
            if let Some(t) = upd.tags {
                row.tags = serde_json::to_string(&t).unwrap_or_else(|_| "[]".into());
            }
            if let Some(m) = upd.metadata.filter(|m| !m.is_null()) {
                row.metadata = m.to_string().into();
            }
            if let Some(r) = upd.region {
                row.region = r.into();
            }
            rewrite(ctx, row)
        })
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound(_)) => Err(SearchError::NotFound(id2)),
        Err(e) => Err(e.into()),
    }
}

/// Tombstones a live entry (`deleted = 1`, so the delete replicates). Returns false when
/// there was no live entry with this id.
pub async fn delete_knowledge(store: &Store, id: &str) -> Result<bool> {
    let id = id.to_string();
    let deleted = store
        .transact(move |ctx| {
            let hlc = ctx.stamp();
            let origin = ctx.origin().to_string();
            let n = ctx.execute(
                "UPDATE knowledge SET deleted = 1, updated_at = ?2, hlc = ?3, origin = ?4 WHERE id = ?1 AND deleted = 0",
                vec![id.clone().into(), now_millis().into(), hlc.as_i64().into(), origin.clone().into()],
            )?;
            if n > 0 {
                ctx.log_change("knowledge", id, hlc, &origin)?;
            }
            Ok(n > 0)
        })
        .await?;
    Ok(deleted)
}

const ENTRY_COLUMNS: &str = "id, category, topic, content, tags, metadata, region, created_at, updated_at";

fn entry(row: &[SqlValue]) -> KnowledgeEntry {
    let s = |i: usize| row[i].as_str().unwrap_or_default().to_string();
    KnowledgeEntry {
        id: s(0),
        category: s(1),
        topic: s(2),
        content: s(3),
        tags: serde_json::from_str(row[4].as_str().unwrap_or("[]")).unwrap_or_default(),
        metadata: row[5].as_str().and_then(|m| serde_json::from_str(m).ok()),
        region: row[6].as_str().map(str::to_string),
        created_at: row[7].as_i64().unwrap_or(0),
        updated_at: row[8].as_i64().unwrap_or(0),
    }
}

/// The whole live entry with this id, or `None`.
pub async fn get_knowledge(store: &Store, id: &str) -> Result<Option<KnowledgeEntry>> {
    let id = id.to_string();
    let res = store
        .read(move |r| {
            r.query(
                &format!("SELECT {ENTRY_COLUMNS} FROM knowledge WHERE id = ?1 AND deleted = 0"),
                vec![id.into()],
            )
        })
        .await?;
    Ok(res.rows.first().map(|row| entry(row)))
}

/// The live entries with these ids, in no particular order (missing ids are skipped).
pub async fn get_many(store: &Store, ids: &[String]) -> Result<Vec<KnowledgeEntry>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids = Json::from(ids.to_vec()).to_string();
    let res = store
        .read(move |r| {
            r.query(
                &format!("SELECT {ENTRY_COLUMNS} FROM knowledge WHERE id IN (SELECT value FROM json_each(?1)) AND deleted = 0"),
                vec![ids.into()],
            )
        })
        .await?;
    Ok(res.rows.iter().map(|row| entry(row)).collect())
}

/// Up to `limit` live entries with rowid above `after_rowid`, in rowid order (the order
/// they were first stored), each with its rowid (the next call's `after_rowid`). Start
/// with 0.
pub async fn scan(store: &Store, after_rowid: i64, limit: usize) -> Result<Vec<(i64, KnowledgeEntry)>> {
    let res = store
        .read(move |r| {
            r.query(
                &format!("SELECT {ENTRY_COLUMNS}, rowid FROM knowledge WHERE deleted = 0 AND rowid > ?1 ORDER BY rowid LIMIT ?2"),
                vec![after_rowid.into(), (limit as i64).into()],
            )
        })
        .await?;
    Ok(res
        .rows
        .iter()
        .map(|row| (row[9].as_i64().unwrap_or(after_rowid), entry(row)))
        .collect())
}

/// How many live (not deleted) entries there are.
pub async fn count_live(store: &Store) -> Result<i64> {
    let q = store
        .read(|r| r.query("SELECT count(*) FROM knowledge WHERE deleted = 0", vec![]))
        .await?;
    Ok(q.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_hash_normalises_case_and_whitespace() {
        assert_eq!(content_hash("Hello   World\n"), content_hash("hello world"));
        assert_ne!(content_hash("hello world"), content_hash("hello worlds"));
    }

    #[test]
    fn merges_tags_and_metadata() {
        assert_eq!(merge_tags("[\"a\",\"b\"]", &["b".into(), "c".into()], 64), "[\"a\",\"b\",\"c\"]");
        assert_eq!(merge_tags("[\"a\"]", &["b".into()], 1), "[\"a\"]");
        let m = merge_metadata(Some("{\"x\":1,\"y\":2}"), Some(&json!({"y": 3, "z": 4})));
        assert_eq!(m, SqlValue::Text("{\"x\":1,\"y\":3,\"z\":4}".into()));
        assert_eq!(merge_metadata(None, None), SqlValue::Null);
    }
}
