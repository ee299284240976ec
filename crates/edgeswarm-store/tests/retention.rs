//! Retention of conversations and metrics (`RetentionConfig`, `Store::retention_sweep`)
//! and removal of dead change-log entries, on a real libSQL file. The sweep takes the
//! time as an argument, so nothing here depends on the clock.

use edgeswarm_core::record::now_millis;
use edgeswarm_core::{Message, Metric, RetentionConfig, StoreConfig};
use edgeswarm_store::{Store, Swept};
use std::time::Duration;

const HOUR: i64 = 3_600_000;

async fn count(s: &Store, sql: &str) -> i64 {
    s.read_sql(sql, vec![]).await.unwrap().rows[0][0].as_i64().unwrap()
}

/// Change-log entries that name no row (the view joins ranges to the rows they cover).
async fn dead_entries(s: &Store) -> i64 {
    count(
        s,
        "SELECT count(*) FROM _changes c WHERE seq < (SELECT MAX(seq) FROM _changes) AND NOT EXISTS \
         (SELECT 1 FROM _change_rows r WHERE r.seq = c.seq)",
    )
    .await
}

async fn fill(s: &Store, now: i64) {
    // Old and new rows interleaved by insertion order (fewer new ones in a row than a
    // sweep batch: a whole batch of young rows ends the walk), metrics in shared batches.
    for i in 0..50 {
        let mut m = Message::new(format!("s{}", i % 3), "user", format!("old message {i}"));
        m.created_at = now - 2 * HOUR - i;
        s.publish(m).await.unwrap();
        if i % 10 == 0 {
            let mut m = Message::new("s-new", "user", format!("new message {i}"));
            m.created_at = now - HOUR / 2;
            s.publish(m).await.unwrap();
        }
    }
    let mut pending = Vec::new();
    for i in 0..30 {
        let mut m = Metric::new("agent", "task", 1.0, i);
        m.ts = now - 3 * HOUR;
        pending.push(s.enqueue_record(m).await.unwrap());
    }
    for i in 0..10 {
        let mut m = Metric::new("agent", "task", 1.0, i);
        m.ts = now;
        pending.push(s.enqueue_record(m).await.unwrap());
    }
    for p in pending {
        p.wait().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_rows_in_bounded_batches_and_their_log_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::at(dir.path().join("home.db"));
    cfg.retention = RetentionConfig {
        conversations: Some(Duration::from_millis(HOUR as u64)),
        metrics: Some(Duration::from_millis(2 * HOUR as u64)),
        batch_rows: 7,
        sweep_batches: 2,
        ..RetentionConfig::default()
    };
    let s = edgeswarm_testkit::open_store_with(cfg).await;
    let now = now_millis();
    fill(&s, now).await;
    assert_eq!(count(&s, "SELECT count(*) FROM conversations").await, 55);

    // One sweep looks at most at batch_rows × sweep_batches rows per table.
    let first = s.retention_sweep_at(now).await.unwrap();
    assert!(
        first.conversations > 0 && first.conversations <= 14 && first.metrics == 14,
        "{first:?}"
    );
    let mut total = first;
    for _ in 0..10 {
        let n = s.retention_sweep_at(now).await.unwrap();
        total.conversations += n.conversations;
        total.metrics += n.metrics;
        total.changes += n.changes;
        if n == Swept::default() {
            break;
        }
    }
    assert_eq!((total.conversations, total.metrics), (50, 30), "{total:?}");
    assert!(total.changes > 0, "{total:?}");
    assert_eq!(count(&s, "SELECT count(*) FROM conversations").await, 5);
    assert_eq!(count(&s, "SELECT count(*) FROM conversations WHERE content LIKE 'old%'").await, 0);
    assert_eq!(count(&s, "SELECT count(*) FROM agent_metrics").await, 10);
    // What is left still replicates (every kept row has its entry); nothing dead stays.
    assert_eq!(count(&s, "SELECT count(*) FROM _change_rows").await, 15);
    assert_eq!(dead_entries(&s).await, 0);
    let ok = s.read(|r| r.query("PRAGMA integrity_check", vec![])).await.unwrap();
    assert_eq!(ok.rows[0][0].as_str(), Some("ok"));

    // Later the new rows age out too.
    let later = s.retention_sweep_at(now + 3 * HOUR).await.unwrap();
    assert_eq!((later.conversations, later.metrics), (5, 10), "{later:?}");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retention_nothing_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let s = edgeswarm_testkit::open_store(dir.path().join("home.db")).await;
    let now = now_millis();
    fill(&s, now).await;
    let changes = count(&s, "SELECT count(*) FROM _changes").await;
    assert_eq!(s.retention_sweep_at(now + 100 * HOUR).await.unwrap(), Swept::default());
    assert_eq!(count(&s, "SELECT count(*) FROM conversations").await, 55);
    assert_eq!(count(&s, "SELECT count(*) FROM agent_metrics").await, 40);
    assert_eq!(count(&s, "SELECT count(*) FROM _changes").await, changes);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_entries_of_expired_kv_go_but_the_last_entry_stays() {
    let dir = tempfile::tempdir().unwrap();
    let s = edgeswarm_testkit::open_store(dir.path().join("home.db")).await;
    s.kv_set("ns", "keep", serde_json::json!(1), None).await.unwrap();
    for i in 0..20 {
        s.kv_set("ns", &format!("k{i}"), serde_json::json!(i), Some(Duration::from_millis(1)))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(s.kv_sweep_expired().await.unwrap(), 20);
    let before = count(&s, "SELECT count(*) FROM _changes").await;
    // One entry per key; the expired keys' entries are dead, but the last one (k19's)
    // must stay (its seq must not be reused), and `keep`'s names a live row.
    let n = s.compact_dead_changes(i64::MAX, 1000).await.unwrap();
    assert_eq!(n as i64, before - 2, "every dead entry but the last goes; `keep`'s stays");
    assert_eq!(
        count(&s, "SELECT count(*) FROM _changes WHERE tbl = 'kv' AND row_id LIKE 'ns%keep'").await,
        1
    );
    // Bounded by `max_seq`: nothing at or below 0.
    assert_eq!(s.compact_dead_changes(0, 1000).await.unwrap(), 0);
    s.shutdown().await.unwrap();
}
