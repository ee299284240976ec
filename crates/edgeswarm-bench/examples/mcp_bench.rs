//! Runs the MCP bench without the CLI wiring:
//! `EDGESWARM_BIN=target/debug/edgeswarm cargo run -p edgeswarm-bench --example mcp_bench -- [CALLS]`
//! (what `edgeswarm bench mcp --json` prints).

#[tokio::main]
async fn main() {
    let calls = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(500);
    let opts = edgeswarm_bench::mcp::BenchOpts {
        calls,
        ..Default::default()
    };
    match edgeswarm_bench::mcp::bench(opts).await {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
