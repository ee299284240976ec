//! The main job: a swarm of agents in the seed's four regions.
//!
//! `cargo run --release --example swarm_sim [-- --agents 64 --seconds 15 --db ./edgeswarm.db]`

use clap::Parser;
use edgeswarm_bench::sim::{self, SimOptions, SimProgress};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Simulate an edgeswarm agent swarm and print the seed's tables from measured numbers")]
struct Args {
    /// Number of agents (spread over the regions).
    #[arg(long, default_value_t = 64)]
    agents: usize,
    /// How long the agents work, in seconds.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Home database file (kept between runs); region files go to `regions/` beside it.
    #[arg(long, default_value = "./edgeswarm.db")]
    db: std::path::PathBuf,
    /// Run without regions (no replication).
    #[arg(long)]
    no_regions: bool,
    /// Serve the live dashboard at http://ADDR/ while the simulation runs (e.g. 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    dashboard: Option<std::net::SocketAddr>,
    /// Token for the dashboard (required when --dashboard is not a loopback address).
    #[arg(long, env = "EDGESWARM_DASHBOARD_TOKEN", hide_env_values = true)]
    dashboard_token: Option<String>,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    // One agent crashes on purpose; say so in one line instead of a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("agent panicked: {info} (its supervisor restarts it)");
    }));
    let opts = SimOptions {
        agents: a.agents,
        seconds: a.seconds,
        db: a.db.clone(),
        ..Default::default()
    };
    let builder = match opts.builder() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let swarm = match builder.start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the swarm: {e}");
            std::process::exit(1);
        }
    };
    let dashboard = match a.dashboard {
        Some(addr) => match swarm
            .serve_dashboard_with(edgeswarm::DashboardConfig::new(addr).token(a.dashboard_token.clone()))
            .await
        {
            Ok(d) => {
                eprintln!("dashboard: {}", d.url());
                Some(d)
            }
            Err(e) => {
                eprintln!("error: {e}");
                let _ = swarm.shutdown().await;
                std::process::exit(1);
            }
        },
        None => None,
    };
    let progress = Arc::new(SimProgress::default());
    let bar = ProgressBar::new(opts.seconds * 1000);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos:>5}/{len} ms  {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (p, b) = (progress.clone(), bar.clone());
    let ticker = tokio::spawn(async move {
        loop {
            b.set_position(p.elapsed_ms.load(Ordering::Relaxed));
            b.set_message(p.summary());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let report = sim::run_on(&swarm, &opts, progress).await;
    ticker.abort();
    bar.finish_and_clear();
    let shut = swarm.shutdown().await;
    if let Some(d) = dashboard {
        d.stop().await;
    }
    match (report, shut) {
        (Ok(r), Ok(())) => print!("{}", sim::render(&r)),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
