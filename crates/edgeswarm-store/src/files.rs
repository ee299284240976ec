//! Whole-file operations that do not open a `Store`: a consistent backup copy, files
//! written atomically beside their destination (`AtomicFile`, used by backup and
//! export), the check that a destination is not the live database, and the read-only
//! probes `edgeswarm doctor` runs (nothing is migrated or written). Each opens its own
//! short-lived libSQL connection.
//!
//! A destination is never replaced before its new content is complete, synced and (for
//! a backup) verified: the content goes to a temporary file in the destination's own
//! directory (same file system, so the rename is atomic), which is fsynced, renamed over
//! the destination, and then the directory is fsynced so the rename itself survives a
//! power cut. On any error the temporary file is removed and the old file is untouched.

use crate::error::{Result, StoreError};
use crate::value::SqlValue;
use libsql::{Builder, Connection, OpenFlags};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

async fn open_read_only(path: &Path) -> Result<Connection> {
    let open = |e: libsql::Error| StoreError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    Builder::new_local(path)
        .flags(OpenFlags::SQLITE_OPEN_READ_ONLY)
        .build()
        .await
        .map_err(open)?
        .connect()
        .map_err(open)
}

/// The first column of the first row (`Null` when there is no row), or SQLite's message.
async fn scalar(c: &Connection, sql: &str) -> std::result::Result<SqlValue, String> {
    let mut rows = c.query(sql, ()).await.map_err(|e| e.to_string())?;
    match rows.next().await.map_err(|e| e.to_string())? {
        Some(r) => r.get_value(0).map(SqlValue::from).map_err(|e| e.to_string()),
        None => Ok(SqlValue::Null),
    }
}

/// Why a whole-file operation (backup, atomic write) failed. The old destination file,
/// if any, is untouched in every case, and no temporary file is left behind.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// The destination is the database itself, one of its `-wal`/`-shm`/`-journal`
    /// files, or another name (symlink, hard link, relative path) for one of them.
    #[error("{dest} is the database {db} itself (or its -wal/-shm file); writing there would destroy it: pick another path")]
    IsDatabase {
        /// The destination as given.
        dest: PathBuf,
        /// The database it names.
        db: PathBuf,
    },
    /// The destination exists and replacing it was not asked for.
    #[error("{0} already exists; pick a new name or pass --force to replace it")]
    Exists(PathBuf),
    /// The destination exists but is not a regular file (a directory, a device...).
    #[error("{0} is not a regular file; pick a file path")]
    NotAFile(PathBuf),
    /// A file-system call failed.
    #[error("{path}: cannot {op}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What was being done (`create a temporary file`, `fsync`, `rename`...).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Reading the source or writing the copy failed inside SQLite.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The copy was written but failed `PRAGMA integrity_check`; it was discarded.
    #[error("the copy failed its integrity check ({0}); it was discarded and the old file left as it was; retry")]
    Integrity(String),
}

impl FileOpError {
    fn io(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> FileOpError {
        let path = path.to_path_buf();
        move |source| FileOpError::Io { path, op, source }
    }
}

/// `path` with symlinks followed as far as they go (a dangling link gives the path it
/// points at), made absolute. A missing final component is allowed.
fn resolve(path: &Path) -> PathBuf {
    let mut p = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    };
    for _ in 0..40 {
        match std::fs::read_link(&p) {
            Ok(t) => p = p.parent().map(|d| d.join(&t)).unwrap_or(t),
            Err(_) => break,
        }
    }
    if let Ok(c) = std::fs::canonicalize(&p) {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(d), Some(n)) => std::fs::canonicalize(d).map(|d| d.join(n)).unwrap_or(p),
        _ => p,
    }
}

/// Whether two paths are the same file on disk (same device and inode).
#[cfg(unix)]
fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
#[cfg(not(unix))]
fn same_inode(_: &Path, _: &Path) -> bool {
    false
}

/// Refuses `dest` when it is the database `db` or one of its side files (`-wal`,
/// `-shm`, `-journal`), by any name: relative path, symlink, or hard link.
pub fn refuse_database_path(db: &Path, dest: &Path) -> std::result::Result<(), FileOpError> {
    let d = resolve(dest);
    let base = resolve(db);
    let mut names = vec![base.clone()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut s = base.clone().into_os_string();
        s.push(suffix);
        names.push(PathBuf::from(s));
    }
    if names.iter().any(|n| *n == d || same_inode(n, &d)) {
        return Err(FileOpError::IsDatabase {
            dest: dest.to_path_buf(),
            db: db.to_path_buf(),
        });
    }
    Ok(())
}

/// A file written in full before it appears at its destination. Content goes to a
/// temporary file beside the destination; `commit` fsyncs it, renames it over the
/// destination and fsyncs the directory. Dropped without `commit` (an error, a panic),
/// it removes the temporary file and leaves the destination as it was.
///
/// A destination that exists and is not a regular file (`/dev/stdout`, a FIFO) cannot be
/// replaced by a rename; it is written in place.
pub struct AtomicFile {
    /// The file the finished content replaces (symlinks followed, so a link keeps
    /// pointing at the new content).
    dest: PathBuf,
    /// The destination's directory, fsynced after the rename.
    dir: PathBuf,
    /// The temporary file in `dir` (`None` when writing a non-regular destination in place).
    tmp: Option<PathBuf>,
    /// The open file, buffered (`None` once committed).
    out: Option<BufWriter<File>>,
    /// Set by `commit`: drop leaves the files alone.
    committed: bool,
}

impl AtomicFile {
    /// Creates the temporary file for `dest` (which may or may not exist yet).
    pub fn create(dest: &Path) -> std::result::Result<AtomicFile, FileOpError> {
        let target = resolve(dest);
        let dir = target.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        if let Ok(m) = std::fs::metadata(&target) {
            if m.is_dir() {
                return Err(FileOpError::NotAFile(dest.to_path_buf()));
            }
            if !m.is_file() {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .map_err(FileOpError::io(dest, "open for writing"))?;
                return Ok(AtomicFile {
                    dest: target,
                    dir,
                    tmp: None,
                    out: Some(BufWriter::new(f)),
                    committed: false,
                });
            }
        }
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = dir.join(format!(".{name}.tmp-{}-{nanos:08x}", std::process::id()));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(FileOpError::io(&tmp, "create a temporary file"))?;
        Ok(AtomicFile {
            dest: target,
            dir,
            tmp: Some(tmp),
            out: Some(BufWriter::new(f)),
            committed: false,
        })
    }

    /// The temporary file (the destination itself when it is written in place).
    pub fn temp_path(&self) -> &Path {
        self.tmp.as_deref().unwrap_or(&self.dest)
    }

    /// The destination the content will replace.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Syncs the content and moves it over the destination (`replace`), or to it only
    /// if nothing is there (`Exists` otherwise, checked atomically with a hard link
    /// where the file system has them). Returns the file's size in bytes.
    pub fn commit(mut self, replace: bool) -> std::result::Result<u64, FileOpError> {
        let out = self.out.take();
        let Some(tmp) = self.tmp.clone() else {
            if let Some(mut w) = out {
                w.flush().map_err(FileOpError::io(&self.dest, "write"))?;
            }
            self.committed = true;
            return Ok(0);
        };
        let f = match out {
            Some(w) => w.into_inner().map_err(|e| FileOpError::io(&tmp, "write")(e.into_error()))?,
            None => File::open(&tmp).map_err(FileOpError::io(&tmp, "open"))?,
        };
        f.sync_all().map_err(FileOpError::io(&tmp, "fsync"))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        drop(f);
        if replace {
            if let Ok(m) = std::fs::metadata(&self.dest) {
                let _ = std::fs::set_permissions(&tmp, m.permissions());
            }
            std::fs::rename(&tmp, &self.dest).map_err(FileOpError::io(&self.dest, "rename the new file into place"))?;
        } else {
            match std::fs::hard_link(&tmp, &self.dest) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&tmp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(FileOpError::Exists(self.dest.clone())),
                // No hard links here (some file systems): check, then rename.
                Err(_) => {
                    if std::fs::symlink_metadata(&self.dest).is_ok() {
                        return Err(FileOpError::Exists(self.dest.clone()));
                    }
                    std::fs::rename(&tmp, &self.dest).map_err(FileOpError::io(&self.dest, "rename the new file into place"))?;
                }
            }
        }
        self.committed = true;
        sync_dir(&self.dir)?;
        Ok(len)
    }

    /// Removes SQLite's side files of the temporary file, if any were left.
    fn remove_side_files(&self) {
        if let Some(tmp) = &self.tmp {
            for suffix in ["-wal", "-shm", "-journal"] {
                let _ = std::fs::remove_file(side_file(tmp, suffix));
            }
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.out {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("the file is already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        self.out = None;
        self.remove_side_files();
        if !self.committed {
            if let Some(tmp) = &self.tmp {
                let _ = std::fs::remove_file(tmp);
            }
        }
    }
}

/// Fsyncs a directory, so a rename in it is durable.
fn sync_dir(dir: &Path) -> std::result::Result<(), FileOpError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(FileOpError::io(dir, "fsync the directory"))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// Size of the new file, in bytes.
    pub bytes: u64,
}

/// Copies `src` to `dest` with `VACUUM INTO` (one read transaction: safe while a swarm
/// writes, and the writer never waits), into a temporary file beside `dest`; runs
/// `PRAGMA integrity_check` on the copy, fsyncs it, and only then renames it over `dest`
/// (when `replace`; otherwise `dest` must not exist). A failure at any step removes the
/// temporary file and leaves `dest` as it was. `dest` must not be `src` (by any name).
pub async fn backup(src: &Path, dest: &Path, replace: bool) -> std::result::Result<BackupReport, FileOpError> {
    backup_checked(src, dest, replace, |_| Ok(())).await
}

/// `backup` with one more check on the verified copy before it replaces `dest` (tests
/// use it to fail the last step; a host could compare row counts).
pub async fn backup_checked(
    src: &Path,
    dest: &Path,
    replace: bool,
    check: impl FnOnce(&Path) -> std::result::Result<(), FileOpError>,
) -> std::result::Result<BackupReport, FileOpError> {
    refuse_database_path(src, dest)?;
    if !replace && std::fs::symlink_metadata(dest).is_ok() {
        return Err(FileOpError::Exists(dest.to_path_buf()));
    }
    if let Ok(m) = std::fs::metadata(dest) {
        if !m.is_file() {
            return Err(FileOpError::NotAFile(dest.to_path_buf()));
        }
    }
    let mut file = AtomicFile::create(dest)?;
    // SQLite writes the copy through its own descriptor; ours is closed first (closing a
    // second descriptor of a file SQLite has open would drop its POSIX locks).
    file.out = None;
    {
        let conn = open_read_only(src).await?;
        conn.execute("VACUUM INTO ?1", [file.temp_path().display().to_string()])
            .await
            .map_err(StoreError::from)?;
    }
    let verdict = integrity_check(file.temp_path()).await?;
    file.remove_side_files();
    if verdict != "ok" {
        return Err(FileOpError::Integrity(verdict));
    }
    check(file.temp_path())?;
    if replace {
        // An old copy's leftover -wal or -journal would be replayed into the new file
        // when it is next opened (SQLite cannot tell they belong to another file), so
        // they go first. The old copy loses nothing it had checkpointed; a crash before
        // the rename leaves it as of its last checkpoint.
        for suffix in ["-wal", "-shm", "-journal"] {
            let side = side_file(file.dest(), suffix);
            match std::fs::remove_file(&side) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(FileOpError::io(&side, "remove the old copy's side file")(e)),
                _ => {}
            }
        }
    }
    let bytes = file.commit(replace)?;
    Ok(BackupReport { bytes })
}

/// The bytes in `path`'s `-wal` when the database file itself is missing: a log left
/// behind by a database deleted or moved without it (see `conn::open_writer_vfs`, which
/// refuses to open such a path). `None` when the file exists or no log has content.
pub fn orphan_wal_bytes(path: &Path) -> Option<u64> {
    if path.exists() {
        return None;
    }
    std::fs::metadata(side_file(path, "-wal")).map(|m| m.len()).ok().filter(|n| *n > 0)
}

/// `path` with `suffix` appended (`home.db` → `home.db-wal`).
pub(crate) fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `PRAGMA integrity_check` on a file opened read-only: `ok`, or its findings joined.
async fn integrity_check(path: &Path) -> Result<String> {
    let c = open_read_only(path).await?;
    let mut rows = c.query("PRAGMA integrity_check", ()).await?;
    let mut found = Vec::new();
    while let Some(r) = rows.next().await? {
        found.push(r.get::<String>(0).unwrap_or_default());
    }
    Ok(if found.is_empty() { "no answer".into() } else { found.join("; ") })
}

/// What a read-only look at a database file found. Each probe holds SQLite's message
/// when it failed, so one broken part does not hide the others.
#[derive(Debug, Clone, PartialEq)]
pub struct FileProbe {
    /// `PRAGMA journal_mode` (`wal` for a file this runtime opened).
    pub journal_mode: std::result::Result<String, String>,
    /// `PRAGMA user_version`: the schema migration the file is at (0: not ours yet).
    pub schema_version: std::result::Result<SqlValue, String>,
    /// `PRAGMA quick_check` (`ok` when the file is sound).
    pub quick_check: std::result::Result<String, String>,
    /// Whether the knowledge full-text index exists.
    pub search_index: std::result::Result<bool, String>,
    /// The embedder the search layer recorded in `_meta`, if any.
    pub embedder: Option<String>,
    /// Names of vector tables present, comma-separated, if any.
    pub vector_tables: Option<String>,
    /// Row versions sync parked (`_sync_parked`: refused rows and far-future
    /// versions, retried on later pulls) and the latest one, described; `None` when
    /// sync never ran on this file.
    pub parked: Option<(i64, Option<String>)>,
}

/// Opens `path` read-only and reads its journal mode, schema version, integrity,
/// search index and embedder. Fails only if the file cannot be opened.
pub async fn probe_file(path: &Path) -> Result<FileProbe> {
    let c = open_read_only(path).await?;
    let present = |v: std::result::Result<SqlValue, String>| v.ok().filter(|v| !matches!(v, SqlValue::Null)).map(|v| v.to_text());
    Ok(FileProbe {
        journal_mode: scalar(&c, "PRAGMA journal_mode").await.map(|v| v.to_text()),
        schema_version: scalar(&c, "PRAGMA user_version").await,
        quick_check: scalar(&c, "PRAGMA quick_check").await.map(|v| v.to_text()),
        search_index: scalar(&c, "SELECT count(*) FROM sqlite_master WHERE name = 'knowledge_fts'")
            .await
            .map(|v| v.as_i64() == Some(1)),
        embedder: present(scalar(&c, "SELECT value FROM _meta WHERE key = 'embedder'").await),
        vector_tables: present(
            scalar(
                &c,
                "SELECT group_concat(name, ', ') FROM sqlite_master WHERE type = 'table' AND name LIKE '%vec%'",
            )
            .await,
        ),
        parked: match scalar(&c, "SELECT COUNT(*) FROM _sync_parked").await {
            Ok(n) => Some((
                n.as_i64().unwrap_or(0),
                present(
                    scalar(
                        &c,
                        "SELECT region || ': ' || direction || ' ' || tbl || ' row ' || quote(row_id) || ' (' || reason || ', ' || attempts || ' tries): ' || error \
                         FROM _sync_parked ORDER BY last_try DESC LIMIT 1",
                    )
                    .await,
                ),
            )),
            Err(_) => None,
        },
    })
}

/// Opens `path` read-only and reads its schema: fails if it is not a readable database.
pub async fn probe_readable(path: &Path) -> Result<()> {
    let c = open_read_only(path).await?;
    scalar(&c, "SELECT count(*) FROM sqlite_master").await.map_err(StoreError::sql)?;
    Ok(())
}

/// What the linked libSQL engine supports, tried on an in-memory database.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineProbe {
    /// FTS5 full-text search (knowledge search needs it), or SQLite's message.
    pub fts5: std::result::Result<(), String>,
    /// libSQL vector functions (vector and hybrid search need them): what
    /// `vector_extract(vector32('[1,2]'))` returned, or SQLite's message.
    pub vectors: std::result::Result<String, String>,
}

/// Tries FTS5 and the vector functions on an in-memory database.
pub async fn probe_engine() -> Result<EngineProbe> {
    let c = Builder::new_local(":memory:").build().await?.connect()?;
    Ok(EngineProbe {
        fts5: c
            .execute("CREATE VIRTUAL TABLE t USING fts5(x)", ())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        vectors: scalar(&c, "SELECT vector_extract(vector32('[1,2]'))").await.map(|v| v.to_text()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temps(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect()
    }

    #[test]
    fn an_unfinished_write_leaves_the_old_file_and_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("out.jsonl");
        std::fs::write(&dest, "old\n").unwrap();
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            f.write_all(b"half of the new cont").unwrap();
            f.flush().unwrap();
            assert!(f.temp_path().exists());
            // A reader error here: the caller returns early and `f` drops.
        }
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old\n");
        assert!(temps(d.path()).is_empty());

        // Not replacing: an existing file is refused at commit, and left alone.
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"new\n").unwrap();
        assert!(matches!(f.commit(false), Err(FileOpError::Exists(_))));
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old\n");
        assert!(temps(d.path()).is_empty());

        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"new\n").unwrap();
        assert_eq!(f.commit(true).unwrap(), 4);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new\n");
        assert!(temps(d.path()).is_empty());
    }

    #[test]
    fn a_symlinked_destination_keeps_its_link_and_gets_the_content() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real.txt");
        std::fs::write(&real, "old").unwrap();
        let link = d.path().join("link.txt");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut f = AtomicFile::create(&link).unwrap();
        f.write_all(b"new").unwrap();
        f.commit(true).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
    }

    #[test]
    fn the_database_is_refused_by_every_name() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("home.db");
        std::fs::write(&db, "x").unwrap();
        std::fs::write(d.path().join("home.db-wal"), "x").unwrap();
        std::fs::hard_link(&db, d.path().join("hard.db")).unwrap();
        std::os::unix::fs::symlink(&db, d.path().join("soft.db")).unwrap();
        std::os::unix::fs::symlink(d.path().join("home.db-wal"), d.path().join("soft-wal")).unwrap();
        for name in [
            "home.db",
            "hard.db",
            "soft.db",
            "soft-wal",
            "home.db-wal",
            "home.db-shm",
            "home.db-journal",
        ] {
            let r = refuse_database_path(&db, &d.path().join(name));
            assert!(matches!(r, Err(FileOpError::IsDatabase { .. })), "{name}: {r:?}");
        }
        assert!(refuse_database_path(&db, &d.path().join("other.db")).is_ok());
        assert!(refuse_database_path(&db, &d.path().join("home.db.bak")).is_ok());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_backup_that_fails_its_last_check_leaves_the_old_backup() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src.db");
        {
            let c = Builder::new_local(&src).build().await.unwrap().connect().unwrap();
            c.execute("CREATE TABLE t (x)", ()).await.unwrap();
            c.execute("INSERT INTO t VALUES (1)", ()).await.unwrap();
        }
        let dest = d.path().join("b.db");
        backup(&src, &dest, false).await.unwrap();
        let old = std::fs::read(&dest).unwrap();
        {
            let c = Builder::new_local(&src).build().await.unwrap().connect().unwrap();
            c.execute("INSERT INTO t VALUES (2)", ()).await.unwrap();
        }
        let r = backup_checked(&src, &dest, true, |tmp| {
            assert!(tmp.exists());
            Err(FileOpError::Integrity("injected".into()))
        })
        .await;
        assert!(matches!(r, Err(FileOpError::Integrity(_))), "{r:?}");
        assert_eq!(std::fs::read(&dest).unwrap(), old);
        assert!(temps(d.path()).is_empty(), "{:?}", temps(d.path()));
        assert!(matches!(backup(&src, &dest, false).await, Err(FileOpError::Exists(_))));
        assert!(matches!(backup(&src, &src, true).await, Err(FileOpError::IsDatabase { .. })));
        let r = backup(&src, &dest, true).await.unwrap();
        assert!(r.bytes > 0);
        assert_ne!(std::fs::read(&dest).unwrap(), old);
        assert!(temps(d.path()).is_empty());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_old_copys_leftover_wal_is_not_replayed_into_the_new_one() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src.db");
        let dest = d.path().join("b.db");
        let c = Builder::new_local(&src).build().await.unwrap().connect().unwrap();
        c.query("PRAGMA journal_mode = WAL", ()).await.unwrap();
        c.execute("CREATE TABLE t (x)", ()).await.unwrap();
        backup(&src, &dest, false).await.unwrap();
        // A WAL full of frames that are not the new copy's (another file's, as an old
        // copy opened for writing would leave).
        for i in 0..200 {
            c.execute("INSERT INTO t VALUES (?1)", [format!("{i:0>500}")]).await.unwrap();
        }
        std::fs::copy(side_file(&src, "-wal"), side_file(&dest, "-wal")).unwrap();
        c.execute("DELETE FROM t", ()).await.unwrap();
        c.execute("CREATE TABLE u (y)", ()).await.unwrap();
        drop(c);
        backup(&src, &dest, true).await.unwrap();
        assert!(!side_file(&dest, "-wal").exists());
        let copy = open_read_only(&dest).await.unwrap();
        assert_eq!(scalar(&copy, "PRAGMA integrity_check").await.unwrap().to_text(), "ok");
        assert_eq!(scalar(&copy, "SELECT count(*) FROM t").await.unwrap().as_i64(), Some(0));
        assert_eq!(scalar(&copy, "SELECT count(*) FROM u").await.unwrap().as_i64(), Some(0));
    }
}
