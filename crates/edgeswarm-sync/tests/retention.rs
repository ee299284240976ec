//! Retention and tombstone collection across home and a region: knowledge tombstones
//! are hard-deleted after `keep_history` once every puller passed them (the FTS index
//! stays sound), conversations and metrics past the store's retention go from the
//! region too, and home and region still converge. Real libSQL files throughout.
use edgeswarm_core::record::now_millis;
use edgeswarm_core::{Knowledge, Message, Metric, RetentionConfig, StoreConfig};
use edgeswarm_sync::SyncSystem;
use edgeswarm_testkit::sync::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knowledge_tombstones_are_collected_everywhere_and_the_fts_index_stays_sound() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let dir = tempfile::tempdir().unwrap();
        let regions = local_regions(dir.path(), &[("eu", 1)]);
        let path = region_path(dir.path(), "eu");
        let mut cfg = manual_compaction_cfg();
        cfg.keep_history = Duration::from_millis(1500);
        let a = open_store(&dir.path().join("a.db")).await;
        let sa = SyncSystem::start(a.clone(), regions.clone(), cfg.clone()).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..20 {
            let k = Knowledge::new("c", format!("topic {i}"), format!("alpha content number {i}"));
            ids.push(k.id.clone());
            a.publish(k).await.unwrap();
        }
        for id in &ids[..10] {
            assert!(delete_knowledge(&a, id).await);
        }
        wait_converged(&[&sa], &["eu"], Duration::from_secs(20)).await;
        assert_eq!(region_count(&path, "SELECT count(*) FROM knowledge WHERE deleted = 1"), 10);

        // Younger than keep_history: kept.
        let d = sa.compact_now().await.unwrap();
        assert_eq!(d.knowledge_tombstones, 0, "{d:?}");
        assert_eq!(count(&a, "SELECT count(*) FROM knowledge WHERE deleted = 1").await, 10);

        // Past it (the puller keeps its cursor fresh meanwhile): collected at home and in
        // the region, with the change-log and region-log entries that named them.
        tokio::time::sleep(Duration::from_millis(1700)).await;
        let d = sa.compact_now().await.unwrap();
        assert_eq!(d.knowledge_tombstones, 10, "{d:?}");
        assert!(d.dead_changes >= 9 && d.region_rows >= 10, "{d:?}");
        assert_eq!(count(&a, "SELECT count(*) FROM knowledge WHERE deleted = 1").await, 0);
        assert_eq!(count(&a, "SELECT count(*) FROM knowledge").await, 10);
        assert_eq!(region_count(&path, "SELECT count(*) FROM knowledge WHERE deleted = 1"), 0);
        assert_eq!(region_count(&path, "SELECT count(*) FROM knowledge"), 10);
        assert!(count(&a, "SELECT count(*) FROM _changes WHERE tbl = 'knowledge'").await <= 11);
        assert!(region_count(&path, "SELECT count(*) FROM _region_log WHERE tbl = 'knowledge'") <= 11);

        // The FTS index is sound and finds exactly the live entries.
        a.transact(|ctx| {
            ctx.execute(
                "INSERT INTO knowledge_fts(knowledge_fts, rank) VALUES ('integrity-check', 1)",
                vec![],
            )
        })
        .await
        .unwrap();
        let ok = a.read(|r| r.query("PRAGMA integrity_check", vec![])).await.unwrap();
        assert_eq!(ok.rows[0][0].as_str(), Some("ok"));
        assert_eq!(
            count(&a, "SELECT count(*) FROM knowledge_fts WHERE knowledge_fts MATCH 'alpha'").await,
            10
        );

        // A new write of a collected entry's content is stored, and everything converges.
        a.publish(Knowledge::new("c", "topic 0", "alpha content number 0")).await.unwrap();
        wait_converged(&[&sa], &["eu"], Duration::from_secs(20)).await;
        assert_eq!(region_count(&path, "SELECT count(*) FROM knowledge"), 11);
        sa.shutdown().await;
        a.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_applies_in_regions_as_at_home() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let dir = tempfile::tempdir().unwrap();
        let regions = local_regions(dir.path(), &[("eu", 1)]);
        let path = region_path(dir.path(), "eu");
        let cfg = manual_compaction_cfg();
        let hour = Duration::from_secs(3600);
        let mut sc = StoreConfig::at(dir.path().join("a.db"));
        sc.retention = RetentionConfig {
            conversations: Some(hour),
            metrics: Some(hour),
            ..RetentionConfig::default()
        };
        let a = open_store_cfg(sc).await;
        let sa = SyncSystem::start(a.clone(), regions.clone(), cfg.clone()).await.unwrap();
        let now = now_millis();
        for i in 0..40 {
            let mut m = Message::new("s", "user", format!("message {i}"));
            m.created_at = if i < 30 { now - 2 * 3_600_000 } else { now };
            a.publish(m).await.unwrap();
        }
        for i in 0..25 {
            let mut m = Metric::new("agent", "task", 1.0, i);
            m.ts = if i < 20 { now - 2 * 3_600_000 } else { now };
            a.publish(m).await.unwrap();
        }
        wait_converged(&[&sa], &["eu"], Duration::from_secs(20)).await;
        assert_eq!(region_count(&path, "SELECT count(*) FROM conversations"), 40);
        // The puller records its cursor past everything on its next pull.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let swept = a.retention_sweep().await.unwrap();
        assert_eq!((swept.conversations, swept.metrics), (30, 20), "{swept:?}");
        let d = sa.compact_now().await.unwrap();
        assert!(d.region_rows >= 50, "{d:?}");
        assert_eq!(region_count(&path, "SELECT count(*) FROM conversations"), 10);
        assert_eq!(region_count(&path, "SELECT count(*) FROM agent_metrics"), 5);
        // Their log entries went with them (the last entry always stays).
        assert!(
            region_count(
                &path,
                "SELECT count(*) FROM _region_log WHERE tbl IN ('conversations', 'agent_metrics')"
            ) <= 16
        );
        assert_eq!(count(&a, "SELECT count(*) FROM _change_rows").await, 15);

        // Home and region hold the same rows, and new writes still flow.
        a.publish(Message::new("s", "user", "after")).await.unwrap();
        wait_converged(&[&sa], &["eu"], Duration::from_secs(20)).await;
        assert_eq!(region_count(&path, "SELECT count(*) FROM conversations"), 11);
        sa.shutdown().await;
        a.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}
