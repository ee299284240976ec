//! A child process for the crash and cross-process tests.
//!
//! `edgeswarm-test-child write <db>`: publishes metrics forever through the store and
//! prints each acked id on stdout (one per line, flushed) — the parent kills it with
//! SIGKILL and checks every printed id is in the file.
//! `edgeswarm-test-child read <db> <seconds>`: reads the file in a loop from a separate
//! process and prints `reads=N lock_errors=M other_errors=K`.

use std::io::Write;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("write") => write(&args[2]).await,
        Some("read") => read(&args[2], args[3].parse().unwrap_or(3)).await,
        _ => {
            eprintln!("usage: edgeswarm-test-child write <db> | read <db> <seconds>");
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
