//! Seeded generators shared by the targets: a small RNG wrapper, a SQL grammar that
//! reaches what raw SQL may try (DDL on runtime and user tables, TEMP objects,
//! triggers whose bodies write internal tables, PRAGMA, ATTACH/DETACH, VACUUM INTO,
//! CTEs including recursive ones, heavy functions, FTS5 special inserts, several
//! statements in one call), search texts, and arbitrary JSON.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A seeded RNG with the helpers the grammars use. Everything a target generates comes
/// from one of these, so a seed replays the same inputs.
pub struct Gen {
    /// The generator (ChaCha12 via `StdRng`: reproducible for a given rand version).
    pub rng: StdRng,
}

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen {
            rng: StdRng::seed_from_u64(seed),
        }
    }
    /// A number in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.rng.random_range(0..n)
        }
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }
    pub fn pick<'a, T: ?Sized>(&mut self, xs: &[&'a T]) -> &'a T {
        xs[self.below(xs.len())]
    }
    pub fn u64(&mut self) -> u64 {
        self.rng.random()
    }
    /// A size: mostly small, sometimes large (up to 32 MiB: past the 16 MiB result cap,
    /// small enough not to exhaust a CI machine).
    pub fn size(&mut self) -> u64 {
        match self.below(10) {
            0..=4 => self.below(64) as u64,
            5 | 6 => self.below(100_000) as u64,
            7 => 1 << 20,
            8 => 17 << 20,
            _ => 32 << 20,
        }
    }
    /// An interesting integer literal.
    pub fn int_lit(&mut self) -> String {
        match self.below(12) {
            0 => "0".into(),
            1 => "-1".into(),
            2 => "9223372036854775807".into(),
            3 => "-9223372036854775808".into(),
            4 => "18446744073709551616".into(),
            5 => "4611686018427387904".into(),
            6 => "1e308".into(),
            7 => "0x7fffffffffffffff".into(),
            _ => self.below(1000).to_string(),
        }
    }
}

/// Tables the runtime owns (their schema and `_` tables' contents are protected).
pub const RUNTIME_TABLES: &[&str] = &[
    "knowledge",
    "knowledge_fts",
    "knowledge_fts_data",
    "knowledge_fts_idx",
    "knowledge_fts_docsize",
    "knowledge_fts_config",
    "conversations",
    "agent_metrics",
    "kv",
    "_changes",
    "_meta",
    "_sync_cursors",
    "_knowledge_touched",
    "_change_rows",
];
/// Tables the fuzz database gives the user (created in the template), and names the
/// grammar creates.
pub const USER_TABLES: &[&str] = &[
    "notes",
    "items",
    "big",
    "t1",
    "t2",
    "v1",
    "edge_replicas",
    "distributed_transactions",
];

/// Columns worth naming per table (unknown tables get `id`/`x`).
fn columns(t: &str) -> &'static [&'static str] {
    match t {
        "knowledge" => &[
            "id", "category", "topic", "content", "tags", "metadata", "deleted", "hlc", "origin", "rowid",
        ],
        "knowledge_fts" => &["topic", "content", "tags", "knowledge_fts", "rank", "rowid"],
        "kv" => &[
            "namespace",
            "key",
            "value",
            "version",
            "expires_at",
            "updated_at",
            "deleted",
            "hlc",
            "origin",
        ],
        "conversations" => &["id", "session_id", "role", "content", "hlc", "origin"],
        "agent_metrics" => &["id", "agent_id", "task_type", "duration_ms", "tokens_used", "hlc", "origin"],
        "_changes" => &["seq", "tbl", "row_id", "hlc", "origin", "rowid_lo", "rowid_hi"],
        "_meta" => &["key", "value"],
        "_sync_cursors" => &["region", "push_seq", "pull_seq"],
        "_knowledge_touched" => &["seq", "rid"],
        "notes" => &["id", "body", "n"],
        "items" => &["id", "name", "qty"],
        "big" => &["id", "v"],
        _ => &["id", "x"],
    }
}

fn table(g: &mut Gen) -> &'static str {
    if g.chance(0.55) {
        g.pick(RUNTIME_TABLES)
    } else {
        g.pick(USER_TABLES)
    }
}

fn schema_prefix(g: &mut Gen) -> &'static str {
    g.pick(&["", "", "", "main.", "temp.", "MAIN.", "\"main\"."])
}

fn quoted(g: &mut Gen, t: &str) -> String {
    match g.below(6) {
        0 => format!("\"{t}\""),
        1 => format!("[{t}]"),
        2 => format!("`{t}`"),
        3 => t.to_uppercase(),
        _ => t.to_string(),
    }
}

fn col(g: &mut Gen, t: &str) -> &'static str {
    let cs = columns(t);
    cs[g.below(cs.len())]
}

fn string_lit(g: &mut Gen) -> String {
    let s = g.pick(&[
        "x",
        "",
        "it''s",
        "hlc_hwm",
        "node_id",
        "4611686018427387904",
        "rebuild",
        "delete-all",
        "%.*c",
        "🦀",
        "a\u{0301}",
        "'; DROP TABLE kv; --",
        "\\x00",
    ]);
    format!("'{s}'")
}

/// A scalar expression over table `t`'s columns.
pub fn expr(g: &mut Gen, t: &str, depth: u32) -> String {
    let leaf = depth == 0 || g.chance(0.4);
    if leaf {
        return match g.below(8) {
            0 | 1 => g.int_lit(),
            2 => string_lit(g),
            3 => "NULL".into(),
            4 => g.pick(&["X'00ff'", "CAST(X'c328' AS TEXT)", "CAST(X'ff' AS TEXT)"]).into(),
            5 => "?".into(),
            _ => col(g, t).to_string(),
        };
    }
    let d = depth - 1;
    match g.below(16) {
        0 => format!("zeroblob({})", g.size()),
        1 => format!("randomblob({})", g.size()),
        2 => format!("printf('%.*c', {}, 'x')", g.size()),
        3 => format!("load_extension({})", string_lit(g)),
        4 => format!(
            "({} {} {})",
            expr(g, t, d),
            g.pick(&["+", "-", "*", "/", "%", "||", "<", "=", "AND", "OR", "<<"]),
            expr(g, t, d)
        ),
        5 => format!("(SELECT {} FROM {} LIMIT 1)", expr(g, "x", d), table(g)),
        6 => format!("CASE WHEN {} THEN {} ELSE {} END", expr(g, t, d), expr(g, t, d), expr(g, t, d)),
        7 => format!("CAST({} AS {})", expr(g, t, d), g.pick(&["TEXT", "INTEGER", "BLOB", "REAL"])),
        8 => format!(
            "{}({})",
            g.pick(&["hex", "length", "upper", "lower", "quote", "typeof", "abs", "json", "unicode", "likely"]),
            expr(g, t, d)
        ),
        9 => g
            .pick(&[
                "random()",
                "changes()",
                "last_insert_rowid()",
                "sqlite_version()",
                "total_changes()",
                "unixepoch()",
            ])
            .into(),
        10 => format!("replace({}, 'x', {})", expr(g, t, d), expr(g, t, d)),
        11 => format!("substr({}, {}, {})", expr(g, t, d), g.int_lit(), g.int_lit()),
        12 => format!("{} IN (SELECT {} FROM {})", expr(g, t, d), col(g, "kv"), table(g)),
        13 => format!("RAISE({}, 'fuzz')", g.pick(&["ABORT", "FAIL", "IGNORE", "ROLLBACK"])),
        14 => format!("json_extract({}, '$.a')", expr(g, t, d)),
        _ => "highlight(knowledge_fts, 0, '[', ']')".to_string(),
    }
}

fn where_clause(g: &mut Gen, t: &str) -> String {
    if g.chance(0.5) {
        format!(" WHERE {}", expr(g, t, 2))
    } else {
        String::new()
    }
}

fn cte(g: &mut Gen) -> String {
    match g.below(3) {
        0 => format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c{}) ",
            if g.chance(0.5) {
                format!(" LIMIT {}", g.size())
            } else {
                String::new()
            }
        ),
        1 => format!("WITH w AS (SELECT * FROM {}) ", table(g)),
        _ => format!("WITH w AS MATERIALIZED (DELETE FROM {} RETURNING *) ", table(g)),
    }
}

pub fn select(g: &mut Gen, depth: u32) -> String {
    let t = table(g);
    let mut s = String::new();
    if g.chance(0.25) {
        s.push_str(&cte(g));
    }
    s.push_str("SELECT ");
    let n = 1 + g.below(3);
    let cols: Vec<String> = (0..n).map(|_| expr(g, t, depth)).collect();
    s.push_str(&cols.join(", "));
    let from = match g.below(6) {
        0 => format!("{}{} a, {} b", schema_prefix(g), quoted(g, t), table(g)),
        1 => "c".into(),
        2 => "pragma_table_info('kv')".into(),
        3 => format!("{t} JOIN {} ON 1", table(g)),
        _ => format!("{}{}", schema_prefix(g), quoted(g, t)),
    };
    s.push_str(&format!(" FROM {from}"));
    s.push_str(&where_clause(g, t));
    if t == "knowledge_fts" && g.chance(0.5) {
        s.push_str(&format!(" AND knowledge_fts MATCH {}", string_lit(g)));
    }
    if g.chance(0.3) {
        s.push_str(&format!(" LIMIT {}", g.int_lit()));
    }
    s
}

fn insert(g: &mut Gen, t: &str) -> String {
    let verb = g.pick(&["INSERT", "INSERT OR REPLACE", "REPLACE", "INSERT OR IGNORE", "INSERT OR ABORT"]);
    let prefix = schema_prefix(g);
    if t == "knowledge_fts" && g.chance(0.6) {
        let cmd = g.pick(&[
            "rebuild",
            "delete-all",
            "optimize",
            "integrity-check",
            "merge=500",
            "automerge=0",
            "crisismerge=2",
            "usermerge=2",
            "pgsz=64",
        ]);
        return format!("INSERT INTO {prefix}knowledge_fts(knowledge_fts) VALUES('{cmd}')");
    }
    if t == "knowledge_fts" && g.chance(0.5) {
        return "INSERT INTO knowledge_fts(knowledge_fts, rank) VALUES('rank', 'bm25(1000.0)')".into();
    }
    let n = 1 + g.below(3);
    let cols: Vec<&str> = (0..n).map(|_| col(g, t)).collect();
    let body = if g.chance(0.3) {
        select(g, 1)
    } else {
        format!("VALUES ({})", (0..n).map(|_| expr(g, t, 1)).collect::<Vec<_>>().join(", "))
    };
    let mut s = format!("{verb} INTO {prefix}{} ({}) {body}", quoted(g, t), cols.join(", "));
    if g.chance(0.2) {
        s.push_str(&format!(" ON CONFLICT DO UPDATE SET {} = {}", col(g, t), expr(g, t, 1)));
    }
    if g.chance(0.2) {
        s.push_str(" RETURNING *");
    }
    s
}

fn update(g: &mut Gen, t: &str) -> String {
    format!(
        "UPDATE {}{}{} SET {} = {}{}{}",
        g.pick(&["", "OR REPLACE ", "OR IGNORE "]),
        schema_prefix(g),
        quoted(g, t),
        col(g, t),
        expr(g, t, 2),
        where_clause(g, t),
        if g.chance(0.2) { " RETURNING *" } else { "" }
    )
}

fn delete(g: &mut Gen, t: &str) -> String {
    format!("DELETE FROM {}{}{}", schema_prefix(g), quoted(g, t), where_clause(g, t))
}

/// A write statement as it may appear in a trigger body (no schema prefix: SQLite
/// refuses qualified names there, and this keeps most bodies valid).
fn trigger_step(g: &mut Gen) -> String {
    // Trigger bodies aim at the internal tables most of the time.
    let t = if g.chance(0.7) {
        g.pick(&[
            "_changes",
            "_meta",
            "_sync_cursors",
            "_knowledge_touched",
            "knowledge_fts",
            "kv",
            "knowledge",
        ])
    } else {
        table(g)
    };
    match g.below(7) {
        0 => "DELETE FROM _changes".into(),
        1 => "UPDATE _meta SET value='4611686018427387904' WHERE key='hlc_hwm'".into(),
        2 => "SELECT RAISE(ABORT, 'fuzz')".into(),
        3 => "INSERT INTO notes(body) SELECT count(*) FROM big a, big b, big c, big d".into(),
        4 => insert(g, t)
            .replace("main.", "")
            .replace("temp.", "")
            .replace("MAIN.", "")
            .replace("\"main\".", ""),
        5 => update(g, t)
            .replace("main.", "")
            .replace("temp.", "")
            .replace("MAIN.", "")
            .replace("\"main\".", ""),
        _ => delete(g, t)
            .replace("main.", "")
            .replace("temp.", "")
            .replace("MAIN.", "")
            .replace("\"main\".", ""),
    }
}

fn create_trigger(g: &mut Gen) -> String {
    let temp = g.pick(&["", "", "TEMP ", "TEMPORARY "]);
    let name = g.pick(&["tg1", "tg2", "_tg", "knowledge_fts_ai", "main.tg3", "temp.tg4"]);
    let on = table(g);
    let when = g.pick(&["BEFORE", "AFTER", "INSTEAD OF", ""]);
    let event = match g.below(4) {
        0 => "INSERT".to_string(),
        1 => "DELETE".to_string(),
        2 => format!("UPDATE OF {}", col(g, on)),
        _ => "UPDATE".to_string(),
    };
    let n = 1 + g.below(3);
    let body: Vec<String> = (0..n).map(|_| trigger_step(g)).collect();
    let cond = if g.chance(0.3) {
        format!(" WHEN {}", expr(g, "x", 1).replace('?', "1"))
    } else {
        String::new()
    };
    format!(
        "CREATE {temp}TRIGGER {}{name} {when} {event} ON {}{}{cond} BEGIN {}; END",
        if g.chance(0.3) { "IF NOT EXISTS " } else { "" },
        schema_prefix(g),
        quoted(g, on),
        body.join("; ")
    )
}

fn ddl(g: &mut Gen) -> String {
    let t = table(g);
    let temp = g.pick(&["", "", "", "TEMP ", "TEMPORARY "]);
    match g.below(14) {
        0 => format!(
            "CREATE {temp}TABLE {}{} (id INTEGER PRIMARY KEY, x)",
            schema_prefix(g),
            g.pick(&["t1", "t2", "_x", "kv2", "knowledge_fts_x"])
        ),
        1 => format!("CREATE {temp}TABLE {} AS {}", g.pick(&["t1", "t2", "_y"]), select(g, 1)),
        2 => format!(
            "DROP TABLE {}{}{}",
            if g.chance(0.5) { "IF EXISTS " } else { "" },
            schema_prefix(g),
            quoted(g, t)
        ),
        3 => format!(
            "ALTER TABLE {}{} RENAME TO {}",
            schema_prefix(g),
            quoted(g, t),
            g.pick(&["t9", "_t9", "kv"])
        ),
        4 => format!(
            "ALTER TABLE {}{} ADD COLUMN zz {}",
            schema_prefix(g),
            quoted(g, t),
            g.pick(&["", "DEFAULT 1", "NOT NULL DEFAULT (1/0)", "AS (1/0)"])
        ),
        5 => format!("ALTER TABLE {}{} DROP COLUMN {}", schema_prefix(g), quoted(g, t), col(g, t)),
        6 => format!(
            "ALTER TABLE {}{} RENAME COLUMN {} TO {}",
            schema_prefix(g),
            quoted(g, t),
            col(g, t),
            g.pick(&["zz", "hlc", "id"])
        ),
        7 => format!(
            "CREATE {}INDEX {}{}ix{} ON {}({}){}",
            if g.chance(0.4) { "UNIQUE " } else { "" },
            if g.chance(0.3) { "IF NOT EXISTS " } else { "" },
            schema_prefix(g),
            g.below(3),
            quoted(g, t),
            col(g, t),
            if g.chance(0.4) {
                format!(" WHERE {}", g.pick(&["1/0", "hlc > 0", "abs(-9223372036854775808)", "1"]))
            } else {
                String::new()
            }
        ),
        8 => format!(
            "DROP INDEX {}{}",
            schema_prefix(g),
            g.pick(&[
                "ix0",
                "ix1",
                "kv_by_expiry",
                "knowledge_by_hash",
                "conversations_by_session",
                "sqlite_autoindex_kv_1"
            ])
        ),
        9 => format!(
            "CREATE {temp}VIEW {}{} AS {}",
            schema_prefix(g),
            g.pick(&["v1", "_v", "knowledge_v"]),
            select(g, 1)
        ),
        10 => format!("DROP VIEW {}{}", schema_prefix(g), g.pick(&["v1", "_change_rows", "_v"])),
        11 => format!(
            "DROP TRIGGER {}{}",
            schema_prefix(g),
            g.pick(&["tg1", "tg2", "knowledge_fts_ai", "knowledge_fts_au", "knowledge_fts_ad"])
        ),
        12 => format!(
            "CREATE VIRTUAL TABLE {}{} USING {}",
            temp.replace("TEMPORARY ", "temp.").replace("TEMP ", "temp."),
            g.pick(&["vt", "_vt", "knowledge_fts2"]),
            g.pick(&[
                "fts5(a)",
                "fts5vocab(knowledge_fts, 'row')",
                "fts5vocab(main, knowledge_fts, 'instance')",
                "fts5(a, content='kv')"
            ])
        ),
        _ => format!("DROP TABLE IF EXISTS {}", g.pick(&["vt", "t1", "t2", "knowledge_fts", "_meta"])),
    }
}

fn pragma(g: &mut Gen) -> String {
    let name = g.pick(&[
        "writable_schema",
        "foreign_keys",
        "recursive_triggers",
        "journal_mode",
        "synchronous",
        "query_only",
        "trusted_schema",
        "user_version",
        "schema_version",
        "temp_store",
        "mmap_size",
        "cache_size",
        "max_page_count",
        "ignore_check_constraints",
        "defer_foreign_keys",
        "cell_size_check",
        "legacy_alter_table",
        "reverse_unordered_selects",
        "wal_checkpoint",
        "optimize",
        "integrity_check",
        "table_info",
        "function_list",
        "database_list",
        "incremental_vacuum",
        "shrink_memory",
        "soft_heap_limit",
        "hard_heap_limit",
        "busy_timeout",
    ]);
    match g.below(5) {
        0 => format!("PRAGMA {name}"),
        1 => format!(
            "PRAGMA {}{name} = {}",
            schema_prefix(g),
            g.pick(&["1", "0", "ON", "OFF", "WAL", "DELETE", "MEMORY", "-1", "9999999999"])
        ),
        2 => format!("PRAGMA {name}({})", g.pick(&["kv", "knowledge", "TRUNCATE", "1", "'_changes'"])),
        3 => format!("SELECT * FROM pragma_{name}{}", if g.chance(0.5) { "('kv')" } else { "" }),
        _ => format!("PRAGMA temp.{name} = 1"),
    }
}

fn misc(g: &mut Gen, dir: &str) -> String {
    match g.below(12) {
        0 => format!("ATTACH '{dir}/other.db' AS aux"),
        1 => "ATTACH ':memory:' AS aux".into(),
        2 => format!("ATTACH 'file:{dir}/x.db?mode=rwc' AS {}", g.pick(&["aux", "temp", "main"])),
        3 => "DETACH aux".into(),
        4 => format!("VACUUM INTO '{dir}/vac{}.db'", g.below(3)),
        5 => "VACUUM".into(),
        6 => g.pick(&["REINDEX", "ANALYZE", "REINDEX kv", "ANALYZE knowledge"]).into(),
        7 => g
            .pick(&["BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT s", "RELEASE s", "END", "BEGIN IMMEDIATE"])
            .into(),
        8 => "SELECT load_extension('/nonexistent')".into(),
        9 => format!("SELECT writefile('{dir}/w', 'x')"),
        10 => "SELECT fts5_source_id()".into(),
        _ => format!("SELECT * FROM knowledge_fts WHERE knowledge_fts MATCH {}", string_lit(g)),
    }
}

/// One SQL text. `dir` is a scratch directory for ATTACH/VACUUM INTO targets.
pub fn sql(g: &mut Gen, dir: &str) -> String {
    let t = table(g);
    let mut s = match g.below(20) {
        0..=2 => select(g, 2),
        3 | 4 => insert(g, t),
        5 | 6 => update(g, t),
        7 => delete(g, t),
        8..=10 => create_trigger(g),
        11..=13 => ddl(g),
        14 | 15 => pragma(g),
        16 | 17 => misc(g, dir),
        18 => format!(
            "{}{}",
            cte(g),
            g.pick(&["SELECT 1", "SELECT count(*) FROM c", "INSERT INTO notes(body) SELECT x FROM c"])
        ),
        _ => format!("{}; {}", sql_simple(g), sql_simple(g)),
    };
    // Decorations SQLite's tokenizer must see through.
    match g.below(12) {
        0 => s = format!("/* c */ {s}"),
        1 => s.push_str(" -- tail"),
        2 => s.push(';'),
        3 => s.push_str(";;  "),
        4 => s = s.to_lowercase(),
        5 => s = format!("\n\t{s}\n"),
        _ => {}
    }
    s
}

fn sql_simple(g: &mut Gen) -> String {
    match g.below(4) {
        0 => "SELECT 1".into(),
        1 => "DELETE FROM _changes".into(),
        2 => "INSERT INTO notes(body) VALUES ('x')".into(),
        _ => "DROP TABLE knowledge_fts".into(),
    }
}

/// A user search text: words of the corpus, FTS5 syntax, quotes, unicode oddities, very
/// long or control-character input.
pub fn search_text(g: &mut Gen, words: &[&str]) -> String {
    let n = g.below(8);
    let mut s = String::new();
    for i in 0..=n {
        if i > 0 {
            s.push_str(g.pick(&[" ", " ", "  ", "\t", "-", ",", "\n", "", "\u{3000}"]));
        }
        let piece: String = match g.below(22) {
            0..=8 => words[g.below(words.len())].to_string(),
            9 => "\"".into(),
            10 => format!("\"{} {}\"", words[g.below(words.len())], words[g.below(words.len())]),
            11 => format!("{}*", &words[g.below(words.len())]),
            12 => g.pick(&["AND", "OR", "NOT", "NEAR", "NEAR(a b, 2)", "and", "or"]).into(),
            13 => g
                .pick(&[
                    "(",
                    ")",
                    "^",
                    "*",
                    ":",
                    "+",
                    "{topic}",
                    "topic:",
                    "content :",
                    "-content:x",
                    "{topic content}:",
                ])
                .into(),
            14 => g
                .pick(&["\u{0}", "\u{1}", "\u{7f}", "\u{200b}", "\u{feff}", "\u{fffd}", "\u{10ffff}"])
                .into(),
            15 => g.pick(&["🦀", "e\u{0301}", "ǅ", "ß", "İ", "ﬁ", "Σς", "日本語", "١٢٣"]).into(),
            16 => "x".repeat(1 + g.below(3000)),
            17 => g.pick(&["'", "''", "\\", "%", "_", "[", "]", "$.a", "%s"]).into(),
            18 => g.int_lit(),
            19 => "a ".repeat(40),
            20 => words[g.below(words.len())].to_uppercase(),
            _ => {
                let n = 1 + g.below(6);
                (0..n).map(|_| char::from_u32(g.below(0x3000) as u32).unwrap_or('?')).collect()
            }
        };
        s.push_str(&piece);
    }
    s
}

/// Arbitrary JSON, up to `depth` levels deep; `strings` seeds the string values.
pub fn json(g: &mut Gen, depth: u32, strings: &dyn Fn(&mut Gen) -> String) -> serde_json::Value {
    use serde_json::{json, Value};
    let leaf = depth == 0 || g.chance(0.5);
    if leaf {
        return match g.below(12) {
            0 => Value::Null,
            1 => json!(g.chance(0.5)),
            2 => json!(g.u64() as i64),
            3 => json!(g.below(100)),
            4 => json!(u64::MAX),
            5 => json!(i64::MIN),
            6 => json!(-1),
            7 => json!(1e308),
            8 => json!(-0.0),
            9 => json!(0.5),
            _ => Value::String(strings(g)),
        };
    }
    if g.chance(0.5) {
        Value::Array((0..g.below(5)).map(|_| json(g, depth - 1, strings)).collect())
    } else {
        let mut m = serde_json::Map::new();
        for _ in 0..g.below(5) {
            let k = strings(g);
            m.insert(k, json(g, depth - 1, strings));
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_inputs_and_the_grammar_reaches_every_family() {
        let run = |seed| {
            let mut g = Gen::new(seed);
            (0..2000).map(|_| sql(&mut g, "/tmp/x")).collect::<Vec<_>>()
        };
        let a = run(5);
        assert_eq!(a, run(5));
        assert_ne!(a, run(6));
        let all = a.join("\n").to_uppercase();
        for want in [
            "CREATE TEMP",
            "TRIGGER",
            "DROP TABLE",
            "ALTER TABLE",
            "CREATE UNIQUE INDEX",
            "PRAGMA",
            "ATTACH",
            "DETACH",
            "VACUUM INTO",
            "WITH RECURSIVE",
            "ZEROBLOB(",
            "RANDOMBLOB(",
            "PRINTF(",
            "LOAD_EXTENSION(",
            "'DELETE-ALL'",
            "_CHANGES",
            "_META",
            "KNOWLEDGE_FTS",
            "BEGIN",
            "; ",
        ] {
            assert!(all.contains(want), "the grammar never produced {want}");
        }
    }
}
