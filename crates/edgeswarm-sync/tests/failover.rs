//! Failover: the nearest region partitioned -> Nearest reads move to the next region
//! within 2 probe intervals and come back after heal; Quorum writes succeed with one
//! of four regions down; All reports the timeout and completes after heal.
use edgeswarm_core::{Knowledge, ReadConsistency, WriteConsistency};
use edgeswarm_sync::{Health, ReadTarget, SyncError, SyncSystem};
use edgeswarm_testkit::sync::*;
use std::time::{Duration, Instant};

const NEAREST: ReadConsistency = ReadConsistency::Nearest { max_lag: None };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nearest_fails_over_and_back_quorum_and_all() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let regions = local_regions(
            dir.path(),
            &[("us-west-2", 5), ("eu-central-1", 10), ("ap-southeast-1", 20), ("sa-east-1", 30)],
        );
        let store = open_store(&dir.path().join("home.db")).await;
        let cfg = fast_cfg();
        let probe = cfg.probe_interval;
        let sync = SyncSystem::start(store.clone(), regions, cfg).await.unwrap();
        store.publish(Knowledge::new("c", "warm", "up")).await.unwrap();
        let seq = sync.latest_seq().await.unwrap();
        sync.wait_replicated(seq, WriteConsistency::All, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(sync.read_target(&NEAREST).unwrap(), ReadTarget::Region("us-west-2".into()));

        // Partition the nearest region.
        sync.partition("us-west-2", true).unwrap();
        // The bound is 2 probe intervals of the runtime's time: on a loaded machine (CI
        // runs test binaries side by side on 2 cores) tasks wake late, so the lateness
        // this loop itself sees on its 5 ms sleeps is added, twice (the probe task
        // sleeps and is woken the same way).
        let t0 = Instant::now();
        let mut late = Duration::ZERO;
        while sync.read_target(&NEAREST).unwrap() != ReadTarget::Region("eu-central-1".into()) {
            assert!(
                t0.elapsed() < probe * 2 + late * 2,
                "Nearest did not fail over within 2 probe intervals ({:?}, scheduler lateness {late:?})",
                t0.elapsed()
            );
            let s = Instant::now();
            tokio::time::sleep(Duration::from_millis(5)).await;
            late = late.max(s.elapsed().saturating_sub(Duration::from_millis(5)));
        }
        eprintln!(
            "failed over after {:?} (probe interval {probe:?}, scheduler lateness {late:?})",
            t0.elapsed()
        );
        // Reads really run there.
        let (target, q) = sync.read_sql(&NEAREST, "SELECT COUNT(*) FROM knowledge", vec![]).await.unwrap();
        assert_eq!(target, ReadTarget::Region("eu-central-1".into()));
        assert_eq!(q.rows[0][0].as_i64(), Some(1));

        // Quorum (3 of 4) succeeds with one region down.
        store.publish(Knowledge::new("c", "during", "partition")).await.unwrap();
        let seq = sync.latest_seq().await.unwrap();
        let r = sync
            .wait_replicated(seq, WriteConsistency::Quorum, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.required, 3);
        assert!(!r.reached.contains(&"us-west-2".to_string()));
        // All times out and says what it reached.
        match sync.wait_replicated(seq, WriteConsistency::All, Duration::from_millis(300)).await {
            Err(SyncError::ConsistencyTimeout {
                reached_count,
                missing,
                required,
                ..
            }) => {
                assert_eq!(required, 4);
                assert_eq!(reached_count, 3);
                assert_eq!(missing, vec!["us-west-2".to_string()]);
            }
            other => panic!("expected a consistency timeout, got {other:?}"),
        }
        // Writes keep queueing while it is down.
        for i in 0..20 {
            store
                .publish(Knowledge::new("c", format!("queued {i}"), format!("while down {i}")))
                .await
                .unwrap();
        }
        tokio::time::sleep(probe * 3).await;
        let st = sync.sync_status();
        let us = &st.regions[0];
        assert_eq!(us.health, Health::Down, "{us:?}");
        assert!(us.lag_rows >= 21, "{us:?}");

        // Heal: Nearest comes back, the queue drains, All completes.
        sync.partition("us-west-2", false).unwrap();
        let t1 = Instant::now();
        while sync.read_target(&NEAREST).unwrap() != ReadTarget::Region("us-west-2".into()) {
            assert!(t1.elapsed() < Duration::from_secs(5), "Nearest did not come back after heal");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!("came back after {:?}", t1.elapsed());
        let seq2 = sync.latest_seq().await.unwrap();
        sync.wait_replicated(seq2, WriteConsistency::All, Duration::from_secs(10))
            .await
            .unwrap();
        let q = sync
            .read_sql_at("us-west-2", "SELECT COUNT(*) FROM knowledge", vec![])
            .await
            .unwrap();
        assert_eq!(q.rows[0][0].as_i64(), Some(22));
        // Freshness bound: a region with lag over max_lag is not chosen.
        let t = sync
            .read_target(&ReadConsistency::Nearest {
                max_lag: Some(Duration::from_secs(60)),
            })
            .unwrap();
        assert_eq!(t, ReadTarget::Region("us-west-2".into()));
        sync.shutdown().await;
        store.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}
