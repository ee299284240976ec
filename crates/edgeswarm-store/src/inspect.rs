//! Schema introspection and file facts as typed values: the tables, one table's shape,
//! page and journal facts, row counts and the region rows. The MCP schema tools and the
//! CLI read these instead of writing their own SQL over `pragma_*` and `sqlite_schema`.

use crate::error::Result;
use crate::store::Store;
use crate::value::SqlValue;
use serde::Serialize;

/// A table or view of the home file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableInfo {
    /// Table name (case as created).
    pub name: String,
    /// `table`, `view`, `virtual` or `shadow` (SQLite's `pragma_table_list` type).
    #[serde(rename = "type")]
    pub kind: String,
    /// Number of columns.
    pub columns: i64,
}

impl TableInfo {
    /// Runtime-internal (`_` prefix), SQLite's own, or an FTS shadow table.
    pub fn is_internal(&self) -> bool {
        self.name.starts_with('_') || self.name.starts_with("sqlite_") || self.kind == "shadow"
    }
    /// Holds rows that can be counted (tables and virtual tables, not views).
    pub fn has_rows(&self) -> bool {
        self.kind == "table" || self.kind == "virtual"
    }
}

/// The tables and views of the main schema, by name; internal ones only when asked.
pub async fn tables(store: &Store, include_internal: bool) -> Result<Vec<TableInfo>> {
    let q = store
        .read(|r| {
            r.query(
                "SELECT name, type, ncol FROM pragma_table_list WHERE schema = 'main' ORDER BY name",
                vec![],
            )
        })
        .await?;
    Ok(q.rows
        .iter()
        .filter_map(|r| {
            Some(TableInfo {
                name: r[0].as_str()?.to_string(),
                kind: r[1].as_str()?.to_string(),
                columns: r[2].as_i64().unwrap_or(0),
            })
        })
        .filter(|t| include_internal || !t.is_internal())
        .collect())
}

/// Quotes an identifier for SQL (doubling inner quotes).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `count(*)` of one table (any name; it is quoted).
pub async fn row_count(store: &Store, table: &str) -> Result<i64> {
    let sql = format!("SELECT count(*) FROM {}", quote_ident(table));
    let q = store.read(move |r| r.query(&sql, vec![])).await?;
    Ok(q.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
}

/// The CREATE statements of `table` and its indexes and triggers, or of the whole
/// schema (`None`), by name.
pub async fn schema_sql(store: &Store, table: Option<&str>) -> Result<Vec<String>> {
    let t = table.map(str::to_string);
    let q = store
        .read(move |r| match t {
            Some(t) => r.query(
                "SELECT sql FROM sqlite_schema WHERE (name = ?1 OR tbl_name = ?1) AND sql IS NOT NULL",
                vec![t.into()],
            ),
            None => r.query("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name", vec![]),
        })
        .await?;
    Ok(q.rows.iter().filter_map(|r| r[0].as_str().map(str::to_string)).collect())
}

/// Page and journal facts of the home file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseInfo {
    /// Pages in the main file.
    pub page_count: i64,
    /// Bytes per page.
    pub page_size: i64,
    /// Unused pages (reclaimed by VACUUM).
    pub freelist_count: i64,
    /// `wal` for a store this runtime opened.
    pub journal_mode: String,
    /// `PRAGMA user_version`: the schema migration the file is at.
    pub schema_version: i64,
}

/// Page count and size, free pages, journal mode and schema version.
pub async fn database_info(store: &Store) -> Result<DatabaseInfo> {
    let q = store
        .read(|r| {
            r.query(
                "SELECT (SELECT page_count FROM pragma_page_count), (SELECT page_size FROM pragma_page_size), \
                 (SELECT freelist_count FROM pragma_freelist_count), (SELECT journal_mode FROM pragma_journal_mode), \
                 (SELECT user_version FROM pragma_user_version)",
                vec![],
            )
        })
        .await?;
    let r = q.rows.first().cloned().unwrap_or_default();
    let int = |i: usize| r.get(i).and_then(SqlValue::as_i64).unwrap_or(0);
    Ok(DatabaseInfo {
        page_count: int(0),
        page_size: int(1),
        freelist_count: int(2),
        journal_mode: r.get(3).and_then(SqlValue::as_str).unwrap_or_default().to_string(),
        schema_version: int(4),
    })
}

/// The schema migration the file is at (`PRAGMA user_version`).
pub async fn schema_version(store: &Store) -> Result<i64> {
    let q = store
        .read(|r| r.query("SELECT user_version FROM pragma_user_version", vec![]))
        .await?;
    Ok(q.rows.first().and_then(|r| r[0].as_i64()).unwrap_or(0))
}

/// One column of a described table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Declared type (empty when none was declared).
    #[serde(rename = "type")]
    pub decl_type: String,
    /// Declared NOT NULL.
    pub not_null: bool,
    /// The DEFAULT expression as written, if any.
    pub default: Option<String>,
    /// 1-based position in the primary key, `None` when not part of it.
    pub primary_key_position: Option<i64>,
    /// Hidden (virtual-table or generated) column.
    pub hidden: bool,
}

/// One index of a described table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexInfo {
    /// Index name (SQLite names the automatic ones `sqlite_autoindex_*`).
    pub name: String,
    /// Enforces uniqueness.
    pub unique: bool,
    /// `primary key`, `UNIQUE constraint` or `CREATE INDEX`.
    pub origin: String,
    /// Has a WHERE clause.
    pub partial: bool,
    /// Indexed columns in key order (`None` for an expression).
    pub columns: Vec<Option<String>>,
}

/// One foreign key of a described table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignKeyInfo {
    /// The referenced table.
    pub table: String,
    /// The referencing column here.
    pub from: String,
    /// The referenced column (`None`: the referenced table's primary key).
    pub to: Option<String>,
    /// ON UPDATE action.
    pub on_update: String,
    /// ON DELETE action.
    pub on_delete: String,
}

/// The shape of one table or view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableDescription {
    /// The name asked for.
    pub table: String,
    /// `table` or `view` (from `sqlite_schema`; `None` for eponymous virtual tables).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Every column, hidden ones flagged.
    pub columns: Vec<ColumnInfo>,
    /// Primary-key column names in key order.
    pub primary_key: Vec<String>,
    /// Indexes with their columns.
    pub indexes: Vec<IndexInfo>,
    /// Foreign keys.
    pub foreign_keys: Vec<ForeignKeyInfo>,
    /// The CREATE statement.
    pub sql: Option<String>,
}

/// The shape of `table` (case-sensitive here), or `None` when there is no such table or view.
pub async fn describe_table(store: &Store, table: &str) -> Result<Option<TableDescription>> {
    let t = table.to_string();
    store
        .read(move |r| {
            let cols = r.query(
                "SELECT cid, name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?1)",
                vec![t.clone().into()],
            )?;
            if cols.rows.is_empty() {
                return Ok(None);
            }
            let s = |v: &SqlValue| v.as_str().unwrap_or_default().to_string();
            let columns: Vec<ColumnInfo> = cols
                .rows
                .iter()
                .map(|c| ColumnInfo {
                    name: s(&c[1]),
                    decl_type: s(&c[2]),
                    not_null: c[3].as_i64() == Some(1),
                    default: c[4].as_str().map(str::to_string),
                    primary_key_position: c[5].as_i64().filter(|p| *p > 0),
                    hidden: c[6].as_i64().unwrap_or(0) != 0,
                })
                .collect();
            let mut pk: Vec<(i64, String)> = columns
                .iter()
                .filter_map(|c| Some((c.primary_key_position?, c.name.clone())))
                .collect();
            pk.sort_by_key(|(p, _)| *p);
            let idx = r.query(
                "SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1) ORDER BY name",
                vec![t.clone().into()],
            )?;
            let mut indexes = Vec::new();
            for i in &idx.rows {
                let name = s(&i[0]);
                let ic = r.query("SELECT name FROM pragma_index_info(?1) ORDER BY seqno", vec![name.clone().into()])?;
                let origin = match i[2].as_str() {
                    Some("pk") => "primary key",
                    Some("u") => "UNIQUE constraint",
                    _ => "CREATE INDEX",
                };
                indexes.push(IndexInfo {
                    name,
                    unique: i[1].as_i64() == Some(1),
                    origin: origin.into(),
                    partial: i[3].as_i64() == Some(1),
                    columns: ic.rows.iter().map(|c| c[0].as_str().map(str::to_string)).collect(),
                });
            }
            let fk = r.query(
                "SELECT \"table\", \"from\", \"to\", on_update, on_delete FROM pragma_foreign_key_list(?1)",
                vec![t.clone().into()],
            )?;
            let foreign_keys = fk
                .rows
                .iter()
                .map(|f| ForeignKeyInfo {
                    table: s(&f[0]),
                    from: s(&f[1]),
                    to: f[2].as_str().map(str::to_string),
                    on_update: s(&f[3]),
                    on_delete: s(&f[4]),
                })
                .collect();
            let sql = r.query("SELECT type, sql FROM sqlite_schema WHERE name = ?1", vec![t.clone().into()])?;
            let first = sql.rows.first();
            Ok(Some(TableDescription {
                table: t,
                kind: first.and_then(|r| r[0].as_str().map(str::to_string)),
                columns,
                primary_key: pk.into_iter().map(|(_, n)| n).collect(),
                indexes,
                foreign_keys,
                sql: first.and_then(|r| r[1].as_str().map(str::to_string)),
            }))
        })
        .await
}

/// One region as recorded in `edge_replicas` (written by the sync actors) with its push
/// cursor from `_sync_cursors`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionRow {
    /// Region name.
    pub region: String,
    /// Where the replica lives (`file:` path or server URL).
    pub url: Option<String>,
    /// Last health the sync actor recorded (`healthy`, `degraded`, `partitioned`...).
    pub status: String,
    /// Smoothed round-trip time.
    pub avg_latency_ms: Option<f64>,
    /// Latency class the actor assigned.
    pub performance_tier: Option<String>,
    /// Changes the region is behind by.
    pub lag_rows: i64,
    /// Age of the oldest change it has not received.
    pub lag_ms: i64,
    /// Last successful sync (epoch ms).
    pub last_sync_at: Option<i64>,
    /// Sync errors so far.
    pub errors: i64,
    /// Last change-log seq the region acked (`None` before its first push).
    pub push_seq: Option<i64>,
    /// Last region seq pulled home.
    pub pull_seq: Option<i64>,
    /// Home changes not yet pushed to it (head of `_changes` minus `push_seq`).
    pub pending_push_changes: i64,
}

/// Every recorded region, nearest first (unmeasured ones last).
pub async fn regions(store: &Store) -> Result<Vec<RegionRow>> {
    let q = store
        .read(|r| {
            r.query(
                "SELECT e.region, e.url, e.status, e.avg_latency_ms, e.performance_tier, e.lag_rows, e.lag_ms, e.last_sync_at, e.errors, \
                 c.push_seq, c.pull_seq, (SELECT COALESCE(MAX(seq), 0) FROM _changes) AS head_seq \
                 FROM edge_replicas e LEFT JOIN _sync_cursors c ON c.region = e.region ORDER BY e.avg_latency_ms IS NULL, e.avg_latency_ms, e.region",
                vec![],
            )
        })
        .await?;
    Ok(q.rows
        .iter()
        .map(|r| {
            let text = |i: usize| r[i].as_str().map(str::to_string);
            let head = r[11].as_i64().unwrap_or(0);
            let push_seq = r[9].as_i64();
            RegionRow {
                region: text(0).unwrap_or_default(),
                url: text(1),
                status: text(2).unwrap_or_default(),
                avg_latency_ms: r[3].as_f64(),
                performance_tier: text(4),
                lag_rows: r[5].as_i64().unwrap_or(0),
                lag_ms: r[6].as_i64().unwrap_or(0),
                last_sync_at: r[7].as_i64(),
                errors: r[8].as_i64().unwrap_or(0),
                push_seq,
                pull_seq: r[10].as_i64(),
                pending_push_changes: (head - push_seq.unwrap_or(0)).max(0),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_inner_quotes_doubled() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("knowledge"), "\"knowledge\"");
    }
}
