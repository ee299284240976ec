//! User tables registered for replication, and a per-table conflict resolver.
use edgeswarm_store::SqlValue;
use edgeswarm_sync::{SyncError, SyncSystem};
use edgeswarm_testkit::sync::*;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_tables_replicate_and_resolvers_merge() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let regions = local_regions(dir.path(), &[("eu-central-1", 3)]);
        let a = open_store(&dir.path().join("a.db")).await;
        let b = open_store(&dir.path().join("b.db")).await;
        let sa = SyncSystem::start(a.clone(), regions.clone(), fast_cfg()).await.unwrap();
        let sb = SyncSystem::start(b.clone(), regions.clone(), fast_cfg()).await.unwrap();

        for s in [&a, &b] {
            s.execute_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", vec![])
                .await
                .unwrap();
            s.execute_sql("CREATE TABLE nokey (x TEXT)", vec![]).await.unwrap();
        }
        a.execute_sql("INSERT INTO notes (id, body) VALUES (1, 'before registering')", vec![])
            .await
            .unwrap();
        assert!(matches!(sa.replicate_table("missing").await, Err(SyncError::Table { .. })));
        assert!(matches!(sa.replicate_table("nokey").await, Err(SyncError::Table { .. })));
        assert!(matches!(sa.replicate_table("_changes").await, Err(SyncError::Table { .. })));
        sa.replicate_table("notes").await.unwrap();
        sb.replicate_table("notes").await.unwrap();
        a.execute_sql("INSERT INTO notes (id, body) VALUES (2, 'from a')", vec![])
            .await
            .unwrap();
        b.execute_sql("INSERT INTO notes (id, body) VALUES (3, 'from b')", vec![])
            .await
            .unwrap();
        wait_converged(&[&sa, &sb], &["eu-central-1"], Duration::from_secs(20)).await;
        b.execute_sql("UPDATE notes SET body = 'edited by b' WHERE id = 1", vec![])
            .await
            .unwrap();
        wait_converged(&[&sa, &sb], &["eu-central-1"], Duration::from_secs(20)).await;
        let q = a.read_sql("SELECT id, body FROM notes ORDER BY id", vec![]).await.unwrap();
        let bodies: Vec<_> = q.rows.iter().map(|r| r[1].as_str().unwrap().to_string()).collect();
        assert_eq!(bodies, vec!["edited by b", "from a", "from b"]);

        // A resolver on kv at node a: on conflict, write "merged".
        sa.set_resolver(
            "kv",
            Arc::new(|c: &edgeswarm_sync::Conflict| {
                let vi = c.winner.columns.iter().position(|x| x == "value")?;
                let merged = SqlValue::Text("\"merged\"".into());
                if c.winner.values[vi] == merged {
                    return None;
                }
                let mut v = c.winner.values.clone();
                v[vi] = merged;
                Some(v)
            }),
        );
        b.kv_set("ns", "k", serde_json::json!("b"), None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        a.kv_set("ns", "k", serde_json::json!("a"), None).await.unwrap();
        wait_converged(&[&sa, &sb], &["eu-central-1"], Duration::from_secs(20)).await;
        for s in [&a, &b] {
            assert_eq!(s.kv_get("ns", "k").await.unwrap().unwrap().value, serde_json::json!("merged"));
        }
        sa.shutdown().await;
        sb.shutdown().await;
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}
