//! Two swarm instances, each with its own home file, sharing the seed's regions. They
//! write conflicting updates to the same shared-memory key, one region is partitioned
//! and healed, and both nodes converge on the same rows (compared by content hash).
//!
//! `cargo run --release --example multi_node`

use edgeswarm::{Message, RegionConfig, Swarm};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> edgeswarm::Result<()> {
    let dir = std::env::temp_dir().join(format!("edgeswarm-multi-node-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("regions")).map_err(|e| edgeswarm::Error::Invalid(e.to_string()))?;
    let regions: Vec<RegionConfig> = edgeswarm_bench::sim::SEED_REGIONS
        .iter()
        .map(|(n, ms)| RegionConfig::local(*n, dir.join("regions").join(format!("{n}.db")), *ms))
        .collect();
    let a = Swarm::builder()
        .path(dir.join("node-a.db"))
        .regions(regions.clone())
        .start()
        .await?;
    let b = Swarm::builder().path(dir.join("node-b.db")).regions(regions).start().await?;
    println!("node a: {}\nnode b: {}", a.store().origin(), b.store().origin());

    // Conflicting updates: both nodes write the same key; the later stamp wins everywhere.
    a.store().kv_set("plan", "leader", json!("node-a"), None).await?;
    tokio::time::sleep(Duration::from_millis(5)).await;
    b.store().kv_set("plan", "leader", json!("node-b"), None).await?;

    // Partition the nearest region while both keep writing, then heal it.
    a.partition("us-west-2", true)?;
    b.partition("us-west-2", true)?;
    println!("us-west-2 partitioned");
    for i in 0..50 {
        a.add_conversation(Message::new("global-session-123", "user", format!("from a #{i}")))
            .await?;
        b.add_conversation(Message::new("global-session-123", "assistant", format!("from b #{i}")))
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.partition("us-west-2", false)?;
    b.partition("us-west-2", false)?;
    println!("us-west-2 healed");

    // Wait until both home files hold the same rows.
    let started = Instant::now();
    let converged = loop {
        let (ha, hb) = (checksums(&a).await?, checksums(&b).await?);
        if ha == hb {
            break Some(ha);
        }
        if started.elapsed() > Duration::from_secs(30) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let leader_a = a.store().kv_get("plan", "leader").await?.map(|e| e.value);
    let leader_b = b.store().kv_get("plan", "leader").await?.map(|e| e.value);
    println!("leader seen by a: {leader_a:?}, by b: {leader_b:?}");
    let ok = converged.is_some();
    match converged {
        Some(sums) => {
            println!("converged after {:?}:", started.elapsed());
            for (t, rows, hash) in sums {
                println!("  {t:<14} {rows:>5} rows  hash {hash:016x}");
            }
        }
        None => println!("NOT converged after 30 s"),
    }
    // The healed region catches up once its probe succeeds: every write reaches All.
    for (name, node) in [("a", &a), ("b", &b)] {
        if let Some(sync) = node.sync() {
            let seq = sync.latest_seq().await?;
            let t = Instant::now();
            match sync
                .wait_replicated(seq, edgeswarm::WriteConsistency::All, Duration::from_secs(20))
                .await
            {
                Ok(_) => println!(
                    "node {name}: every region holds every write ({:?} after the check started)",
                    t.elapsed()
                ),
                Err(e) => println!("node {name}: {e}"),
            }
        }
    }
    for r in a.sync_status().map(|s| s.regions).unwrap_or_default() {
        println!(
            "  {:<15} {:?} rtt {:?} ms lag {} rows",
            r.region,
            r.health,
            r.rtt_ewma_ms.map(|v| v.round()),
            r.lag_rows
        );
    }
    let conflicts = a.store().read_sql("SELECT count(*) FROM conflicts", vec![]).await?;
    println!("conflicts recorded at node a: {:?}", conflicts.rows[0][0]);
    a.shutdown().await?;
    b.shutdown().await?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

async fn checksums(s: &Swarm) -> edgeswarm::Result<Vec<(String, u64, u64)>> {
    let Some(sync) = s.sync() else { return Ok(Vec::new()) };
    Ok(sync
        .home_checksums()
        .await?
        .into_iter()
        .map(|c| (c.table, c.rows, c.hash))
        .collect())
}
