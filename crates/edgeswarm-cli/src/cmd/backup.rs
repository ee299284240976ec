//! `edgeswarm backup DEST`: a consistent snapshot of the home file with `VACUUM INTO`,
//! safe while a swarm is writing (WAL: the snapshot is one read transaction; the writer
//! never waits). Runs on its own read-only connection, because the storage writer runs
//! statements inside batch transactions where VACUUM is not allowed.
//!
//! The copy is written to a temporary file beside DEST, checked with
//! `PRAGMA integrity_check`, fsynced, and only then renamed over DEST (`--force`), so an
//! existing backup is never deleted before its replacement is verified. DEST may not be
//! the database itself (by any name) or its -wal/-shm file.

use crate::cli::BackupArgs;
use crate::config;
use crate::error::{CliError, Result};
use crate::open;

pub async fn run(a: BackupArgs) -> Result<()> {
    let settings = config::load(&a.db)?;
    let src = settings.store.path.clone();
    open::check_path(&src, true)?;
    let dest = a.dest.clone();
    if let Some(d) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !d.is_dir() {
            return Err(CliError::file(
                dest.display(),
                format!("directory {} does not exist; create it first", d.display()),
            ));
        }
    }
    edgeswarm::files::refuse_database_path(&src, &dest).map_err(|e| CliError::Invalid(e.to_string()))?;
    if dest.exists() && !a.force {
        return Err(CliError::file(
            dest.display(),
            "already exists; pick a new name or pass --force to replace it",
        ));
    }
    let t = std::time::Instant::now();
    let existed = dest.exists();
    let report = edgeswarm::files::backup(&src, &dest, a.force).await.map_err(|e| {
        let kept = if existed {
            format!("; {} was left as it was", dest.display())
        } else {
            String::new()
        };
        CliError::Invalid(format!("backup of {} to {} failed: {e}{kept}", src.display(), dest.display()))
    })?;
    println!(
        "backed up {} to {} ({:.1} MiB, {:.0} ms, integrity ok)",
        src.display(),
        dest.display(),
        report.bytes as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
