//! Per-op isolation in the writer: one failing op (constraint error, trigger RAISE,
//! time limit, panic, an error returned by a custom op) fails only its caller; the
//! other writes of its batch commit. A failed COMMIT still fails them all
//! (tests/storage_faults.rs).

use edgeswarm_core::{Metric, StoreConfig};
use edgeswarm_store::{PendingAck, SqlValue, Store, StoreError};
use std::time::Duration;

async fn open(dir: &tempfile::TempDir, op_timeout: Duration) -> Store {
    let mut cfg = StoreConfig::at(dir.path().join("home.db"));
    cfg.op_timeout = op_timeout;
    let store = Store::open(cfg).await.unwrap();
    store
        .transact(|ctx| {
            ctx.execute("CREATE TABLE u (id INTEGER PRIMARY KEY, v TEXT NOT NULL)", vec![])?;
            ctx.execute(
                "CREATE TRIGGER u_abort BEFORE INSERT ON u WHEN NEW.v = 'abort' BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END",
                vec![],
            )?;
            ctx.execute(
                "CREATE TRIGGER m_abort BEFORE INSERT ON agent_metrics WHEN NEW.task_type = 'refused' BEGIN SELECT RAISE(ABORT, 'metric refused'); END",
                vec![],
            )?;
            ctx.execute(
                "CREATE TRIGGER u_rollback BEFORE INSERT ON u WHEN NEW.v = 'rollback' BEGIN SELECT RAISE(ROLLBACK, 'rolled back by trigger'); END",
                vec![],
            )
        })
        .await
        .unwrap();
    store
}

/// Holds the writer for `ms` so that everything queued meanwhile lands in one batch.
async fn hold_writer(store: &Store, ms: u64) -> PendingAck<()> {
    store
        .enqueue_transact(move |_| {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(())
        })
        .await
        .unwrap()
}

async fn count(store: &Store, sql: &str) -> i64 {
    store.read_sql(sql.to_string(), vec![]).await.unwrap().rows[0][0].as_i64().unwrap()
}

async fn insert_u(store: &Store, v: &'static str) -> PendingAck<u64> {
    store
        .enqueue_transact(move |ctx| ctx.execute("INSERT INTO u (v) VALUES (?1)", vec![SqlValue::Text(v.into())]))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failing_op_fails_alone_and_the_batch_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Duration::from_secs(5)).await;
    let before = store.stats();
    let hold = hold_writer(&store, 300).await;

    let mut good = Vec::new();
    let mut metrics = Vec::new();
    for i in 0..20 {
        good.push(insert_u(&store, "ok").await);
        metrics.push(store.enqueue_record(Metric::new("a", "iso", i as f64, 1)).await.unwrap());
    }
    // NOT NULL constraint.
    let null = store
        .enqueue_transact(|ctx| ctx.execute("INSERT INTO u (v) VALUES (NULL)", vec![]))
        .await
        .unwrap();
    // A trigger's RAISE(ABORT).
    let abort = insert_u(&store, "abort").await;
    // A custom op that wrote, then returned an error: its write is undone.
    let err_after_write = store
        .enqueue_transact(|ctx| {
            ctx.execute("INSERT INTO u (v) VALUES ('undone')", vec![])?;
            Err::<(), _>(StoreError::NotFound("on purpose".into()))
        })
        .await
        .unwrap();
    // A panic after a write: caught, undone, only this caller fails.
    let panics = store
        .enqueue_transact(|ctx| {
            ctx.execute("INSERT INTO u (v) VALUES ('panicked')", vec![])?;
            if ctx.origin().is_empty() {
                return Ok(());
            }
            panic!("op panics on purpose");
        })
        .await
        .unwrap();
    // A typed record refused by a trigger (one statement: no savepoint needed).
    let metric_refused = store.enqueue_record(Metric::new("a", "refused", 1.0, 1)).await.unwrap();
    // A duplicate primary key, from a typed path's point of view: a constraint error.
    let dup = store
        .enqueue_transact(|ctx| ctx.execute("INSERT INTO u (id, v) VALUES (1, 'dup')", vec![]))
        .await
        .unwrap();
    for i in 0..20 {
        good.push(insert_u(&store, "ok").await);
        metrics.push(store.enqueue_record(Metric::new("a", "iso", 100.0 + i as f64, 1)).await.unwrap());
    }
    hold.wait().await.unwrap();

    assert!(matches!(null.wait().await, Err(StoreError::Constraint(_))));
    let e = abort.wait().await.unwrap_err();
    assert!(
        matches!(e, StoreError::Constraint(_)) && e.to_string().contains("refused by trigger"),
        "{e:?}"
    );
    assert!(matches!(err_after_write.wait().await, Err(StoreError::NotFound(_))));
    let e = panics.wait().await.unwrap_err();
    assert!(matches!(e, StoreError::Internal(_)) && e.to_string().contains("panicked"), "{e:?}");
    assert!(matches!(dup.wait().await, Err(StoreError::Constraint(_))));
    let e = metric_refused.wait().await.unwrap_err();
    assert!(e.to_string().contains("metric refused"), "{e:?}");
    for a in good {
        assert_eq!(a.wait().await.unwrap(), 1);
    }
    for a in metrics {
        assert!(!a.wait().await.unwrap().duplicate);
    }
    assert_eq!(count(&store, "SELECT count(*) FROM u WHERE v = 'ok'").await, 40);
    assert_eq!(
        count(&store, "SELECT count(*) FROM u WHERE v <> 'ok'").await,
        0,
        "nothing of a failed op is stored"
    );
    assert_eq!(
        count(&store, "SELECT count(*) FROM agent_metrics WHERE task_type = 'iso'").await,
        40
    );
    let after = store.stats();
    assert_eq!(after.failed_batches, before.failed_batches, "no batch failed");
    assert_eq!(after.failed_ops - before.failed_ops, 6, "six ops failed alone");
    assert_eq!(after.replays, before.replays, "savepoints were enough");
    assert_eq!(after.writer_restarts, 0, "a panic in an op does not crash the writer");
    store.publish(Metric::new("a", "after", 1.0, 1)).await.unwrap();
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_transaction_rollback_under_one_op_replays_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Duration::from_secs(5)).await;
    let hold = hold_writer(&store, 300).await;
    let mut good = Vec::new();
    let mut metrics = Vec::new();
    for i in 0..10 {
        good.push(insert_u(&store, "ok").await);
        metrics.push(store.enqueue_record(Metric::new("a", "replay", i as f64, 1)).await.unwrap());
    }
    let kv = store.kv_set("ns", "k", serde_json::json!(1), None);
    let (kv, rollback) = tokio::join!(kv, async {
        // RAISE(ROLLBACK) ends the whole transaction, under the writer's feet.
        tokio::time::sleep(Duration::from_millis(20)).await;
        insert_u(&store, "rollback").await
    });
    let mut later = Vec::new();
    for _ in 0..10 {
        later.push(insert_u(&store, "ok").await);
    }
    hold.wait().await.unwrap();
    assert_eq!(kv.unwrap(), 1);
    let e = rollback.wait().await.unwrap_err();
    assert!(e.to_string().contains("rolled back by trigger"), "{e:?}");
    for a in good.into_iter().chain(later) {
        assert_eq!(a.wait().await.unwrap(), 1);
    }
    for a in metrics {
        a.wait().await.unwrap();
    }
    assert_eq!(count(&store, "SELECT count(*) FROM u WHERE v = 'ok'").await, 20);
    assert_eq!(
        count(&store, "SELECT count(*) FROM agent_metrics WHERE task_type = 'replay'").await,
        10
    );
    assert_eq!(store.kv_get("ns", "k").await.unwrap().unwrap().version, 1);
    assert!(store.stats().replays >= 1, "the batch was replayed");
    // The change log holds the replayed writes once each.
    assert_eq!(
        count(&store, "SELECT count(*) FROM _changes WHERE tbl = 'kv'").await,
        1,
        "one change-log row for the kv write"
    );
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_op_past_its_time_limit_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Duration::from_millis(300)).await;
    let before = store.stats();
    let hold = hold_writer(&store, 200).await;
    let mut good = Vec::new();
    for _ in 0..10 {
        good.push(insert_u(&store, "ok").await);
    }
    // A runaway write: interrupting it makes SQLite roll back the whole transaction.
    let slow_write = store
        .enqueue_transact(|ctx| {
            ctx.execute(
                "INSERT INTO u (v) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT 'slow' FROM c",
                vec![],
            )
        })
        .await
        .unwrap();
    for _ in 0..10 {
        good.push(insert_u(&store, "ok").await);
    }
    // A runaway read inside a custom op: interrupted, the transaction stays.
    let slow_read = store
        .enqueue_transact(|ctx| {
            ctx.query(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
                vec![],
            )
        })
        .await
        .unwrap();
    // A custom op that keeps running statements past its limit is stopped at the next one.
    let slow_loop = store
        .enqueue_transact(|ctx| -> Result<(), StoreError> {
            loop {
                ctx.execute("INSERT INTO u (v) VALUES ('loop')", vec![])?;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .unwrap();
    for _ in 0..10 {
        good.push(insert_u(&store, "ok").await);
    }
    let started = std::time::Instant::now();
    hold.wait().await.unwrap();
    for (what, r) in [
        ("write", slow_write.wait().await.map(|_| ())),
        ("read", slow_read.wait().await.map(|_| ())),
        ("loop", slow_loop.wait().await.map(|_| ())),
    ] {
        let e = r.unwrap_err();
        assert!(matches!(e, StoreError::Timeout { limit_ms: 300 }), "{what}: {e:?}");
        assert!(!e.is_retryable(), "a time limit is not retried as is");
    }
    for a in good {
        assert_eq!(a.wait().await.unwrap(), 1);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "each runaway op is stopped at its limit"
    );
    assert_eq!(count(&store, "SELECT count(*) FROM u WHERE v = 'ok'").await, 30);
    assert_eq!(count(&store, "SELECT count(*) FROM u WHERE v <> 'ok'").await, 0);
    let after = store.stats();
    assert_eq!(after.failed_batches, before.failed_batches);
    assert!(
        after.replays > before.replays,
        "the interrupted write rolled the batch back: replayed"
    );
    assert_eq!(after.failed_ops - before.failed_ops, 3);
    store.publish(Metric::new("a", "after", 1.0, 1)).await.unwrap();
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_failing_op_leaves_the_writer_working() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Duration::from_millis(300)).await;
    // One op per batch (each waited for): no savepoint; the transaction is rolled back.
    let e = store
        .transact(|ctx| ctx.execute("INSERT INTO u (v) VALUES (NULL)", vec![]))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Constraint(_)));
    let e = store
        .transact(|ctx| -> Result<(), StoreError> {
            ctx.execute("INSERT INTO u (v) VALUES ('x')", vec![])?;
            panic!("alone")
        })
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Internal(_)));
    let e = store
        .transact(|ctx| {
            ctx.execute(
                "INSERT INTO u (v) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT 'slow' FROM c",
                vec![],
            )
        })
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Timeout { .. }), "{e:?}");
    assert_eq!(count(&store, "SELECT count(*) FROM u").await, 0);
    store.publish(Metric::new("a", "after", 1.0, 1)).await.unwrap();
    assert_eq!(store.stats().writer_restarts, 0);
    assert_eq!(store.stats().failed_batches, 0);
    store.shutdown().await.unwrap();
}
