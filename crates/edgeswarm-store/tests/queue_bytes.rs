//! The writer queue is bounded in bytes as well as in writes: a flood of 1 MiB writes
//! keeps memory flat. Its own test binary, so the process's RSS is this test's alone.

use edgeswarm_core::{Message, StoreConfig};
use edgeswarm_store::{Store, StoreError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The process's resident set and its peak so far, in MiB (Linux).
fn rss_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// 1 MiB writes queued faster than the writer commits them: the queue holds at most
/// `queue_bytes` (default 64 MiB) of them. 320 MiB go through; the process's peak RSS
/// stays under 200 MiB (120 MiB measured). With only the item bound (65,536 writes) the same flood queued
/// every write while the writer was held: over 320 MiB of queue alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_1_mib_writes_is_bounded_in_bytes() {
    const LIMIT_MIB: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::at(dir.path().join("home.db"));
    assert_eq!(cfg.queue_bytes, 64 << 20, "the documented default");
    let store = Store::open(cfg).await.unwrap();
    let content = "x".repeat(1 << 20);

    // Hold the writer (until `release` is set, at most 30 s) so the queue fills up.
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let hold = store
        .enqueue_transact(move |_| {
            let t = std::time::Instant::now();
            while !r.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // try_publish refuses once the byte budget is spent, long before the item bound.
    let mut acks = Vec::new();
    let overloaded = loop {
        match store.try_publish(Message::new("s", "user", content.clone())) {
            Ok(a) => acks.push(a),
            Err(e @ StoreError::Overloaded { .. }) => break e,
            Err(e) => panic!("{e:?}"),
        }
        assert!(acks.len() <= 64, "the byte budget must stop a flood of 1 MiB writes");
    };
    assert!(overloaded.is_retryable());
    assert!(acks.len() >= 60, "about 64 MiB of 1 MiB writes fit: {}", acks.len());
    let st = store.stats();
    assert!(
        st.queue_bytes <= st.queue_bytes_capacity,
        "{} > {}",
        st.queue_bytes,
        st.queue_bytes_capacity
    );
    assert_eq!(st.queue_bytes_capacity, 64 << 20);
    let first = acks.len() as i64;

    // The waiting publish waits for bytes (backpressure) instead of piling up.
    let s = store.clone();
    let c = content.clone();
    let producer = tokio::spawn(async move {
        let mut acks = Vec::new();
        for _ in 0..256 {
            acks.push(s.enqueue_record(Message::new("s", "user", c.clone())).await.unwrap());
        }
        acks
    });
    // Let the producer fill the queue while the writer is held, then let it go.
    let mut peak_queue = 0;
    for _ in 0..100 {
        peak_queue = peak_queue.max(store.stats().queue_bytes);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!producer.is_finished(), "the producer waits for queue space");
    release.store(true, Ordering::SeqCst);
    while !producer.is_finished() {
        peak_queue = peak_queue.max(store.stats().queue_bytes);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hold.wait().await.unwrap();
    for a in producer.await.unwrap().into_iter().chain(acks) {
        a.wait().await.unwrap();
    }
    let (_, peak) = rss_mib();
    assert!(peak_queue <= 64 << 20, "queue bytes {peak_queue}");
    assert!(
        peak < LIMIT_MIB,
        "peak RSS {peak} MiB while flooding 320 MiB of writes; limit {LIMIT_MIB} MiB"
    );
    eprintln!("peak RSS {peak} MiB, peak queue {} MiB", peak_queue >> 20);
    let n = store.read_sql("SELECT count(*) FROM conversations", vec![]).await.unwrap().rows[0][0].as_i64();
    assert_eq!(n, Some(256 + first), "every acked write is stored");
    store.shutdown().await.unwrap();
}
