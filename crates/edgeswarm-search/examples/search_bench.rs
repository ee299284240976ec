//! Runs the search benchmark and prints one JSON line.
//!
//! `cargo run --release -p edgeswarm-search --example search_bench [-- --scale]`
//! (`--scale` adds the 1M-entry point; slow.)

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut opts = edgeswarm_search::BenchOpts::default();
    if std::env::args().any(|a| a == "--scale") {
        opts.scale_max = 1_000_000;
    }
    match edgeswarm_search::bench(opts).await {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}
