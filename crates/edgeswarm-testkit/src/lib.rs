//! The shared test harness for edgeswarm's integration tests (and the sync benchmark's
//! tursodb launcher):
//!
//! - [`temp_store`] / [`temp_swarm`]: a store or swarm on a fresh file in a temporary
//!   directory that is removed when the returned [`TempDir`] drops.
//! - [`child`]: start a helper process, collect its stdout lines, SIGKILL it.
//! - [`fault_vfs`]: a VFS that fails the Nth write, sync, truncate or size call, or
//!   caps file sizes (a full disk), for the storage fault sweeps.
//! - [`tursodb`]: find and start `tursodb --sync-server` (a real Hrana server).
//! - [`sync`]: fast sync settings, local regions, convergence checks.
//!
//! Helpers panic on setup failures with a message saying what failed: they run inside
//! tests, where a panic is the failure report.
//!
//! Library crates list this crate under `[dev-dependencies]` (a dev-dependency cycle,
//! which Cargo allows). Use it from integration tests (`tests/*.rs`) only: a crate's own
//! unit tests would see two copies of that crate's types.

pub mod child;
pub mod fault_vfs;
pub mod sync;
pub mod tls_proxy;
pub mod tursodb;

pub use tempfile::TempDir;

use edgeswarm::Swarm;
use edgeswarm_core::StoreConfig;
use edgeswarm_store::Store;
use std::path::Path;

/// A fresh temporary directory (removed on drop).
pub fn temp_dir() -> TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    }
}

/// Opens a store with `cfg`.
pub async fn open_store_with(cfg: StoreConfig) -> Store {
    let path = cfg.path.clone();
    match Store::open(cfg).await {
        Ok(s) => s,
        Err(e) => panic!("cannot open the store at {}: {e}", path.display()),
    }
}

/// Opens (creating and migrating) a store at `path` with default settings.
pub async fn open_store(path: impl AsRef<Path>) -> Store {
    open_store_with(StoreConfig::at(path.as_ref())).await
}

/// A store with default settings on `home.db` in a fresh temporary directory.
pub async fn temp_store() -> (TempDir, Store) {
    let dir = temp_dir();
    let store = open_store(dir.path().join("home.db")).await;
    (dir, store)
}

/// Starts a swarm with default settings on `path`.
pub async fn open_swarm(path: impl AsRef<Path>) -> Swarm {
    let path = path.as_ref();
    match Swarm::builder().path(path).start().await {
        Ok(s) => s,
        Err(e) => panic!("cannot start a swarm on {}: {e}", path.display()),
    }
}

/// A swarm with default settings on `swarm.db` in a fresh temporary directory.
pub async fn temp_swarm() -> (TempDir, Swarm) {
    let dir = temp_dir();
    let swarm = open_swarm(dir.path().join("swarm.db")).await;
    (dir, swarm)
}
