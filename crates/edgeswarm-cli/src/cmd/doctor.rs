//! `edgeswarm doctor`: says plainly whether data is really durable and every part works.
//! Opens the home file read-only (nothing is migrated or written), probes FTS5 and
//! vector support on an in-memory database, and tries each configured region.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edgeswarm::files::{self, FileProbe};
use edgeswarm::{Durability, SqlValue};
use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::config::{self, RegionSpec, Settings};
use crate::error::{CliError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub level: Level,
    pub name: String,
    pub detail: String,
    /// What to do about it (warn / fail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn ok(name: &str, detail: impl Into<String>) -> Check {
    Check {
        level: Level::Ok,
        name: name.into(),
        detail: detail.into(),
        fix: None,
    }
}
fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        level: Level::Warn,
        name: name.into(),
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}
fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        level: Level::Fail,
        name: name.into(),
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Bytes available to this user on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

/// Runs every check.
pub async fn checks(s: &Settings, timeout: Duration) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(match &s.config_path {
        Some(p) => ok("config", format!("{} loaded", p.display())),
        None => ok("config", "no edgeswarm.toml; built-in defaults (see edgeswarm.toml.example)"),
    });
    let path = &s.store.path;
    let dir: PathBuf = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let exists = path.is_file();
    // File on disk.
    if !dir.is_dir() {
        out.push(fail(
            "database file",
            format!("directory {} does not exist", dir.display()),
            format!("mkdir -p {} or set `db` / --db", dir.display()),
        ));
    } else if !exists {
        out.push(fail(
            "database file",
            format!("no file at {}", path.display()),
            "run `edgeswarm demo` or any write (e.g. `edgeswarm import`) to create it, or point --db at it",
        ));
    } else {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let ro = std::fs::metadata(path).map(|m| m.permissions().readonly()).unwrap_or(false);
        if ro {
            out.push(fail(
                "database file",
                format!("{} is read-only", path.display()),
                format!("chmod u+w {}", path.display()),
            ));
        } else {
            out.push(ok(
                "database file",
                format!("{} on disk, {:.1} MiB", path.display(), size as f64 / (1 << 20) as f64),
            ));
        }
    }
    // Durability setting.
    out.push(match s.store.durability {
        Durability::Full => ok("synchronous", "FULL (durability = \"full\"): an ack survives power loss"),
        Durability::Normal => warn(
            "synchronous",
            "NORMAL (durability = \"normal\"): an ack survives a process crash, not power loss",
            "set durability = \"full\" in edgeswarm.toml (or --durability full) unless you accept losing the last commits on power loss",
        ),
    });
    // Free space.
    if dir.is_dir() {
        out.push(match free_bytes(&dir) {
            Some(b) if b < 100 << 20 => fail(
                "free space",
                format!("{} free on the database's filesystem", gib(b)),
                "free disk space: below ~100 MiB commits and checkpoints start failing",
            ),
            Some(b) if b < 1 << 30 => warn(
                "free space",
                format!("{} free", gib(b)),
                "free disk space or move the database; VACUUM INTO a backup needs room for a full copy",
            ),
            Some(b) => ok("free space", format!("{} free", gib(b))),
            None => warn("free space", "could not measure", "check with `df -h` on the database directory"),
        });
    }
    // The file itself.
    if exists {
        match files::probe_file(path).await {
            Err(e) => out.push(fail(
                "open",
                format!("cannot open read-only: {e}"),
                "check the file is a libSQL/SQLite database and readable",
            )),
            Ok(p) => file_checks(p, &mut out),
        }
    }
    // Engine features on an in-memory database.
    match files::probe_engine().await {
        Err(e) => out.push(fail("libsql", e.to_string(), "reinstall edgeswarm")),
        Ok(p) => {
            out.push(match p.fts5 {
                Ok(()) => ok("fts5", "FTS5 full-text search available"),
                Err(e) => fail(
                    "fts5",
                    format!("FTS5 missing: {e}"),
                    "build libsql with FTS5 (the default `core` feature has it); knowledge search cannot work without it",
                ),
            });
            out.push(match p.vectors {
                Ok(v) => ok("vectors", format!("libSQL vectors available (vector32 → {v})")),
                Err(e) => fail(
                    "vectors",
                    format!("vector functions missing: {e}"),
                    "use libsql (not plain SQLite); vector search falls back to lexical only",
                ),
            });
        }
    }
    // Regions.
    if s.regions.is_empty() {
        out.push(ok("regions", "none configured (single-node)"));
    }
    for r in &s.regions {
        out.push(region_check(r, path, timeout).await);
    }
    out
}

fn file_checks(p: FileProbe, out: &mut Vec<Check>) {
    match p.journal_mode {
        Ok(v) if v.eq_ignore_ascii_case("wal") => out.push(ok("journal mode", "WAL: readers never block the writer")),
        Ok(v) => out.push(warn(
            "journal mode",
            format!("{v} (not WAL)"),
            "open the file once with edgeswarm (any command that writes) to switch it to WAL",
        )),
        Err(e) => out.push(fail("journal mode", e, "the file may be damaged; restore from a backup")),
    }
    let supported = files::SCHEMA_VERSION;
    match p.schema_version {
        Ok(SqlValue::Integer(v)) if v == supported => out.push(ok("schema version", format!("{v} (this build: {supported})"))),
        Ok(SqlValue::Integer(0)) => out.push(warn(
            "schema version",
            "0: not an edgeswarm database yet",
            "any edgeswarm command that writes creates the tables",
        )),
        Ok(SqlValue::Integer(v)) if v < supported => out.push(warn(
            "schema version",
            format!("{v}, this build has {supported}"),
            "the next edgeswarm start migrates it; back it up first (see docs/operations.md)",
        )),
        Ok(v) => out.push(fail(
            "schema version",
            format!("{} is newer than this build ({supported})", v.to_text()),
            "upgrade edgeswarm; this build cannot open the file",
        )),
        Err(e) => out.push(fail("schema version", e, "the file may be damaged; restore from a backup")),
    }
    match p.quick_check {
        Ok(v) if v == "ok" => out.push(ok("integrity", "quick_check ok")),
        Ok(v) => out.push(fail(
            "integrity",
            format!("quick_check: {v}"),
            "stop writers, restore from the last backup (docs/operations.md), or salvage with `sqlite3 db .recover`",
        )),
        Err(e) => out.push(fail("integrity", e, "restore from a backup")),
    }
    match p.search_index {
        Ok(true) => out.push(ok("search index", "knowledge_fts present")),
        Ok(false) => out.push(warn(
            "search index",
            "knowledge_fts missing",
            "open the file once with edgeswarm to run migrations",
        )),
        Err(e) => out.push(warn("search index", e, "open the file once with edgeswarm to run migrations")),
    }
    // Row versions sync could not apply (parked, retried on later pulls).
    match p.parked {
        None | Some((0, _)) => {}
        Some((n, latest)) => out.push(warn(
            "sync parked rows",
            format!("{n} row version(s) parked; latest: {}", latest.unwrap_or_default()),
            "a refused row applies by itself once what refused it is fixed (the schema, a missing parent row) and a far-future one once the clocks agree (fix the other node's NTP); `sync_status` shows them per region",
        )),
    }
    // Which embedder: recorded by the search layer in _meta, or seen as a vector table.
    out.push(match (p.embedder, p.vector_tables) {
        (Some(e), _) => ok("embedder", format!("{e} (recorded in _meta)")),
        (None, Some(t)) => ok("embedder", format!("vector tables present: {t}")),
        (None, None) => warn(
            "embedder",
            "none active: knowledge search is lexical (FTS5/BM25) only",
            "lexical is the default; for vector and hybrid search run `edgeswarm models install` and set embedder = \"semantic\" in [search] (or EDGESWARM_EMBEDDER / --embedder)",
        ),
    });
}

async fn region_check(r: &RegionSpec, home: &Path, timeout: Duration) -> Check {
    let name = format!("region {}", r.name);
    if let Some(p) = r.url.strip_prefix("file:") {
        let p = PathBuf::from(p.trim_start_matches("//"));
        let p = if p.is_relative() {
            home.parent().map(|d| d.join(&p)).unwrap_or(p)
        } else {
            p
        };
        if !p.is_file() {
            return warn(
                &name,
                format!("{} does not exist yet", p.display()),
                "it is created on first sync; run `edgeswarm demo` or start the swarm",
            );
        }
        let t = Instant::now();
        return match files::probe_readable(&p).await {
            Ok(()) => ok(
                &name,
                format!(
                    "{} readable in {:.1} ms (simulated latency {} ms)",
                    p.display(),
                    t.elapsed().as_secs_f64() * 1e3,
                    r.latency_ms
                ),
            ),
            Err(e @ edgeswarm::StoreError::Open { .. }) => {
                fail(&name, format!("{}: {e}", p.display()), "check permissions on the region file")
            }
            Err(e) => fail(
                &name,
                format!("{}: {e}", p.display()),
                "restore the region file or remove it so it re-syncs from home",
            ),
        };
    }
    // http(s):// or libsql://: the token is looked up but never printed; the server is
    // asked one query over the region's own TLS settings (system roots or ca_file).
    if let Some(env) = &r.token_env {
        if std::env::var_os(env).is_none() {
            return fail(
                &name,
                format!("token variable {env} is not set"),
                format!("export {env}=<token> (Turso: `turso db tokens create <db>`)"),
            );
        }
    }
    let shown = edgeswarm::redact_url(&r.url);
    let link = match edgeswarm::HranaLink::with_ca(&r.name, &r.url, r.token_env.as_deref(), r.ca_file.as_deref(), timeout, 1) {
        Ok(l) => l,
        Err(e) => return fail(&name, e.to_string(), "fix the region's settings in edgeswarm.toml"),
    };
    let tls = match edgeswarm::RegionLink::tls(&link) {
        edgeswarm::TlsMode::None => "no TLS",
        edgeswarm::TlsMode::SystemRoots => "TLS verified with the system roots",
        edgeswarm::TlsMode::CaFile => "TLS verified with ca_file",
    };
    let t = Instant::now();
    match link.probe().await {
        Ok(v) => ok(
            &name,
            format!(
                "{shown} answered in {:.1} ms ({tls}; server: {})",
                t.elapsed().as_secs_f64() * 1e3,
                v.unwrap_or_else(|| "does not report its version".into())
            ),
        ),
        Err(e) => {
            use edgeswarm::SyncError as E;
            let fix = match &e {
                E::Tls { fix, .. } => fix.clone(),
                E::Unauthorized { .. } => "set the right token in the region's token_env variable".into(),
                E::Unreachable { .. } => {
                    "check the url, that the server runs, and the network path; raise --timeout-secs for far regions; writes keep queueing in the change log meanwhile".into()
                }
                _ => "check that the url is the base url of a libSQL (Hrana over HTTP) server".into(),
            };
            fail(&name, format!("{shown} ({tls}): {e}"), fix)
        }
    }
}

pub fn render(checks: &[Check]) -> String {
    let w = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        let tag = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        out.push_str(&format!("{tag}  {:<w$}  {}\n", c.name, c.detail));
        if let Some(f) = &c.fix {
            out.push_str(&format!("      {:<w$}  fix: {f}\n", ""));
        }
    }
    out
}

/// The one-line verdict on durability.
pub fn verdict(checks: &[Check]) -> String {
    let failing = |n: &str| checks.iter().any(|c| c.name == n && c.level != Level::Ok);
    if failing("database file") || failing("journal mode") || failing("integrity") || failing("open") {
        "durable: NO — fix the failing lines above".into()
    } else if failing("synchronous") {
        "durable: against process crashes only (synchronous=NORMAL)".into()
    } else {
        "durable: yes — acked writes are on disk and survive power loss".into()
    }
}

pub async fn run(a: DoctorArgs) -> Result<()> {
    let settings = config::load(&a.db)?;
    let checks = checks(&settings, Duration::from_secs(a.timeout_secs.max(1))).await;
    let fails = checks.iter().filter(|c| c.level == Level::Fail).count();
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "checks": checks, "failed": fails, "verdict": verdict(&checks) })
        );
    } else {
        print!("{}", render(&checks));
        println!("\n{}", verdict(&checks));
    }
    if fails > 0 {
        return Err(CliError::ChecksFailed(fails));
    }
    Ok(())
}
