//! Runs the search benchmark and prints one JSON line.
//!
//! `cargo run --release -p edgeswarm-bench --example search_bench [-- --scale]`
//! (`--scale` adds the 1M-entry point; slow.)

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut opts = edgeswarm_bench::search::BenchOpts::default();
    if std::env::args().any(|a| a == "--scale") {
        opts.scale_max = 1_000_000;
    }
    // Optional overrides for quick runs and for keeping the scratch files.
    if let Ok(n) = std::env::var("SEARCH_BENCH_ENTRIES") {
        opts.entries = n.parse().unwrap_or(opts.entries);
        opts.scale_max = opts.scale_max.max(opts.entries);
    }
    if let Ok(n) = std::env::var("SEARCH_BENCH_QUERIES") {
        opts.queries = n.parse().unwrap_or(opts.queries);
    }
    if let Ok(d) = std::env::var("SEARCH_BENCH_DIR") {
        opts.dir = Some(d.into());
    }
    match edgeswarm_bench::search::bench(opts).await {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}
