//! Shared helpers for the sync integration tests.
#![allow(dead_code)]

pub mod tls_proxy;

use edgeswarm_core::{Durability, StoreConfig};
use edgeswarm_store::Store;
use edgeswarm_sync::{RegionConfig, SyncConfig, SyncHandle, TableChecksum};
use std::path::Path;
use std::time::{Duration, Instant};

pub async fn open_store(path: &Path) -> Store {
    let mut c = StoreConfig::at(path);
    c.durability = Durability::Normal;
    c.read_pool_size = 2;
    Store::open(c).await.expect("open store")
}

/// Fast timings for tests.
pub fn fast_cfg() -> SyncConfig {
    SyncConfig {
        batch_rows: 64,
        window: 8,
        pull_interval: Duration::from_millis(20),
        pull_rows: 200,
        probe_interval: Duration::from_millis(100),
        max_probe_backoff: Duration::from_millis(400),
        down_after: 3,
        tick: Duration::from_millis(10),
        status_interval: Duration::from_millis(100),
        request_timeout: Duration::from_secs(3),
        http_attempts: 3,
        ..Default::default()
    }
}

pub fn local_regions(dir: &Path, names: &[(&str, u64)]) -> Vec<RegionConfig> {
    names
        .iter()
        .map(|(n, ms)| RegionConfig::local(*n, dir.join(format!("region-{n}.db")), *ms))
        .collect()
}

/// Checksums of a region, retrying transient link failures.
pub async fn region_sums(h: &SyncHandle, region: &str) -> Vec<TableChecksum> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match h.region_checksums(region).await {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("region {region} checksums: {e}"),
        }
    }
}

/// Waits until every home and every region listed hold identical tables.
pub async fn wait_converged(handles: &[&SyncHandle], regions: &[&str], timeout: Duration) -> Vec<TableChecksum> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut all = Vec::new();
        for h in handles {
            all.push((
                "home".to_string() + &h.store().origin()[..8],
                h.home_checksums().await.expect("home sums"),
            ));
        }
        for r in regions {
            all.push((r.to_string(), region_sums(handles[0], r).await));
        }
        let first = all[0].1.clone();
        if all.iter().all(|(_, s)| *s == first) {
            return first;
        }
        if Instant::now() > deadline {
            for (n, s) in &all {
                eprintln!("{n}: {s:?}");
            }
            for h in handles {
                eprintln!("{}", serde_json::to_string_pretty(&h.sync_status()).unwrap());
            }
            panic!("replicas did not converge within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tursodb binaries the remote-region tests run against, labelled by version:
/// `$EDGESWARM_TURSODB` (or the one [`edgeswarm_sync::bench::tursodb_path`] finds;
/// npm `turso`, pinned in .ci/turso-version) and `$EDGESWARM_TURSODB_07` (npm
/// `@tursodatabase/cli-linux-x64-gnu@0.7.0`) when set. Panics with the install hint
/// when there is none.
pub fn tursodb_binaries() -> Vec<(String, std::path::PathBuf)> {
    let mut out: Vec<(String, std::path::PathBuf)> = Vec::new();
    let mut add = |p: std::path::PathBuf| {
        if p.is_file() && !out.iter().any(|(_, q)| *q == p) {
            let v = std::process::Command::new(&p)
                .arg("--version")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            out.push((if v.is_empty() { p.display().to_string() } else { v }, p));
        }
    };
    if let Some(p) = edgeswarm_sync::bench::tursodb_path() {
        add(p);
    }
    if let Some(p) = std::env::var_os("EDGESWARM_TURSODB_07") {
        add(p.into());
    }
    if out.is_empty() {
        panic!("{}", edgeswarm_sync::bench::TURSODB_HINT);
    }
    out
}
