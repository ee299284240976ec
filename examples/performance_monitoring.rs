//! The seed's "Performance Monitoring" use case: its agent_metrics INSERT, unchanged.
//! `cargo run --example performance_monitoring`
use edgeswarm::{SqlValue, Swarm};

#[tokio::main]
async fn main() -> edgeswarm::Result<()> {
    let dir = std::env::temp_dir().join(format!("edgeswarm-perf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| edgeswarm::Error::Invalid(e.to_string()))?;
    let swarm = Swarm::builder().path(dir.join("perf.db")).start().await?;
    swarm
        .store()
        .execute_sql(
            "INSERT INTO agent_metrics \n          (agent_id, task_type, duration_ms, tokens_used) \n          VALUES (?, ?, ?, ?)",
            vec![
                "agent-123".into(),
                "code-analysis".into(),
                SqlValue::Integer(1250),
                SqlValue::Integer(3500),
            ],
        )
        .await?;
    let m = swarm.metrics(None).await?;
    println!("{}", serde_json::to_string_pretty(&m).unwrap_or_default());
    swarm.shutdown().await
}
