//! Hrana throughput to a real server beside a plain client (see
//! `edgeswarm_bench::remote`); prints one JSON line.
//! `cargo run -p edgeswarm-bench --example remote_bench -- [tursodb] [rows] [rounds]`
//! (tursodb default: `$EDGESWARM_TURSODB` / .ci/tools).

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bin = args
        .first()
        .map(std::path::PathBuf::from)
        .or_else(edgeswarm_bench::remote::default_tursodb)
        .ok_or(edgeswarm_testkit::tursodb::TURSODB_HINT)?;
    let dir = tempfile::tempdir()?;
    let mut o = edgeswarm_bench::remote::RemoteBenchOpts::new(dir.path(), bin);
    if let Some(r) = args.get(1).and_then(|s| s.parse().ok()) {
        o.rows = r;
    }
    if let Some(r) = args.get(2).and_then(|s| s.parse().ok()) {
        o.rounds = r;
    }
    println!("{}", edgeswarm_bench::remote::remote_bench(o).await?);
    Ok(())
}
