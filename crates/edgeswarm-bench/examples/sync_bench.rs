//! Runs the sync benchmark and prints one JSON line (what `edgeswarm bench sync
//! --json` prints). `cargo run --release -p edgeswarm-bench --example sync_bench`.
//! Optional args: rows, lag seconds, lag writes/s.

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut opts = edgeswarm_bench::sync::BenchOpts::in_dir(dir.path());
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(r) = args.first().and_then(|s| s.parse().ok()) {
        opts.rows = r;
    }
    if let Some(s) = args.get(1).and_then(|s| s.parse().ok()) {
        opts.lag_secs = s;
    }
    if let Some(r) = args.get(2).and_then(|s| s.parse().ok()) {
        opts.lag_rate = r;
    }
    let v = edgeswarm_bench::sync::bench(opts).await?;
    println!("{v}");
    Ok(())
}
