//! `edgeswarm demo`: runs the swarm_sim scenario (written by the runtime, in
//! `edgeswarm::sim`) with a progress bar and prints its report tables.
//!
//! WIRING (lead), once `edgeswarm::sim` exists — replace the body of `run` after the
//! argument checks with:
//!
//! ```ignore
//! let report = edgeswarm::sim::run(edgeswarm::sim::SimOptions {
//!     agents: a.agents,
//!     seconds: a.seconds,
//!     db: settings.store.path.clone(),
//!     regions,                       // Vec<(String, u64)>: name, latency ms
//!     progress: !a.no_progress && !a.json,
//!     // Needed so the CLI can serve --metrics-addr, publish the status heartbeat and
//!     // let `edgeswarm regions ...` steer the run:
//!     on_start: Some(Box::new(move |swarm: edgeswarm::Swarm| {
//!         crate::cmd::demo::attach(swarm, metrics_addr)
//!     })),
//! }).await?;
//! if a.json { println!("{}", serde_json::to_string(&report)?); } else { println!("{report}"); }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use edgeswarm::Swarm;

use crate::cli::DemoArgs;
use crate::config;
use crate::error::{CliError, Result};
use crate::{metrics, open};

/// The seed report's four regions and their latencies.
pub const SEED_REGIONS: &[(&str, u64)] = &[("us-west-2", 25), ("eu-central-1", 45), ("ap-southeast-1", 85), ("sa-east-1", 120)];

/// Parses `NAME:MS` region flags; empty means the seed's regions.
pub fn parse_regions(raw: &[String]) -> Result<Vec<(String, u64)>> {
    if raw.is_empty() {
        return Ok(SEED_REGIONS.iter().map(|(n, l)| (n.to_string(), *l)).collect());
    }
    let mut out: Vec<(String, u64)> = Vec::new();
    for r in raw {
        let (n, l) = r
            .split_once(':')
            .ok_or_else(|| CliError::Invalid(format!("--regions entry `{r}` is not NAME:LATENCY_MS, e.g. us-west-2:25")))?;
        let l: u64 = l
            .parse()
            .map_err(|_| CliError::Invalid(format!("--regions entry `{r}`: latency `{l}` is not a number of milliseconds")))?;
        if n.is_empty() || out.iter().any(|(x, _)| x == n) {
            return Err(CliError::Invalid(format!("--regions: region name `{n}` is empty or repeated")));
        }
        out.push((n.to_string(), l));
    }
    Ok(out)
}

/// What the CLI attaches to a running demo swarm: the metrics endpoint (bound before the
/// simulation starts by the caller, so a port in use fails fast), the status heartbeat.
pub async fn attach(swarm: Swarm, metrics_addr: Option<SocketAddr>) -> Result<()> {
    if let Some(a) = metrics_addr {
        metrics::serve(a, metrics::Source::swarm(swarm.clone())).await?;
    }
    metrics::spawn_heartbeat(swarm, Duration::from_secs(1));
    Ok(())
}

pub async fn run(a: DemoArgs) -> Result<()> {
    let settings = config::load(&a.db)?;
    if a.agents == 0 || a.agents > 100_000 {
        return Err(CliError::Invalid(format!("--agents {} is out of range; use 1 to 100000", a.agents)));
    }
    if a.seconds == 0 {
        return Err(CliError::Invalid("--seconds must be at least 1".into()));
    }
    let _regions = parse_regions(&a.regions)?;
    open::check_path(&settings.store.path, false)?;
    if let Some(addr) = settings.metrics_addr {
        // Fail fast on a port in use, before any work starts.
        drop(tokio::net::TcpListener::bind(addr).await.map_err(|e| CliError::Bind {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?);
    }
    Err(CliError::not_available(
        "edgeswarm demo",
        "the swarm simulation (edgeswarm::sim) is not in this build yet; meanwhile run `cargo run --release --example swarm_sim`",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_flags() {
        assert_eq!(parse_regions(&[]).map(|v| v.len()).ok(), Some(4));
        assert_eq!(parse_regions(&["a:5".into()]).ok(), Some(vec![("a".to_string(), 5)]));
        assert!(parse_regions(&["a".into()]).is_err());
        assert!(parse_regions(&["a:1".into(), "a:2".into()]).is_err());
    }
}
