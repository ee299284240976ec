//! Basic two-node replication through two local regions.
use edgeswarm_core::{Knowledge, Metric, ReadConsistency, WriteConsistency};
use edgeswarm_store::SqlValue;
use edgeswarm_sync::{ReadTarget, SyncSystem};
use edgeswarm_testkit::sync::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_converge_through_shared_regions() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let regions = local_regions(dir.path(), &[("us-west-2", 5), ("eu-central-1", 10)]);
        let a = open_store(&dir.path().join("a.db")).await;
        let b = open_store(&dir.path().join("b.db")).await;
        let sa = SyncSystem::start(a.clone(), regions.clone(), fast_cfg()).await.unwrap();
        let sb = SyncSystem::start(b.clone(), regions.clone(), fast_cfg()).await.unwrap();

        a.publish(Knowledge::new("c", "t1", "hello from a")).await.unwrap();
        a.publish(Metric::new("ag", "task", 1.0, 5)).await.unwrap();
        b.kv_set("ns", "k", serde_json::json!(1), None).await.unwrap();
        // Two nodes' stamps in the same millisecond tie-break on origin, so make a's
        // write later in wall time for the "later write wins" check below.
        tokio::time::sleep(Duration::from_millis(5)).await;
        a.kv_set("ns", "k", serde_json::json!(2), None).await.unwrap();
        // The seed's raw insert replicates too.
        a.execute_sql(
            "INSERT INTO agent_metrics (agent_id, task_type, duration_ms, tokens_used) VALUES (?, ?, ?, ?)",
            vec!["agent-123".into(), "code-analysis".into(), SqlValue::Integer(1250), SqlValue::Integer(3500)],
        )
        .await
        .unwrap();

        let seq = sa.latest_seq().await.unwrap();
        let r = sa.wait_replicated(seq, WriteConsistency::All, Duration::from_secs(10)).await.unwrap();
        assert_eq!(r.reached.len(), 2);

        let sums = wait_converged(&[&sa, &sb], &["us-west-2", "eu-central-1"], Duration::from_secs(20)).await;
        let km = sums.iter().find(|s| s.table == "agent_metrics").unwrap();
        assert_eq!(km.rows, 2);
        let kv = b.kv_get("ns", "k").await.unwrap().unwrap();
        assert_eq!(kv.value, serde_json::json!(2), "later write wins");
        let ka = a.kv_get("ns", "k").await.unwrap().unwrap();
        assert_eq!(ka.value, kv.value);
        // The loser was recorded as a conflict at the node that saw it lose.
        let c = a.read_sql("SELECT COUNT(*) FROM conflicts WHERE tbl = 'kv'", vec![]).await.unwrap();
        let c2 = b.read_sql("SELECT COUNT(*) FROM conflicts WHERE tbl = 'kv'", vec![]).await.unwrap();
        assert!(c.rows[0][0].as_i64().unwrap() + c2.rows[0][0].as_i64().unwrap() >= 1);

        // Nearest read goes to the lower-latency region.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            sa.read_target(&ReadConsistency::Nearest { max_lag: None }).unwrap(),
            ReadTarget::Region("us-west-2".into())
        );
        let q = sa.read_sql_at("eu-central-1", "SELECT COUNT(*) FROM knowledge", vec![]).await.unwrap();
        assert_eq!(q.rows[0][0], SqlValue::Integer(1));

        // The seed's analytics query returns real rows.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let q = a
            .read_sql(
                "WITH regional_stats AS (SELECT region, COUNT(*) as transactions, AVG(latency_ms) as avg_latency FROM edge_replicas JOIN distributed_transactions ON region = source_region GROUP BY region) SELECT * FROM regional_stats WHERE avg_latency < 100 ORDER BY transactions DESC;",
                vec![],
            )
            .await
            .unwrap();
        assert!(!q.rows.is_empty(), "seed analytics query returned no rows");
        let q = a
            .read_sql("SELECT region, avg_latency_ms, performance_tier FROM edge_replicas ORDER BY avg_latency_ms", vec![])
            .await
            .unwrap();
        assert_eq!(q.rows.len(), 2);
        println!("{}", serde_json::to_string_pretty(&sa.sync_status()).unwrap());
        sa.shutdown().await;
        sb.shutdown().await;
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}
