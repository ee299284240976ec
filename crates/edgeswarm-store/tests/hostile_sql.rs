//! Hostile raw SQL (issue #12): every statement an agent could send through
//! `execute_query` / `execute_read_only_query` to break or open the memory. For each:
//! it is refused or harmless, nothing internal changed (change log, clock high-water
//! mark, `_meta`, the runtime's schema, kv and the append-only rows), typed writes still
//! work within the time limit, and the store keeps answering.

use edgeswarm_core::{Message, Metric, StoreConfig};
use edgeswarm_store::{SqlValue, Store, StoreError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// User objects the cases create (everything else in the schema is the runtime's).
fn is_user_object(name: &str) -> bool {
    name == "notes" || name.starts_with("u_")
}

/// What must not change: the runtime's state as user SQL could reach it.
#[derive(Debug, PartialEq)]
struct Internal {
    /// Every change-log entry.
    changes: Vec<Vec<SqlValue>>,
    /// `_meta` but the clock's high-water mark (it moves with every commit).
    meta: Vec<Vec<SqlValue>>,
    /// The runtime's schema objects (type, name, table, SQL).
    schema: Vec<Vec<SqlValue>>,
    /// Every kv row with its stamps.
    kv: Vec<Vec<SqlValue>>,
    /// Every append-only row's id and stamps.
    appended: Vec<Vec<SqlValue>>,
}

async fn rows(s: &Store, sql: &str) -> Vec<Vec<SqlValue>> {
    s.read_sql(sql, vec![]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).rows
}

async fn internal(s: &Store) -> Internal {
    let schema = rows(s, "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name")
        .await
        .into_iter()
        .filter(|r| !is_user_object(r[1].as_str().unwrap_or("")) && !is_user_object(r[2].as_str().unwrap_or("")))
        .collect();
    Internal {
        changes: rows(s, "SELECT * FROM _changes ORDER BY seq").await,
        meta: rows(s, "SELECT key, value FROM _meta WHERE key <> 'hlc_hwm' ORDER BY key").await,
        schema,
        kv: rows(s, "SELECT * FROM kv ORDER BY namespace, key").await,
        appended: rows(
            s,
            "SELECT 'm', id, hlc, origin FROM agent_metrics UNION ALL SELECT 'c', id, hlc, origin FROM conversations ORDER BY 1, 2",
        )
        .await,
    }
}

/// A stamp no honest clock gives today: more than a day ahead of the wall clock.
fn far_future(hlc: i64) -> bool {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    hlc > (now_ms + 86_400_000) << 16
}

async fn hwm(s: &Store) -> i64 {
    let r = rows(s, "SELECT value FROM _meta WHERE key = 'hlc_hwm'").await;
    r.first().and_then(|r| r[0].as_str()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The invariants after a hostile statement: `before` is unchanged (the change log and
/// append-only rows may only have grown by `grown` statements' worth), the clock is
/// sane, typed writes work within the time limit, and reads answer.
async fn assert_intact(s: &Store, before: &Internal, case: &str, may_append: bool) {
    let after = internal(s).await;
    assert_eq!(after.meta, before.meta, "{case}: _meta changed");
    assert_eq!(after.schema, before.schema, "{case}: the runtime's schema changed");
    assert_eq!(after.kv, before.kv, "{case}: kv changed");
    assert!(
        after.changes.starts_with(&before.changes),
        "{case}: change-log entries were removed or edited"
    );
    if !may_append {
        assert_eq!(after.changes.len(), before.changes.len(), "{case}: change log grew");
        assert_eq!(after.appended, before.appended, "{case}: append-only rows changed");
    } else {
        for r in &before.appended {
            assert!(after.appended.contains(r), "{case}: an append-only row changed or vanished: {r:?}");
        }
    }
    for r in after.changes.iter().chain(after.appended.iter()) {
        for v in r {
            if let SqlValue::Integer(h) = v {
                assert!(!far_future(*h), "{case}: a far-future stamp was stored: {r:?}");
            }
        }
    }
    assert!(!far_future(hwm(s).await), "{case}: the clock's high-water mark moved to the future");
    typed_writes_work(s, case).await;
}

async fn typed_writes_work(s: &Store, case: &str) {
    let limit = s.config().limits.query_timeout + Duration::from_secs(5);
    tokio::time::timeout(limit, async {
        s.publish(Message::new("hostile", "user", format!("after {case}")))
            .await
            .unwrap_or_else(|e| panic!("{case}: add_conversation broke: {e}"));
        s.publish(Metric::new("agent", "hostile", 1.0, 1))
            .await
            .unwrap_or_else(|e| panic!("{case}: record_metric broke: {e}"));
        s.kv_set("hostile", "probe", serde_json::json!(case), None)
            .await
            .unwrap_or_else(|e| panic!("{case}: kv_set broke: {e}"));
        s.read_sql("SELECT 1", vec![])
            .await
            .unwrap_or_else(|e| panic!("{case}: reads broke: {e}"));
    })
    .await
    .unwrap_or_else(|_| panic!("{case}: typed writes did not finish within the time limit"));
}

fn refused(e: &StoreError) -> bool {
    matches!(e, StoreError::Refused(_) | StoreError::Sql(_) | StoreError::ReadOnly(_))
}

async fn open(dir: &tempfile::TempDir) -> Store {
    let mut cfg = StoreConfig::at(dir.path().join("home.db"));
    cfg.limits.query_timeout = Duration::from_millis(1_500);
    let s = Store::open(cfg).await.unwrap();
    // Some state to protect: change-log entries, kv rows, append-only rows.
    s.kv_set("ns", "k", serde_json::json!("v"), None).await.unwrap();
    s.kv_set("ns", "k2", serde_json::json!(2), None).await.unwrap();
    s.publish(Message::new("s", "user", "hello")).await.unwrap();
    s.publish(Metric::new("a", "t", 1.0, 1)).await.unwrap();
    s.execute_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", vec![])
        .await
        .unwrap();
    s.execute_sql("CREATE TABLE u_items (id INTEGER PRIMARY KEY, body TEXT)", vec![])
        .await
        .unwrap();
    s
}

/// Runs `sql` through `execute_sql` and checks it was refused (`Some(needle)`: and the
/// message says so) and left everything intact.
async fn refuse(s: &Store, sql: &str, needle: Option<&str>) {
    let before = internal(s).await;
    let r = s.execute_sql(sql, vec![]).await;
    match &r {
        Err(e) if refused(e) => {
            if let Some(n) = needle {
                assert!(e.to_string().to_lowercase().contains(n), "{sql}: {e}");
            }
        }
        other => panic!("{sql}: expected a refusal, got {other:?}"),
    }
    assert_intact(s, &before, sql, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_cases_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;

    // A user trigger that empties the change log and moves the clock: refused at CREATE
    // or when it fires; either way nothing is lost.
    let before = internal(&s).await;
    let created = s
        .execute_sql(
            "CREATE TRIGGER t AFTER INSERT ON notes BEGIN DELETE FROM _changes; \
             UPDATE _meta SET value = '4611686018427387904' WHERE key = 'hlc_hwm'; END",
            vec![],
        )
        .await;
    let fired = s.execute_sql("INSERT INTO notes (body) VALUES ('x')", vec![]).await;
    assert!(
        created.is_err() || fired.as_ref().is_err_and(refused),
        "the trigger was created and fired: {created:?} {fired:?}"
    );
    if let Err(e) = &fired {
        assert!(e.to_string().contains("_changes"), "the refusal names the table: {e}");
    }
    assert_intact(&s, &before, "trigger emptying _changes", false).await;
    // The user's own table still takes writes (with the trigger dropped if it exists).
    let _ = s.execute_sql("DROP TRIGGER IF EXISTS t", vec![]).await;
    s.execute_sql("INSERT INTO notes (body) VALUES ('y')", vec![]).await.unwrap();

    // DDL on the runtime's tables.
    for sql in [
        "CREATE TEMP TRIGGER u_t1 BEFORE INSERT ON main.knowledge BEGIN SELECT RAISE(ABORT, 'no'); END",
        "CREATE TRIGGER u_t2 BEFORE INSERT ON conversations BEGIN SELECT RAISE(ABORT, 'no'); END",
        "CREATE TEMP TRIGGER u_t3 BEFORE INSERT ON main._changes BEGIN SELECT RAISE(ABORT, 'no'); END",
        "CREATE INDEX u_i1 ON _changes(hlc) WHERE 1/0",
        "CREATE UNIQUE INDEX u_i2 ON kv(namespace)",
        "CREATE TRIGGER u_t4 AFTER INSERT ON agent_metrics BEGIN \
         SELECT count(*) FROM agent_metrics a, agent_metrics b, agent_metrics c; END",
        "DROP TABLE knowledge_fts",
    ] {
        refuse(&s, sql, None).await;
    }

    // Raw SQL skipping the change log.
    refuse(&s, "UPDATE kv SET value = '\"x\"', hlc = hlc + 1", Some("kv_set")).await;
    refuse(&s, "DELETE FROM kv", Some("kv_delete")).await;
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn found_cases_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let copy = dir.path().join("copy.db");
    let other = dir.path().join("other.db");
    let cases = [
        "INSERT INTO knowledge_fts(knowledge_fts) VALUES ('delete-all')",
        "INSERT INTO knowledge_fts(knowledge_fts, rank) VALUES ('rank', 'bm25(10.0, 1.0)')",
        "INSERT INTO knowledge_fts(knowledge_fts) VALUES ('rebuild')",
        "DELETE FROM knowledge_fts_data",
        "PRAGMA writable_schema = ON",
        "PRAGMA writable_schema",
        "PRAGMA foreign_keys = OFF",
        "PRAGMA journal_mode = OFF",
        "PRAGMA synchronous = OFF",
        "PRAGMA optimize",
        "PRAGMA wal_checkpoint(TRUNCATE)",
        "PRAGMA trusted_schema = ON",
        "UPDATE sqlite_master SET sql = 'CREATE TABLE kv(x)' WHERE name = 'kv'",
        "DELETE FROM sqlite_master WHERE name = 'kv_by_expiry'",
        &format!("VACUUM INTO '{}'", copy.display()),
        &format!("ATTACH DATABASE '{}' AS o", other.display()),
        "DETACH DATABASE main",
        "REPLACE INTO _meta (key, value) VALUES ('hlc_hwm', '4611686018427387904')",
        "INSERT OR REPLACE INTO _meta (key, value) VALUES ('node_id', 'stolen')",
        "WITH x AS (SELECT 1) DELETE FROM _changes WHERE 1",
        "DELETE FROM _changes WHERE seq IN (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 10) SELECT n FROM c)",
        "UPDATE _changes SET hlc = 4611686018427387904",
        "DELETE FROM _sync_cursors",
        "INSERT INTO _knowledge_touched (rid) VALUES (1)",
        "UPDATE agent_metrics SET tokens_used = 0",
        "DELETE FROM agent_metrics",
        "DELETE FROM conversations",
        "UPDATE conversations SET content = 'rewritten'",
        "INSERT INTO knowledge (id, category, topic, content) VALUES ('x', 'c', 't', 'raw')",
        "UPDATE knowledge SET content = 'x'",
        "DELETE FROM knowledge",
        "INSERT INTO kv (namespace, key, value, version, updated_at) VALUES ('ns', 'raw', '1', 1, 0)",
        "INSERT INTO kv (namespace, key, value, version, updated_at) VALUES ('ns', 'k', '1', 1, 0) \
         ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value",
        "ALTER TABLE kv ADD COLUMN x",
        "ALTER TABLE kv RENAME TO kv2",
        "ALTER TABLE _changes RENAME COLUMN hlc TO h",
        "DROP INDEX kv_by_expiry",
        "DROP TRIGGER knowledge_fts_ai",
        "DROP VIEW _change_rows",
        "DROP TABLE _changes",
        "DROP TABLE knowledge",
        "DROP TABLE edge_replicas",
        "CREATE TABLE _evil (x)",
        "CREATE TABLE knowledge_fts_evil (x)",
        "CREATE VIEW _evil AS SELECT 1",
        "CREATE TEMP TABLE kv (x)",
        "CREATE TEMP VIEW u_tv AS SELECT 1",
        "CREATE TEMP TABLE u_tt (x)",
        // A `temp.` schema name makes a TEMP object without the keyword (found by the
        // guard fuzzer).
        "CREATE TABLE temp.u_t3 (x)",
        "CREATE VIEW temp.u_v2 AS SELECT 1",
        "CREATE TRIGGER temp.u_tg4 BEFORE INSERT ON u_items BEGIN SELECT 1; END",
        "CREATE VIRTUAL TABLE temp.u_vt USING fts5(a)",
        "CREATE TABLE TEMP.u_t5 (x)",
        "CREATE TRIGGER _sync_u_items_ai AFTER INSERT ON u_items BEGIN DELETE FROM _changes; END",
        "CREATE TRIGGER u_t5 BEFORE UPDATE ON edge_replicas BEGIN SELECT RAISE(ABORT, 'no'); END",
        "CREATE INDEX u_i3 ON knowledge(content) WHERE 1/0",
        "CREATE INDEX u_i4 ON conflicts(id)",
        "ANALYZE kv",
        "INSERT INTO sqlite_stat1 VALUES ('kv', 'kv_by_expiry', '1 1')",
        "SELECT load_extension('libc.so.6')",
        "SELECT fts3_tokenizer('simple')",
        "BEGIN",
        "COMMIT",
        "SAVEPOINT s",
        "ROLLBACK",
        "SELECT 1; DELETE FROM _changes",
        "CREATE TABLE u_fk (ns TEXT, k TEXT, FOREIGN KEY (ns, k) REFERENCES kv (namespace, key))",
        "CREATE TABLE u_fk2 (id TEXT REFERENCES knowledge (id) ON DELETE RESTRICT)",
        "ALTER TABLE u_items ADD COLUMN k TEXT REFERENCES kv (key)",
        "ALTER TABLE u_items RENAME TO search_vec_1",
        "ALTER TABLE u_items RENAME TO _mine",
        "SELECT * FROM pragma_journal_mode('OFF')",
        "SELECT * FROM pragma_foreign_keys(0)",
        "SELECT * FROM pragma_writable_schema(1)",
    ];
    for sql in cases {
        refuse(&s, sql, None).await;
    }
    // Harmless: rebuilds the index from the table's own rows.
    let before = internal(&s).await;
    let _ = s.execute_sql("REINDEX kv_by_expiry", vec![]).await;
    assert_intact(&s, &before, "REINDEX", false).await;
    assert!(!copy.exists(), "VACUUM INTO wrote a copy of the memory");
    assert!(!other.exists(), "ATTACH created a file");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_inside_user_triggers_are_checked_like_top_level_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    // A view over an internal table is harmless to read; its INSTEAD OF trigger cannot
    // write the table behind it.
    s.execute_sql("CREATE VIEW u_v AS SELECT seq, hlc FROM _changes", vec![])
        .await
        .expect("a view over an internal table only reads");
    assert!(!rows(&s, "SELECT count(*) FROM u_v").await.is_empty());
    let triggers = [
        (
            "CREATE TRIGGER u_vt INSTEAD OF DELETE ON u_v BEGIN DELETE FROM _changes WHERE seq = old.seq; END",
            "DELETE FROM u_v",
        ),
        (
            "CREATE TRIGGER u_kv AFTER INSERT ON u_items BEGIN \
             INSERT INTO kv (namespace, key, value, version, updated_at) VALUES ('ns', 'k', '\"evil\"', 99, 0) \
             ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value; END",
            "INSERT INTO u_items (body) VALUES ('kv through a trigger')",
        ),
        (
            "CREATE TRIGGER u_m AFTER UPDATE ON u_items BEGIN UPDATE agent_metrics SET hlc = 4611686018427387904; END",
            "UPDATE u_items SET body = 'z'",
        ),
        (
            "CREATE TRIGGER u_le AFTER DELETE ON notes BEGIN SELECT load_extension('x'); END",
            "DELETE FROM notes",
        ),
        (
            "CREATE TRIGGER u_nested AFTER DELETE ON u_items BEGIN INSERT INTO notes (body) VALUES ('chain'); END",
            "DELETE FROM u_items",
        ),
    ];
    // The last one chains into `notes`, whose trigger writes the change log.
    s.execute_sql("CREATE TRIGGER u_n AFTER INSERT ON notes BEGIN DELETE FROM _meta; END", vec![])
        .await
        .expect("creating a trigger on a user table is allowed");
    s.execute_sql("INSERT INTO u_items (body) VALUES ('seed')", vec![])
        .await
        .expect("u_items has no trigger yet");
    for (create, fire) in triggers {
        let before = internal(&s).await;
        s.execute_sql(create, vec![])
            .await
            .unwrap_or_else(|e| panic!("{create}: triggers on user objects stay allowed: {e}"));
        let e = s.execute_sql(fire, vec![]).await.expect_err(fire);
        assert!(refused(&e), "{fire}: {e:?}");
        assert_intact(&s, &before, fire, false).await;
    }
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_raw_writes_are_stamped_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let before = internal(&s).await;
    // The seed's metric insert, with a forged stamp and origin: stored with this node's.
    let r = s
        .execute_sql(
            "INSERT INTO agent_metrics (agent_id, task_type, duration_ms, tokens_used, hlc, origin) \
             VALUES ('a', 'forged', 1, 1, 4611686018427387904, 'someone-else')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(r.rows_affected, 1);
    let row = rows(&s, "SELECT hlc, origin FROM agent_metrics WHERE task_type = 'forged'").await;
    assert!(!far_future(row[0][0].as_i64().unwrap()), "the forged stamp was replaced: {row:?}");
    assert_eq!(row[0][1].as_str(), Some(s.origin()));
    let logged = rows(&s, "SELECT count(*) FROM _change_rows WHERE tbl = 'agent_metrics'").await;
    assert_eq!(logged[0][0], SqlValue::Integer(2), "the raw insert is in the change log");
    assert_intact(&s, &before, "forged agent_metrics insert", true).await;

    // Seed tables, user tables, views and triggers on them stay writable.
    for sql in [
        "INSERT INTO edge_replicas (region, avg_latency_ms, performance_tier, status) VALUES ('us-west-2', 25, 'Excellent', 'healthy')",
        "INSERT INTO performance_tests (run_id, operation_type, throughput, ops) VALUES ('r', 'SELECT', 1.0, 1)",
        "UPDATE performance_tests SET ops = ops + 1",
        "CREATE TABLE u_log (x)",
        "CREATE TABLE u_uniq (id INTEGER PRIMARY KEY, v TEXT UNIQUE)",
        "CREATE TRIGGER u_copy AFTER INSERT ON u_items BEGIN INSERT INTO u_log VALUES (new.body); END",
        "INSERT INTO u_items (body) VALUES ('copied')",
        "CREATE INDEX u_items_body ON u_items(body)",
        "CREATE VIEW u_view AS SELECT body FROM u_items",
        "CREATE VIRTUAL TABLE u_vocab USING fts5vocab('knowledge_fts', 'row')",
        "PRAGMA table_info(kv)",
        "DROP VIEW u_view",
    ] {
        s.execute_sql(sql, vec![]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    assert_eq!(rows(&s, "SELECT x FROM u_log").await, vec![vec![SqlValue::Text("copied".into())]]);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defensive_mode_is_on_for_the_writer_and_the_readers() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    assert!(
        s.read(|r| Ok(r.guard.is_defensive())).await.unwrap(),
        "the read pool's guard connection"
    );
    // Even the writer's trusted path cannot write a shadow table directly: that is
    // defensive mode, not the guard (which does not run on this path).
    let e = s
        .transact(|ctx| ctx.execute("DELETE FROM knowledge_fts_data", vec![]))
        .await
        .expect_err("defensive mode refuses direct shadow-table writes");
    assert!(e.to_string().contains("may not be modified"), "{e}");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_results_stop_promptly_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let cap = s.config().limits.max_result_bytes as u64;
    for sql in [
        "SELECT zeroblob(400000000) FROM conversations",
        "SELECT zeroblob(400000000)",
        "SELECT randomblob(400000000)",
        "SELECT randomblob(15000000), randomblob(15000000), randomblob(15000000)",
        "SELECT length(randomblob(400000000))",
        "SELECT group_concat(randomblob(1000000)) FROM (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 100) SELECT n FROM c)",
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 100) SELECT randomblob(1000000) FROM c",
        "SELECT replace(hex(zeroblob(10000000)), '0', 'xxxxxxxx')",
    ] {
        for run in [0, 1] {
            let started = Instant::now();
            let e = if run == 0 {
                s.read_sql(sql, vec![]).await.expect_err(sql)
            } else {
                s.execute_sql(sql, vec![]).await.expect_err(sql)
            };
            assert!(
                matches!(e, StoreError::ResultTooLarge { limit_bytes } if limit_bytes == cap),
                "{sql}: {e:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(3), "{sql}: took {:?}", started.elapsed());
        }
        typed_writes_work(&s, sql).await;
    }
    // printf/format past the per-value limit: SQLite's printf gives NULL (at once)
    // instead of an error; either way nothing big is built and the store answers.
    for sql in ["SELECT printf('%.*c', 400000000, 'x')", "SELECT format('%400000000d', 1)"] {
        let started = Instant::now();
        match s.read_sql(sql, vec![]).await {
            Err(StoreError::ResultTooLarge { .. }) => {}
            Ok(r) => assert_eq!(r.rows, vec![vec![SqlValue::Null]], "{sql}"),
            Err(e) => panic!("{sql}: {e:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(3), "{sql}: took {:?}", started.elapsed());
        typed_writes_work(&s, sql).await;
    }
    // A write whose RETURNING rows pass the cap is stopped and rolled back.
    let e = s
        .execute_sql(
            "INSERT INTO u_items (body) SELECT hex(randomblob(500000)) FROM \
             (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 40) SELECT n FROM c) RETURNING body",
            vec![],
        )
        .await
        .expect_err("RETURNING past the cap");
    assert!(matches!(e, StoreError::ResultTooLarge { .. }), "{e:?}");
    assert_eq!(rows(&s, "SELECT count(*) FROM u_items").await[0][0], SqlValue::Integer(0));
    // Recursive CTE bombs run into the time limit instead.
    let e = s
        .read_sql(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c",
            vec![],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Timeout { .. }), "{e:?}");
    let e = s
        .read_sql(
            "WITH RECURSIVE c(n, b) AS (SELECT 1, randomblob(100000) UNION ALL SELECT n + 1, b FROM c) SELECT n FROM c ORDER BY b LIMIT 1",
            vec![],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Timeout { .. }), "{e:?}");
    // Results under the cap still come back whole.
    let ok = s.read_sql("SELECT length(randomblob(1000000))", vec![]).await.unwrap();
    assert_eq!(ok.rows[0][0], SqlValue::Integer(1_000_000));
    s.shutdown().await.unwrap();
}

/// Resident set size of this process, in bytes (Linux).
fn rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The stated figure: a flood of huge raw reads keeps this process under 256 MiB.
const RSS_LIMIT: u64 = 256 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_huge_reads_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let queries = [
        "SELECT zeroblob(400000000)",
        "SELECT printf('%.*c', 400000000, 'x')",
        "SELECT randomblob(400000000)",
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c LIMIT 1000) SELECT randomblob(1000000) FROM c",
        "SELECT randomblob(15000000), randomblob(15000000), randomblob(15000000), randomblob(15000000)",
    ];
    let mut peak = 0;
    for round in 0..4 {
        let mut tasks = Vec::new();
        for i in 0..32 {
            let s = s.clone();
            let sql = queries[(i + round) % queries.len()];
            tasks.push(tokio::spawn(async move { s.read_sql(sql, vec![]).await }));
        }
        for t in tasks {
            match t.await.unwrap() {
                Err(StoreError::ResultTooLarge { .. }) => {}
                Ok(r) if r.rows == vec![vec![SqlValue::Null]] => {} // printf past the limit
                other => panic!("every flood query passes the cap: {other:?}"),
            }
            peak = peak.max(rss().unwrap_or(0));
        }
    }
    eprintln!("peak RSS during the flood: {} MiB (limit {} MiB)", peak >> 20, RSS_LIMIT >> 20);
    assert!(peak < RSS_LIMIT, "RSS reached {} MiB", peak >> 20);
    typed_writes_work(&s, "flood").await;
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_user_tables_log_through_runtime_triggers_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    s.execute_sql(
        "CREATE TABLE u_rep (id INTEGER PRIMARY KEY, body TEXT, hlc INTEGER NOT NULL DEFAULT 0, origin TEXT NOT NULL DEFAULT '')",
        vec![],
    )
    .await
    .unwrap();
    // What `SyncSystem::replicate_table` installs (edgeswarm-sync's trigger_ddl), in short.
    s.transact(|ctx| {
        ctx.execute(
            "CREATE TRIGGER \"_sync_u_rep_ai\" AFTER INSERT ON u_rep WHEN new.hlc = 0 BEGIN \
             UPDATE u_rep SET hlc = 7, origin = 'me' WHERE id = new.id; \
             INSERT INTO _changes (tbl, row_id, hlc, origin) VALUES ('u_rep', new.id, 7, 'me'); END",
            vec![],
        )
    })
    .await
    .unwrap();
    let before = rows(&s, "SELECT count(*) FROM _changes").await[0][0].as_i64().unwrap();
    s.execute_sql("INSERT INTO u_rep (id, body) VALUES (1, 'a')", vec![])
        .await
        .expect("a raw insert into a replicated user table is logged by the runtime's trigger");
    let after = rows(&s, "SELECT count(*) FROM _changes").await[0][0].as_i64().unwrap();
    assert_eq!(after, before + 1, "the runtime's trigger logged the row");
    s.execute_sql("UPDATE u_rep SET body = 'b'", vec![]).await.unwrap();
    for sql in ["UPDATE u_rep SET hlc = hlc + 1", "UPDATE u_rep SET origin = 'elsewhere'"] {
        let e = s.execute_sql(sql, vec![]).await.expect_err(sql);
        assert!(
            matches!(e, StoreError::Refused(_)) && e.to_string().contains("stamped"),
            "{sql}: {e}"
        );
    }
    // A user trigger cannot borrow the runtime's exemption by name.
    let e = s
        .execute_sql(
            "CREATE TRIGGER _sync_mine AFTER INSERT ON u_rep BEGIN DELETE FROM _changes; END",
            vec![],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Refused(_)), "{e}");
    s.shutdown().await.unwrap();
}

/// TEXT that is not valid UTF-8 (found by the guard fuzzer): refused where it would land
/// in a runtime table every typed reader reads, and a typed error (not a dead reader)
/// where it sits in a user's own table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_utf8_cannot_break_typed_reads() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    for sql in [
        "INSERT INTO conversations(id, session_id, role, content) VALUES ('x1', 'session-1', 'user', CAST(X'c328' AS TEXT))",
        "INSERT INTO agent_metrics(agent_id, task_type) VALUES (CAST(X'c328' AS TEXT), 't')",
    ] {
        let e = s.execute_sql(sql, vec![]).await.expect_err(sql);
        assert!(e.to_string().contains("UTF-8"), "{sql}: {e}");
    }
    let n = s
        .read_sql("SELECT count(*) FROM conversations WHERE id = 'x1'", vec![])
        .await
        .unwrap();
    assert_eq!(n.rows[0][0].as_i64(), Some(0), "nothing of the refused insert is stored");
    // In a user table it is the user's own data: raw reads return it with the bad
    // bytes replaced (U+FFFD), and the read pool keeps serving.
    s.execute_sql("CREATE TABLE u_bad (t TEXT)", vec![]).await.unwrap();
    s.execute_sql("INSERT INTO u_bad VALUES (CAST(X'c328' AS TEXT))", vec![])
        .await
        .unwrap();
    for _ in 0..8 {
        let r = s.read_sql("SELECT t FROM u_bad", vec![]).await.unwrap();
        assert_eq!(r.rows[0][0].as_str(), Some("\u{fffd}("));
    }
    let ok = s.read_sql("SELECT CAST(t AS BLOB) FROM u_bad", vec![]).await.unwrap();
    assert_eq!(ok.rows.len(), 1);
    assert_eq!(
        s.read_sql("SELECT 1", vec![]).await.unwrap().rows.len(),
        1,
        "the readers still answer"
    );
    s.shutdown().await.unwrap();
}

/// `INSERT OR REPLACE` (or `REPLACE`) of an existing id in an append-only table deletes
/// the old row without an UPDATE or DELETE the authorizer could see, and an explicit
/// rowid below the last row slips under the appended range. SQLite's pre-update hook
/// sees both, at top level and inside user triggers: refused, nothing changed, and the
/// other caller's row keeps its content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_append_only_rows_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let conv = rows(&s, "SELECT id, content FROM conversations").await;
    let (cid, content) = (conv[0][0].to_text(), conv[0][1].to_text());
    let mid = rows(&s, "SELECT id FROM agent_metrics").await[0][0].to_text();
    let cases = [
        format!("INSERT OR REPLACE INTO conversations (id, session_id, role, content) VALUES ('{cid}', 's', 'user', 'forged')"),
        format!("REPLACE INTO agent_metrics (id, agent_id, task_type) VALUES ('{mid}', 'evil', 't')"),
        "INSERT INTO conversations (rowid, id, session_id, role, content) VALUES (-5, 'low', 's', 'user', 'under the range')".into(),
        format!(
            "INSERT INTO conversations (id, session_id, role, content) VALUES ('fresh', 's', 'user', 'a'), ('{cid}', 's', 'user', 'b') \
             ON CONFLICT(id) DO NOTHING; -- harmless: nothing replaced"
        ),
    ];
    for sql in &cases[..3] {
        refuse(&s, sql, Some("append-only")).await;
    }
    // A conflict that does nothing is not a replacement: allowed, the new row appended.
    let before = internal(&s).await;
    s.execute_sql(&cases[3], vec![]).await.expect("ON CONFLICT DO NOTHING appends only");
    assert_intact(&s, &before, &cases[3], true).await;
    assert_eq!(
        rows(&s, "SELECT count(*) FROM conversations WHERE id = 'fresh'").await[0][0],
        SqlValue::Integer(1)
    );
    // The same replacement from inside a user trigger.
    s.execute_sql(
        &format!(
            "CREATE TRIGGER u_rep AFTER INSERT ON u_items BEGIN \
             INSERT OR REPLACE INTO conversations (id, session_id, role, content) VALUES ('{cid}', 's', 'user', 'via trigger'); END"
        ),
        vec![],
    )
    .await
    .expect("a trigger on a user table is allowed");
    refuse(&s, "INSERT INTO u_items (body) VALUES ('fires the trigger')", Some("append-only")).await;
    assert_eq!(
        rows(&s, &format!("SELECT content FROM conversations WHERE id = '{cid}'")).await[0][0].to_text(),
        content,
        "the other caller's message is unchanged"
    );
    assert!(
        rows(&s, "SELECT 1 FROM u_items WHERE body = 'fires the trigger'").await.is_empty(),
        "nothing half-written"
    );
    // Plain appends still work and are stamped.
    s.execute_sql(
        "INSERT INTO conversations (id, session_id, role, content) VALUES ('new', 's', 'user', 'ok')",
        vec![],
    )
    .await
    .expect("appending is allowed");
    s.shutdown().await.unwrap();
}
