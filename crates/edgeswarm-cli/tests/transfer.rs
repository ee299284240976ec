//! Backup, export and import as files on disk (issue #14 item 5, #12 item 3), through the
//! real binary:
//! - backup and export never write over the database (by any name), never delete or
//!   truncate an old file before the new one is complete and verified, and leave no
//!   temporary file behind when a write fails half way (the failure is a real one: the
//!   child runs under RLIMIT_FSIZE, so its writes past the cap fail with EFBIG);
//! - import streams: a 200 MB file is imported with a stated peak RSS, a bad line stops it
//!   naming the line with nothing of its batch written, and an import stopped by a bad
//!   line or by SIGKILL continues where it stopped when run again, storing no row twice.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgeswarm"));
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("EDGESWARM_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cmd(dir).args(args).output().expect("run edgeswarm")
}

/// Runs with every file write past `cap` bytes failing (EFBIG, SIGXFSZ ignored).
fn run_capped(dir: &Path, args: &[&str], cap: u64) -> Output {
    use std::os::unix::process::CommandExt;
    let mut c = cmd(dir);
    c.args(args);
    // SAFETY: only async-signal-safe calls (signal, setrlimit) between fork and exec.
    unsafe {
        c.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: cap as libc::rlim_t,
                rlim_max: cap as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.output().expect("run edgeswarm")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "expected success, got {:?}\n{}", o.status.code(), text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn fails(o: &Output, needle: &str) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    let all = text(o);
    assert!(all.contains(needle), "expected `{needle}` in:\n{all}");
    all
}

/// A conversation line (content padded to `pad` bytes) or, every tenth, a knowledge line.
fn line(i: usize, pad: usize) -> String {
    let filler = "x".repeat(pad);
    if i.is_multiple_of(10) {
        format!(
            r#"{{"type":"knowledge","id":"k{i}","category":"test","topic":"topic {i}","content":"entry {i} {filler}","tags":["t"],"metadata":null,"region":null,"created_at":{i}}}"#
        )
    } else {
        format!(
            r#"{{"type":"conversation","id":"c{i}","session_id":"s{}","role":"user","content":"message {i} {filler}","metadata":null,"created_at":{i}}}"#,
            i % 100
        )
    }
}

/// Writes lines `1..=n` to `path`, `bad` replacing line `bad.0` when given.
fn write_jsonl(path: &Path, n: usize, pad: usize, bad: Option<(usize, &str)>) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for i in 1..=n {
        match bad {
            Some((b, l)) if b == i => writeln!(f, "{l}"),
            _ => writeln!(f, "{}", line(i, pad)),
        }
        .expect("write");
    }
    f.flush().expect("flush");
}

fn count(dir: &Path, db: &str, sql: &str) -> i64 {
    let o = ok(&run(dir, &["sql", "--db", db, "--json", sql]));
    let v: serde_json::Value = serde_json::from_str(o.trim()).expect("json");
    v["rows"][0][0]
        .as_i64()
        .or_else(|| v["rows"][0].as_object()?.values().next()?.as_i64())
        .unwrap_or_else(|| panic!("{o}"))
}

fn rows(dir: &Path, db: &str) -> i64 {
    count(
        dir,
        db,
        "SELECT (SELECT count(*) FROM knowledge) + (SELECT count(*) FROM conversations) AS n",
    )
}

/// A home database holding `n` records (imported, so no raw SQL is needed).
fn seeded(dir: &Path, n: usize, pad: usize) -> String {
    let src = dir.join("seed.jsonl");
    write_jsonl(&src, n, pad, None);
    let db = dir.join("home.db").display().to_string();
    ok(&run(dir, &["import", "--db", &db, &src.display().to_string()]));
    std::fs::remove_file(&src).expect("rm seed");
    db
}

/// Names in `dir` that look like a temporary file of ours.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

#[test]
fn backup_and_export_refuse_the_database_by_any_name() {
    let d = tempfile::tempdir().expect("tmp");
    let dir = d.path();
    let db = seeded(dir, 50, 10);
    let before = std::fs::read(&db).expect("read db");
    std::os::unix::fs::symlink(&db, dir.join("link.db")).expect("symlink");
    std::fs::hard_link(&db, dir.join("hard.db")).expect("hard link");
    std::fs::create_dir(dir.join("sub")).expect("mkdir");
    let wal = format!("{db}-wal");
    let shm = format!("{db}-shm");
    for dest in ["home.db", "./home.db", "sub/../home.db", "link.db", "hard.db", &db, &wal, &shm] {
        for force in [false, true] {
            let mut args = vec!["backup", "--db", &db, dest];
            if force {
                args.push("--force");
            }
            fails(&run(dir, &args), "is the database");
        }
        fails(&run(dir, &["export", "--db", &db, "-o", dest]), "is the database");
    }
    assert_eq!(std::fs::read(&db).expect("read db"), before, "the database changed");
    assert_eq!(rows(dir, &db), 50);
    assert!(temp_files(dir).is_empty(), "{:?}", temp_files(dir));
}

#[test]
fn backup_force_replaces_the_old_file_only_once_the_new_one_is_verified() {
    let d = tempfile::tempdir().expect("tmp");
    let dir = d.path();
    let db = seeded(dir, 20, 10);
    let dest = dir.join("backup.db").display().to_string();
    ok(&run(dir, &["backup", "--db", &db, &dest]));
    let old = std::fs::read(&dest).expect("read backup");
    // More data, so the next copy is bigger than the cap below.
    let more = dir.join("more.jsonl");
    std::fs::write(&more, (1000..1400).map(|i| line(i, 2000) + "\n").collect::<String>()).expect("write");
    ok(&run(dir, &["import", "--db", &db, &more.display().to_string()]));

    // The copy fails half way (its writes pass the file-size cap): the old backup stays
    // byte for byte, and no temporary file is left.
    let o = run_capped(dir, &["backup", "--db", &db, "--force", &dest], 256 << 10);
    fails(&o, "was left as it was");
    assert_eq!(std::fs::read(&dest).expect("read backup"), old, "the old backup changed");
    assert!(temp_files(dir).is_empty(), "{:?}", temp_files(dir));
    assert_eq!(rows(dir, &dest), 20);

    // Without the cap it replaces the old backup with the new, complete copy.
    let o = ok(&run(dir, &["backup", "--db", &db, "--force", &dest]));
    assert!(o.contains("integrity ok"), "{o}");
    assert_eq!(rows(dir, &dest), 420);
    assert!(temp_files(dir).is_empty(), "{:?}", temp_files(dir));
    // Without --force an existing file is refused and left alone.
    fails(&run(dir, &["backup", "--db", &db, &dest]), "already exists");
    assert_eq!(rows(dir, &dest), 420);
}

#[test]
fn export_never_truncates_or_leaves_a_partial_file() {
    let d = tempfile::tempdir().expect("tmp");
    let dir = d.path();
    let db = seeded(dir, 600, 2000);
    let out = dir.join("dump.jsonl");
    std::fs::write(&out, "OLD CONTENT\n").expect("write");
    let o = run_capped(dir, &["export", "--db", &db, "-o", &out.display().to_string()], 256 << 10);
    fails(&o, "File too large");
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "OLD CONTENT\n");
    assert!(temp_files(dir).is_empty(), "{:?}", temp_files(dir));

    ok(&run(dir, &["export", "--db", &db, "-o", &out.display().to_string()]));
    let t = std::fs::read_to_string(&out).expect("read");
    assert_eq!(t.lines().count(), 600);
    assert!(!t.contains("OLD CONTENT"));
    assert!(temp_files(dir).is_empty(), "{:?}", temp_files(dir));
    // A missing directory is refused before anything is written.
    fails(&run(dir, &["export", "--db", &db, "-o", "nope/x.jsonl"]), "does not exist");
}

#[test]
fn a_bad_line_names_its_line_writes_nothing_of_its_batch_and_the_import_resumes() {
    let d = tempfile::tempdir().expect("tmp");
    let dir = d.path();
    let db = dir.join("home.db").display().to_string();
    let file = dir.join("in.jsonl");
    // Batches are 1,000 records: lines 1-2000 commit, line 2300 is bad, so 2001-2299 are
    // not written.
    write_jsonl(&file, 2500, 10, Some((2300, r#"{"type":"knowledge","id":""}"#)));
    let name = file.display().to_string();
    let e = fails(&run(dir, &["import", "--db", &db, &name]), "in.jsonl:2300:");
    assert!(e.contains("lines 1-2000 were imported"), "{e}");
    assert_eq!(rows(dir, &db), 2000);

    // Fixed, the same command continues at line 2001.
    write_jsonl(&file, 2500, 10, None);
    let o = ok(&run(dir, &["import", "--db", &db, "--json", &name]));
    let v: serde_json::Value = serde_json::from_str(o.trim()).expect("json");
    assert_eq!(v["resumed_from_line"], 2001, "{o}");
    assert_eq!(v["lines"], 2500, "{o}");
    assert_eq!(v["knowledge"].as_u64().unwrap() + v["conversations"].as_u64().unwrap(), 2500, "{o}");
    assert_eq!(v["already_present"], 0, "{o}");
    assert_eq!(rows(dir, &db), 2500);

    // Finished imports leave no progress behind: a third run reads the file from the top
    // and stores nothing new.
    let o = ok(&run(dir, &["import", "--db", &db, "--json", &name]));
    let v: serde_json::Value = serde_json::from_str(o.trim()).expect("json");
    assert_eq!(
        (v["resumed_from_line"].clone(), v["already_present"].clone()),
        (serde_json::Value::Null, 2500.into()),
        "{o}"
    );
    assert!(!progress_recorded(&db));
}

/// Reads the recorded progress of any import straight from the file (read-only).
fn progress_recorded(db: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
    rt.block_on(async {
        let Ok(d) = libsql::Builder::new_local(db)
            .flags(libsql::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .build()
            .await
        else {
            return false;
        };
        let Ok(c) = d.connect() else { return false };
        let Ok(mut r) = c.query("SELECT count(*) FROM _meta WHERE key LIKE 'import:%'", ()).await else {
            return false;
        };
        matches!(r.next().await, Ok(Some(row)) if row.get::<i64>(0).unwrap_or(0) > 0)
    })
}

fn kill(child: &mut Child) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

#[test]
fn an_import_killed_half_way_continues_where_it_stopped() {
    let d = tempfile::tempdir().expect("tmp");
    let dir = d.path();
    let db = dir.join("home.db").display().to_string();
    let file = dir.join("big.jsonl");
    let n = 60_000;
    write_jsonl(&file, n, 200, None);
    let name = file.display().to_string();
    let mut child = cmd(dir)
        .args(["import", "--db", &db, &name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let t = Instant::now();
    while !progress_recorded(&db) {
        assert!(t.elapsed() < Duration::from_secs(120), "no batch was committed in 120 s");
        if let Ok(Some(s)) = child.try_wait() {
            panic!("the import finished ({s}) before it could be killed; make the file bigger");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(&mut child);
    let stored = rows(dir, &db);
    assert!(stored > 0 && stored < n as i64, "{stored}");

    let o = ok(&run(dir, &["import", "--db", &db, "--json", &name]));
    let v: serde_json::Value = serde_json::from_str(o.trim()).expect("json");
    let from = v["resumed_from_line"].as_u64().unwrap_or_else(|| panic!("did not resume: {o}"));
    assert!(from > 1, "{o}");
    assert_eq!(v["lines"], n, "{o}");
    // Every record once: the batch that may have committed after the last recorded
    // progress is counted as already present, never stored twice.
    let k = v["knowledge"].as_u64().unwrap() + v["conversations"].as_u64().unwrap();
    assert_eq!(k + v["already_present"].as_u64().unwrap(), n as u64, "{o}");
    assert!(v["already_present"].as_u64().unwrap() <= 1000, "{o}");
    assert_eq!(rows(dir, &db), n as i64);
}

/// Peak RSS (VmHWM) of a running child, polled until it exits; the last reading.
fn peak_rss_mib(child: &mut Child) -> (f64, std::process::ExitStatus) {
    let status_file = PathBuf::from(format!("/proc/{}/status", child.id()));
    let mut peak = 0.0f64;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_file) {
            if let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|x| x.parse::<f64>().ok())
            {
                peak = peak.max(kb / 1024.0);
            }
        }
        if let Ok(Some(st)) = child.try_wait() {
            return (peak, st);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The figure docs/reliability.md states: importing a 200 MB file peaks under this RSS
/// (the old import held the whole file, parsed, in memory: well over 400 MiB).
const IMPORT_RSS_LIMIT_MIB: f64 = 200.0;

#[test]
fn a_200_mb_import_streams_in_bounded_memory() {
    let mb: usize = std::env::var("EDGESWARM_TEST_IMPORT_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let d = tempfile::tempdir().expect("tmp");
    let dir = d.path();
    let db = dir.join("home.db").display().to_string();
    let file = dir.join("huge.jsonl");
    // ~8 KiB per line.
    let n = mb * 128;
    write_jsonl(&file, n, 8 << 10, None);
    assert!(std::fs::metadata(&file).expect("file").len() >= (mb as u64) << 20);
    let mut child = cmd(dir)
        .args(["import", "--db", &db, "--json", &file.display().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (peak, status) = peak_rss_mib(&mut child);
    let o = child.wait_with_output().expect("output");
    assert!(status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["lines"], n, "{v}");
    eprintln!("imported {mb} MB ({n} records): peak RSS {peak:.1} MiB");
    assert!(
        peak > 0.0 && peak < IMPORT_RSS_LIMIT_MIB,
        "peak RSS {peak:.1} MiB for a {mb} MB import"
    );
    std::fs::remove_file(&file).expect("rm");
    assert_eq!(rows(dir, &db), n as i64);
}
