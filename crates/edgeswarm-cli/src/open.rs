//! Opening the home database for a command, with clear errors before libSQL sees a bad path.

use std::path::{Path, PathBuf};

use std::time::Duration;

use edgeswarm::Swarm;

use crate::config::Settings;
use crate::error::{CliError, Result};

/// Refuses a path whose directory does not exist, and (when `must_exist`) a missing file.
pub fn check_path(path: &Path, must_exist: bool) -> Result<()> {
    let dir: PathBuf = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(CliError::DbDirMissing {
            db: path.to_path_buf(),
            dir,
        });
    }
    if path.is_dir() {
        return Err(CliError::Invalid(format!(
            "{} is a directory; --db takes a file path such as {}/edgeswarm.db",
            path.display(),
            path.display()
        )));
    }
    if must_exist && !path.is_file() {
        return Err(CliError::DbMissing {
            path: path.to_path_buf(),
            orphan_wal: edgeswarm::files::orphan_wal_bytes(path),
        });
    }
    Ok(())
}

/// Opens (creating and migrating if needed) the home file as a swarm for one command:
/// no agents, no regions, no embedder (nothing is re-embedded) and no kv sweeper (an
/// inspecting command leaves the file as it found it).
pub async fn swarm(s: &Settings, must_exist: bool) -> Result<Swarm> {
    check_path(&s.store.path, must_exist)?;
    Ok(Swarm::builder()
        .store_config(s.store.clone())
        .embedder(None)
        .kv_sweep_interval(Duration::ZERO)
        .start()
        .await?)
}
