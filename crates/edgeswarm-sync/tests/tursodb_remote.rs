//! Real remote server: two `tursodb --sync-server` processes (npm package `turso`
//! 0.6.0) serve two regions over Hrana; two nodes replicate through them; one server
//! is SIGKILLed mid-sync and restarted on the same file and port; afterwards nothing
//! is lost and everything converges.
//!
//! Runs against every server `tursodb_binaries` finds (CI: tursodb 0.6.0 from npm
//! `turso`, and 0.7.0 from `@tursodatabase/cli-linux-x64-gnu` via
//! `EDGESWARM_TURSODB_07`). Needs at least one: `npm install --prefix .ci/tools
//! turso@0.6.0` in the repo root, or `EDGESWARM_TURSODB=/path/to/tursodb`. Without it
//! this test FAILS (by design).
use edgeswarm_core::{Knowledge, WriteConsistency};
use edgeswarm_store::Store;
use edgeswarm_sync::{RegionConfig, SyncConfig, SyncSystem};
use edgeswarm_testkit::sync::*;
use edgeswarm_testkit::tursodb::{tursodb_binaries, TursoServer};
use std::collections::BTreeSet;
use std::time::Duration;

fn cfg() -> SyncConfig {
    SyncConfig {
        batch_rows: 50,
        request_timeout: Duration::from_secs(2),
        ..fast_cfg()
    }
}

async fn write_burst(store: &Store, tag: &str, n: usize, ids: &mut BTreeSet<String>) {
    for i in 0..n {
        let k = Knowledge::new("remote", format!("{tag} {i}"), format!("written by {tag} #{i}"));
        ids.insert(k.id.clone());
        store.publish(k).await.unwrap();
        if i % 10 == 0 {
            store
                .kv_set("remote", &format!("shared{}", i % 7), serde_json::json!(format!("{tag}-{i}")), None)
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_through_two_tursodb_servers_survive_sigkill() {
    for (version, bin) in tursodb_binaries() {
        eprintln!("== {version}");
        through_two_servers(&bin).await;
    }
}

async fn through_two_servers(bin: &std::path::Path) {
    let bin = bin.to_path_buf();
    tokio::time::timeout(Duration::from_secs(120), async {
        let dir = tempfile::tempdir().unwrap();
        let db1 = dir.path().join("turso-1.db");
        let db2 = dir.path().join("turso-2.db");
        let mut s1 = TursoServer::start(&bin, &db1, None).await.unwrap();
        let s2 = TursoServer::start(&bin, &db2, None).await.unwrap();
        let port1 = s1.port;
        let regions = vec![
            RegionConfig::http("turso-1", &s1.url, None),
            RegionConfig::http("turso-2", &s2.url, None),
        ];
        let a = open_store(&dir.path().join("a.db")).await;
        let b = open_store(&dir.path().join("b.db")).await;
        let sa = SyncSystem::start(a.clone(), regions.clone(), cfg()).await.unwrap();
        let sb = SyncSystem::start(b.clone(), regions.clone(), cfg()).await.unwrap();

        let mut ids = BTreeSet::new();
        let (mut ia, mut ib) = (BTreeSet::new(), BTreeSet::new());
        tokio::join!(write_burst(&a, "a1", 150, &mut ia), write_burst(&b, "b1", 150, &mut ib));
        // Kill server 1 while batches are in flight.
        tokio::time::sleep(Duration::from_millis(30)).await;
        s1.kill();
        tokio::join!(write_burst(&a, "a2", 100, &mut ia), write_burst(&b, "b2", 100, &mut ib));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let down = sa.sync_status();
        eprintln!(
            "while killed: {:?}",
            down.regions.iter().map(|r| (&r.region, r.health, r.lag_rows)).collect::<Vec<_>>()
        );
        // Restart on the same file and port.
        let s1b = TursoServer::start(&bin, &db1, Some(port1)).await.unwrap();
        ids.extend(ia);
        ids.extend(ib);

        let seq = sa.latest_seq().await.unwrap();
        sa.wait_replicated(seq, WriteConsistency::All, Duration::from_secs(60))
            .await
            .unwrap();
        let sums = wait_converged(&[&sa, &sb], &["turso-1", "turso-2"], Duration::from_secs(60)).await;
        eprintln!("converged: {sums:?}");
        let k = sums.iter().find(|s| s.table == "knowledge").unwrap();
        assert_eq!(k.rows as usize, ids.len());
        for (h, name) in [(&sa, "turso-1"), (&sa, "turso-2")] {
            let q = h.read_sql_at(name, "SELECT id FROM knowledge", vec![]).await.unwrap();
            let got: BTreeSet<String> = q.rows.iter().filter_map(|r| r[0].as_str().map(str::to_string)).collect();
            assert_eq!(got, ids, "{name} lost rows");
        }
        for s in [&a, &b] {
            let q = s.read_sql("SELECT id FROM knowledge", vec![]).await.unwrap();
            let got: BTreeSet<String> = q.rows.iter().filter_map(|r| r[0].as_str().map(str::to_string)).collect();
            assert_eq!(got, ids, "a home lost rows");
        }
        println!("{}", serde_json::to_string_pretty(&sa.sync_status()).unwrap());
        sa.shutdown().await;
        sb.shutdown().await;
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
        drop(s1b);
        drop(s2);
    })
    .await
    .expect("test timed out");
}
