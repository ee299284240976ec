//! Opening the home database for a command, with clear errors before libSQL sees a bad path.

use std::path::{Path, PathBuf};

use edgeswarm::Store;

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
        return Err(CliError::DbMissing(path.to_path_buf()));
    }
    Ok(())
}

/// Opens (creating and migrating if needed) the home store.
pub async fn store(s: &Settings, must_exist: bool) -> Result<Store> {
    check_path(&s.store.path, must_exist)?;
    Ok(Store::open(s.store.clone()).await?)
}
