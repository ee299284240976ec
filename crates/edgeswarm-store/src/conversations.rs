//! Every read of the `conversations` table (writes go through the writer as
//! `Record::Message`): a session's page in (created_at, id) order, the whole table in
//! rowid pages for export, and the row count.

use crate::error::Result;
use crate::store::Store;
use crate::value::SqlValue;
use edgeswarm_core::Message;

fn message(r: &[SqlValue]) -> Message {
    Message {
        id: r[0].as_str().unwrap_or_default().into(),
        session_id: r[1].as_str().unwrap_or_default().into(),
        role: r[2].as_str().unwrap_or_default().into(),
        content: r[3].as_str().unwrap_or_default().into(),
        metadata: r[4].as_str().and_then(|s| serde_json::from_str(s).ok()),
        created_at: r[5].as_i64().unwrap_or(0),
    }
}

/// Up to `limit` messages of `session_id` strictly after the position
/// (`after_ts`, `after_id`), in (created_at, id) order. Start with `(i64::MIN, "")`.
pub async fn page(store: &Store, session_id: &str, after_ts: i64, after_id: &str, limit: usize) -> Result<Vec<Message>> {
    let params: Vec<SqlValue> = vec![session_id.into(), after_ts.into(), after_id.into(), (limit as i64).into()];
    let rows = store
        .read(move |r| {
            r.query(
                "SELECT id, session_id, role, content, metadata, created_at FROM conversations \
                 WHERE session_id = ?1 AND (created_at > ?2 OR (created_at = ?2 AND id > ?3)) \
                 ORDER BY created_at, id LIMIT ?4",
                params,
            )
        })
        .await?;
    Ok(rows.rows.iter().map(|r| message(r)).collect())
}

/// Up to `limit` messages of any session with rowid above `after_rowid`, in rowid
/// order, each with its rowid (the next call's `after_rowid`). Start with 0.
pub async fn scan(store: &Store, after_rowid: i64, limit: usize) -> Result<Vec<(i64, Message)>> {
    let q = store
        .read(move |r| {
            r.query(
                "SELECT id, session_id, role, content, metadata, created_at, rowid FROM conversations \
                 WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
                vec![after_rowid.into(), (limit as i64).into()],
            )
        })
        .await?;
    Ok(q.rows.iter().map(|r| (r[6].as_i64().unwrap_or(after_rowid), message(r))).collect())
}

/// How many messages are stored.
pub async fn count(store: &Store) -> Result<i64> {
    let q = store.read(|r| r.query("SELECT count(*) FROM conversations", vec![])).await?;
    Ok(q.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
}
