//! `edgeswarm demo`: runs the swarm simulation (`edgeswarm::sim`) on a swarm built from
//! the effective settings, with an indicatif progress bar on stderr, and prints the
//! report tables (or one JSON line). While it runs it serves `--metrics-addr`, publishes
//! the status heartbeat `edgeswarm status` reads, registers its regions in the control
//! namespace `edgeswarm/regions` and polls it for `edgeswarm regions ...` changes.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use edgeswarm::sim::{self, SimOptions, SimProgress};
use edgeswarm::Swarm;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::cli::DemoArgs;
use crate::cmd::regions::REGIONS_NS;
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

/// Registers the demo's regions in the control namespace (only those not there yet) and
/// polls it every 500 ms. A partition or heal flips that region's link switch at once;
/// an added or removed region takes effect at the next start (the sync layer starts its
/// SyncActors with the swarm).
fn control_regions(
    swarm: Swarm,
    regions: Vec<(String, u64)>,
    events: tokio::sync::mpsc::UnboundedSender<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let store = swarm.store().clone();
        for (name, latency) in &regions {
            let v = json!({"url": format!("file:regions/{name}.db"), "latency_ms": latency, "token_env": null, "partitioned": false});
            if let Err(e) = store.kv_cas(REGIONS_NS, name, None, v, None).await {
                tracing::debug!(error = %e, "region control unavailable");
                return;
            }
        }
        let mut known: BTreeMap<String, Value> = BTreeMap::new();
        let mut first = true;
        loop {
            let Ok(now) = store.kv_list(REGIONS_NS, "", 1000).await else {
                return;
            };
            let now: BTreeMap<String, Value> = now.into_iter().map(|e| (e.key, e.value)).collect();
            if !first {
                for (k, v) in &now {
                    match known.get(k) {
                        None => {
                            let _ = events.send(format!("region {k} added (takes effect at the next start)"));
                        }
                        Some(old) if old.get("partitioned") != v.get("partitioned") => {
                            let p = v.get("partitioned").and_then(Value::as_bool).unwrap_or(false);
                            let applied = match swarm.partition(k, p) {
                                Ok(()) => String::new(),
                                Err(e) => format!(" (not applied: {e})"),
                            };
                            let _ = events.send(format!("region {k} {}{applied}", if p { "partitioned" } else { "healed" }));
                        }
                        _ => {}
                    }
                }
                for k in known.keys().filter(|k| !now.contains_key(*k)) {
                    let _ = events.send(format!("region {k} removed (takes effect at the next start)"));
                }
            }
            first = false;
            known = now;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

pub async fn run(a: DemoArgs) -> Result<()> {
    let mut settings = config::load(&a.db)?;
    if let Some(e) = a.embedder {
        settings.embedder = e;
    }
    if a.agents == 0 || a.agents > 100_000 {
        return Err(CliError::Invalid(format!("--agents {} is out of range; use 1 to 100000", a.agents)));
    }
    if a.seconds == 0 || a.seconds > 86_400 {
        return Err(CliError::Invalid(format!(
            "--seconds {} is out of range; use 1 to 86400",
            a.seconds
        )));
    }
    let regions = if !a.regions.is_empty() || settings.regions.is_empty() {
        parse_regions(&a.regions)?
    } else {
        settings.regions.iter().map(|r| (r.name.clone(), r.latency_ms)).collect()
    };
    open::check_path(&settings.store.path, false)?;
    // Bind first: a port in use fails before any work starts.
    let listener = match settings.metrics_addr {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    // One agent crashes on purpose; one line instead of a backtrace.
    std::panic::set_hook(Box::new(|info| {
        tracing::warn!("agent panicked: {info} (its supervisor restarts it)");
    }));
    let opts = SimOptions {
        agents: a.agents,
        seconds: a.seconds,
        db: settings.store.path.clone(),
        regions: regions.clone(),
        ..Default::default()
    };
    // Regions from edgeswarm.toml are used as configured; otherwise each simulated
    // region is a libSQL file in `regions/` beside the database, behind its latency.
    let mut builder = settings.builder();
    if settings.regions.is_empty() {
        for (name, latency) in &regions {
            let dir = opts.regions_dir();
            std::fs::create_dir_all(&dir).map_err(|e| CliError::Invalid(format!("cannot create {}: {e}", dir.display())))?;
            builder = builder.region(edgeswarm::RegionConfig::local(
                name.clone(),
                dir.join(format!("{name}.db")),
                *latency,
            ));
        }
    }
    let swarm = builder.start().await?;
    if let Some(l) = listener {
        metrics::serve_on(l, metrics::Source::swarm(swarm.clone()));
    }
    let heartbeat = metrics::spawn_heartbeat(swarm.clone(), Duration::from_secs(1));
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let control = control_regions(swarm.clone(), regions, ev_tx);
    let progress = Arc::new(SimProgress::default());
    let show = !a.no_progress && !a.json;
    let bar = if show {
        ProgressBar::new(a.seconds * 1000)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos:>6}/{len} ms  {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (p, b) = (progress.clone(), bar.clone());
    let ticker = tokio::spawn(async move {
        loop {
            while let Ok(e) = ev_rx.try_recv() {
                if show {
                    b.println(e);
                } else {
                    eprintln!("{e}");
                }
            }
            b.set_position(p.elapsed_ms.load(Ordering::Relaxed));
            b.set_message(p.summary());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let report = sim::run_on(&swarm, &opts, progress).await;
    ticker.abort();
    control.abort();
    heartbeat.abort();
    bar.finish_and_clear();
    let shut = swarm.shutdown().await;
    let _ = std::panic::take_hook();
    let report = report?;
    shut?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| CliError::Invalid(format!("cannot encode the report: {e}")))?
        );
    } else {
        print!("{}", sim::render(&report));
    }
    Ok(())
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
