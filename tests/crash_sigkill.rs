//! Crash safety: a writer process is killed with SIGKILL while publishing; every id it
//! reported acked is in the file afterwards.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgeswarm-test-child"))
        .args(["write", db.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child writer");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut ids = Vec::new();
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) if l.len() == 36 => ids.push(l),
                _ => break,
            }
        }
        ids
    });
    // Let it write for a while, then kill it without warning.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe_kill(child.id());
    let _ = child.wait();
    let acked = reader.join().unwrap();
    assert!(acked.len() > 100, "the child acked only {} writes before the kill", acked.len());

    let store = edgeswarm_store::Store::open(edgeswarm_core::StoreConfig::at(&db)).await.unwrap();
    let mut missing = Vec::new();
    for chunk in acked.chunks(500) {
        let list = chunk.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",");
        let r = store
            .read_sql(format!("SELECT id FROM agent_metrics WHERE id IN ({list})"), vec![])
            .await
            .unwrap();
        let found: std::collections::HashSet<String> = r.rows.iter().filter_map(|r| r[0].as_str().map(String::from)).collect();
        missing.extend(chunk.iter().filter(|id| !found.contains(*id)).cloned());
    }
    assert!(
        missing.is_empty(),
        "{} acked writes lost after SIGKILL, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    let integrity = store.read_sql("PRAGMA integrity_check", vec![]).await.unwrap();
    assert_eq!(integrity.rows[0][0].as_str(), Some("ok"));
    store.shutdown().await.unwrap();
}

fn unsafe_kill(pid: u32) {
    let status = Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill");
    assert!(status.success());
}
