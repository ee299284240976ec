//! The seed's "Distributed Knowledge Base" use case.
//! `cargo run --example knowledge_base`
use edgeswarm::{Knowledge, Swarm};
use serde_json::json;

#[tokio::main]
async fn main() -> edgeswarm::Result<()> {
    let dir = std::env::temp_dir().join(format!("edgeswarm-kb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| edgeswarm::Error::Invalid(e.to_string()))?;
    let swarm = Swarm::builder().path(dir.join("kb.db")).start().await?;
    // Exactly the seed's add_knowledge call.
    swarm
        .add_knowledge(
            Knowledge::new("edge-computing", "latency-optimization", "Best practices for edge deployment")
                .tags(["performance", "edge", "distributed"])
                .metadata(json!({ "regions": ["us-west-2", "eu-central-1"] })),
        )
        .await?;
    for hit in swarm.search_knowledge("edge deployment", 5).await? {
        println!("{} [{}] {} — {}", hit.id, hit.category, hit.topic, hit.snippet);
    }
    swarm.shutdown().await
}
