//! Row versions, replicated-table descriptions and the SQL that applies a version.
//!
//! A *row version* is the full content of one row plus its `(hlc, origin)` stamp. Every
//! replica (home file or region) keeps, per row, the version with the greatest
//! `(hlc, origin)` — last writer wins. Deletes are versions too (`deleted = 1`), so a
//! delete wins or loses like any write. The rule is deterministic, commutative and
//! idempotent: replicas converge whatever the order or repetition of deliveries.

use edgeswarm_store::{QueryResult, SqlValue};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Separator between primary-key parts in `_changes.row_id` (ASCII unit separator);
/// parts are escaped (see [`edgeswarm_store::kv::encode_key`]).
pub use edgeswarm_store::kv::{decode_key, encode_key, KEY_ESC, KEY_SEP};

/// How a replicated table is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Table name, as in the schema.
    pub name: Arc<str>,
    /// All columns in schema order (including `hlc` and `origin`).
    pub columns: Arc<[String]>,
    /// Declared type of each column (for creating the table in a region).
    pub types: Arc<[String]>,
    /// Primary-key columns in key order; `_changes.row_id` joins them with [`KEY_SEP`].
    pub pk: Arc<[String]>,
    /// Rows never change after insert (metrics, messages): no conflicts are recorded.
    pub append_only: bool,
}

impl TableSpec {
    /// Index of column `c`.
    pub fn col(&self, c: &str) -> Option<usize> {
        self.columns.iter().position(|x| x == c)
    }

    /// Builds a spec from `PRAGMA table_info` rows (cid, name, type, notnull, dflt, pk).
    pub fn from_table_info(name: &str, info: &QueryResult, append_only: bool) -> Option<Self> {
        let mut cols = Vec::new();
        let mut types = Vec::new();
        let mut pk: Vec<(i64, String)> = Vec::new();
        for r in &info.rows {
            let c = r.get(1)?.as_str()?.to_string();
            let t = r.get(2).and_then(|v| v.as_str()).unwrap_or("").to_string();
            let p = r.get(5).and_then(|v| v.as_i64()).unwrap_or(0);
            if p > 0 {
                pk.push((p, c.clone()));
            }
            cols.push(c);
            types.push(t);
        }
        pk.sort();
        if cols.is_empty() {
            return None;
        }
        Some(TableSpec {
            name: name.into(),
            columns: cols.into(),
            types: types.into(),
            pk: pk.into_iter().map(|(_, c)| c).collect::<Vec<_>>().into(),
            append_only,
        })
    }

    /// `SELECT * FROM t WHERE pk1 = ?1 AND ...`: a region's current row, whatever
    /// columns the region's copy of the table has (see [`TableSpec::lay_out`]).
    pub fn select_star_by_pk(&self) -> String {
        format!("SELECT * FROM {} WHERE {}", quote(&self.name), self.pk_where())
    }

    /// `pk1 = ?1 AND pk2 = ?2 ...`
    fn pk_where(&self) -> String {
        self.pk
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = ?{}", quote(c), i + 1))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// A row read with `columns` laid out as this spec's columns: missing columns
    /// become NULL, unknown ones are dropped (a region's copy of a user table may have
    /// been created by a node with another version of its schema).
    pub fn lay_out(&self, columns: &[String], mut values: Vec<SqlValue>) -> Vec<SqlValue> {
        if columns.len() == self.columns.len() && columns.iter().zip(self.columns.iter()).all(|(a, b)| a == b) {
            return values;
        }
        self.columns
            .iter()
            .map(|c| {
                columns
                    .iter()
                    .position(|x| x == c)
                    .and_then(|i| values.get_mut(i).map(|v| std::mem::replace(v, SqlValue::Null)))
                    .unwrap_or(SqlValue::Null)
            })
            .collect()
    }

    /// `"c1", "c2", ...`
    fn col_list(&self) -> String {
        self.columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
    }

    /// `SELECT cols FROM t WHERE pk1 = ?1 AND ...` (point read of one row).
    pub fn select_by_pk(&self) -> String {
        format!("SELECT {} FROM {} WHERE {}", self.col_list(), quote(&self.name), self.pk_where())
    }

    /// Every row in primary-key order (for checksums).
    pub fn select_all_ordered(&self) -> String {
        let o = self.pk.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        format!("SELECT {} FROM {} ORDER BY {o}", self.col_list(), quote(&self.name))
    }

    /// Plain upsert of a full row (home side; the LWW decision was made in Rust).
    pub fn upsert(&self) -> String {
        self.upsert_inner(false)
    }

    /// Upsert that only replaces the stored row if the new one has a greater
    /// `(hlc, origin)` (region side: the LWW decision is made by SQL, so it works over
    /// Hrana in one round trip).
    pub fn upsert_lww(&self) -> String {
        self.upsert_inner(true)
    }

    /// Multi-row LWW upsert of `n` full rows (`?1..?(n*cols)`).
    pub fn upsert_lww_rows(&self, n: usize) -> String {
        let w = self.columns.len();
        let values = (0..n)
            .map(|r| format!("({})", (1..=w).map(|i| format!("?{}", r * w + i)).collect::<Vec<_>>().join(", ")))
            .collect::<Vec<_>>()
            .join(", ");
        let t = quote(&self.name);
        let pk = self.pk.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        let set = self
            .columns
            .iter()
            .filter(|c| !self.pk.contains(c))
            .map(|c| format!("{0} = excluded.{0}", quote(c)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {t} ({}) VALUES {values} ON CONFLICT({pk}) DO UPDATE SET {set} WHERE {}",
            self.col_list(),
            self.lww_guard()
        )
    }

    /// The region's LWW condition: the incoming row has a greater `(hlc, origin)`, or
    /// the same stamp and greater content (the tie-break of
    /// [`crate::home::content_order`]: each content column as `(x IS NOT NULL,
    /// coalesce(x, 0))`, so NULLs order first and compare equal, as in Rust).
    fn lww_guard(&self) -> String {
        let t = quote(&self.name);
        let content: Vec<&String> = self
            .columns
            .iter()
            .filter(|c| c.as_str() != "hlc" && c.as_str() != "origin" && !self.pk.contains(c))
            .collect();
        let tuple = |p: &str| {
            content
                .iter()
                .map(|c| format!("{p}.{0} IS NOT NULL, coalesce({p}.{0}, 0)", quote(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let newer = format!("(excluded.hlc, excluded.origin) > ({t}.hlc, {t}.origin)");
        if content.is_empty() {
            return newer;
        }
        format!(
            "({newer} OR ((excluded.hlc, excluded.origin) = ({t}.hlc, {t}.origin) AND ({}) > ({})))",
            tuple("excluded"),
            tuple(&t)
        )
    }

    fn upsert_inner(&self, lww: bool) -> String {
        let t = quote(&self.name);
        let params = (1..=self.columns.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
        let pk = self.pk.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        let set = self
            .columns
            .iter()
            .filter(|c| !self.pk.contains(c))
            .map(|c| format!("{0} = excluded.{0}", quote(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let cond = if lww {
            format!(" WHERE {}", self.lww_guard())
        } else {
            String::new()
        };
        format!(
            "INSERT INTO {t} ({}) VALUES ({params}) ON CONFLICT({pk}) DO UPDATE SET {set}{cond}",
            self.col_list()
        )
    }

    /// `CREATE TABLE IF NOT EXISTS` statements for a region copy: the table (same
    /// columns and key, no defaults or constraints: every column is always shipped)
    /// and, for a mutable table, its superseded-versions table (see
    /// [`TableSpec::prev_table`]).
    pub fn create_region_tables(&self) -> Vec<String> {
        let cols = self
            .columns
            .iter()
            .zip(self.types.iter())
            // An invalid type never reaches the DDL (replicate_table refuses such a
            // table; a built-in one cannot have it): the column is declared untyped.
            .map(|(c, t)| match valid_column_type(t) {
                true => format!("{} {}", quote(c), t),
                false => quote(c),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let pk = self.pk.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        let mut v = vec![format!(
            "CREATE TABLE IF NOT EXISTS {} ({cols}, PRIMARY KEY ({pk}))",
            quote(&self.name)
        )];
        if !self.append_only {
            v.push(format!(
                "CREATE TABLE IF NOT EXISTS {} ({cols}, PRIMARY KEY ({pk}, \"hlc\", \"origin\"))",
                quote(&self.prev_table())
            ));
        }
        v
    }

    /// The region table keeping versions of this table's rows that a newer version
    /// replaced, keyed by (primary key, hlc, origin). The region log only points at
    /// rows; a puller whose log entry names a version the row has since moved past reads
    /// that version here, so it sees exactly the versions the region accepted (and
    /// records the same conflicts) as when the log held copies. Written only when a row
    /// is overwritten, so inserts pay nothing; append-only tables have none (their rows
    /// are not overwritten, and their conflicts are not recorded).
    pub fn prev_table(&self) -> String {
        format!("_region_prev_{}", self.name)
    }

    /// `SELECT * FROM <prev> WHERE pk1 = ?1 AND ... AND hlc = ?k+1 AND origin = ?k+2`.
    pub fn select_prev_version(&self) -> String {
        let k = self.pk.len();
        let w = self.pk_where();
        format!(
            "SELECT * FROM {} WHERE {w} AND \"hlc\" = ?{} AND \"origin\" = ?{}",
            quote(&self.prev_table()),
            k + 1,
            k + 2
        )
    }

    /// The SQL expression for `_changes.row_id` over trigger row `prefix` (`new`/`old`):
    /// the key as text; a composite key's parts escaped and joined as
    /// [`encode_key`] does.
    pub fn row_id_expr(&self, prefix: &str) -> String {
        if self.pk.len() == 1 {
            return format!("CAST({prefix}.{} AS TEXT)", quote(&self.pk[0]));
        }
        self.pk
            .iter()
            .map(|c| {
                format!(
                    "replace(replace(CAST({prefix}.{} AS TEXT), char(30), char(30, 30)), char(31), char(30, 31))",
                    quote(c)
                )
            })
            .collect::<Vec<_>>()
            .join(" || char(31) || ")
    }

    /// Splits a `row_id` into primary-key parameters (see [`decode_key`]; a one-column
    /// key is the row id itself).
    pub fn pk_params(&self, row_id: &str) -> Option<Vec<SqlValue>> {
        if self.pk.len() == 1 {
            return Some(vec![SqlValue::Text(row_id.to_string())]);
        }
        Some(decode_key(row_id, self.pk.len())?.into_iter().map(SqlValue::Text).collect())
    }
}

/// Is `t` a declared column type region DDL may contain as written: empty, or one to
/// four words of ASCII letters, digits and `_` (not starting with a digit), optionally
/// followed by `(n)` or `(n, m)` with signed decimal numbers, at most 64 bytes. That is
/// every type SQLite's affinity rules look at (`VARCHAR(255)`, `DOUBLE PRECISION`,
/// `UNSIGNED BIG INT`, `DECIMAL(10, 5)`) and nothing that could end the column
/// definition.
pub fn valid_column_type(t: &str) -> bool {
    if t.len() > 64 {
        return false;
    }
    let (words, args) = match t.find('(') {
        Some(i) => (&t[..i], Some(&t[i..])),
        None => (t, None),
    };
    let ws: Vec<&str> = words.split_whitespace().collect();
    if ws.len() > 4 || (ws.is_empty() && args.is_some()) {
        return false;
    }
    let word_ok = |w: &str| {
        w.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !ws.iter().all(|w| word_ok(w)) {
        return false;
    }
    match args {
        None => true,
        Some(a) => {
            let Some(inner) = a.trim_end().strip_prefix('(').and_then(|x| x.strip_suffix(')')) else {
                return false;
            };
            let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
            parts.len() <= 2
                && parts.iter().all(|p| {
                    let d = p.strip_prefix(['+', '-']).unwrap_or(p);
                    !d.is_empty() && d.len() <= 20 && d.chars().all(|c| c.is_ascii_digit())
                })
        }
    }
}

/// SQLite's order of two values under the BINARY collation: NULL < numbers (by value,
/// integers and reals together) < text (bytewise) < blob (bytewise).
pub fn sql_cmp(a: &SqlValue, b: &SqlValue) -> std::cmp::Ordering {
    use std::cmp::Ordering as O;
    fn rank(v: &SqlValue) -> u8 {
        match v {
            SqlValue::Null => 0,
            SqlValue::Integer(_) | SqlValue::Real(_) => 1,
            SqlValue::Text(_) => 2,
            SqlValue::Blob(_) => 3,
        }
    }
    match (a, b) {
        (SqlValue::Integer(x), SqlValue::Integer(y)) => x.cmp(y),
        (SqlValue::Real(x), SqlValue::Real(y)) => x.partial_cmp(y).unwrap_or(O::Equal),
        (SqlValue::Integer(x), SqlValue::Real(y)) => (*x as f64).partial_cmp(y).unwrap_or(O::Equal),
        (SqlValue::Real(x), SqlValue::Integer(y)) => x.partial_cmp(&(*y as f64)).unwrap_or(O::Equal),
        (SqlValue::Text(x), SqlValue::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (SqlValue::Blob(x), SqlValue::Blob(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Quotes an identifier.
pub fn quote(id: &str) -> String {
    format!("\"{}\"", id.replace('"', "\"\""))
}

/// Region-side log table: one entry per version a region accepted, in acceptance
/// order; pulls read it after a cursor. An entry is a pointer — table, key, and the
/// `(hlc, origin)` of the version that won — not a copy of the row: a puller reads the
/// row itself from the region's table, whose own `hlc`/`origin` columns are
/// authoritative (when the row has moved on to a newer version since, the puller gets
/// that newer version, which has its own later entry; applying it twice is a LWW
/// no-op). Not copying the row halves what a push writes per version. `data` is
/// always `''`: region files written before held a JSON copy of the row there, and
/// keeping the column (NOT NULL) lets both kinds of file take the same statements and
/// keep their pull cursors.
pub const REGION_LOG_DDL: &str = "CREATE TABLE IF NOT EXISTS _region_log (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, row_id TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL, pusher TEXT NOT NULL, data TEXT NOT NULL)";

/// Region-side identity: `epoch` is a random id written when the region's tables are
/// first created, so a home that remembers it tells a wiped or replaced region (another
/// epoch) from the one it synced with. A region restored from a backup keeps its epoch;
/// its log ending below a puller's cursor gives it away instead.
pub const REGION_META_DDL: &str = "CREATE TABLE IF NOT EXISTS _region_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)";

/// Writes the region's epoch (`?1`, a fresh id) unless it has one.
pub const REGION_EPOCH_INIT: &str = "INSERT INTO _region_meta (key, value) VALUES ('epoch', ?1) ON CONFLICT(key) DO NOTHING";

/// Gives the region a new epoch (`?1`): a node that found the region restored from
/// an older copy does this before re-seeding it, so every other node sees a new
/// identity and re-seeds too (its own log-end check may come too late: the first
/// re-seed refills the log).
pub const REGION_EPOCH_SET: &str = "INSERT INTO _region_meta (key, value) VALUES ('epoch', ?1) \
    ON CONFLICT(key) DO UPDATE SET value = excluded.value";

/// Reads the region's epoch.
pub const REGION_EPOCH_READ: &str = "SELECT value FROM _region_meta WHERE key = 'epoch'";

/// Pull cursors of the nodes that pull from this region, recorded by each pull: the
/// region's log compaction keeps every entry some known puller has not passed yet.
pub const REGION_CURSORS_DDL: &str =
    "CREATE TABLE IF NOT EXISTS _region_cursors (puller TEXT PRIMARY KEY, seq INTEGER NOT NULL, updated_at INTEGER NOT NULL)";

/// Records puller `?1`'s cursor `?2` at time `?3` (ms).
pub const REGION_CURSOR_UPSERT: &str = "INSERT INTO _region_cursors (puller, seq, updated_at) VALUES (?1, ?2, ?3) \
    ON CONFLICT(puller) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at";

/// Reads the log entries of page `(?1, ?1 + ?2]` (a pull cursor and a page length)
/// that node `?3` did not write or push: its own entries stay in the region (the page
/// end, [`REGION_LOG_END`], moves the cursor past them). Most of a busy region's log is
/// the reader's own pushes; shipping them only to be skipped cost the region thread
/// more than the pushes did.
pub const REGION_LOG_PULL: &str = "SELECT seq, tbl, row_id, hlc, origin, pusher FROM _region_log \
    WHERE seq > ?1 AND seq <= ?1 + ?2 AND pusher <> ?3 AND origin <> ?3 ORDER BY seq";

/// The last log position (0 for an empty log); read in the same transaction as
/// [`REGION_LOG_PULL`].
pub const REGION_LOG_END: &str = "SELECT COALESCE(MAX(seq), 0) FROM _region_log";

/// One version of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowVersion {
    /// Table name.
    pub tbl: Arc<str>,
    /// `_changes.row_id` form of the primary key.
    pub row_id: String,
    /// The version's hybrid-clock stamp (first half of the LWW key).
    pub hlc: i64,
    /// Node that wrote the version (second half of the LWW key, tie-breaker).
    pub origin: String,
    /// Column names, in the order of `values`.
    pub columns: Arc<[String]>,
    /// Full row content.
    pub values: Vec<SqlValue>,
}

impl RowVersion {
    /// Builds a version from a full row read with `columns`.
    pub fn from_row(tbl: Arc<str>, row_id: String, columns: Arc<[String]>, values: Vec<SqlValue>) -> Option<Self> {
        let hi = columns.iter().position(|c| c == "hlc")?;
        let oi = columns.iter().position(|c| c == "origin")?;
        let hlc = values.get(hi)?.as_i64()?;
        let origin = values.get(oi)?.as_str()?.to_string();
        Some(RowVersion {
            tbl,
            row_id,
            hlc,
            origin,
            columns,
            values,
        })
    }

    /// The LWW key.
    pub fn key(&self) -> (i64, &str) {
        (self.hlc, self.origin.as_str())
    }

    /// Row content as a JSON object (`conflicts.winner` / `conflicts.loser`).
    ///
    /// Written straight to a string (no intermediate `Map`): keys in sorted order, as a
    /// `serde_json::Map` would emit them, values as `SqlValue::to_json` renders them.
    pub fn to_json(&self) -> String {
        let n = self.columns.len().min(self.values.len());
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_unstable_by(|&a, &b| self.columns[a].cmp(&self.columns[b]));
        let mut out: Vec<u8> = Vec::with_capacity(16 * n + 2);
        out.push(b'{');
        for (k, &i) in idx.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            let _ = serde_json::to_writer(&mut out, &self.columns[i]);
            out.push(b':');
            let mark = out.len();
            if serde_json::to_writer(&mut out, &self.values[i]).is_err() {
                out.truncate(mark);
                out.extend_from_slice(b"null");
            }
        }
        out.push(b'}');
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Content without the stamp, to tell a real conflict from a redelivery.
    pub fn same_content(&self, other: &RowVersion) -> bool {
        self.columns
            .iter()
            .zip(self.values.iter().zip(&other.values))
            .all(|(c, (a, b))| c == "hlc" || c == "origin" || a == b)
    }
}

/// Canonical 64-bit FNV-1a hash of a result set (type-tagged values, row by row).
pub fn content_hash(rows: &[Vec<SqlValue>]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut eat = |b: &[u8]| {
        for x in b {
            h ^= *x as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    for r in rows {
        for v in r {
            match v {
                SqlValue::Null => eat(b"n"),
                SqlValue::Integer(i) => {
                    eat(b"i");
                    eat(&i.to_le_bytes())
                }
                SqlValue::Real(f) => {
                    eat(b"r");
                    eat(&f.to_bits().to_le_bytes())
                }
                SqlValue::Text(s) => {
                    eat(b"t");
                    eat(&(s.len() as u64).to_le_bytes());
                    eat(s.as_bytes())
                }
                SqlValue::Blob(b) => {
                    eat(b"b");
                    eat(&(b.len() as u64).to_le_bytes());
                    eat(b)
                }
            }
        }
        eat(b"\n");
    }
    h
}

/// A host's per-table conflict hook. Called at the home node after LWW picked a winner;
/// returning `Some(values)` (full row, same columns) writes a *new* version with a
/// fresh stamp from this node, which then replicates and wins everywhere. Return `None`
/// to keep the LWW winner. It must be deterministic and return `None` when the winner
/// already equals what it would produce, or two nodes may keep re-resolving.
pub type Resolver = Arc<dyn Fn(&Conflict) -> Option<Vec<SqlValue>> + Send + Sync>;

/// A conflict, as shown to a [`Resolver`] and recorded in `conflicts`.
#[derive(Debug, Clone)]
pub struct Conflict {
    /// The version LWW kept.
    pub winner: RowVersion,
    /// The version LWW discarded (also written to `conflicts.loser`).
    pub loser: RowVersion,
}

/// The replicated tables and their resolvers, shared by every actor.
#[derive(Default)]
pub struct Registry {
    use_view: std::sync::atomic::AtomicBool,
    tables: RwLock<HashMap<String, Arc<TableSpec>>>,
    resolvers: RwLock<HashMap<String, Resolver>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("tables", &self.names()).finish()
    }
}

impl Registry {
    /// The store logs append-only inserts as rowid ranges (`_changes.rowid_lo/hi`).
    pub fn set_change_ranges(&self, on: bool) {
        self.use_view.store(on, std::sync::atomic::Ordering::SeqCst);
    }
    /// See [`Registry::set_change_ranges`].
    pub fn change_ranges(&self) -> bool {
        self.use_view.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// Adds or replaces a table.
    pub fn insert(&self, spec: TableSpec) {
        self.tables
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(spec.name.to_string(), Arc::new(spec));
    }
    /// The spec of a table, if replicated.
    pub fn get(&self, name: &str) -> Option<Arc<TableSpec>> {
        self.tables.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }
    /// Every replicated table, sorted by name.
    pub fn all(&self) -> Vec<Arc<TableSpec>> {
        let mut v: Vec<_> = self.tables.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
    /// Names of the replicated tables.
    pub fn names(&self) -> Vec<String> {
        self.all().iter().map(|t| t.name.to_string()).collect()
    }
    /// Sets a table's resolver.
    pub fn set_resolver(&self, table: &str, r: Resolver) {
        self.resolvers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(table.to_string(), r);
    }
    /// A table's resolver.
    pub fn resolver(&self, table: &str) -> Option<Resolver> {
        self.resolvers.read().unwrap_or_else(|p| p.into_inner()).get(table).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    fn spec() -> TableSpec {
        TableSpec {
            name: "kv".into(),
            columns: vec!["namespace", "key", "value", "hlc", "origin"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
                .into(),
            types: vec!["TEXT"; 5].into_iter().map(String::from).collect::<Vec<_>>().into(),
            pk: vec!["namespace".to_string(), "key".to_string()].into(),
            append_only: false,
        }
    }

    #[test]
    fn lay_out_maps_columns_by_name() {
        let s = spec();
        let vals = vec![
            SqlValue::Text("a".into()),
            SqlValue::Text("5".into()),
            SqlValue::Real(5.0),
            SqlValue::Integer(7),
            SqlValue::Text("n1".into()),
        ];
        assert_eq!(s.lay_out(&s.columns, vals.clone()), vals);
        // Another column order, an unknown column, a missing one.
        let cols: Vec<String> = ["origin", "extra", "key", "namespace", "hlc"]
            .iter()
            .map(|c| c.to_string())
            .collect();
        let got = s.lay_out(
            &cols,
            vec![
                SqlValue::Text("n1".into()),
                SqlValue::Integer(1),
                SqlValue::Text("5".into()),
                SqlValue::Text("a".into()),
                SqlValue::Integer(7),
            ],
        );
        let mut want = vals;
        want[2] = SqlValue::Null;
        assert_eq!(got, want);
        assert_eq!(s.pk_params("a\u{1f}b").unwrap().len(), 2);
        assert!(s.select_star_by_pk().ends_with("WHERE \"namespace\" = ?1 AND \"key\" = ?2"));
    }

    #[test]
    fn to_json_matches_map_rendering() {
        let s = spec();
        let v = RowVersion::from_row(
            s.name.clone(),
            "a\u{1f}b".into(),
            s.columns.clone(),
            vec![
                SqlValue::Text("a\"\n\u{1}é".into()),
                SqlValue::Real(0.1 + 0.2),
                SqlValue::Blob(vec![0, 255, 16]),
                SqlValue::Integer(-7),
                SqlValue::Text("n\"1".into()),
            ],
        )
        .unwrap();
        let mut m = serde_json::Map::new();
        for (c, x) in v.columns.iter().zip(&v.values) {
            m.insert(c.clone(), x.to_json());
        }
        assert_eq!(v.to_json(), Json::Object(m).to_string());
    }

    #[test]
    fn upsert_sql_has_lww_guard() {
        let s = spec();
        assert!(s.upsert_lww().contains("(excluded.hlc, excluded.origin) > (\"kv\".hlc"));
        assert!(!s.upsert().contains("WHERE"));
        let ddl = s.create_region_tables();
        assert!(ddl[0].contains("PRIMARY KEY (\"namespace\", \"key\")"));
        assert!(ddl[1].contains("\"_region_prev_kv\"") && ddl[1].contains("PRIMARY KEY (\"namespace\", \"key\", \"hlc\", \"origin\")"));
    }
}
