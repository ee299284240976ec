//! Sync test helpers: a node's store, fast timings, local regions, convergence checks.

use edgeswarm_core::{Durability, StoreConfig};
use edgeswarm_store::conn::{self, CachedConn};
use edgeswarm_store::Store;
use edgeswarm_sync::{RegionConfig, SyncConfig, SyncHandle, TableChecksum};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A node's home store for sync tests: `Normal` durability (fewer fsyncs, the tests
/// check replication, not power loss) and 2 readers.
pub async fn open_store(path: &Path) -> Store {
    let mut c = StoreConfig::at(path);
    c.durability = Durability::Normal;
    c.read_pool_size = 2;
    let store = crate::open_store_with(c).await;
    // Knowledge records take edgeswarm-search's insert path (dedup by content included).
    edgeswarm_search::knowledge::install(&store);
    store
}

/// [`open_store`] with a whole config (e.g. a retention); durability and readers as
/// there.
pub async fn open_store_cfg(mut c: StoreConfig) -> Store {
    c.durability = Durability::Normal;
    c.read_pool_size = 2;
    let store = crate::open_store_with(c).await;
    edgeswarm_search::knowledge::install(&store);
    store
}

/// Deletes a knowledge entry the way the facade does (it becomes a tombstone); true
/// when it was there.
pub async fn delete_knowledge(store: &Store, id: &str) -> bool {
    match edgeswarm_search::knowledge::delete_knowledge(store, id).await {
        Ok(b) => b,
        Err(e) => panic!("delete_knowledge {id}: {e}"),
    }
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

/// [`fast_cfg`] with the compaction sweeper off: a test runs it with `compact_now`.
pub fn manual_compaction_cfg() -> SyncConfig {
    SyncConfig {
        compact_interval: Duration::ZERO,
        ..fast_cfg()
    }
}

/// The file of local region `name` made by [`local_regions`] in `dir`.
pub fn region_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("region-{name}.db"))
}

/// A second connection to a region file, to read it or to play a misbehaving node or a
/// wipe.
pub fn region_conn(path: &Path) -> CachedConn {
    let (db, c) = conn::open_writer(path, Durability::Normal).unwrap();
    CachedConn::new(db, c)
}

/// The integer `sql` (a `count(*)`) gives in a region file.
pub fn region_count(path: &Path, sql: &str) -> i64 {
    region_conn(path).query(sql, vec![]).unwrap().rows[0][0].as_i64().unwrap()
}

/// The integer `sql` (a `count(*)`) gives at home.
pub async fn count(s: &Store, sql: &str) -> i64 {
    s.read_sql(sql, vec![]).await.unwrap().rows[0][0].as_i64().unwrap()
}

/// One local region per `(name, latency ms)`, its file `region-<name>.db` in `dir`.
pub fn local_regions(dir: &Path, names: &[(&str, u64)]) -> Vec<RegionConfig> {
    names
        .iter()
        .map(|(n, ms)| RegionConfig::local(*n, region_path(dir, n), *ms))
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
            let sums = match h.home_checksums().await {
                Ok(s) => s,
                Err(e) => panic!("home sums: {e}"),
            };
            all.push(("home".to_string() + &h.store().origin()[..8], sums));
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
                eprintln!("{}", serde_json::to_string_pretty(&h.sync_status()).unwrap_or_default());
            }
            panic!("replicas did not converge within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
