//! The seed's "Global Session Management" use case: a session readable from any agent.
//! `cargo run --example global_sessions`
use edgeswarm::{Message, Swarm};
use serde_json::json;

#[tokio::main]
async fn main() -> edgeswarm::Result<()> {
    let dir = std::env::temp_dir().join(format!("edgeswarm-sessions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| edgeswarm::Error::Invalid(e.to_string()))?;
    let swarm = Swarm::builder().path(dir.join("sessions.db")).start().await?;
    // Exactly the seed's add_conversation call.
    swarm
        .add_conversation(
            Message::new("global-session-123", "user", "Query from edge location")
                .metadata(json!({ "region": "us-west-2", "latency": 25 })),
        )
        .await?;
    swarm
        .add_conversation(Message::new("global-session-123", "assistant", "Served from the nearest region"))
        .await?;
    let page = swarm.get_conversations("global-session-123", None, 10).await?;
    for m in page.items {
        println!(
            "{:>9}: {}  {}",
            m.role,
            m.content,
            m.metadata.map(|v| v.to_string()).unwrap_or_default()
        );
    }
    swarm.shutdown().await
}
