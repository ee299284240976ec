//! Per-record SQL for the typed inserts: conversations and agent_metrics (append-only, logged as rowid ranges). Knowledge
//! records go to the knowledge writer edgeswarm-search installed (its SQL and dedup live
//! there); kv writes are custom ops in `kv.rs`.

use super::api::ChangeRef;
use super::api::{Inserted, KnowledgeWriter};
use super::tx::{TxCtx, APPEND_ONLY, CONVERSATIONS, METRICS};
use crate::error::{Result, StoreError};
use edgeswarm_core::Record;
use libsql::Value as V;

/// Inserts one typed record; a record whose id is already stored is left as it is
/// (`duplicate`). Runs in the op's savepoint like every op: an error fails only this
/// record.
pub(crate) fn insert_record(ctx: &mut TxCtx<'_>, r: Record, knowledge: Option<&KnowledgeWriter>) -> Result<Inserted> {
    if let Record::Knowledge(k) = r {
        let write = knowledge.ok_or(StoreError::NoKnowledgeWriter)?;
        return write(ctx, k);
    }
    let hlc = ctx.clock.now();
    let origin = V::Text(ctx.origin.to_string());
    let (table, id, n) = match r {
        Record::Metric(m) => {
            let n = ctx.exec(
                "INSERT INTO agent_metrics (id, agent_id, task_type, duration_ms, tokens_used, region, ts, extra, hlc, origin) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT(id) DO NOTHING",
                vec![
                    V::Text(m.id.clone()),
                    V::Text(m.agent_id),
                    V::Text(m.task_type),
                    V::Real(m.duration_ms),
                    V::Integer(m.tokens_used),
                    opt_text(m.region),
                    V::Integer(m.ts),
                    opt_json(m.extra),
                    V::Integer(hlc.as_i64()),
                    origin,
                ],
            )?;
            (METRICS, m.id, n)
        }
        Record::Message(m) => {
            let n = ctx.exec(
                "INSERT INTO conversations (id, session_id, role, content, metadata, created_at, hlc, origin) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(id) DO NOTHING",
                vec![
                    V::Text(m.id.clone()),
                    V::Text(m.session_id),
                    V::Text(m.role),
                    V::Text(m.content),
                    opt_json(m.metadata),
                    V::Integer(m.created_at),
                    V::Integer(hlc.as_i64()),
                    origin,
                ],
            )?;
            (CONVERSATIONS, m.id, n)
        }
        // Handled above.
        Record::Knowledge(_) => return Err(StoreError::NoKnowledgeWriter),
    };
    if n == 0 {
        return Ok(Inserted { duplicate: true });
    }
    let rowid = ctx.conn.conn.last_insert_rowid();
    ctx.log.extend_range(table, rowid, rowid, hlc);
    ctx.log.changes.push(ChangeRef {
        tbl: APPEND_ONLY[table],
        row_id: id,
    });
    Ok(Inserted { duplicate: false })
}

fn opt_text(v: Option<String>) -> V {
    v.map(V::Text).unwrap_or(V::Null)
}

fn opt_json(v: Option<serde_json::Value>) -> V {
    match v {
        None | Some(serde_json::Value::Null) => V::Null,
        Some(v) => V::Text(v.to_string()),
    }
}
