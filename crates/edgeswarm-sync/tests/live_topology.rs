//! Regions come and go on a running system, under load: a writer keeps committing
//! while a `file:` region and a real tursodb region are added and a region is
//! removed. The added regions are seeded from home and converge; the removed one
//! drains, leaves status, router and consistency waits, and gets no further pushes;
//! re-adding its name seeds it afresh.

use edgeswarm_core::{Knowledge, ReadConsistency, WriteConsistency};
use edgeswarm_store::Store;
use edgeswarm_sync::{LinkProfile, LocalLink, RegionConfig, RegionLink, SyncSystem};
use edgeswarm_testkit::sync::*;
use edgeswarm_testkit::tursodb::tursodb_binaries;
use edgeswarm_testkit::tursodb::TursoServer;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn rows_in(path: &std::path::Path) -> i64 {
    let l = LocalLink::open(
        "probe",
        path.to_str().unwrap(),
        LinkProfile::default(),
        edgeswarm_core::ChannelConfig::default().region_link,
    )
    .unwrap();
    l.query("SELECT COUNT(*) FROM knowledge", vec![]).await.unwrap().rows[0][0]
        .as_i64()
        .unwrap()
}

/// Publishes until `stop`; returns how many.
fn writer(store: Store, stop: Arc<AtomicBool>, n: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0usize;
        while !stop.load(Ordering::SeqCst) {
            store
                .publish(Knowledge::new(
                    "live",
                    format!("k{i}"),
                    format!("written while the topology changes #{i}"),
                ))
                .await
                .unwrap();
            i += 1;
            n.store(i, Ordering::SeqCst);
            if i.is_multiple_of(20) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_are_added_and_removed_under_load() {
    let (version, bin) = tursodb_binaries().into_iter().last().unwrap();
    tokio::time::timeout(Duration::from_secs(120), async {
        let dir = tempfile::tempdir().unwrap();
        let srv = TursoServer::start(&bin, &dir.path().join("turso.db"), None).await.unwrap();
        let regions = local_regions(dir.path(), &[("a", 2), ("b", 4)]);
        let store = open_store(&dir.path().join("home.db")).await;
        let sync = SyncSystem::start(store.clone(), regions, fast_cfg()).await.unwrap();
        let (stop, n) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let w = writer(store.clone(), stop.clone(), n.clone());

        tokio::time::sleep(Duration::from_millis(300)).await;
        sync.add_region(RegionConfig::local("c", region_path(dir.path(), "c"), 3))
            .await
            .unwrap();
        sync.add_region(RegionConfig::http("t", &srv.url, None)).await.unwrap();
        assert!(
            sync.add_region(RegionConfig::local("c", dir.path().join("x.db"), 1)).await.is_err(),
            "names stay unique"
        );
        assert_eq!(sync.regions(), vec!["a", "b", "c", "t"]);
        tokio::time::sleep(Duration::from_millis(300)).await;

        let before = n.load(Ordering::SeqCst);
        let removed = sync.remove_region("b").await.unwrap();
        eprintln!("{version}: removed {removed:?} with {before} written before");
        assert!(removed.drained, "b was healthy and should drain within remove_drain: {removed:?}");
        assert!(removed.acked_seq >= removed.target_seq);
        assert_eq!(sync.regions(), vec!["a", "c", "t"]);
        assert!(sync.sync_status().regions.iter().all(|r| r.region != "b"));
        assert!(sync.read_target(&ReadConsistency::Region("b".into())).is_err(), "router forgot b");
        assert!(sync.read_sql_at("b", "SELECT 1", vec![]).await.is_err());
        // A request already on the wire when the actor stopped may still land
        // (bounded by request_timeout); nothing starts after.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let b_rows = rows_in(&region_path(dir.path(), "b")).await;
        assert!(
            b_rows >= removed.target_seq.min(before as i64),
            "b got the rows committed before its removal"
        );

        tokio::time::sleep(Duration::from_millis(400)).await;
        stop.store(true, Ordering::SeqCst);
        w.await.unwrap();
        let total = n.load(Ordering::SeqCst) as i64;
        assert!(total > b_rows, "writes went on after the removal ({total} vs {b_rows})");

        let seq = sync.latest_seq().await.unwrap();
        let rep = sync
            .wait_replicated(seq, WriteConsistency::All, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{:#?}", sync.sync_status()));
        assert_eq!(rep.required, 3, "All counts the running regions");
        wait_converged(&[&sync], &["a", "c", "t"], Duration::from_secs(60)).await;
        let q = sync.read_sql_at("t", "SELECT COUNT(*) FROM knowledge", vec![]).await.unwrap();
        assert_eq!(
            q.rows[0][0].as_i64(),
            Some(total),
            "{version}: the live-added tursodb region holds everything"
        );

        // b got nothing after its removal, and home forgot it.
        assert_eq!(rows_in(&region_path(dir.path(), "b")).await, b_rows);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let q = store
            .read_sql(
                "SELECT (SELECT COUNT(*) FROM _sync_cursors WHERE region = 'b') + (SELECT COUNT(*) FROM edge_replicas WHERE region = 'b')",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(q.rows[0][0].as_i64(), Some(0), "b's cursor and status row are gone");

        // The name again, on a fresh file: seeded from home in full.
        sync.add_region(RegionConfig::local("b", dir.path().join("region-b2.db"), 1))
            .await
            .unwrap();
        let seq = sync.latest_seq().await.unwrap();
        sync.wait_replicated(seq, WriteConsistency::All, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(rows_in(&dir.path().join("region-b2.db")).await, total);

        sync.shutdown().await;
        store.shutdown().await.unwrap();
        drop(srv);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_down_region_does_not_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("home.db")).await;
    let sync = SyncSystem::start(store.clone(), local_regions(dir.path(), &[("a", 1), ("gone", 1)]), fast_cfg())
        .await
        .unwrap();
    sync.partition("gone", true).unwrap();
    for i in 0..50 {
        store.publish(Knowledge::new("t", format!("{i}"), "x")).await.unwrap();
    }
    // Let it go down (3 failed probes at 100 ms).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sync.sync_status().regions[1].health != edgeswarm_sync::Health::Down {
        assert!(std::time::Instant::now() < deadline, "never went down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t0 = std::time::Instant::now();
    let r = sync.remove_region("gone").await.unwrap();
    assert!(!r.drained && t0.elapsed() < Duration::from_secs(3), "{r:?}");
    assert!(sync.remove_region("gone").await.is_err(), "already removed");
    sync.shutdown().await;
    assert!(
        sync.add_region(RegionConfig::local("late", dir.path().join("late.db"), 1))
            .await
            .is_err(),
        "closed"
    );
    store.shutdown().await.unwrap();
}
