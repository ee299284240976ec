//! `cargo run --release -p edgeswarm-bench --example ingest_bench` — the ingest benchmark
//! without the CLI (prints one JSON line).
#[tokio::main]
async fn main() {
    let rows: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(256_000);
    let durability = match std::env::args().nth(2).as_deref() {
        Some("normal") => edgeswarm_core::Durability::Normal,
        _ => edgeswarm_core::Durability::Full,
    };
    let opts = edgeswarm_bench::store::IngestOpts {
        rows,
        durability,
        ..Default::default()
    };
    match edgeswarm_bench::store::ingest(opts).await {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    }
}
