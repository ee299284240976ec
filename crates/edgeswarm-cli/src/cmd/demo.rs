//! `edgeswarm demo`: runs the swarm simulation (`edgeswarm_bench::sim`) on a swarm built from
//! the effective settings, with an indicatif progress bar on stderr, and prints the
//! report tables (or one JSON line). While it runs it serves `--metrics-addr`, publishes
//! the status heartbeat `edgeswarm status` reads, registers its regions in the control
//! namespace `edgeswarm/regions` and polls it for `edgeswarm regions ...` changes,
//! which it applies live (regions added and removed without a restart).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use edgeswarm::Swarm;
use edgeswarm_bench::sim::{self, SimOptions, SimProgress, SEED_REGIONS};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::cli::DemoArgs;
use crate::cmd::regions::REGIONS_NS;
use crate::config;
use crate::error::{CliError, Result};
use crate::{metrics, open};

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

/// The region a control-namespace entry describes (`url`, `latency_ms`, `token_env`,
/// `ca_file`), or why not.
fn region_from_entry(name: &str, v: &Value) -> std::result::Result<edgeswarm::RegionConfig, String> {
    let url = v.get("url").and_then(Value::as_str).ok_or("the entry has no url")?;
    Ok(edgeswarm::RegionConfig {
        name: name.to_string(),
        url: url.to_string(),
        latency_ms: v.get("latency_ms").and_then(Value::as_u64).unwrap_or(0),
        token_env: v.get("token_env").and_then(Value::as_str).map(str::to_string),
        ca_file: v.get("ca_file").and_then(Value::as_str).map(std::path::PathBuf::from),
    })
}

/// The control-namespace entry of a running region.
fn entry_of(r: &edgeswarm::RegionConfig) -> Value {
    json!({"url": r.url, "latency_ms": r.latency_ms, "token_env": r.token_env, "ca_file": r.ca_file, "partitioned": false})
}

/// Registers the demo's regions in the control namespace (only those not there yet) and
/// polls it every 500 ms, applying each change to the running swarm: an added entry
/// starts a region (seeded from home), a deleted one removes it (drained for at most
/// `remove_drain`, then abandoned), a partition or heal flips that region's link switch.
/// Entries present at start but not running (added while no demo ran) are started too.
fn control_regions(
    swarm: Swarm,
    regions: Vec<edgeswarm::RegionConfig>,
    events: tokio::sync::mpsc::UnboundedSender<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let store = swarm.store().clone();
        for r in &regions {
            if let Err(e) = store.kv_cas(REGIONS_NS, &r.name, None, entry_of(r), None).await {
                tracing::debug!(error = %e, "region control unavailable");
                return;
            }
        }
        let mut known: BTreeMap<String, Value> = BTreeMap::new();
        loop {
            let Ok(now) = store.kv_list(REGIONS_NS, "", 1000).await else {
                return;
            };
            let now: BTreeMap<String, Value> = now.into_iter().map(|e| (e.key, e.value)).collect();
            let running: Vec<String> = swarm
                .sync_status()
                .map(|s| s.regions.into_iter().map(|r| r.region).collect())
                .unwrap_or_default();
            for (k, v) in &now {
                match known.get(k) {
                    None if !running.contains(k) => {
                        let msg = match region_from_entry(k, v) {
                            Ok(r) => match swarm.add_region(r).await {
                                Ok(()) => format!("region {k} added (live; seeding it from home)"),
                                Err(e) => format!("region {k} not added: {e}"),
                            },
                            Err(e) => format!("region {k} not added: {e}"),
                        };
                        let _ = events.send(msg);
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
                let msg = match swarm.remove_region(k).await {
                    Ok(r) if r.drained => format!("region {k} removed (live; drained to seq {} in {} ms)", r.acked_seq, r.drain_ms),
                    Ok(r) => format!(
                        "region {k} removed (live; it held seq {} of {}, the rest is abandoned for it)",
                        r.acked_seq, r.target_seq
                    ),
                    Err(e) => format!("region {k} not removed: {e}"),
                };
                let _ = events.send(msg);
            }
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
    let mut builder = settings.builder().live_regions();
    let mut running: Vec<edgeswarm::RegionConfig> = Vec::new();
    if settings.regions.is_empty() {
        for (name, latency) in &regions {
            let dir = opts.regions_dir();
            std::fs::create_dir_all(&dir).map_err(|e| CliError::Invalid(format!("cannot create {}: {e}", dir.display())))?;
            let r = edgeswarm::RegionConfig::local(name.clone(), dir.join(format!("{name}.db")), *latency);
            running.push(r.clone());
            builder = builder.region(r);
        }
    } else {
        running.extend(settings.regions.iter().map(|r| edgeswarm::RegionConfig {
            name: r.name.clone(),
            url: r.url.clone(),
            latency_ms: r.latency_ms,
            token_env: r.token_env.clone(),
            ca_file: r.ca_file.clone(),
        }));
    }
    let swarm = builder.start().await?;
    if let Some(l) = listener {
        metrics::serve_on(l, metrics::Source::swarm(swarm.clone()));
    }
    let dashboard = match a.dashboard.serve(&swarm, "").await {
        Ok(d) => d,
        Err(e) => {
            let _ = swarm.shutdown().await;
            return Err(CliError::Invalid(e.to_string()));
        }
    };
    let heartbeat = metrics::spawn_heartbeat(swarm.clone(), Duration::from_secs(1));
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let control = control_regions(swarm.clone(), running, ev_tx);
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
    if let Some(d) = dashboard {
        d.stop().await;
    }
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
