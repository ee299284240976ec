//! The seed report's own SQL, run exactly as written against the database swarm_sim
//! leaves behind, returns real rows.

use edgeswarm::SqlValue;
use edgeswarm_bench::sim::{self, SimOptions, SimProgress};
use std::sync::Arc;

const SEED_PERFORMANCE: &str = "SELECT operation_type, AVG(throughput) as avg_ops_per_sec
FROM performance_tests GROUP BY operation_type;";

const SEED_METRICS_INSERT: &str = "INSERT INTO agent_metrics 
          (agent_id, task_type, duration_ms, tokens_used) 
          VALUES (?, ?, ?, ?)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_queries_return_real_rows_after_swarm_sim() {
    let dir = edgeswarm_testkit::temp_dir();
    let db = dir.path().join("edgeswarm.db");
    let opts = SimOptions {
        agents: 8,
        seconds: 2,
        db: db.clone(),
        ..Default::default()
    };
    let swarm = edgeswarm_testkit::open_swarm(&db).await;
    let report = sim::run_on(&swarm, &opts, Arc::new(SimProgress::default())).await.unwrap();
    assert!(report.tasks_done > 0, "agents did work");
    assert_eq!(report.agent_restarts, 1, "the crashing agent was restarted once");
    swarm.shutdown().await.unwrap();

    // Reopen the file the simulation left behind and run the seed's SQL unchanged.
    let swarm = edgeswarm_testkit::open_swarm(&db).await;
    let perf = swarm.store().read_sql(SEED_PERFORMANCE, vec![]).await.unwrap();
    assert_eq!(perf.columns, vec!["operation_type", "avg_ops_per_sec"]);
    let ops: Vec<&str> = perf.rows.iter().filter_map(|r| r[0].as_str()).collect();
    assert!(ops.contains(&"INSERT") && ops.contains(&"SELECT"), "{ops:?}");
    assert!(
        perf.rows.iter().all(|r| r[1].as_f64().unwrap_or(0.0) > 0.0),
        "measured, non-zero throughput"
    );

    let ins = swarm
        .store()
        .execute_sql(
            SEED_METRICS_INSERT,
            vec![
                "agent-123".into(),
                "code-analysis".into(),
                SqlValue::Integer(1250),
                SqlValue::Integer(3500),
            ],
        )
        .await
        .unwrap();
    assert_eq!(ins.rows_affected, 1);
    let row = swarm
        .store()
        .read_sql(
            "SELECT duration_ms, tokens_used, hlc > 0, origin != '' FROM agent_metrics WHERE agent_id = 'agent-123'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(row.rows.len(), 1);
    assert_eq!(row.rows[0][1], SqlValue::Integer(3500));
    assert_eq!(row.rows[0][2], SqlValue::Integer(1), "raw SQL rows are stamped for replication");
    assert_eq!(row.rows[0][3], SqlValue::Integer(1));
    let logged = swarm
        .store()
        .read_sql(
            "SELECT count(*) FROM _change_rows WHERE row_id IN (SELECT id FROM agent_metrics WHERE agent_id = 'agent-123')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(logged.rows[0][0], SqlValue::Integer(1), "and logged for sync");
    let m = swarm.metrics(None).await.unwrap();
    assert!(m.by_task_type.iter().any(|a| a.key == "code-analysis" && a.count > 1));
    let integrity = swarm.store().read_sql("PRAGMA integrity_check", vec![]).await.unwrap();
    assert_eq!(integrity.rows[0][0].as_str(), Some("ok"));
    swarm.shutdown().await.unwrap();
}
