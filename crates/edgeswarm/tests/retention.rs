//! The swarm's retention sweeper: with `[retention]` set, conversations and metrics
//! older than their retention go on their own; without it nothing does.
use edgeswarm::{Message, Metric, RetentionConfig, Swarm};
use std::time::{Duration, Instant};

async fn rows(s: &Swarm, table: &str) -> i64 {
    let q = s.store().read_sql(&format!("SELECT count(*) FROM {table}"), vec![]).await.unwrap();
    q.rows[0][0].as_i64().unwrap()
}

async fn fill(s: &Swarm) {
    let now = edgeswarm::now_millis();
    for i in 0..10 {
        let mut m = Message::new("s", "user", format!("message {i}"));
        m.created_at = if i < 6 { now - 3_600_000 } else { now };
        s.add_conversation(m).await.unwrap();
        let mut m = Metric::new("a", "t", 1.0, i);
        m.ts = if i < 4 { now - 3_600_000 } else { now };
        s.record_metric(m).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_deletes_rows_past_their_retention_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::builder()
        .path(dir.path().join("home.db"))
        .retention(RetentionConfig {
            conversations: Some(Duration::from_secs(60)),
            metrics: Some(Duration::from_secs(600)),
            sweep_interval: Duration::from_millis(50),
            ..RetentionConfig::default()
        })
        .start()
        .await
        .unwrap();
    fill(&swarm).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while rows(&swarm, "conversations").await > 4 || rows(&swarm, "agent_metrics").await > 6 {
        assert!(Instant::now() < deadline, "the sweeper did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The young rows stay, sweep after sweep.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!((rows(&swarm, "conversations").await, rows(&swarm, "agent_metrics").await), (4, 6));
    swarm.shutdown().await.unwrap();

    // The default keeps everything.
    let dir = tempfile::tempdir().unwrap();
    let swarm = Swarm::builder().path(dir.path().join("home.db")).start().await.unwrap();
    fill(&swarm).await;
    assert_eq!(swarm.store().retention_sweep().await.unwrap(), edgeswarm::Swept::default());
    assert_eq!((rows(&swarm, "conversations").await, rows(&swarm, "agent_metrics").await), (10, 10));
    swarm.shutdown().await.unwrap();
}
