//! `edgeswarm backup DEST`: a consistent snapshot of the home file with `VACUUM INTO`,
//! safe while a swarm is writing (WAL: the snapshot is one read transaction; the writer
//! never waits). Runs on its own read-only connection, because the storage writer runs
//! statements inside batch transactions where VACUUM is not allowed.

use libsql::{Builder, OpenFlags};

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
    let fail = |e: libsql::Error| CliError::file(src.display(), format!("backup failed: {e}"));
    let db = Builder::new_local(&src)
        .flags(OpenFlags::SQLITE_OPEN_READ_ONLY)
        .build()
        .await
        .map_err(fail)?;
    let conn = db.connect().map_err(fail)?;
    let t = std::time::Instant::now();
    conn.execute("VACUUM INTO ?1", [dest.display().to_string()]).await.map_err(fail)?;
    // Verify the copy.
    let copy = Builder::new_local(&dest)
        .flags(OpenFlags::SQLITE_OPEN_READ_ONLY)
        .build()
        .await
        .map_err(fail)?
        .connect()
        .map_err(fail)?;
    let mut rows = copy.query("PRAGMA quick_check", ()).await.map_err(fail)?;
    let verdict = match rows.next().await.map_err(fail)? {
        Some(r) => r.get::<String>(0).unwrap_or_default(),
        None => String::new(),
    };
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
