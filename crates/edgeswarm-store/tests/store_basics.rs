//! Store integration tests on a real libSQL file.

use edgeswarm_core::{Knowledge, Message, Metric, StoreConfig};
use edgeswarm_store::{Inserted, SqlValue, Store, StoreError};
use serde_json::json;

async fn open(dir: &tempfile::TempDir) -> Store {
    edgeswarm_testkit::open_store(dir.path().join("home.db")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_then_read_and_idempotent_retry() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let m = Metric::new("agent-1", "code-analysis", 1250.0, 3500);
    assert_eq!(s.publish(m.clone()).await.unwrap(), Inserted { duplicate: false });
    assert_eq!(s.publish(m.clone()).await.unwrap(), Inserted { duplicate: true });
    let r = s.read_sql("SELECT count(*) AS n FROM agent_metrics", vec![]).await.unwrap();
    assert_eq!(r.get(0, "n"), Some(&SqlValue::Integer(1)));
    let c = s.read_sql("SELECT count(*) FROM _change_rows", vec![]).await.unwrap();
    assert_eq!(c.rows[0][0], SqlValue::Integer(1), "one change-log row per stored write");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_sql_runs_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let r = s
        .execute_sql(
            "INSERT INTO agent_metrics \n          (agent_id, task_type, duration_ms, tokens_used) \n          VALUES (?, ?, ?, ?)",
            vec![
                "agent-123".into(),
                "code-analysis".into(),
                SqlValue::Integer(1250),
                SqlValue::Integer(3500),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.rows_affected, 1);
    let q = s
        .read_sql("SELECT agent_id, duration_ms, tokens_used FROM agent_metrics", vec![])
        .await
        .unwrap();
    assert_eq!(q.rows[0][0], SqlValue::Text("agent-123".into()));
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_guard_refuses_every_disguise_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    s.publish(Message::new("s1", "user", "hello")).await.unwrap();
    let attempts = [
        "DELETE FROM conversations",
        "WITH x AS (SELECT 1) DELETE FROM conversations",
        "ATTACH DATABASE 'other.db' AS o",
        "PRAGMA writable_schema=1",
        "PRAGMA journal_mode=DELETE",
        "SELECT 1; DELETE FROM conversations",
        "BEGIN",
        "CREATE TABLE t(x)",
        "DROP TABLE conversations",
        "SELECT load_extension('x')",
        "INSERT INTO conversations(id, session_id, role, content) VALUES ('a','b','c','d') RETURNING id",
        "VACUUM",
        "",
        "   -- only a comment",
    ];
    for sql in attempts {
        let e = s.read_sql(sql, vec![]).await.expect_err(sql);
        assert!(matches!(e, StoreError::Refused(_) | StoreError::Sql(_)), "{sql}: {e:?}");
        assert!(!e.to_string().is_empty());
    }
    let n = s.read_sql("SELECT count(*) FROM conversations", vec![]).await.unwrap();
    assert_eq!(n.rows[0][0], SqlValue::Integer(1), "nothing was deleted");
    assert!(!dir.path().join("other.db").exists(), "ATTACH created no file");
    // The actor is still alive and writing.
    s.publish(Message::new("s1", "user", "still here")).await.unwrap();
    // execute_query refuses what no call may do, too.
    for sql in [
        "BEGIN",
        "ATTACH DATABASE 'x.db' AS x",
        "DELETE FROM _changes",
        "SELECT 1; SELECT 2",
        "PRAGMA synchronous=OFF",
    ] {
        let e = s.execute_sql(sql, vec![]).await.expect_err(sql);
        assert!(matches!(e, StoreError::Refused(_)), "{sql}: {e:?}");
    }
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_refused_before_queueing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let big = "x".repeat(s.config().limits.max_content_bytes + 1);
    let cases: Vec<edgeswarm_core::Record> = vec![
        Knowledge::new("c", "t", big).into(),
        Message::new("", "user", "x").into(),
        Message::new("s", "user", "nul\0byte").into(),
        Metric::new("a", "", 1.0, 1).into(),
    ];
    for c in cases {
        let e = s.publish(c).await.unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");
    }
    assert!(Message::new("s", "u", "c").metadata_str("{not json").is_err());
    let n = s
        .read_sql(
            "SELECT (SELECT count(*) FROM knowledge) + (SELECT count(*) FROM conversations) + (SELECT count(*) FROM agent_metrics)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(n.rows[0][0], SqlValue::Integer(0));
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_query_is_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::at(dir.path().join("home.db"));
    cfg.limits.query_timeout = std::time::Duration::from_millis(200);
    let s = Store::open(cfg).await.unwrap();
    let e = s
        .read_sql(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
            vec![],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Timeout { .. }), "{e:?}");
    assert!(s.read_sql("SELECT 1", vec![]).await.is_ok(), "reader still serves");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_cas_and_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    use edgeswarm_store::kv::CasOutcome;
    assert_eq!(
        s.kv_cas("tasks", "t1", None, json!("agent-a"), None).await.unwrap(),
        CasOutcome::Swapped { version: 1 }
    );
    assert_eq!(
        s.kv_cas("tasks", "t1", None, json!("agent-b"), None).await.unwrap(),
        CasOutcome::Conflict { current: Some(1) }
    );
    assert_eq!(s.kv_get("tasks", "t1").await.unwrap().unwrap().value, json!("agent-a"));
    s.kv_set("tmp", "k", json!(1), Some(std::time::Duration::from_millis(50)))
        .await
        .unwrap();
    assert!(s.kv_get("tmp", "k").await.unwrap().is_some());
    tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    assert!(s.kv_get("tmp", "k").await.unwrap().is_none());
    assert_eq!(s.kv_sweep_expired().await.unwrap(), 1);
    let left = s.read_sql("SELECT count(*) FROM kv WHERE namespace = 'tmp'", vec![]).await.unwrap();
    assert_eq!(left.rows[0][0], SqlValue::Integer(0), "expired keys really disappear");
    assert!(s.kv_set("tmp", "k", json!(1), Some(std::time::Duration::ZERO)).await.is_err());
    assert!(s.kv_delete("tasks", "t1").await.unwrap());
    assert!(s.kv_get("tasks", "t1").await.unwrap().is_none());
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_never_reissues_a_clock_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let origin = s.origin().to_string();
    // kv writes are logged row by row in `_changes`, like knowledge (whose writer lives
    // in edgeswarm-search).
    for i in 0..100 {
        s.kv_set("c", &format!("t{i}"), json!("body"), None).await.unwrap();
    }
    let before = s.read_sql("SELECT max(hlc) FROM kv", vec![]).await.unwrap().rows[0][0]
        .as_i64()
        .unwrap();
    s.shutdown().await.unwrap();
    let s = open(&dir).await;
    assert_eq!(s.origin(), origin, "the node id is kept in the file");
    assert!(
        s.clock().last().as_i64() >= before,
        "the clock is seeded with the persisted high-water mark"
    );
    s.kv_set("c", "after", json!("body"), None).await.unwrap();
    let after = s.read_sql("SELECT hlc FROM kv WHERE key = 'after'", vec![]).await.unwrap().rows[0][0]
        .as_i64()
        .unwrap();
    assert!(after > before, "{after} <= {before}");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_write_is_interrupted_and_ddl_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::at(dir.path().join("home.db"));
    cfg.limits.query_timeout = std::time::Duration::from_millis(300);
    let s = Store::open(cfg).await.unwrap();
    s.execute_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", vec![])
        .await
        .expect("DDL through execute_sql");
    let e = s
        .execute_sql(
            "INSERT INTO notes(body) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c",
            vec![],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Timeout { .. }), "{e:?}");
    let n = s.read_sql("SELECT count(*) FROM notes", vec![]).await.unwrap();
    assert_eq!(n.rows[0][0], SqlValue::Integer(0), "the interrupted statement left nothing behind");
    s.publish(Message::new("s", "user", "writer still alive")).await.unwrap();
    let e = s.execute_sql("CREATE TABLE _mine (x)", vec![]).await;
    assert!(e.is_ok() || matches!(e, Err(StoreError::Refused(_))));
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knowledge_without_a_writer_is_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    assert!(!s.has_knowledge_writer());
    let k = s.enqueue_record(Knowledge::new("c", "t", "body")).await.unwrap();
    let m = s.enqueue_record(Message::new("s", "user", "same batch")).await.unwrap();
    assert!(matches!(k.wait().await, Err(StoreError::NoKnowledgeWriter)));
    assert_eq!(
        m.wait().await.unwrap(),
        Inserted { duplicate: false },
        "the rest of the batch commits"
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_errors_are_typed_with_their_code() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    s.execute_sql("CREATE TABLE u (id INTEGER PRIMARY KEY, v TEXT UNIQUE)", vec![])
        .await
        .unwrap();
    s.execute_sql("INSERT INTO u (v) VALUES ('a')", vec![]).await.unwrap();
    let e = s.execute_sql("INSERT INTO u (v) VALUES ('a')", vec![]).await.unwrap_err();
    assert!(matches!(e, StoreError::Constraint(_)), "{e:?}");
    assert_eq!(e.sqlite_code(), Some(2067), "SQLITE_CONSTRAINT_UNIQUE");
    assert!(!e.is_retryable());
    let e = s.read_sql("SELECT nope FROM u", vec![]).await.unwrap_err();
    assert!(matches!(e, StoreError::Sql(_)), "{e:?}");
    assert_eq!(e.sqlite_code(), Some(1), "SQLITE_ERROR");
    // A custom op's error comes back as it was returned, and its result is typed.
    let n: u64 = s.transact(|ctx| ctx.execute("UPDATE u SET v = 'b'", vec![])).await.unwrap();
    assert_eq!(n, 1);
    let e = s.transact(|_| Err::<(), _>(StoreError::NotFound("x".into()))).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    s.shutdown().await.unwrap();
}

/// Opening a file that is not a database, or with a directory where the file should be,
/// fails with the typed class of the condition (so a caller tells damage from a full
/// disk) and a message naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_failures_keep_their_class_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let e = Store::open(StoreConfig::at(&junk)).await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
    assert_eq!(e.sqlite_code(), Some(26), "SQLITE_NOTADB");
    assert!(
        e.to_string().contains("junk.db") && e.to_string().contains("is this a SQLite database?"),
        "{e}"
    );
    assert_eq!(std::fs::read(&junk).unwrap(), vec![0x5a; 8192], "the file is left as it was");
    let e = Store::open(StoreConfig::at(dir.path())).await.unwrap_err();
    assert!(matches!(e, StoreError::Io(_) | StoreError::Open { .. }), "{e:?}");
    assert!(e.to_string().contains(&dir.path().display().to_string()), "{e}");
}
