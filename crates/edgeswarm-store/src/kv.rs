//! Shared memory: namespaced key-value entries with versions, TTL and compare-and-swap.
//! Writes run as custom ops inside the writer's batch (one savepoint each), so a CAS is
//! atomic with respect to every other write. Deletes are tombstones so they replicate;
//! expired entries are swept (really deleted) by `sweep_expired`.

use crate::error::Result;
use crate::store::Store;
use crate::value::SqlValue;
use crate::writer::TxCtx;
use edgeswarm_core::record::{name, now_millis};
use edgeswarm_core::{KvEntry, ValidationError};
use serde_json::Value;
use std::time::Duration;

/// Longest TTL accepted: 10 years. Longer is almost certainly a unit mistake.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The `_changes.row_id` of a kv entry (see [`encode_key`]).
pub fn row_id(namespace: &str, key: &str) -> String {
    encode_key(&[namespace, key])
}

/// Splits a kv `_changes.row_id` into namespace and key (see [`decode_key`]).
pub fn split_row_id(row_id: &str) -> Option<(String, String)> {
    let mut p = decode_key(row_id, 2)?;
    let key = p.pop()?;
    Some((p.pop()?, key))
}

/// Separator between the parts of a composite key in `_changes.row_id` (U+001F).
pub const KEY_SEP: char = '\u{1f}';
/// Escape in a composite key part (U+001E): the next character is literal.
pub const KEY_ESC: char = '\u{1e}';

/// The `_changes.row_id` of a composite primary key: the parts joined with [`KEY_SEP`],
/// each part with [`KEY_ESC`] and [`KEY_SEP`] preceded by [`KEY_ESC`]. Unambiguous for
/// any text, and the same string as the old plain join for every part without U+001E
/// or U+001F, so logs written before read the same (see [`decode_key`]).
pub fn encode_key(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(KEY_SEP);
        }
        for c in p.chars() {
            if c == KEY_SEP || c == KEY_ESC {
                out.push(KEY_ESC);
            }
            out.push(c);
        }
    }
    out
}

/// The `n` parts of a composite key made by [`encode_key`]. A row id without any
/// [`KEY_ESC`] that splits into more than `n` parts was written by the old plain join
/// (a U+001F inside the last part): its extra parts are joined back into the last one,
/// as the old home-side SQL split it (at the first separator). `None` when the parts
/// do not add up to `n`.
pub fn decode_key(row_id: &str, n: usize) -> Option<Vec<String>> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    let mut chars = row_id.chars();
    while let Some(c) = chars.next() {
        if c == KEY_ESC {
            escaped = true;
            parts.last_mut()?.push(chars.next()?);
        } else if c == KEY_SEP {
            parts.push(String::new());
        } else {
            parts.last_mut()?.push(c);
        }
    }
    if parts.len() > n && !escaped && n > 0 {
        let tail = parts.split_off(n).join(&KEY_SEP.to_string());
        let last = parts.last_mut()?;
        last.push(KEY_SEP);
        last.push_str(&tail);
    }
    (parts.len() == n).then_some(parts)
}

/// Result of a compare-and-swap.
#[derive(Debug, Clone, PartialEq)]
pub enum CasOutcome {
    /// Swapped; the entry now has this version.
    Swapped { version: i64 },
    /// Not swapped: the current version differs (`None`: the key does not exist).
    Conflict { current: Option<i64> },
}

fn check(ns: &str, key: &str, value: &Value, ttl: Option<Duration>, store: &Store) -> Result<()> {
    let l = &store.config().limits;
    name("namespace", ns, l)?;
    name("key", key, l)?;
    let len = value.to_string().len();
    if len > l.max_content_bytes {
        return Err(ValidationError::TooLong {
            field: "value",
            len,
            max: l.max_content_bytes,
            limit_name: "max_content_bytes",
        }
        .into());
    }
    if let Some(t) = ttl {
        if t.is_zero() {
            return Err(ValidationError::OutOfRange {
                field: "ttl",
                reason: "a TTL of zero would expire the entry at once; omit the TTL or give a positive one".into(),
            }
            .into());
        }
        if t > MAX_TTL {
            return Err(ValidationError::OutOfRange {
                field: "ttl",
                reason: format!("{t:?} is longer than the 10-year maximum; omit the TTL for entries that never expire"),
            }
            .into());
        }
    }
    Ok(())
}

/// Reads the live version of a key inside the transaction (expired = absent).
fn current_version(ctx: &mut TxCtx<'_>, ns: &str, key: &str, now: i64) -> Result<Option<i64>> {
    let r = ctx.query(
        "SELECT version FROM kv WHERE namespace = ?1 AND key = ?2 AND deleted = 0 AND (expires_at IS NULL OR expires_at > ?3)",
        vec![ns.into(), key.into(), now.into()],
    )?;
    Ok(r.rows.first().and_then(|r| r[0].as_i64()))
}

fn last_version(ctx: &mut TxCtx<'_>, ns: &str, key: &str) -> Result<i64> {
    let r = ctx.query(
        "SELECT version FROM kv WHERE namespace = ?1 AND key = ?2",
        vec![ns.into(), key.into()],
    )?;
    Ok(r.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
}

fn put(ctx: &mut TxCtx<'_>, ns: &str, key: &str, value: &Value, ttl: Option<Duration>, deleted: bool) -> Result<i64> {
    let now = now_millis();
    let version = last_version(ctx, ns, key)? + 1;
    let hlc = ctx.stamp();
    let origin = ctx.origin().to_string();
    let expires: SqlValue = ttl.map(|t| now + t.as_millis() as i64).into();
    ctx.execute(
        "INSERT INTO kv (namespace, key, value, version, expires_at, updated_at, deleted, hlc, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value, version = excluded.version, expires_at = excluded.expires_at, \
         updated_at = excluded.updated_at, deleted = excluded.deleted, hlc = excluded.hlc, origin = excluded.origin",
        vec![
            ns.into(),
            key.into(),
            value.to_string().into(),
            version.into(),
            expires,
            now.into(),
            (deleted as i64).into(),
            hlc.as_i64().into(),
            origin.clone().into(),
        ],
    )?;
    ctx.log_change("kv", row_id(ns, key), hlc, &origin)?;
    Ok(version)
}

impl Store {
    /// Sets `namespace/key` to `value` (optionally expiring after `ttl`); returns the new version.
    pub async fn kv_set(&self, namespace: &str, key: &str, value: Value, ttl: Option<Duration>) -> Result<i64> {
        check(namespace, key, &value, ttl, self)?;
        let (ns, k) = (namespace.to_string(), key.to_string());
        self.transact(move |ctx| put(ctx, &ns, &k, &value, ttl, false)).await
    }

    /// Compare-and-swap: writes only if the live version equals `expected`
    /// (`None`: only if the key does not exist or has expired). Exactly one of any set of
    /// concurrent CAS calls with the same `expected` succeeds.
    pub async fn kv_cas(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<i64>,
        value: Value,
        ttl: Option<Duration>,
    ) -> Result<CasOutcome> {
        check(namespace, key, &value, ttl, self)?;
        let (ns, k) = (namespace.to_string(), key.to_string());
        self.transact(move |ctx| {
            let cur = current_version(ctx, &ns, &k, now_millis())?;
            if cur != expected {
                return Ok(CasOutcome::Conflict { current: cur });
            }
            let version = put(ctx, &ns, &k, &value, ttl, false)?;
            Ok(CasOutcome::Swapped { version })
        })
        .await
    }

    /// Deletes `namespace/key` (a tombstone that replicates). Returns whether it existed.
    pub async fn kv_delete(&self, namespace: &str, key: &str) -> Result<bool> {
        check(namespace, key, &Value::Null, None, self)?;
        let (ns, k) = (namespace.to_string(), key.to_string());
        self.transact(move |ctx| {
            let existed = current_version(ctx, &ns, &k, now_millis())?.is_some();
            if existed {
                put(ctx, &ns, &k, &Value::Null, None, true)?;
            }
            Ok(existed)
        })
        .await
    }

    /// Reads a live entry (`None` if missing, deleted or expired).
    pub async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<KvEntry>> {
        let l = &self.config().limits;
        name("namespace", namespace, l)?;
        name("key", key, l)?;
        let (ns, k) = (namespace.to_string(), key.to_string());
        let mut list = self
            .read(move |r| {
                let q = r.query(
                    "SELECT namespace, key, value, version, expires_at, updated_at FROM kv \
                     WHERE namespace = ?1 AND key = ?2 AND deleted = 0 AND (expires_at IS NULL OR expires_at > ?3)",
                    vec![ns.into(), k.into(), now_millis().into()],
                )?;
                Ok(rows_to_entries(q))
            })
            .await?;
        Ok(list.pop())
    }

    /// Lists live entries of a namespace whose key starts with `prefix`, by key.
    pub async fn kv_list(&self, namespace: &str, prefix: &str, limit: usize) -> Result<Vec<KvEntry>> {
        name("namespace", namespace, &self.config().limits)?;
        let (ns, p) = (namespace.to_string(), prefix.to_string());
        let limit = limit.clamp(1, 10_000) as i64;
        self.read(move |r| {
            let q = r.query(
                "SELECT namespace, key, value, version, expires_at, updated_at FROM kv \
                 WHERE namespace = ?1 AND substr(key, 1, length(?2)) = ?2 AND deleted = 0 AND (expires_at IS NULL OR expires_at > ?3) \
                 ORDER BY key LIMIT ?4",
                vec![ns.into(), p.into(), now_millis().into(), limit.into()],
            )?;
            Ok(rows_to_entries(q))
        })
        .await
    }

    /// How many entries are not tombstoned (expired ones not yet swept included).
    pub async fn kv_count_live(&self) -> Result<i64> {
        let q = self.read(|r| r.query("SELECT count(*) FROM kv WHERE deleted = 0", vec![])).await?;
        Ok(q.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
    }

    /// Deletes expired entries for good; returns how many.
    pub async fn kv_sweep_expired(&self) -> Result<u64> {
        self.transact(|ctx| {
            let now = now_millis();
            let gone = ctx.query(
                "SELECT namespace, key FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                vec![now.into()],
            )?;
            let n = ctx.execute("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1", vec![now.into()])?;
            for row in gone.rows {
                if let (Some(ns), Some(k)) = (row[0].as_str(), row[1].as_str()) {
                    ctx.note_change("kv", row_id(ns, k));
                }
            }
            Ok(n)
        })
        .await
    }
}

fn rows_to_entries(q: crate::value::QueryResult) -> Vec<KvEntry> {
    q.rows
        .into_iter()
        .map(|r| KvEntry {
            namespace: r[0].as_str().unwrap_or_default().to_string(),
            key: r[1].as_str().unwrap_or_default().to_string(),
            value: r[2].as_str().and_then(|s| serde_json::from_str(s).ok()).unwrap_or(Value::Null),
            version: r[3].as_i64().unwrap_or(0),
            expires_at: r[4].as_i64(),
            updated_at: r[5].as_i64().unwrap_or(0),
        })
        .collect()
}
