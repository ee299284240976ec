//! Target `guard`: SQL from the grammar in `gen` through the real raw-SQL path of a real
//! store (`Store::execute_sql` / `Store::read_sql` on a temporary libSQL file, the path
//! `execute_query` / `execute_read_only_query` take), checked against:
//!
//! - no panic anywhere in the process, and every call returns within the time limit;
//! - the runtime's schema (every `sqlite_master` row naming a runtime table, in the name
//!   or the table it is on) is unchanged, and no TEMP object appears;
//! - `_meta` is unchanged but for `hlc_hwm`, which only moves forward and never past
//!   the wall clock plus the clock's allowed drift; `_changes` and `_knowledge_touched`
//!   are append-only; `_sync_cursors` is unchanged; the FTS index passes its
//!   integrity check;
//! - a statement that was refused or failed, or ran on the read path, changed nothing
//!   at all (every table's rows and both schemas are as before: nothing half-applied);
//! - an accepted write changed rows of a replicated table only with a matching change
//!   log entry (mutable tables: a new entry with the row's new stamp; append-only tables:
//!   a range covering the new row; no rewrite or hard delete of any row);
//! - a result is at most the result byte cap (16 MiB);
//! - typed writes (kv_set, add_knowledge, record_metric, add_conversation) still succeed
//!   within 5 s afterwards.
//!
//! Snapshots are read on the writer's own connection (a `transact` op), so the writer's
//! TEMP schema is seen too. A failure is minimised by replaying subsets of the episode's
//! statements on a fresh copy of the template file.

use crate::gen::{self, Gen, RUNTIME_TABLES};
use crate::{take_panics, Finding, Opts, Report};
use edgeswarm::{Durability, Knowledge, Limits, Message, Metric, QueryResult, SqlValue, Swarm};
use edgeswarm_store::raw::{Conn, OpenFlags};
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Statements per episode before the file is reset from the template.
const EPISODE: usize = 40;
/// The query time limit the fuzz store runs with (short: runaway statements are common).
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a call may take before it counts as a hang.
const CALL_BOUND: Duration = Duration::from_secs(10);
/// How long a typed write may take afterwards.
const TYPED_BOUND: Duration = Duration::from_secs(5);
/// Result byte cap issue #12 asks for (default 16 MiB), with slack for row overhead.
const RESULT_CAP: usize = 17 << 20;

/// One statement of an episode, replayable.
#[derive(Debug, Clone)]
struct Step {
    /// The SQL text.
    sql: String,
    /// Sent to `read_sql` (the read-only tool) instead of `execute_sql`.
    read: bool,
    /// Bound parameters.
    params: Vec<SqlValue>,
}

impl Step {
    fn line(&self) -> String {
        let p = if self.params.is_empty() {
            String::new()
        } else {
            format!("  -- params {:?}", self.params)
        };
        format!("{}: {}{p}", if self.read { "read" } else { "execute" }, self.sql.replace('\n', " "))
    }
}

type Row = [String; 4];

/// What the invariants compare, read on the writer's connection.
#[derive(Debug, Clone, Default, PartialEq)]
struct Snap {
    /// `main.sqlite_master` rows: type, name, tbl_name, sql.
    main_schema: Vec<Row>,
    /// `temp.sqlite_master` rows of the writer's connection.
    temp_schema: Vec<Row>,
    /// Every ordinary table of main: row count and a hash of its rows.
    tables: BTreeMap<String, (usize, u64)>,
    /// `_meta` as key → value.
    meta: BTreeMap<String, String>,
    /// `_changes` rows by seq (the row as text).
    changes: BTreeMap<i64, String>,
    /// `_sync_cursors`, as text.
    cursors: String,
    /// `_knowledge_touched`: seq → rid.
    touched: BTreeMap<i64, i64>,
    /// Replicated tables: table → primary key → (rowid, hlc, row hash).
    rep: BTreeMap<&'static str, BTreeMap<String, (i64, i64, u64)>>,
    /// FTS5 `integrity-check` failure, if any.
    fts: Option<String>,
    /// Why the runtime tables could not be read (a dropped or altered table), if so.
    broken: Option<String>,
}

/// The runtime's own objects: `_` names, the runtime tables, the FTS shadow tables
/// (`knowledge_fts_*`), and the indexes and triggers the migrations create.
fn is_runtime(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const OWN: &[&str] = &[
        "knowledge_by_category",
        "knowledge_by_hash",
        "conversations_by_session",
        "kv_by_expiry",
        "sqlite_autoindex_kv_1",
        "sqlite_autoindex_knowledge_1",
        "sqlite_autoindex_conversations_1",
        "sqlite_autoindex_agent_metrics_1",
    ];
    n.starts_with('_')
        || n.starts_with("sqlite_autoindex__")
        || n.starts_with("knowledge_fts")
        || RUNTIME_TABLES.contains(&n.as_str())
        || OWN.contains(&n.as_str())
}

fn hash_rows(rows: &[Vec<SqlValue>]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for r in rows {
        format!("{r:?}").hash(&mut h);
    }
    h.finish()
}

fn text(v: &SqlValue) -> String {
    match v {
        SqlValue::Text(s) => s.clone(),
        SqlValue::Null => String::new(),
        other => format!("{other:?}"),
    }
}

fn qi(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// (table, primary key expression, append-only)
const REPLICATED: &[(&str, &str, bool)] = &[
    ("knowledge", "id", false),
    ("kv", "namespace || char(31) || key", false),
    ("agent_metrics", "id", true),
    ("conversations", "id", true),
];

/// Rows of `sql` on the raw read-only connection (TEXT read lossily, like the guard's
/// own reads: a statement may store TEXT that is not UTF-8).
fn rows(conn: &Conn, sql: &str) -> Result<Vec<Vec<SqlValue>>, String> {
    let (stmt, _) = conn.prepare(sql).map_err(|e| e.message)?;
    let Some(mut stmt) = stmt else { return Ok(Vec::new()) };
    let n = stmt.column_count();
    let mut out = Vec::new();
    while stmt.step().map_err(|e| e.message)? {
        out.push((0..n).map(|i| stmt.column_value(i)).collect());
    }
    Ok(out)
}

/// What only the writer's connection can see: its TEMP schema, and the FTS check.
fn writer_side(ctx: &mut edgeswarm_store::TxCtx<'_>) -> edgeswarm_store::Result<(Vec<Row>, Option<String>)> {
    let q = ctx.query(
        "SELECT type, name, tbl_name, sql FROM temp.sqlite_master ORDER BY type, name",
        vec![],
    )?;
    let temp = q
        .rows
        .iter()
        .map(|r| [text(&r[0]), text(&r[1]), text(&r[2]), text(&r[3])])
        .collect();
    let fts = ctx
        // rank 1: also check the index against the content table (external content).
        .execute(
            "INSERT INTO knowledge_fts(knowledge_fts, rank) VALUES('integrity-check', 1)",
            vec![],
        )
        .err()
        .map(|e| e.to_string());
    Ok((temp, fts))
}

/// Reads the file's contents on `conn` (committed state: the writer is idle here).
fn contents(conn: &Conn, s: &mut Snap) -> Result<(), String> {
    for r in s.main_schema.clone() {
        if r[0] == "table" && !r[3].to_ascii_uppercase().starts_with("CREATE VIRTUAL") {
            let mut rs = rows(conn, &format!("SELECT * FROM main.{}", qi(&r[1])))?;
            rs.sort_by_key(|r| format!("{r:?}"));
            s.tables.insert(r[1].clone(), (rs.len(), hash_rows(&rs)));
        }
    }
    for r in rows(conn, "SELECT key, value FROM _meta")? {
        s.meta.insert(text(&r[0]), text(&r[1]));
    }
    for r in rows(conn, "SELECT seq, * FROM _changes")? {
        s.changes.insert(r[0].as_i64().unwrap_or(-1), format!("{:?}", &r[1..]));
    }
    s.cursors = format!("{:?}", rows(conn, "SELECT * FROM _sync_cursors ORDER BY 1")?);
    for r in rows(conn, "SELECT seq, rid FROM _knowledge_touched")? {
        s.touched.insert(r[0].as_i64().unwrap_or(-1), r[1].as_i64().unwrap_or(-1));
    }
    for (t, pk, _) in REPLICATED {
        let m = rows(conn, &format!("SELECT rowid, {pk}, hlc, * FROM {t}"))?
            .iter()
            .map(|r| {
                (
                    text(&r[1]),
                    (
                        r[0].as_i64().unwrap_or(0),
                        r[2].as_i64().unwrap_or(0),
                        hash_rows(std::slice::from_ref(r)),
                    ),
                )
            })
            .collect();
        s.rep.insert(t, m);
    }
    Ok(())
}

/// A snapshot: the writer's TEMP schema and FTS check through a typed `transact` op
/// (which also shows the writer still takes typed work), the rest read on `conn`.
async fn snapshot(swarm: &Swarm, conn: &Conn) -> Result<Snap, String> {
    let op = swarm.store().transact(writer_side);
    let (temp, fts) = match tokio::time::timeout(CALL_BOUND, op).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Err(format!("the snapshot (a typed transact op) failed: {e}")),
        Err(_) => return Err("the snapshot (a typed transact op) did not finish within 10 s".into()),
    };
    let mut s = Snap {
        temp_schema: temp,
        fts,
        ..Snap::default()
    };
    let schema = rows(conn, "SELECT type, name, tbl_name, sql FROM main.sqlite_master ORDER BY type, name")?;
    s.main_schema = schema
        .iter()
        .map(|r| [text(&r[0]), text(&r[1]), text(&r[2]), text(&r[3])])
        .collect();
    // The rest reads the runtime's tables; a statement that dropped or changed one makes
    // it fail, which the checks report after naming the schema change.
    if let Err(e) = contents(conn, &mut s) {
        s.broken = Some(e);
    }
    Ok(s)
}

/// The invariants between two snapshots around one statement.
fn check(b: &Snap, a: &Snap, accepted: bool, read: bool) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let rt = |rows: &[Row]| -> Vec<Row> { rows.iter().filter(|r| is_runtime(&r[1]) || is_runtime(&r[2])).cloned().collect() };
    let (rb, ra) = (rt(&b.main_schema), rt(&a.main_schema));
    if rb != ra {
        let added: Vec<String> = ra
            .iter()
            .filter(|r| !rb.contains(r))
            .map(|r| format!("+{} {} on {}", r[0], r[1], r[2]))
            .collect();
        let gone: Vec<String> = rb
            .iter()
            .filter(|r| !ra.contains(r))
            .map(|r| format!("-{} {} on {}", r[0], r[1], r[2]))
            .collect();
        out.push(("runtime-schema-changed".into(), format!("{} {}", added.join(", "), gone.join(", "))));
    }
    if a.temp_schema != b.temp_schema && !a.temp_schema.is_empty() {
        let on_rt = a.temp_schema.iter().any(|r| is_runtime(&r[2]));
        let objs: Vec<String> = a.temp_schema.iter().map(|r| format!("{} {} on {}", r[0], r[1], r[2])).collect();
        out.push((
            if on_rt { "temp-object-on-runtime-table" } else { "temp-object" }.into(),
            format!("TEMP objects on the writer's connection: {}", objs.join(", ")),
        ));
    }
    if let (None, Some(e)) = (&b.broken, &a.broken) {
        out.push(("store-broken".into(), format!("the runtime's tables cannot be read: {e}")));
        return out;
    }
    let strip = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .filter(|(k, _)| *k != "hlc_hwm")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    if strip(&b.meta) != strip(&a.meta) {
        out.push(("meta-changed".into(), format!("_meta {:?} -> {:?}", b.meta, a.meta)));
    }
    let hw = |m: &BTreeMap<String, String>| m.get("hlc_hwm").and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let now_ms = edgeswarm::now_millis() as u64;
    if hw(&a.meta) < hw(&b.meta) || edgeswarm::Hlc::from_i64(hw(&a.meta)).millis() > now_ms + 120_000 {
        out.push(("hlc-hwm-moved".into(), format!("hlc_hwm {} -> {}", hw(&b.meta), hw(&a.meta))));
    }
    let bmax = b.changes.keys().next_back().copied().unwrap_or(0);
    for (seq, row) in &b.changes {
        if a.changes.get(seq) != Some(row) {
            out.push((
                "change-log-rewritten".into(),
                format!(
                    "_changes seq {seq} was {row}, now {:?} ({} -> {} entries)",
                    a.changes.get(seq),
                    b.changes.len(),
                    a.changes.len()
                ),
            ));
            break;
        }
    }
    if b.tables.get("knowledge_fts_config") != a.tables.get("knowledge_fts_config") {
        out.push((
            "fts-config-changed".into(),
            "knowledge_fts_config changed (ranking or index settings for everyone)".into(),
        ));
    }
    if b.cursors != a.cursors {
        out.push(("sync-cursors-changed".into(), format!("{} -> {}", b.cursors, a.cursors)));
    }
    if b.touched.iter().any(|(k, v)| a.touched.get(k) != Some(v)) {
        out.push((
            "knowledge-touched-rewritten".into(),
            format!("{} -> {} entries", b.touched.len(), a.touched.len()),
        ));
    }
    if b.fts.is_none() {
        if let Some(e) = &a.fts {
            out.push(("fts-index-broken".into(), e.clone()));
        }
    }
    if !accepted || read {
        let what = if read { "read-path-changed-something" } else { "half-applied" };
        for (t, v) in &b.tables {
            if a.tables.get(t) != Some(v) {
                out.push((format!("{what}:{t}"), format!("table {t}: {:?} -> {:?}", v, a.tables.get(t))));
            }
        }
        for t in a.tables.keys() {
            if !b.tables.contains_key(t) {
                out.push((format!("{what}:{t}"), format!("table {t} appeared")));
            }
        }
        if b.main_schema != a.main_schema {
            out.push((format!("{what}:schema"), "main schema changed".into()));
        }
        return out;
    }
    let new_entries: Vec<&String> = a.changes.range(bmax + 1..).map(|(_, r)| r).collect();
    for (t, _, append_only) in REPLICATED {
        let (Some(rb), Some(ra)) = (b.rep.get(t), a.rep.get(t)) else {
            continue;
        };
        for (pk, (rowid, hlc, h)) in ra {
            let old = rb.get(pk);
            if old.map(|o| o.2) == Some(*h) {
                continue;
            }
            if edgeswarm::Hlc::from_i64(*hlc).millis() > now_ms + 120_000 {
                out.push((
                    format!("far-future-stamp:{t}"),
                    format!("row {pk:?} of {t} carries hlc {hlc}, far past the wall clock"),
                ));
                break;
            }
            let logged = if *append_only {
                old.is_none()
                    && new_entries.iter().any(|e| {
                        let e = e.as_str();
                        e.contains(&format!("Text(\"{t}\")")) && range_covers(e, *rowid)
                    })
            } else {
                old.is_none_or(|o| *hlc > o.1)
                    && new_entries
                        .iter()
                        .any(|e| e.contains(&format!("Text(\"{t}\")")) && e.contains(&format!("Integer({hlc})")))
            };
            if !logged {
                out.push((
                    format!("unlogged-change:{t}"),
                    format!(
                        "row {pk:?} (rowid {rowid}, hlc {hlc}) of {t} {} without a change-log entry with its stamp (new entries: {new_entries:?})",
                        if old.is_some() { "changed" } else { "appeared" }
                    ),
                ));
                break;
            }
        }
        if let Some(pk) = rb.keys().find(|k| !ra.contains_key(*k)) {
            out.push((
                format!("unlogged-delete:{t}"),
                format!("row {pk:?} of {t} was hard-deleted (a delete cannot replicate)"),
            ));
        }
    }
    out
}

/// Whether a `_changes` row (as text: seq, tbl, row_id, hlc, origin, rowid_lo,
/// rowid_hi) covers `rowid`.
fn range_covers(entry: &str, rowid: i64) -> bool {
    let ints: Vec<i64> = entry
        .split("Integer(")
        .skip(1)
        .filter_map(|s| s.split(')').next().and_then(|n| n.parse().ok()))
        .collect();
    matches!(ints.as_slice(), [_, _, lo, hi] if *lo <= rowid && rowid <= *hi)
}

/// Typed writes that must keep working. `all`: every kind, else one by `i`.
async fn typed_writes(swarm: &Swarm, i: usize, all: bool) -> Result<(), (String, String, bool)> {
    let kinds: Vec<usize> = if all { vec![0, 1, 2, 3] } else { vec![i % 4] };
    for k in kinds {
        let name = ["kv_set", "add_knowledge", "record_metric", "add_conversation"][k];
        let fut = async {
            match k {
                0 => swarm
                    .kv_set("fuzz", &format!("k{}", i % 7), serde_json::json!(i), None)
                    .await
                    .map(|_| ()),
                1 => swarm
                    .add_knowledge(Knowledge::new(
                        "fuzz",
                        format!("topic {i}"),
                        format!("typed content number {i} agent memory"),
                    ))
                    .await
                    .map(|_| ()),
                2 => swarm.record_metric(Metric::new("fuzz-agent", "task", 1.5, 3)).await.map(|_| ()),
                _ => swarm
                    .add_conversation(Message::new("fuzz-session", "user", format!("message {i}")))
                    .await
                    .map(|_| ()),
            }
        };
        match tokio::time::timeout(TYPED_BOUND, fut).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err((format!("typed-write-failed:{name}"), e.to_string(), false)),
            Err(_) => {
                return Err((
                    format!("typed-write-hang:{name}"),
                    format!("{name} did not finish within {TYPED_BOUND:?}"),
                    true,
                ))
            }
        }
    }
    Ok(())
}

/// Typed reads over every runtime table (after an accepted write): they must answer,
/// with a typed result, whatever raw SQL stored (wrong types, TEXT that is not UTF-8).
async fn typed_reads(swarm: &Swarm) -> Result<(), (String, String, bool)> {
    for k in 0..5 {
        let name = ["kv_list", "list_knowledge", "get_conversations", "metrics", "search_knowledge"][k];
        let fut = async {
            match k {
                0 => swarm.kv_list("default", "", 100).await.map(|_| ()),
                1 => swarm.list_knowledge(None, 100).await.map(|_| ()),
                2 => swarm.get_conversations("session-1", None, 100).await.map(|_| ()),
                3 => swarm.metrics(None).await.map(|_| ()),
                _ => swarm.search_knowledge("agent memory", 10).await.map(|_| ()),
            }
        };
        match tokio::time::timeout(TYPED_BOUND, fut).await {
            Ok(Ok(())) => {}
            // The runtime's tables were changed under it: reported by the other checks.
            Ok(Err(e)) if e.kind() == edgeswarm::ErrorKind::SqlError => {}
            Ok(Err(e)) => return Err((format!("typed-read-failed:{name}"), e.to_string(), false)),
            Err(_) => {
                return Err((
                    format!("typed-read-hang:{name}"),
                    format!("{name} did not finish within {TYPED_BOUND:?}"),
                    true,
                ))
            }
        }
        let panics = take_panics();
        if !panics.is_empty() {
            return Err(("panic".into(), format!("in {name}: {}", panics.join(" | ")), false));
        }
    }
    Ok(())
}

fn result_bytes(q: &QueryResult) -> usize {
    q.rows
        .iter()
        .flatten()
        .map(|v| match v {
            SqlValue::Text(s) => s.len(),
            SqlValue::Blob(b) => b.len(),
            _ => 8,
        })
        .sum()
}

/// A raw read-only connection to the file, for snapshots.
fn raw_reader(path: &Path) -> Result<Conn, String> {
    let conn = Conn::open(&path.display().to_string(), OpenFlags::READ_ONLY | OpenFlags::NO_MUTEX).map_err(|e| e.message)?;
    conn.busy_timeout(5_000);
    Ok(conn)
}

async fn open(path: &Path) -> Result<Swarm, String> {
    let limits = Limits {
        query_timeout: QUERY_TIMEOUT,
        ..Limits::default()
    };
    Swarm::builder()
        .path(path)
        .durability(Durability::Normal)
        .limits(limits)
        .start()
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// The template: the migrated schema, a few rows in every runtime table, and user tables
/// (`notes`, `items`, and `big` with 400 rows so a 4-way cross join in a trigger runs
/// for hours).
async fn template(dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join("template.db");
    let s = open(&path).await?;
    let e = |e: edgeswarm::Error| e.to_string();
    for sql in [
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, n INTEGER DEFAULT 0)",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE, qty INTEGER)",
        "CREATE TABLE big (id INTEGER PRIMARY KEY, v)",
        "INSERT INTO big (v) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 400) SELECT x FROM c",
        "INSERT INTO notes (body) VALUES ('one'), ('two'), ('three')",
        "INSERT INTO items (name, qty) VALUES ('a', 1), ('b', 2)",
    ] {
        s.execute_sql(sql, vec![]).await.map_err(e)?;
    }
    for i in 0..4 {
        s.add_knowledge(Knowledge::new("notes", format!("topic {i}"), format!("agent memory entry {i} about regions")).tags(["t"]))
            .await
            .map_err(e)?;
        s.kv_set("default", &format!("key{i}"), serde_json::json!({"i": i}), None)
            .await
            .map_err(e)?;
        s.record_metric(Metric::new("agent-1", "code-analysis", 10.0 * i as f64, 100))
            .await
            .map_err(e)?;
        s.add_conversation(Message::new("session-1", "user", format!("hello {i}")))
            .await
            .map_err(e)?;
    }
    s.shutdown().await.map_err(e)?;
    Ok(path)
}

fn copy_template(template: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to.parent().unwrap_or(Path::new("."))).map_err(|e| e.to_string())?;
    std::fs::copy(template, to).map_err(|e| format!("copying the template: {e}"))?;
    for ext in ["-wal", "-shm"] {
        let mut from = template.as_os_str().to_owned();
        from.push(ext);
        let mut dst = to.as_os_str().to_owned();
        dst.push(ext);
        if Path::new(&from).exists() {
            std::fs::copy(&from, &dst).map_err(|e| format!("copying the template: {e}"))?;
        }
    }
    Ok(())
}

/// Counters for the summary line.
#[derive(Default)]
struct Counts {
    /// Statements that ran.
    accepted: u64,
    /// Statements the guard refused.
    refused: u64,
    /// Statements that failed otherwise (SQL errors, time limit).
    failed: u64,
}

/// Runs one step on `swarm` and checks it. `Err` carries (class, detail, terminal).
async fn step(
    swarm: &Swarm,
    conn: &Conn,
    s: &Step,
    i: usize,
    counts: &mut Counts,
    ignore: &[String],
) -> Result<(), (String, String, bool)> {
    crate::set_current(&s.line());
    let before = snapshot(swarm, conn).await.map_err(|e| ("store-broken".to_string(), e, false))?;
    let started = Instant::now();
    let call = async {
        if s.read {
            swarm.read_sql(s.sql.clone(), s.params.clone()).await
        } else {
            swarm.execute_sql(s.sql.clone(), s.params.clone()).await
        }
    };
    let res = match tokio::time::timeout(CALL_BOUND, call).await {
        Ok(r) => r,
        Err(_) => return Err(("hang".into(), format!("the call did not return within {CALL_BOUND:?}"), true)),
    };
    let took = started.elapsed();
    let panics = take_panics();
    if !panics.is_empty() {
        return Err(("panic".into(), panics.join(" | "), false));
    }
    // Generous slack: CI machines are shared and slow.
    if took > QUERY_TIMEOUT + Duration::from_secs(5) {
        return Err((
            "over-time-limit".into(),
            format!("the call took {took:?} with a {QUERY_TIMEOUT:?} limit"),
            false,
        ));
    }
    let accepted = res.is_ok();
    match &res {
        Ok(_) => counts.accepted += 1,
        Err(e) if e.kind() == edgeswarm::ErrorKind::SqlRefused => counts.refused += 1,
        Err(_) => counts.failed += 1,
    }
    if let Ok(q) = &res {
        let n = result_bytes(q);
        if n > RESULT_CAP {
            return Err((
                "result-over-byte-cap".into(),
                format!("a result of {n} bytes came back (cap 16 MiB)"),
                false,
            ));
        }
    }
    let after = snapshot(swarm, conn).await.map_err(|e| ("store-broken".to_string(), e, false))?;
    let found = check(&before, &after, accepted, s.read)
        .into_iter()
        .find(|(c, _)| !ignore.iter().any(|p| c.starts_with(p.as_str())));
    if let Some((c, d)) = found {
        let outcome = match &res {
            Ok(q) => format!("accepted (rows_affected {})", q.rows_affected),
            Err(e) => format!("{:?}: {e}", e.kind()),
        };
        return Err((c, format!("{d}; the statement was {outcome}"), false));
    }
    let wrote = accepted && !s.read;
    if wrote {
        typed_reads(swarm).await?;
    }
    typed_writes(swarm, i, wrote).await?;
    let panics = take_panics();
    if !panics.is_empty() {
        return Err(("panic".into(), panics.join(" | "), false));
    }
    Ok(())
}

/// Steps from a failure file: `execute: SQL` / `read: SQL` lines (no parameters).
fn parse_steps(text: &str) -> Vec<Step> {
    text.lines()
        .filter_map(|l| {
            let (read, sql) = if let Some(s) = l.strip_prefix("execute: ") {
                (false, s)
            } else {
                (true, l.strip_prefix("read: ")?)
            };
            let sql = sql.split("  -- params ").next().unwrap_or(sql);
            Some(Step {
                sql: sql.to_string(),
                read,
                params: Vec::new(),
            })
        })
        .collect()
}

fn gen_step(g: &mut Gen, dir: &str) -> Step {
    let sql = gen::sql(g, dir);
    let read = g.chance(0.3);
    let n = sql.matches('?').count();
    let params = if n > 0 || g.chance(0.05) {
        let k = if g.chance(0.8) { n } else { g.below(3) };
        (0..k)
            .map(|_| match g.below(5) {
                0 => SqlValue::Null,
                1 => SqlValue::Integer(g.u64() as i64),
                2 => SqlValue::Real(f64::from_bits(g.u64())),
                3 => SqlValue::Blob(vec![0; g.below(64)]),
                _ => SqlValue::Text("x".repeat(g.below(64))),
            })
            .collect()
    } else {
        Vec::new()
    };
    Step { sql, read, params }
}

/// Replays `steps` on a fresh copy of the template; the class of the first failure.
async fn replay(template: &Path, dir: &Path, n: usize, steps: &[Step], ignore: &[String]) -> Option<(String, String, bool)> {
    let path = dir.join(format!("replay-{n}")).join("home.db");
    copy_template(template, &path).ok()?;
    let swarm = open(&path).await.ok()?;
    let conn = raw_reader(&path).ok()?;
    let _ = take_panics();
    let mut counts = Counts::default();
    let mut found = None;
    for (i, s) in steps.iter().enumerate() {
        if let Err(f) = step(&swarm, &conn, s, i, &mut counts, ignore).await {
            found = Some(f);
            break;
        }
    }
    if !found.as_ref().is_some_and(|f| f.2) {
        let _ = tokio::time::timeout(Duration::from_secs(10), swarm.shutdown()).await;
        let _ = std::fs::remove_dir_all(path.parent().unwrap_or(dir));
    }
    found
}

/// Drops statements that are not needed to show `class` (chunks, then one at a time).
async fn minimise(template: &Path, dir: &Path, steps: Vec<Step>, class: &str, budget: Duration, ignore: &[String]) -> Vec<Step> {
    let deadline = Instant::now() + budget;
    let mut cur = steps;
    let mut n = 0;
    // The last statement alone first: most findings need nothing else.
    if cur.len() > 1 {
        let last = vec![cur[cur.len() - 1].clone()];
        n += 1;
        if replay(template, dir, n, &last, ignore).await.is_some_and(|f| f.0 == class) {
            return last;
        }
    }
    let mut chunk = cur.len() / 2;
    while chunk >= 1 && Instant::now() < deadline {
        let mut i = 0;
        while i < cur.len() && cur.len() > 1 && Instant::now() < deadline {
            let mut trial = cur.clone();
            let end = (i + chunk).min(trial.len());
            trial.drain(i..end);
            n += 1;
            if !trial.is_empty() && replay(template, dir, n, &trial, ignore).await.is_some_and(|f| f.0 == class && !f.2) {
                cur = trial;
            } else {
                i += chunk;
            }
        }
        chunk /= 2;
    }
    cur
}

pub async fn run(opts: Opts) -> Report {
    let mut report = Report::default();
    let _ = take_panics();
    let template = match template(&opts.dir).await {
        Ok(p) => p,
        Err(e) => {
            report.findings.push(Finding {
                class: "setup".into(),
                detail: e,
                input: String::new(),
            });
            return report;
        }
    };
    if let Some(file) = &opts.replay {
        let steps = match std::fs::read_to_string(file) {
            Ok(t) => parse_steps(&t),
            Err(e) => {
                report.findings.push(Finding {
                    class: "setup".into(),
                    detail: format!("cannot read {}: {e}", file.display()),
                    input: String::new(),
                });
                return report;
            }
        };
        report.iterations = steps.len() as u64;
        let input = steps.iter().map(Step::line).collect::<Vec<_>>().join("\n");
        match replay(&template, &opts.dir, 0, &steps, &opts.ignore).await {
            Some((class, detail, _)) => report.findings.push(Finding { class, detail, input }),
            None => report.stats = "replayed: no invariant broken".into(),
        }
        return report;
    }
    let mut g = Gen::new(opts.seed);
    let mut counts = Counts::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut episode = 0usize;
    let mut i = 0usize;
    'episodes: while Instant::now() < opts.deadline {
        episode += 1;
        let edir = opts.dir.join(format!("ep{episode}"));
        let path = edir.join("home.db");
        if let Err(e) = copy_template(&template, &path) {
            report.findings.push(Finding {
                class: "setup".into(),
                detail: e,
                input: String::new(),
            });
            break;
        }
        let swarm = match open(&path).await {
            Ok(s) => s,
            Err(e) => {
                report.findings.push(Finding {
                    class: "setup".into(),
                    detail: e,
                    input: String::new(),
                });
                break;
            }
        };
        let conn = match raw_reader(&path) {
            Ok(c) => c,
            Err(e) => {
                report.findings.push(Finding {
                    class: "setup".into(),
                    detail: e,
                    input: String::new(),
                });
                break;
            }
        };
        let scratch = edir.display().to_string();
        let mut steps: Vec<Step> = Vec::new();
        for _ in 0..EPISODE {
            if Instant::now() >= opts.deadline {
                break;
            }
            let s = gen_step(&mut g, &scratch);
            steps.push(s.clone());
            i += 1;
            report.iterations += 1;
            if let Err((class, detail, terminal)) = step(&swarm, &conn, &s, i, &mut counts, &opts.ignore).await {
                if !terminal {
                    // Stop this swarm before replaying, so nothing of it (a late panic
                    // in a background task) is taken for the replay's.
                    let _ = tokio::time::timeout(Duration::from_secs(10), swarm.shutdown()).await;
                }
                let _ = take_panics();
                let fresh = seen.insert(class.clone());
                if fresh {
                    let kept = if terminal {
                        steps.clone()
                    } else {
                        minimise(&template, &opts.dir, steps.clone(), &class, opts.minimize, &opts.ignore).await
                    };
                    let input = kept.iter().map(Step::line).collect::<Vec<_>>().join("\n");
                    eprintln!("edgeswarm-fuzz guard: [{class}] {detail}\n  {}", input.replace('\n', "\n  "));
                    report.findings.push(Finding { class, detail, input });
                }
                if terminal || !opts.keep_going {
                    // A hung writer cannot be shut down; the process exits after the report.
                    break 'episodes;
                }
                break;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), swarm.shutdown()).await;
        let _ = std::fs::remove_dir_all(&edir);
    }
    report.stats = format!(
        "{} accepted, {} refused, {} failed, {} episodes",
        counts.accepted, counts.refused, counts.failed, episode
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_log_ranges_and_failure_files_parse() {
        let e = format!(
            "{:?}",
            [
                SqlValue::Integer(17),
                SqlValue::Text("agent_metrics".into()),
                SqlValue::Integer(99),
                SqlValue::Integer(5),
                SqlValue::Integer(8)
            ]
        );
        assert!(range_covers(&e, 5) && range_covers(&e, 8));
        assert!(!range_covers(&e, 9) && !range_covers(&e, 4));
        let steps = parse_steps("# class: x\nexecute: DELETE FROM kv\nread: SELECT 1  -- params [Null]\nnoise");
        assert_eq!(steps.len(), 2);
        assert!(!steps[0].read && steps[0].sql == "DELETE FROM kv");
        assert!(steps[1].read && steps[1].sql == "SELECT 1");
        assert_eq!(parse_steps(&steps[0].line())[0].sql, "DELETE FROM kv");
    }
}
