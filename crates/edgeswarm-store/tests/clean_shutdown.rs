//! `Store::shutdown` checkpoints with TRUNCATE and closes every connection (writer,
//! checkpointer, watchdog, read pool): no `-wal` or `-shm` file is left, so copying the
//! `.db` alone copies everything.

use edgeswarm_core::{Message, Metric, StoreConfig};
use edgeswarm_store::Store;
use std::path::Path;

fn side(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_wal_or_shm_and_the_db_alone_holds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("home.db");
    let store = Store::open(StoreConfig::at(&db)).await.unwrap();
    // Enough writes to cross the checkpointer's threshold, and reads on every reader.
    let body = "y".repeat(8 << 10);
    let mut acks = Vec::new();
    for i in 0..2000 {
        acks.push(
            store
                .enqueue_record(Message::new("s", "user", format!("{i} {body}")))
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.wait().await.unwrap();
    }
    store.kv_set("ns", "k", serde_json::json!("v"), None).await.unwrap();
    for _ in 0..16 {
        store.read_sql("SELECT count(*) FROM conversations", vec![]).await.unwrap();
    }
    assert!(side(&db, "-wal").exists(), "WAL mode while open");
    store.publish(Metric::new("a", "last", 1.0, 1)).await.unwrap();
    store.shutdown().await.unwrap();
    assert!(!side(&db, "-wal").exists(), "no -wal after shutdown");
    assert!(!side(&db, "-shm").exists(), "no -shm after shutdown");

    // The .db alone, copied elsewhere, has every write.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let store = Store::open(StoreConfig::at(&copy)).await.unwrap();
    let n = |sql: &'static str| {
        let s = store.clone();
        async move { s.read_sql(sql, vec![]).await.unwrap().rows[0][0].as_i64().unwrap() }
    };
    assert_eq!(n("SELECT count(*) FROM conversations").await, 2000);
    assert_eq!(n("SELECT count(*) FROM agent_metrics WHERE task_type = 'last'").await, 1);
    assert_eq!(n("SELECT count(*) FROM kv").await, 1);
    store.shutdown().await.unwrap();
    assert!(!side(&copy, "-wal").exists() && !side(&copy, "-shm").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_of_an_idle_store_and_a_second_shutdown_are_clean() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("idle.db");
    let store = Store::open(StoreConfig::at(&db)).await.unwrap();
    store.shutdown().await.unwrap();
    assert!(!side(&db, "-wal").exists() && !side(&db, "-shm").exists());
    assert!(store.shutdown().await.is_ok() || store.publish(Metric::new("a", "t", 1.0, 1)).await.is_err());
    assert!(!side(&db, "-wal").exists() && !side(&db, "-shm").exists());
}
