//! `edgeswarm backup DEST`: a consistent snapshot of the home file with `VACUUM INTO`,
//! safe while a swarm is writing (WAL: the snapshot is one read transaction; the writer
//! never waits). Runs on its own read-only connection, because the storage writer runs
//! statements inside batch transactions where VACUUM is not allowed.

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
    if dest.exists() {
        if !a.force {
            return Err(CliError::file(
                dest.display(),
                "already exists; pick a new name or pass --force to replace it",
            ));
        }
        std::fs::remove_file(&dest).map_err(|e| CliError::file(dest.display(), e))?;
    }
    let t = std::time::Instant::now();
    let verdict = edgeswarm::files::backup(&src, &dest)
        .await
        .map_err(|e| CliError::file(src.display(), format!("backup failed: {e}")))?;
    if verdict != "ok" {
        return Err(CliError::file(
            dest.display(),
            format!("the copy failed its integrity check ({verdict}); retry the backup"),
        ));
    }
    let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    println!(
        "backed up {} to {} ({:.1} MiB, {:.0} ms, integrity ok)",
        src.display(),
        dest.display(),
        size as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
