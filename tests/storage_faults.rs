//! Acks are truthful across a writer crash: every write is either acked and present
//! exactly once, or reported failed to its caller; retries stay single.

use edgeswarm_core::{Metric, StoreConfig};
use edgeswarm_store::{SqlValue, StoreError};
use std::collections::HashSet;
use std::sync::atomic::Ordering;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_panic_mid_batch_fails_or_acks_every_write_and_restarts() {
    let (_dir, store) = edgeswarm_testkit::temp_store().await;
    // Warm up, then arm a panic 37 ops into some later batch.
    store.publish(Metric::new("warm", "t", 1.0, 1)).await.unwrap();
    store.faults().panic_after_ops.store(37, Ordering::SeqCst);

    let mut tasks = Vec::new();
    for p in 0..16 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failed = Vec::new();
            for i in 0..50 {
                let m = Metric::new(format!("p{p}"), "fault", i as f64, 1);
                let id = m.id.clone();
                match s.publish(m.clone()).await {
                    Ok(_) => acked.push(id),
                    Err(StoreError::WriterCrashed(_)) => failed.push(m),
                    Err(e) => panic!("unexpected error kind: {e:?}"),
                }
            }
            (acked, failed)
        }));
    }
    let mut acked = Vec::new();
    let mut failed = Vec::new();
    for t in tasks {
        let (a, f) = t.await.unwrap();
        acked.extend(a);
        failed.extend(f);
    }
    assert!(!failed.is_empty(), "the injected panic must fail some in-flight writes");
    assert_eq!(acked.len() + failed.len(), 800);
    assert_eq!(store.stats().writer_restarts, 1, "the supervisor restarted the writer once");

    // Every acked id is present exactly once.
    for id in &acked {
        let r = store
            .read_sql("SELECT count(*) FROM agent_metrics WHERE id = ?1", vec![SqlValue::Text(id.clone())])
            .await
            .unwrap();
        assert_eq!(r.rows[0][0], SqlValue::Integer(1), "acked write {id} must be stored once");
    }
    // Failed writes were not stored (their batch rolled back)...
    let failed_ids: HashSet<String> = failed.iter().map(|m| m.id.clone()).collect();
    let mut present_failed = 0;
    for id in &failed_ids {
        let r = store
            .read_sql("SELECT count(*) FROM agent_metrics WHERE id = ?1", vec![SqlValue::Text(id.clone())])
            .await
            .unwrap();
        present_failed += r.rows[0][0].as_i64().unwrap();
    }
    assert_eq!(present_failed, 0, "a write reported failed must not be on disk");
    // ...and retrying them (same ids) stores each exactly once, even retried twice.
    for m in &failed {
        store.publish(m.clone()).await.unwrap();
        store.publish(m.clone()).await.unwrap();
    }
    let total = store
        .read_sql("SELECT count(*) FROM agent_metrics WHERE task_type = 'fault'", vec![])
        .await
        .unwrap();
    assert_eq!(total.rows[0][0], SqlValue::Integer(800));
    let changes = store
        .read_sql("SELECT count(*), count(DISTINCT row_id) FROM _change_rows", vec![])
        .await
        .unwrap();
    assert_eq!(
        changes.rows[0][0],
        SqlValue::Integer(801),
        "one change-log row per stored write, no duplicates"
    );
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commit_fails_every_sender_in_the_batch() {
    let (_dir, store) = edgeswarm_testkit::temp_store().await;
    store.faults().fail_next_commit.store(true, Ordering::SeqCst);
    let mut acks = Vec::new();
    for i in 0..100 {
        acks.push(store.enqueue_record(Metric::new("a", "commit-fail", i as f64, 1)).await.unwrap());
    }
    let mut ok = 0;
    let mut failed = 0;
    for a in acks {
        match a.wait().await {
            Ok(_) => ok += 1,
            Err(StoreError::BatchFailed { cause }) => {
                assert!(cause.to_string().contains("injected commit failure"), "{cause}");
                failed += 1
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(failed >= 1);
    let stored = store.read_sql("SELECT count(*) FROM agent_metrics", vec![]).await.unwrap().rows[0][0]
        .as_i64()
        .unwrap();
    assert_eq!(stored, ok, "exactly the acked writes are stored");
    store
        .publish(Metric::new("a", "after", 1.0, 1))
        .await
        .expect("the writer keeps going after a failed batch");
    store.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_backpressure_and_overloaded() {
    let dir = edgeswarm_testkit::temp_dir();
    let mut cfg = StoreConfig::at(dir.path().join("home.db"));
    cfg.queue_capacity = 8;
    let store = edgeswarm_testkit::open_store_with(cfg).await;
    // Fill the queue without waiting for acks until try_publish refuses.
    let mut acks = Vec::new();
    let mut overloaded = false;
    for i in 0..10_000 {
        match store.try_publish(Metric::new("a", "bp", i as f64, 1)) {
            Ok(a) => acks.push(a),
            Err(StoreError::Overloaded { capacity }) => {
                assert_eq!(capacity, 8);
                overloaded = true;
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(overloaded, "try_publish must report Overloaded when the queue is full");
    assert!(store.stats().queue_depth <= 8, "the queue never holds more than its capacity");
    // The waiting variant still gets through.
    store.publish(Metric::new("a", "bp", 0.0, 1)).await.unwrap();
    for a in acks {
        a.wait().await.unwrap();
    }
    store.shutdown().await.unwrap();
}
