//! The facade's live topology: a swarm started with no region (`live_regions()`) gets
//! one added while it runs (seeded from home, so earlier writes arrive too), serves
//! `All` writes and region reads through it, then drops it again.
use edgeswarm::{Knowledge, ReadConsistency, ReadTarget, RegionConfig, Swarm, WriteConsistency};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_added_and_removed_on_a_running_swarm() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::builder()
        .path(dir.path().join("home.db"))
        .live_regions()
        .start()
        .await
        .unwrap();
    for i in 0..20 {
        swarm
            .publish_with(
                Knowledge::new("live", format!("before {i}"), format!("written before the region existed #{i}")),
                WriteConsistency::Local,
                Duration::from_secs(1),
            )
            .await
            .unwrap();
    }
    swarm
        .add_region(RegionConfig::local("late", dir.path().join("late.db"), 1))
        .await
        .unwrap();
    let r = swarm
        .publish_with(
            Knowledge::new("live", "after", "written once it runs"),
            WriteConsistency::All,
            Duration::from_secs(20),
        )
        .await
        .unwrap()
        .expect("a replication report");
    assert_eq!(r.reached, vec!["late".to_string()]);
    let (target, q) = swarm
        .read_sql_with(&ReadConsistency::Region("late".into()), "SELECT COUNT(*) FROM knowledge", vec![])
        .await
        .unwrap();
    assert_eq!(target, ReadTarget::Region("late".into()));
    assert_eq!(
        q.rows[0][0].as_i64(),
        Some(21),
        "seeded from home: the earlier writes are there too"
    );
    let removed = swarm.remove_region("late").await.unwrap();
    assert!(removed.drained, "{removed:?}");
    assert!(swarm.sync_status().unwrap().regions.is_empty());
    assert!(swarm
        .read_sql_with(&ReadConsistency::Region("late".into()), "SELECT 1", vec![])
        .await
        .is_err());
    swarm.shutdown().await.unwrap();
}
