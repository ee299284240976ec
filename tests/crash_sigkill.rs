//! Crash safety: a writer process is killed with SIGKILL while publishing; every id it
//! reported acked is in the file afterwards.

use edgeswarm_testkit::child::ChildLines;
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_write_survives_sigkill() {
    let dir = edgeswarm_testkit::temp_dir();
    let db = dir.path().join("crash.db");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeswarm-test-child"));
    cmd.args(["write", db.to_str().unwrap()]);
    let child = ChildLines::spawn(cmd);
    // Let it write for a while, then kill it without warning.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every full id line before the kill (a line cut by the kill ends the list).
    let acked: Vec<String> = child.sigkill().into_iter().take_while(|l| l.len() == 36).collect();
    assert!(acked.len() > 100, "the child acked only {} writes before the kill", acked.len());

    let store = edgeswarm_testkit::open_store(&db).await;
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
