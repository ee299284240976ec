//! A child process for the crash and cross-process tests.
//!
//! `edgeswarm-test-child write <db>`: publishes metrics forever through the store and
//! prints each acked id on stdout (one per line, flushed) — the parent kills it with
//! SIGKILL and checks every printed id is in the file.
//! `edgeswarm-test-child read <db> <seconds>`: reads the file in a loop from a separate
//! process and prints `reads=N lock_errors=M other_errors=K`.
//! `edgeswarm-test-child crash <dir>` / `crash-final <dir>`: one life of the crash
//! harness (tests/crash_cycles.rs, scripts/crash.sh); see `crash` below.

use std::io::Write;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("write") => write(&args[2]).await,
        Some("read") => read(&args[2], args[3].parse().unwrap_or(3)).await,
        Some("crash") => crash::run(std::path::Path::new(&args[2]), false).await,
        Some("crash-final") => crash::run(std::path::Path::new(&args[2]), true).await,
        _ => {
            eprintln!("usage: edgeswarm-test-child write <db> | read <db> <seconds> | crash <dir> | crash-final <dir>");
            std::process::exit(2);
        }
    }
}

async fn write(db: &str) {
    let store = edgeswarm_store::Store::open(edgeswarm_core::StoreConfig::at(db))
        .await
        .expect("open");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for p in 0..8 {
        let s = store.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            loop {
                let m = edgeswarm_core::Metric::new(format!("child-{p}"), "crash-test", i as f64, 1);
                let id = m.id.clone();
                if s.publish(m).await.is_ok() {
                    let _ = tx.send(id);
                }
                i += 1;
            }
        });
    }
    let mut out = std::io::stdout().lock();
    while let Some(id) = rx.recv().await {
        let _ = writeln!(out, "{id}");
        let _ = out.flush();
    }
}

async fn read(db: &str, seconds: u64) {
    let (mut reads, mut locks, mut other) = (0u64, 0u64, 0u64);
    {
        let db = libsql::Builder::new_local(db)
            .flags(libsql::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .build()
            .await
            .expect("open");
        let conn = db.connect().expect("connect");
        conn.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
        let end = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < end {
            match conn.query("SELECT count(*), max(ts) FROM agent_metrics", ()).await {
                Ok(mut rows) => match rows.next().await {
                    Ok(_) => reads += 1,
                    Err(e) if e.to_string().contains("locked") || e.to_string().contains("busy") => locks += 1,
                    Err(_) => other += 1,
                },
                Err(e) if e.to_string().contains("locked") || e.to_string().contains("busy") => locks += 1,
                Err(e) => {
                    eprintln!("{e}");
                    other += 1
                }
            }
        }
    }
    println!("reads={reads} lock_errors={locks} other_errors={other}");
}

/// One life of the crash harness, in `dir` (home `home.db`, local region `region-a.db`,
/// ack log `acks.log`, checked-up-to offset `verified`):
///
/// 1. Start a swarm with one local region, the user table `crash_notes` replicated.
/// 2. Check the acks logged by earlier lives and not yet checked (`crash-final`: all of
///    them): every one is in the file; `PRAGMA integrity_check` is ok on home and on the
///    region file (read-only, before the swarm opens it); home and region
///    converge (same checksums for every replicated table) once sync catches up.
///    On a failed check print `FAIL ...` and exit 1.
/// 3. Print `ready checked=N region_checked=0|1 acks=M converge_ms=T` (`crash-final`: `final ok ...`, then
///    shut down and exit 0).
/// 4. Run mixed load until killed: typed records (metrics, messages), kv CAS chains and
///    raw SQL inserts, from several tasks. Each ack is appended to `acks.log` by one
///    logger task and the file is fsync'd after each drained group of lines, so every
///    line in the log stands for a write that was acked before it.
mod crash {
    use edgeswarm::{CasOutcome, Message, Metric, RegionConfig, SqlValue, Swarm, SyncConfig};
    use std::collections::HashMap;
    use std::io::Write;
    use std::path::Path;
    use std::time::{Duration, Instant};

    const NS: &str = "crash";

    fn fail(msg: String) -> ! {
        println!("FAIL {msg}");
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }

    fn sync_cfg() -> SyncConfig {
        SyncConfig {
            batch_rows: 256,
            window: 8,
            pull_interval: Duration::from_millis(20),
            pull_rows: 500,
            probe_interval: Duration::from_millis(100),
            max_probe_backoff: Duration::from_millis(400),
            down_after: 3,
            tick: Duration::from_millis(10),
            status_interval: Duration::from_millis(100),
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        }
    }

    pub async fn run(dir: &Path, final_check: bool) {
        let acks_path = dir.join("acks.log");
        let verified_path = dir.join("verified");
        // A line cut by the previous kill was never fully logged: drop it, so appended
        // lines start on a line of their own.
        let mut log = std::fs::read(&acks_path).unwrap_or_default();
        let whole = log.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if whole < log.len() {
            log.truncate(whole);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&acks_path)
                .unwrap_or_else(|e| fail(format!("open acks: {e}")));
            f.set_len(whole as u64).unwrap_or_else(|e| fail(format!("truncate acks: {e}")));
            f.sync_all().unwrap_or_else(|e| fail(format!("sync acks: {e}")));
        }
        let from: usize = if final_check {
            0
        } else {
            std::fs::read_to_string(&verified_path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        // The region file as the kill left it (read-only: nothing recovered into it or
        // checkpointed before the swarm opens it).
        let region_checked = region_integrity(&dir.join("region-a.db")).await;
        let swarm = Swarm::builder()
            .path(dir.join("home.db"))
            .region(RegionConfig::local("a", dir.join("region-a.db"), 1))
            .sync_config(sync_cfg())
            .start()
            .await
            .unwrap_or_else(|e| fail(format!("start: {e}")));
        swarm
            .execute_sql(
                "CREATE TABLE IF NOT EXISTS crash_notes (id TEXT PRIMARY KEY, n INTEGER NOT NULL, body TEXT)",
                vec![],
            )
            .await
            .unwrap_or_else(|e| fail(format!("create table: {e}")));
        swarm
            .replicate_table("crash_notes")
            .await
            .unwrap_or_else(|e| fail(format!("replicate_table: {e}")));

        let checked = check_acks(&swarm, &log[from.min(log.len())..]).await;
        let ic = swarm
            .read_sql("PRAGMA integrity_check", vec![])
            .await
            .unwrap_or_else(|e| fail(format!("integrity_check: {e}")));
        if ic.rows.first().and_then(|r| r[0].as_str()) != Some("ok") {
            fail(format!("integrity_check: {:?}", ic.rows));
        }
        let t = Instant::now();
        converge(&swarm).await;
        let converge_ms = t.elapsed().as_millis();
        write_verified(&verified_path, log.len());
        if final_check {
            println!("final ok checked={checked} converge_ms={converge_ms}");
            let _ = std::io::stdout().flush();
            swarm.shutdown().await.unwrap_or_else(|e| fail(format!("shutdown: {e}")));
            region_integrity(&dir.join("region-a.db")).await;
            return;
        }
        println!(
            "ready checked={checked} region_checked={} acks={} converge_ms={converge_ms}",
            u8::from(region_checked),
            log.iter().filter(|b| **b == b'\n').count()
        );
        let _ = std::io::stdout().flush();
        load(swarm, &acks_path).await;
    }

    /// `PRAGMA integrity_check` of the region file on a read-only connection of its
    /// own; false when there is no file yet.
    async fn region_integrity(path: &Path) -> bool {
        if !path.exists() {
            return false;
        }
        let db = libsql::Builder::new_local(path)
            .flags(libsql::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .build()
            .await
            .unwrap_or_else(|e| fail(format!("open region: {e}")));
        let conn = db.connect().unwrap_or_else(|e| fail(format!("connect region: {e}")));
        let _ = conn.busy_timeout(Duration::from_secs(10));
        let ok = async {
            let mut rows = conn.query("PRAGMA integrity_check", ()).await?;
            let row = rows.next().await?;
            Ok::<_, libsql::Error>(row.and_then(|r| r.get::<String>(0).ok()))
        }
        .await
        .unwrap_or_else(|e| fail(format!("region integrity_check: {e}")));
        if ok.as_deref() != Some("ok") {
            fail(format!("region integrity_check: {ok:?}"));
        }
        true
    }

    fn write_verified(path: &Path, offset: usize) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, offset.to_string()).unwrap_or_else(|e| fail(format!("write verified: {e}")));
        std::fs::rename(&tmp, path).unwrap_or_else(|e| fail(format!("rename verified: {e}")));
    }

    /// Checks every ack line in `log`; returns how many it checked.
    async fn check_acks(swarm: &Swarm, log: &[u8]) -> usize {
        let text = String::from_utf8_lossy(log);
        let mut ids: HashMap<&str, Vec<String>> = HashMap::new();
        let mut kv: HashMap<String, i64> = HashMap::new();
        let mut n = 0;
        for line in text.lines() {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(kind @ ("m" | "c" | "n")), Some(id), None) => ids.entry(kind).or_default().push(id.to_string()),
                (Some("k"), Some(key), Some(v)) => {
                    let v: i64 = v.parse().unwrap_or_else(|_| fail(format!("bad ack line {line:?}")));
                    let e = kv.entry(key.to_string()).or_insert(v);
                    *e = (*e).max(v);
                }
                _ => fail(format!("bad ack line {line:?}")),
            }
            n += 1;
        }
        for (kind, list) in &ids {
            let table = match *kind {
                "m" => "agent_metrics",
                "c" => "conversations",
                _ => "crash_notes",
            };
            for chunk in list.chunks(400) {
                let in_list = chunk.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",");
                let r = swarm
                    .read_sql(format!("SELECT id FROM {table} WHERE id IN ({in_list})"), vec![])
                    .await
                    .unwrap_or_else(|e| fail(format!("read {table}: {e}")));
                let found: std::collections::HashSet<String> = r.rows.iter().filter_map(|r| r[0].as_str().map(String::from)).collect();
                if let Some(missing) = chunk.iter().find(|id| !found.contains(*id)) {
                    fail(format!("acked write lost: {table} id {missing}"));
                }
            }
        }
        if !kv.is_empty() {
            let r = swarm
                .read_sql("SELECT key, version FROM kv WHERE namespace = ?1", vec![SqlValue::Text(NS.into())])
                .await
                .unwrap_or_else(|e| fail(format!("read kv: {e}")));
            let stored: HashMap<String, i64> = r
                .rows
                .iter()
                .filter_map(|r| Some((r[0].as_str()?.to_string(), r[1].as_i64()?)))
                .collect();
            for (key, v) in &kv {
                let have = stored.get(key).copied().unwrap_or(0);
                if have < *v {
                    fail(format!("acked kv CAS lost: {key} acked at version {v}, stored {have}"));
                }
            }
        }
        n
    }

    /// Waits until home and the region hold the same replicated tables.
    async fn converge(swarm: &Swarm) {
        let Some(sync) = swarm.sync() else { fail("no sync".into()) };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let home = sync.home_checksums().await;
            let region = sync.region_checksums("a").await;
            if let (Ok(h), Ok(r)) = (&home, &region) {
                if h == r {
                    return;
                }
            }
            if Instant::now() > deadline {
                fail(format!(
                    "home and region did not converge in 120 s: home {home:?} region {region:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Mixed load until the process is killed.
    async fn load(swarm: Swarm, acks_path: &Path) -> ! {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let seed = std::process::id() as u64;
        for w in 0..3u64 {
            let (s, tx) = (swarm.clone(), tx.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                loop {
                    i += 1;
                    let line = if i.is_multiple_of(2) {
                        let m = Metric::new(format!("crash-{seed}-{w}"), "crash", i as f64, 1);
                        let id = m.id.clone();
                        s.store().publish(m).await.ok().map(|_| format!("m {id}"))
                    } else {
                        let m = Message::new(format!("crash-{seed}-{w}"), "user", format!("message {i}"));
                        let id = m.id.clone();
                        s.store().publish(m).await.ok().map(|_| format!("c {id}"))
                    };
                    if let Some(l) = line {
                        let _ = tx.send(l);
                    }
                }
            });
        }
        for w in 0..2u64 {
            let (s, tx) = (swarm.clone(), tx.clone());
            tokio::spawn(async move {
                let key = format!("cas-{w}");
                loop {
                    let cur = match s.kv_get(NS, &key).await {
                        Ok(e) => e.map(|e| e.version),
                        Err(_) => continue,
                    };
                    if let Ok(CasOutcome::Swapped { version }) = s.kv_cas(NS, &key, cur, serde_json::json!({ "v": cur }), None).await {
                        let _ = tx.send(format!("k {key} {version}"));
                    }
                }
            });
        }
        {
            let (s, tx) = (swarm.clone(), tx.clone());
            tokio::spawn(async move {
                let mut i = 0i64;
                loop {
                    i += 1;
                    let id = format!("{seed}-{i}");
                    let r = s
                        .execute_sql(
                            "INSERT INTO crash_notes (id, n, body) VALUES (?1, ?2, ?3)",
                            vec![SqlValue::Text(id.clone()), SqlValue::Integer(i), SqlValue::Text("note".into())],
                        )
                        .await;
                    if r.is_ok() {
                        let _ = tx.send(format!("n {id}"));
                    }
                }
            });
        }
        drop(tx);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(acks_path)
            .unwrap_or_else(|e| fail(format!("open acks: {e}")));
        let mut buf = String::new();
        while let Some(l) = rx.recv().await {
            buf.clear();
            buf.push_str(&l);
            buf.push('\n');
            while let Ok(l) = rx.try_recv() {
                buf.push_str(&l);
                buf.push('\n');
            }
            f.write_all(buf.as_bytes()).unwrap_or_else(|e| fail(format!("write acks: {e}")));
            f.sync_data().unwrap_or_else(|e| fail(format!("fsync acks: {e}")));
        }
        fail("every load task stopped".into())
    }
}
